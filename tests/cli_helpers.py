"""Helpers shared by the CLI tests: run ``main`` in-process, check the one-line error, snapshot a folder."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

from infobound.cli import main


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """``main(argv)`` with stdout and stderr captured: (status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    return status, out.getvalue(), err.getvalue()


def one_error_line(status: int, out: str, err: str) -> str:
    """Check exit status 2, nothing on stdout and exactly one stderr line; return that line."""
    assert status == 2, (status, out, err)
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("infobound: error: ") and "Traceback" not in err
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` (relative name -> bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
