"""The documentation site builds with ``mkdocs build --strict`` and its quickstart matches the README."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PAGES = ["index", "quickstart", "theory", "bounds", "design", "cli", "harness", "api"]


def readme_setup_commands() -> list[str]:
    """The command lines of the README's "Set up" section (one per fenced block)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("## Set up")
    section = readme[start:readme.index("\n## ", start + 1)]
    return [line for block in re.findall(r"```\n(.*?)```", section, re.S) for line in block.splitlines() if line.strip()]


def test_readme_setup_commands_in_quickstart():
    commands = readme_setup_commands()
    assert len(commands) == 2
    quickstart = (ROOT / "docs" / "quickstart.md").read_text(encoding="utf-8")
    for command in commands:
        assert command in quickstart.splitlines()


def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    pytest.importorskip("material")
    site = tmp_path / "site"
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(site)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    for page in PAGES:
        path = site / ("index.html" if page == "index" else f"{page}/index.html")
        assert path.is_file(), page
    api = (site / "api" / "index.html").read_text(encoding="utf-8")
    for name in ["infobound.bounds.seed_bound", "infobound.spec.AdapterSpec", "infobound.certificates.occam_kl_bound",
                 "infobound.codelength", "infobound.harness.sweep.SweepConfig",
                 "infobound.harness.compare.comparison_rows", "infobound.peft_bridge.spec_from_peft"]:
        assert f'id="{name}"' in api, name
    quickstart = (site / "quickstart" / "index.html").read_text(encoding="utf-8")
    assert "constraints.txt" in quickstart
    assert "fonts.googleapis.com" not in (site / "index.html").read_text(encoding="utf-8")
