"""``infobound validate`` and ``infobound report`` end to end, on tiny sweeps.

Numbers are checked against hand calculations: the seed bound sqrt(2 σ² ln2 · q · d_train / n) with
σ = 1/2 and d_train counted by hand from the digits network's adapted layers (fc1 64 → 64 and
fc2 64 → 64; the head stays frozen) or the linreg layer (32 → 16). The set of stored runs is checked
against the Cartesian product of the sweep's lists, built here; resumption is checked on the raw
SQLite rows (read with ``sqlite3``, not through the store's API).
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import one_error_line, run_cli, snapshot
from infobound.spec import Mode

LN2 = math.log(2.0)
SIGMA = 0.5  # a loss in [0, 1] is 1/2-sub-Gaussian
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
REPO = Path(__file__).resolve().parents[1]
DIGITS_TEST_N = 360  # ceil(0.2 · 1,797) held-out images

# The tiny sweep used throughout: 2 modes × 2 ranks × 2 n = 8 configurations, 3 seeds, 2 bit widths.
MODES, RANKS, NS, SEEDS, BITS = ("lora", "b_only"), (1, 2), (30, 60), 3, (8, None)
STEPS = 20


def sweep_args(out, *, modes=MODES, ranks=RANKS, ns=NS, seeds=SEEDS, bits=BITS, steps=STEPS) -> list[str]:
    """The ``infobound validate`` argument list for a digits sweep into ``out``."""
    return ["validate", "--out", str(out), "--modes", ",".join(modes),
            "--ranks", ",".join(map(str, ranks)), "--n", ",".join(map(str, ns)),
            "--seeds", str(seeds), "--bits", ",".join("none" if b is None else str(b) for b in bits),
            "--steps", str(steps), "--no-progress"]


def digits_d_train(mode: str, rank: int) -> int:
    """Trained parameters of the digits adapter, by hand: fc1 (64 → 64) and fc2 (64 → 64)."""
    layers = ((64, 64), (64, 64))  # (d_in, d_out)
    per_layer = {"lora": lambda d_in, d_out: rank * (d_in + d_out),  # A (r, d_in) and B (d_out, r)
                 "b_only": lambda d_in, d_out: rank * d_out,  # B (d_out, r)
                 "a_only": lambda d_in, d_out: rank * d_in}[mode]  # A (r, d_in)
    return sum(per_layer(*dims) for dims in layers)


def hand_bound(bits: int, d_train: int, n: int) -> float:
    """sqrt(2 σ² ln2 · bits · d_train / n), σ = 1/2: THEORY §1, written out here."""
    return math.sqrt(2.0 * SIGMA**2 * LN2 * bits * d_train / n)


def raw_rows(folder: Path) -> list[tuple]:
    """Every row of ``records.sqlite`` (seq, key, record JSON, config JSON, created_at), in seq order."""
    conn = sqlite3.connect(folder / "records.sqlite")
    try:
        return conn.execute("SELECT seq, key, record, config, created_at FROM records ORDER BY seq").fetchall()
    finally:
        conn.close()


def stored(folder: Path) -> dict[str, dict]:
    """Key -> record, decoded from the raw rows."""
    return {row[1]: json.loads(row[2]) for row in raw_rows(folder)}


def run_tuple(record: dict) -> tuple:
    return record["mode"], record["rank"], record["n"], record["seed"], record["bits"]


def expected_tuples(modes=MODES, ranks=RANKS, ns=NS, seeds=SEEDS, bits=BITS) -> set[tuple]:
    return set(itertools.product(modes, ranks, ns, range(seeds), bits))


def without_wall_time(record: dict) -> dict:
    """The record without its time; its arrays (a run_group record's ``_arrays``) as plain lists."""
    out = {k: v for k, v in record.items() if k != "wall_time"}
    if "_arrays" in out:
        out["_arrays"] = {k: (str(v.dtype), v.tolist()) for k, v in out["_arrays"].items()}
    return out


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished tiny sweep with ``--bits 8,none``: (folder, status, stdout, stderr, files)."""
    folder = tmp_path_factory.mktemp("validate") / "out"
    status, out, err = run_cli(sweep_args(folder))
    return folder, status, out, err, snapshot(folder)


def copy_of(finished, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(finished[0], target)
    return target


# ------------------------------------------------------------------------------------ 1. end to end
def test_validate_writes_every_output(finished):
    folder, status, out, err, files = finished
    assert status == 0, err
    assert "Traceback" not in err
    for name in ("records.sqlite", "records.csv", "summary.md"):
        assert (folder / name).is_file(), name
    pngs = sorted(folder.glob("*.png"))
    assert pngs and all(p.read_bytes()[:8] == PNG_MAGIC for p in pngs)
    total = len(MODES) * len(RANKS) * len(NS) * SEEDS * len(BITS)
    assert total == 48
    assert f"8 configurations × 3 seeds: 0 already stored, {total} records written; {total} records" in out

    with open(folder / "records.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == total
    tuples = [(r["mode"], int(r["rank"]), int(r["n"]), int(r["seed"]), int(r["bits"]) if r["bits"] else None)
              for r in rows]
    assert len(set(tuples)) == total and set(tuples) == expected_tuples()
    assert len({r["key"] for r in rows}) == total

    # The printed verdict table has one row per configuration (task mode rank n bits K ...).
    table_rows = {tuple(line.split()[:6]) for line in out.splitlines() if line.startswith("digits ")}
    for mode, rank, n, bits in itertools.product(MODES, RANKS, NS, BITS):
        assert ("digits", mode, str(rank), str(n), "—" if bits is None else str(bits), str(SEEDS)) in table_rows


def test_records_carry_the_hand_computed_bound_and_exact_gap(finished):
    folder = finished[0]
    records = stored(folder)
    assert len(records) == 48
    csv_bounds = {}
    with open(folder / "records.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            csv_bounds[row["key"]] = row["bound"]
    for key, r in records.items():
        d_train = digits_d_train(r["mode"], r["rank"])
        assert r["trainable_params"] == d_train, r
        assert r["test_n"] == DIGITS_TEST_N and r["loss_kind"] == "zero_one"
        # Errors are counts over n training / 360 test examples.
        assert abs(r["train_error"] * r["n"] - round(r["train_error"] * r["n"])) < 1e-9
        assert abs(r["test_error"] * DIGITS_TEST_N - round(r["test_error"] * DIGITS_TEST_N)) < 1e-9
        assert r["gap"] == r["test_error"] - r["train_error"]  # exactly
        if r["bits"] == 8:
            assert r["bound_applicable"] is True
            assert r["bound"] == pytest.approx(hand_bound(8, d_train, r["n"]), rel=1e-12)
            assert float(csv_bounds[key]) == r["bound"]
        else:
            assert r["bits"] is None
            assert r["bound_applicable"] is False and r["bound"] is None
            assert csv_bounds[key] == ""
    # Worked value: LoRA, rank 1, n = 30, q = 8: d_train = 256, bound = sqrt(0.5 ln2 · 2048 / 30).
    assert hand_bound(8, 256, 30) == pytest.approx(4.8640953694508, rel=1e-12)


def test_summary_states_bounds_and_where_they_do_not_apply(finished):
    summary = (finished[0] / "summary.md").read_text()
    assert "not applicable" in summary and "parameters not quantised" in summary
    for mode, rank, n in itertools.product(MODES, RANKS, NS):
        assert f"{hand_bound(8, digits_d_train(mode, rank), n):.4g} (expectation, q=8 bits)" in summary


def test_summary_links_every_plot_in_its_folder(finished):
    """Each ``![name](target)`` of summary.md resolves, from the summary's folder, to a plot there."""
    folder = finished[0]
    summary = (folder / "summary.md").read_text()
    links = dict(re.findall(r"!\[([^\]]+)\]\(([^)]+)\)", summary))
    pngs = {p.stem: p for p in folder.glob("*.png")}
    assert pngs and set(links) == set(pngs)
    for stem, target in links.items():
        assert (folder / target).resolve() == pngs[stem].resolve(), (stem, target)


# --------------------------------------------------------------------------------------- 2. resume
def test_rerun_writes_nothing_and_extension_writes_only_new_groups(finished, tmp_path):
    folder = copy_of(finished, tmp_path)
    rows, files = raw_rows(folder), snapshot(folder)
    status, out, err = run_cli(sweep_args(folder))
    assert status == 0, err
    assert "8 configurations × 3 seeds: 8 already stored, 0 records written; 48 records" in out
    assert raw_rows(folder) == rows  # key, record JSON, config JSON, created_at, seq: all unchanged
    for name in ("records.csv", "summary.md"):
        assert (folder / name).read_bytes() == files[name], name

    status, out, err = run_cli(sweep_args(folder, ranks=(1, 2, 4)))
    assert status == 0, err
    assert "12 configurations × 3 seeds: 8 already stored, 24 records written; 72 records" in out
    after = raw_rows(folder)
    assert after[:len(rows)] == rows
    new = [json.loads(row[2]) for row in after[len(rows):]]
    assert [run_tuple(r) for r in new] and len({run_tuple(r) for r in new}) == len(new) == 24
    assert {run_tuple(r) for r in new} == expected_tuples(ranks=(4,))
    assert len({row[1] for row in after}) == len(after) == 72
    with open(folder / "records.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 72


def _count_records(path: Path) -> int:
    """Committed records in a store another process is writing (0 while it does not exist yet)."""
    if not path.is_file():
        return 0
    try:
        conn = sqlite3.connect(path, timeout=5)
        try:
            return conn.execute("SELECT COUNT(*) FROM records").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:  # the schema is not written yet
        return 0


def test_kill_and_resume(tmp_path):
    from infobound.harness.sweep import SweepConfig, run_group

    folder = tmp_path / "out"
    kill_sweep = dict(ranks=(1, 2), ns=(30, 60), seeds=2, bits=(8,), steps=400)
    argv = sweep_args(folder, **kill_sweep)
    total = len(MODES) * 2 * 2 * 2  # 8 groups of 2 seeds × 1 bit width
    env = dict(os.environ, OMP_NUM_THREADS="1")  # as the one_thread fixture does in this process
    proc = subprocess.Popen([sys.executable, "-m", "infobound.cli", *argv], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if _count_records(folder / "records.sqlite") >= 1:
                break
            time.sleep(0.01)
        assert proc.poll() is None, f"the sweep ended before it was killed: {proc.stderr.read()!r}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL

    before = raw_rows(folder)
    assert 1 <= len(before) < total, "the kill did not land mid-sweep"
    assert len(before) % 2 == 0  # a group's records are committed together or not at all
    assert not (folder / "summary.md").exists()

    status, out, err = run_cli(argv)
    assert status == 0, err
    assert f"{len(before) // 2} already stored, {total - len(before)} records written" in out
    after = raw_rows(folder)
    assert after[:len(before)] == before
    tuples = [run_tuple(json.loads(row[2])) for row in after]
    assert len(tuples) == len(set(tuples)) == total
    assert set(tuples) == expected_tuples(ranks=(1, 2), seeds=2, bits=(8,))

    # A record trained in the killed process equals the same group trained in this one.
    first = json.loads(before[0][2])
    config = SweepConfig(modes=(first["mode"],), ranks=(first["rank"],), ns=(first["n"],), seeds=2,
                         bits=(8,), steps=400)
    again = {r["key"]: r for r in run_group(config.groups()[0])}
    fresh = again[before[0][1]]
    stored_arrays = fresh.pop("_arrays")
    assert without_wall_time({"key": before[0][1], **first}) == without_wall_time(fresh)
    from infobound.harness.store import RunStore

    with RunStore(folder, create=False, read_only=True) as store:  # and so do its stored arrays
        kept = store.arrays(before[0][1])
    assert set(kept) == set(stored_arrays) and all(np.array_equal(kept[k], stored_arrays[k]) for k in kept)


@pytest.mark.parametrize("module", ["infobound", "infobound.cli"])
def test_module_entry_points_know_report(tmp_path, module):
    result = subprocess.run([sys.executable, "-m", module, "report", str(tmp_path)],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [f"infobound: error: DIR must be a folder written by infobound "
                                          f"validate; no records.sqlite in {str(tmp_path)!r}"]


# ---------------------------------------------------------------------------------- 3. determinism
def test_same_sweep_twice_gives_identical_records(finished, tmp_path):
    status, _, err = run_cli(sweep_args(tmp_path / "again"))
    assert status == 0, err
    first, second = stored(finished[0]), stored(tmp_path / "again")
    assert first.keys() == second.keys() and len(first) == 48
    for key in first:
        assert without_wall_time(first[key]) == without_wall_time(second[key]), key
        assert first[key]["versions"] == second[key]["versions"]
    assert {row[1]: row[3] for row in raw_rows(finished[0])} == {row[1]: row[3] for row in raw_rows(tmp_path / "again")}


def test_run_group_is_deterministic():
    from infobound.harness.sweep import SweepConfig, run_group

    (group,) = SweepConfig(modes=("lora",), ranks=(2,), ns=(30,), seeds=3, bits=(8, None), steps=STEPS).groups()
    assert group.seeds == (0, 1, 2)
    first, second = run_group(group), run_group(group)
    assert len(first) == len(second) == 6
    assert [without_wall_time(r) for r in first] == [without_wall_time(r) for r in second]
    # The seeds differ (subset and frozen draw), so the equality above is not trivially true.
    assert len({r["train_loss"] for r in first if r["bits"] == 8}) == 3


# ------------------------------------------------------------------------------------ 4. bad input
BAD_ARGUMENTS = [  # (extra arguments, substrings the one error line must contain)
    (["--task", "nope"], ["task", "digits", "nope"]),
    (["--modes", "lora,c_only"], ["--modes", "c_only"]),
    (["--ranks", "1,65"], ["rank", "fc1", "64", "65"]),
    (["--n", "30,720"], ["n must be at most 719", "720"]),
    (["--seeds", "0"], ["--seeds", "[1, 1,000,000]", "'0'"]),
    (["--n", "-5"], ["--n", ">= 1", "-5"]),
    (["--bits", "0"], ["bits", "[1, 64]"]),
]


@pytest.mark.parametrize("existing", [False, True], ids=["fresh", "existing"])
@pytest.mark.parametrize("extra, words", BAD_ARGUMENTS, ids=[a[1] for a, _ in BAD_ARGUMENTS])
def test_bad_arguments_exit_2_before_training(finished, tmp_path, extra, words, existing):
    if existing:
        folder = copy_of(finished, tmp_path)
    else:
        folder = tmp_path / "fresh"
        folder.mkdir()
    files = snapshot(folder)
    line = one_error_line(*run_cli(sweep_args(folder) + extra))
    for word in words:
        assert word in line, (word, line)
    assert snapshot(folder) == files  # fresh: still empty; existing: byte-identical


def test_unwritable_output_folder(tmp_path):
    regular = tmp_path / "file"
    regular.write_bytes(b"not a folder")
    for out in (regular / "sub", regular):
        line = one_error_line(*run_cli(sweep_args(out)))
        assert str(out) in line and "folder" in line
    assert snapshot(tmp_path) == {"file": b"not a folder"}


def test_foreign_records_file_is_refused_and_left_alone(tmp_path):
    noise = tmp_path / "noise"
    noise.mkdir()
    (noise / "records.sqlite").write_bytes(np.random.default_rng(7).bytes(4096))
    other = tmp_path / "other"
    other.mkdir()
    conn = sqlite3.connect(other / "records.sqlite")
    conn.execute("CREATE TABLE things (x)")
    conn.execute("INSERT INTO things VALUES (1)")
    conn.commit()
    conn.close()
    for folder in (noise, other):
        files = snapshot(folder)
        line = one_error_line(*run_cli(sweep_args(folder)))
        assert "records.sqlite" in line and "not an infobound run store" in line
        assert snapshot(folder) == files


@pytest.mark.parametrize("steps, extra, name", [(STEPS + 1, [], "steps"), (STEPS, ["--lr", "0.02"], "lr"),
                                                (STEPS, ["--clip", "2"], "clip")])
def test_folder_of_another_setting_is_refused(finished, tmp_path, steps, extra, name):
    folder = copy_of(finished, tmp_path)
    files = snapshot(folder)
    line = one_error_line(*run_cli(sweep_args(folder, steps=steps) + extra))
    assert "--out" in line and f"{name}=" in line
    sidecars = ("records.sqlite-wal", "records.sqlite-shm")  # SQLite's files of an open connection
    assert {k: v for k, v in snapshot(folder).items() if k not in sidecars} == files
    assert snapshot(folder) == files, "the refused store was left open"


def test_report_needs_stored_records(tmp_path):
    from infobound.harness.store import RunStore

    missing = tmp_path / "missing"
    line = one_error_line(*run_cli(["report", str(missing)]))
    assert "DIR" in line and not missing.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    line = one_error_line(*run_cli(["report", str(empty)]))
    assert "DIR" in line and snapshot(empty) == {}
    no_runs = tmp_path / "no_runs"
    with RunStore(no_runs):
        pass
    files = snapshot(no_runs)
    line = one_error_line(*run_cli(["report", str(no_runs)]))
    assert "DIR" in line and "no finished runs" in line
    assert snapshot(no_runs) == files


# ---------------------------------------------------------------------------------------- 5. linreg
def test_linreg_sweep_has_no_applicable_bound(tmp_path):
    from infobound.harness.sweep import SweepConfig
    from infobound.harness.validate import validate

    config = SweepConfig(task="linreg", modes=(Mode.B_ONLY, Mode.A_ONLY), ranks=(1, 2), ns=(30, 60), seeds=3,
                         steps=STEPS)
    result = validate(config, tmp_path, progress=False)
    records = stored(tmp_path)
    assert len(records) == result["records"] == 2 * 2 * 2 * 3
    assert {run_tuple(r) for r in records.values()} == expected_tuples(modes=("b_only", "a_only"), bits=(8,))
    d_in, d_out = 32, 16  # the linreg layer
    for r in records.values():
        assert r["loss_kind"] == "mse"
        assert r["bound"] is None and r["bound_applicable"] is False
        assert r["train_error"] is None and r["test_error"] is None
        assert r["gap"] == r["test_loss"] - r["train_loss"]
        assert r["trainable_params"] == r["rank"] * (d_out if r["mode"] == "b_only" else d_in)
    summary = (tmp_path / "summary.md").read_text()
    assert "unbounded" in summary and "not applicable" in summary
    table_rows = [line for line in result["table"].splitlines() if line.startswith("linreg ")]
    assert len(table_rows) == 8 and all("n/a" in line and "not applicable" in line for line in table_rows)


# ---------------------------------------------------------------------------------------- 6. report
def test_report_reproduces_the_folder(finished, tmp_path):
    folder = copy_of(finished, tmp_path)
    before = snapshot(folder)
    pngs = sorted(p.name for p in folder.glob("*.png"))
    for name in pngs:
        (folder / name).unlink()
    status, out, err = run_cli(["report", str(folder)])
    assert status == 0, err
    plan, printed = finished[2].split("\n", 1)  # validate states the sweep's size first
    assert plan.startswith("sweep: 8 configurations × seeds = 48 runs (none stored yet)")
    table = printed.split("\n\n")[0]  # the verdict table validate printed
    assert out.startswith(table + "\n") and table.count("\n") == 16  # header + 8 configurations × 2 bits
    assert sorted(p.name for p in folder.glob("*.png")) == pngs
    for name in pngs:
        assert (folder / name).read_bytes()[:8] == PNG_MAGIC
    assert snapshot(folder) == before  # summary.md, records.csv, plots and the store: byte-identical
