"""Faults: a killed or interrupted sweep, damaged stores, unwritable folders, a user's own files,
missing optional dependencies. Each ends in one clear line (exit 2, or 130 for Ctrl-C), no
traceback, no orphaned process, and nothing already stored lost or changed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from cli_helpers import one_error_line, run_cli, snapshot

REPO = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
SMALL = ["--modes", "lora,b_only", "--ranks", "1,2", "--n", "30,60", "--seeds", "2", "--bits", "8",
         "--steps", "20", "--no-progress"]
# Long enough to be caught mid-way: 24 groups of 400 steps.
LONG = ["--modes", "lora,b_only,a_only", "--ranks", "1,2,4,8", "--n", "30,60", "--seeds", "2", "--bits", "8",
        "--steps", "400", "--no-progress"]


def count_records(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=1)
        try:
            return conn.execute("SELECT COUNT(*) FROM records").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def live_in_group(pgid: int) -> list[int]:
    """Processes of process group ``pgid`` that are alive (zombies, which hold nothing, excluded)."""
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # state ppid pgrp ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(entry.name))
    return alive


def start_sweep(out: Path, args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "infobound", "validate", "--out", str(out), *args],
                            cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own process group, as a shell job has


def wait_for_records(proc: subprocess.Popen, store: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline and count_records(store) < 1:
        time.sleep(0.05)
    assert proc.poll() is None, f"the sweep ended before the fault: {proc.communicate()}"


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("faults") / "out"
    status, out, err = run_cli(["validate", "--out", str(folder), *SMALL])
    assert status == 0, err
    return folder


def copy_of(folder: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(folder, target)
    return target


# --------------------------------------------------------------------------------------- kills
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc to find the processes")
def test_sigkill_of_a_two_worker_sweep_leaves_no_process_alive(tmp_path):
    proc = start_sweep(tmp_path / "out", [*LONG, "--workers", "2"])
    try:
        wait_for_records(proc, tmp_path / "out" / "records.sqlite")
        assert len(live_in_group(proc.pid)) >= 3  # the parent and its two workers (and a tracker)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        time.sleep(10)
        assert live_in_group(proc.pid) == []
    finally:
        if live_in_group(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    assert count_records(tmp_path / "out" / "records.sqlite") >= 1  # what was committed survives


@pytest.mark.parametrize("workers", ["1", "2"])
def test_ctrl_c_prints_one_line_exits_130_and_resumes(tmp_path, workers):
    out = tmp_path / "out"
    proc = start_sweep(out, [*LONG, "--workers", workers])
    wait_for_records(proc, out / "records.sqlite")
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    stored = count_records(out / "records.sqlite")
    assert lines[0] == (f"infobound: interrupted: {stored} records stored in {str(out)!r} ({stored} "
                        "written by this run); rerun the same command to resume")
    assert 1 <= stored < 48
    time.sleep(2)
    assert live_in_group(proc.pid) == []  # the workers went with it
    before = sqlite3.connect(out / "records.sqlite").execute(
        "SELECT key, record FROM records ORDER BY seq").fetchall()

    status, stdout, err = run_cli(["validate", "--out", str(out), *LONG, "--workers", "1"])
    assert status == 0, err
    after = sqlite3.connect(out / "records.sqlite").execute(
        "SELECT key, record FROM records ORDER BY seq").fetchall()
    assert after[:len(before)] == before and len(after) == 48  # 24 groups × 2 seeds, nothing redone


# ------------------------------------------------------------------------------ damaged stores
def test_a_damaged_record_is_named_and_the_rest_can_be_reported(finished, tmp_path):
    folder = copy_of(finished, tmp_path)
    conn = sqlite3.connect(folder / "records.sqlite")
    conn.execute("UPDATE records SET record = '{\"task\": \"dig' WHERE seq = 3")
    conn.commit()
    conn.close()
    files = snapshot(folder)
    for argv in (["report", str(folder)], ["validate", "--out", str(folder), *SMALL]):
        line = one_error_line(*run_cli(argv))
        assert "damaged" in line and "rows 3" in line and "--skip-damaged" in line, line
        assert snapshot(folder) == files  # nothing changed, nothing lost
    status, out, err = run_cli(["report", str(folder), "--skip-damaged"])
    assert status == 0, err
    assert "1 damaged record(s) left out (store rows 3)" in (folder / "summary.md").read_text()


def test_a_damaged_database_is_called_damaged_and_left_unchanged(finished, tmp_path):
    folder = copy_of(finished, tmp_path)
    path = folder / "records.sqlite"
    data = bytearray(path.read_bytes())
    assert data[:16] == b"SQLite format 3\x00"
    data[100:] = bytes((i * 37) % 251 for i in range(len(data) - 100))  # header kept, pages garbage
    path.write_bytes(bytes(data))
    files = snapshot(folder)
    for argv in (["report", str(folder)], ["validate", "--out", str(folder), *SMALL]):
        line = one_error_line(*run_cli(argv))
        assert "is damaged" in line and ".recover" in line, line
        assert snapshot(folder) == files


def test_validate_refuses_a_folder_of_the_users_own_files(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "summary.md").write_text("my notes")
    (folder / "records.csv").write_text("a,b\n1,2\n")
    files = snapshot(folder)
    line = one_error_line(*run_cli(["validate", "--out", str(folder), *SMALL]))
    assert "non-empty folder that holds no infobound run store" in line
    assert snapshot(folder) == files


def test_report_into_a_read_only_folder_is_one_line_and_touches_nothing(finished, tmp_path, monkeypatch):
    # Root ignores file permissions, so the folder is made read-only where the kernel would say so:
    # every file creation in it fails with EACCES, as on a read-only mount.
    folder = copy_of(finished, tmp_path)
    files = snapshot(folder)

    def refuse(*args, dir=None, **kwargs):
        raise PermissionError(13, "Permission denied", str(dir))

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", refuse)
    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    line = one_error_line(*run_cli(["report", str(folder)]))
    assert "is not writable: Permission denied" in line, line
    assert snapshot(folder) == files


# ------------------------------------------------------------------------- missing extras
BLOCKER = textwrap.dedent("""
    import sys
    class _Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "sklearn"):
                raise ModuleNotFoundError(f"No module named {name!r}")
            return None
    sys.meta_path.insert(0, _Blocker())
""")


@pytest.fixture()
def without_harness(tmp_path) -> dict:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    return dict(ENV, PYTHONPATH=os.pathsep.join([str(site), str(REPO)]))


def test_validate_without_the_harness_extra_says_what_to_install(tmp_path, without_harness):
    done = subprocess.run([sys.executable, "-m", "infobound", "validate", "--out", str(tmp_path / "o")],
                          cwd=tmp_path, env=without_harness, capture_output=True, text=True)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [
        'infobound: error: infobound validate needs torch and scikit-learn, which are not installed: '
        'pip install torch==2.13.0 && pip install "infobound[harness]"']
    assert not (tmp_path / "o").exists()


def test_report_and_the_calculator_work_without_the_harness_extra(finished, tmp_path, without_harness):
    folder = copy_of(finished, tmp_path)
    done = subprocess.run([sys.executable, "-m", "infobound", "report", str(folder)], cwd=tmp_path,
                          env=without_harness, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "digits: scikit-learn's 1,797 8x8 images" in (folder / "summary.md").read_text()
    done = subprocess.run([sys.executable, "-m", "infobound", "bound", "--json", "--mode", "b_only"],
                          cwd=tmp_path, env=without_harness, capture_output=True, text=True)
    assert done.returncode == 0 and json.loads(done.stdout)["mode"] == "b_only"


# ------------------------------------------------------------------------ settings, honestly
def test_the_default_targets_written_out_are_the_same_sweep(finished, tmp_path):
    folder = copy_of(finished, tmp_path)
    status, out, err = run_cli(["validate", "--out", str(folder), *SMALL, "--targets", "fc2,fc1"])
    assert status == 0, err
    assert "0 records written" in out  # the same keys: nothing retrained, nothing refused


def test_a_sweep_states_its_size_and_estimate_first_and_inert_options_are_said(finished, tmp_path):
    folder = copy_of(finished, tmp_path)
    status, out, err = run_cli(["validate", "--out", str(folder), *SMALL])
    assert status == 0, err
    assert out.splitlines()[0] == "sweep: 8 configurations × seeds = 16 runs, all stored; nothing to train"
    status, out, err = run_cli(["validate", "--out", str(tmp_path / "new"), *SMALL[:-3], "--bits", "none",
                                "--clip", "2", "--steps", "5", "--no-progress"])
    assert status == 0, err
    assert "--clip does nothing here" in err
    first = out.splitlines()[0]
    assert first.startswith("sweep: 8 configurations × seeds = 16 runs (none stored yet); ≈ ")
    assert "estimated" in first and "GFLOP/s" in first and "bench_scaling.py" in first
