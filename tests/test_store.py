"""Tests of the run store: keys, first-write-wins, atomic batches, foreign files, kills, concurrency.

References are independent of the code under test: hand-written canonical JSON hashed with hashlib,
raw ``sqlite3`` queries on the file, ``json.loads`` of the stored text, sha256 of the file's bytes,
the ``csv`` module, and records recomputed from their index by the test itself.
"""

from __future__ import annotations

import csv
import hashlib
import inspect
import json
import math
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infobound.errors import InputError
from infobound.harness.store import SCHEMA_VERSION, RunStore, config_key

REPO = Path(__file__).resolve().parents[1]


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cfg(i: int) -> dict:
    return {"mode": ["lora", "b_only", "a_only", "full"][i % 4], "rank": 1 + i % 3, "seed": i}


def rec(i: int) -> dict:
    """The record that run ``i`` writes; recomputed here to check what the store returns."""
    return {"i": i, "gap": i / 7, "bound": float("nan") if i % 5 == 0 else 2.0**-i, "ok": i % 2 == 0,
            "note": None if i % 3 else f"run-{i}"}


def same(a, b) -> bool:
    """Equality with NaN equal to NaN and bool kept apart from int."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def same_record(got: dict, want: dict) -> bool:
    return set(got) == set(want) and all(same(got[k], want[k]) for k in want)


# ----------------------------------------------------------------------------- config_key


def test_config_key_matches_hand_written_canonical_json():
    config = {"rank": 4, "lr": 0.1, "mode": "b_only", "bits": 16, "tag": None, "flag": True}
    text = '{"bits":16,"flag":true,"lr":0.1,"mode":"b_only","rank":4,"tag":null}'
    assert config_key(config) == hashlib.sha256(text.encode()).hexdigest()
    nested = {"b": [1, 2.5], "a": {"y": 1, "x": "z"}}
    text = '{"a":{"x":"z","y":1},"b":[1,2.5]}'
    assert config_key(nested) == hashlib.sha256(text.encode()).hexdigest()


def test_config_key_float_exact_and_type_sensitive():
    assert config_key({"lr": 0.1 + 0.2}) != config_key({"lr": 0.3})
    assert config_key({"lr": 0.1 + 0.2}) == hashlib.sha256(b'{"lr":0.30000000000000004}').hexdigest()
    assert config_key({"x": 1}) != config_key({"x": 1.0})
    assert config_key({"x": 1}) != config_key({"x": True})
    assert config_key({"x": 0.0}) != config_key({"x": -0.0})


def test_config_key_str_enum_is_its_value():
    from infobound.spec import Mode

    assert config_key({"mode": Mode("b_only")}) == config_key({"mode": "b_only"})


@pytest.mark.parametrize(
    "config, name",
    [
        ({"lr": float("nan")}, "config.lr"),
        ({"lr": float("inf")}, "config.lr"),
        ({"opt": {"wd": float("-inf")}}, "config.opt.wd"),
        ({"layers": [1, float("nan")]}, "config.layers[1]"),
        ({"s": {1, 2}}, "config.s"),
        ({"obj": object()}, "config.obj"),
        ({1: "a"}, "config keys"),
    ],
)
def test_config_key_rejects_non_json(config, name):
    with pytest.raises(InputError, match=name.replace("[", r"\[").replace("]", r"\]")):
        config_key(config)


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6), st.text(max_size=5),
    st.floats(allow_nan=False, allow_infinity=False),
)
configs = st.dictionaries(st.text(min_size=1, max_size=6), scalars, min_size=1, max_size=6)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), config=configs)
def test_config_key_order_free_and_change_sensitive(data, config):
    items = data.draw(st.permutations(list(config.items())))
    assert config_key(dict(items)) == config_key(config)
    name = data.draw(st.sampled_from(sorted(config)))
    new = data.draw(scalars.filter(lambda v: not same(v, config[name])))
    assert config_key({**config, name: new}) != config_key(config)
    assert config_key({**config, name + "_extra": 0}) != config_key(config)


# ----------------------------------------------------------------------------- put / get


def test_put_keeps_first_record_and_round_trips_nan(tmp_path):
    key = config_key(cfg(0))
    with RunStore(tmp_path) as store:
        first = {"bound": float("nan"), "hi": float("inf"), "lo": float("-inf"), "gap": 0.25}
        assert store.put(key, first, cfg(0)) is True
        assert store.put(key, {"gap": 9.0}, cfg(0)) is False
        assert len(store) == 1 and store.has(key) and store.keys() == {key}
        got = store.get(key)
        assert got["key"] == key and math.isnan(got["bound"])
        assert got["hi"] == math.inf and got["lo"] == -math.inf and got["gap"] == 0.25
        assert store.config(key) == cfg(0)
        assert store.get("0" * 64) is None
    rows = sqlite3.connect(tmp_path / "records.sqlite").execute("SELECT key, record FROM records").fetchall()
    assert len(rows) == 1 and rows[0][0] == key
    raw = json.loads(rows[0][1])  # stdlib json reads NaN/Infinity back
    assert math.isnan(raw["bound"]) and raw["gap"] == 0.25 and set(raw) == {"bound", "hi", "lo", "gap"}


def test_put_rejects_bad_input(tmp_path):
    with RunStore(tmp_path) as store:
        with pytest.raises(InputError, match="config_key"):
            store.put("abc", {"x": 1}, cfg(0))
        with pytest.raises(InputError, match="record.x"):
            store.put(config_key(cfg(0)), {"x": [1, 2]}, cfg(0))
        with pytest.raises(InputError, match="'key'"):
            store.put(config_key(cfg(0)), {"key": 1}, cfg(0))
        assert len(store) == 0


def test_put_many_is_all_or_nothing(tmp_path):
    with RunStore(tmp_path) as store:
        assert store.put(config_key(cfg(0)), rec(0), cfg(0))
        batch = [(config_key(cfg(i)), rec(i), cfg(i)) for i in range(1, 6)]
        bad = batch[:2] + [(config_key(cfg(9)), {"x": object()}, cfg(9))] + batch[2:]
        with pytest.raises(InputError, match="record.x"):
            store.put_many(bad)
        assert store.keys() == {config_key(cfg(0))}

        def generator():  # fails mid-way after some rows were inserted in the open transaction
            yield from batch[:3]
            raise RuntimeError("interrupted")

        with pytest.raises(RuntimeError):
            store.put_many(generator())
        assert len(store) == 1
        # a repeated key within the batch and one already stored count once
        again = [(config_key(cfg(0)), {"x": 1}, cfg(0))] + batch + batch[:1]
        assert store.put_many(again) == 5
        assert len(store) == 6 and same_record(store.get(config_key(cfg(0))), {"key": config_key(cfg(0)), **rec(0)})


def test_records_order_filter_missing_and_csv(tmp_path):
    order = [3, 0, 2, 1]
    with RunStore(tmp_path) as store:
        for i in order:
            store.put(config_key(cfg(i)), rec(i), cfg(i))
        store.put(config_key(cfg(7)), {"extra": "x", "i": 7}, cfg(7))
        got = store.records()
        assert [r.get("i") for r in got] == order + [7]
        assert all(same_record(r, {"key": config_key(cfg(i)), **rec(i)}) for r, i in zip(got, order))
        assert [r["i"] for r in store.records(where={"ok": True})] == [0, 2]
        assert store.records(where={"ok": 1}) == []  # True is not 1
        assert [r["i"] for r in store.records(where={"i": [1, 3, 99]})] == [3, 1]
        wanted = [config_key(cfg(i)) for i in (5, 0, 4, 5, 1)]
        assert store.missing(wanted) == [config_key(cfg(5)), config_key(cfg(4))]
        out = store.export_csv(tmp_path / "records.csv")
    with open(out, newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["key", "i", "gap", "bound", "ok", "note", "extra"]
    assert len(rows) == 6
    assert rows[1] == [config_key(cfg(3)), "3", repr(3 / 7), repr(2.0**-3), "False", "run-3", ""]
    assert rows[2][3] == "nan" and rows[2][5] == "run-0"
    assert rows[5][1:] == ["7", "", "", "", "", "x"]
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []


# ----------------------------------------------------------------------------- foreign files, folders


def _assert_refused(folder: Path, *patterns: str):
    path = folder / "records.sqlite"
    before, names = sha256_file(path), sorted(p.name for p in folder.iterdir())
    with pytest.raises(InputError) as info:
        RunStore(folder)
    for pattern in patterns:
        assert pattern in str(info.value)
    assert sha256_file(path) == before
    assert sorted(p.name for p in folder.iterdir()) == names


def test_random_file_is_refused_unchanged(tmp_path):
    (tmp_path / "records.sqlite").write_bytes(os.urandom(4096))
    _assert_refused(tmp_path, "not an SQLite database", "records.sqlite")


def test_other_sqlite_database_is_refused_unchanged(tmp_path):
    conn = sqlite3.connect(tmp_path / "records.sqlite")
    conn.execute("CREATE TABLE runs (id INTEGER, loss REAL)")
    conn.execute("INSERT INTO runs VALUES (1, 0.5)")
    conn.commit()
    conn.close()
    _assert_refused(tmp_path, "['runs']", "not an infobound run store", "expected")


def test_foreign_wal_database_left_by_a_crash_is_refused_unchanged(tmp_path):
    """Committed frames still in the ``-wal`` file must not be checkpointed into the database."""
    live, crashed = tmp_path / "live", tmp_path / "crashed"
    live.mkdir()
    crashed.mkdir()
    conn = sqlite3.connect(live / "records.sqlite")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.execute("CREATE TABLE runs (id INTEGER)")
    conn.execute("INSERT INTO runs VALUES (1)")
    conn.commit()
    for path in live.iterdir():  # the files as a killed writer leaves them
        shutil.copyfile(path, crashed / path.name)
    conn.close()
    assert (crashed / "records.sqlite-wal").stat().st_size > 0
    _assert_refused(crashed, "['runs']")


def test_other_package_meta_is_refused_unchanged(tmp_path):
    conn = sqlite3.connect(tmp_path / "records.sqlite")
    conn.execute("CREATE TABLE meta (name TEXT, value)")
    conn.execute("INSERT INTO meta VALUES ('package', 'other')")
    conn.commit()
    conn.close()
    _assert_refused(tmp_path, "package='other'")


def test_other_schema_version_is_refused_unchanged(tmp_path):
    with RunStore(tmp_path) as store:
        store.put(config_key(cfg(1)), rec(1), cfg(1))
    conn = sqlite3.connect(tmp_path / "records.sqlite")
    conn.execute("UPDATE meta SET value = ? WHERE name = 'schema_version'", (SCHEMA_VERSION + 1,))
    conn.commit()
    conn.close()
    _assert_refused(tmp_path, f"schema_version={SCHEMA_VERSION + 1}", "schema_version=1, 2 only")


def _schema_1_store(folder):
    """A store as schema 1 wrote it (meta and records only), built with sqlite3 directly."""
    folder.mkdir(exist_ok=True)
    conn = sqlite3.connect(folder / "records.sqlite")
    conn.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value NOT NULL)")
    conn.execute("CREATE TABLE records (seq INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, record TEXT NOT NULL,"
                 " config TEXT NOT NULL, created_at TEXT NOT NULL)")
    conn.executemany("INSERT INTO meta VALUES (?, ?)", [("package", "infobound"), ("schema_version", 1)])
    for i in range(3):
        conn.execute("INSERT INTO records (key, record, config, created_at) VALUES (?, ?, ?, ?)",
                     (config_key(cfg(i)), json.dumps(rec(i)), json.dumps(cfg(i)), "2026-01-01T00:00:00"))
    conn.commit()
    conn.close()


def test_schema_1_store_opens_read_only_and_is_never_written(tmp_path):
    folder = tmp_path / "old"
    _schema_1_store(folder)
    path = folder / "records.sqlite"
    before = sha256_file(path)
    with RunStore(folder, create=False, read_only=True) as store:
        assert store.schema_version == 1 and not store.has_arrays
        assert [r["i"] for r in store.records()] == [0, 1, 2]  # no data lost
        with pytest.raises(InputError, match="schema_version=1.*no per-example losses"):
            store.arrays(config_key(cfg(0)))
    for create in (True, False):  # a writable open is refused, the file untouched
        with pytest.raises(InputError, match="schema_version=1.*read-only.*new --out folder"):
            RunStore(folder, create=create)
    assert sha256_file(path) == before


def test_arrays_round_trip_with_their_record(tmp_path):
    losses = np.array([[0, 1], [1, 1], [0, 0]], dtype=np.int8)
    weights = np.arange(12, dtype=np.int32).reshape(3, 4) - 5
    with RunStore(tmp_path) as store:
        assert store.put_many([(config_key(cfg(1)), rec(1), cfg(1), {"losses": losses, "w": weights}),
                               (config_key(cfg(2)), rec(2), cfg(2))]) == 2
        # a second write of the same key keeps the first arrays
        assert store.put_many([(config_key(cfg(1)), rec(1), cfg(1), {"losses": 1 - losses})]) == 0
    with RunStore(tmp_path, create=False, read_only=True) as store:
        got = store.arrays(config_key(cfg(1)))
        assert set(got) == {"losses", "w"}
        assert got["losses"].dtype == np.int8 and np.array_equal(got["losses"], losses)
        assert got["w"].dtype == np.int32 and np.array_equal(got["w"], weights)
        assert store.arrays(config_key(cfg(2))) == {}
        assert set(store.arrays_many([config_key(cfg(1))], names=["w"])[config_key(cfg(1))]) == {"w"}


def test_bad_arrays_roll_the_batch_back(tmp_path):
    with RunStore(tmp_path) as store:
        for bad, match in (([1, 2], "numpy array"), (np.array(["a"]), "numeric dtype"),
                           (np.array([object()]), "numeric dtype")):
            with pytest.raises(InputError, match=match):
                store.put_many([(config_key(cfg(1)), rec(1), cfg(1)),
                                (config_key(cfg(2)), rec(2), cfg(2), {"x": bad})])
            assert len(store) == 0
        with pytest.raises(InputError, match="mapping"):
            store.put_many([(config_key(cfg(1)), rec(1), cfg(1), [np.zeros(2)])])


def test_reopen_and_empty_file_are_fine(tmp_path):
    with RunStore(tmp_path) as store:
        store.put(config_key(cfg(2)), rec(2), cfg(2))
    with RunStore(tmp_path, create=False) as store:
        assert store.keys() == {config_key(cfg(2))}
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "records.sqlite").write_bytes(b"")  # a kill right after the file was created
    with RunStore(empty) as store:
        assert len(store) == 0 and store.put(config_key(cfg(2)), rec(2), cfg(2))


def test_missing_folder_with_create_false(tmp_path):
    with pytest.raises(InputError, match="nope"):
        RunStore(tmp_path / "nope", create=False)
    with pytest.raises(InputError, match="records.sqlite"):
        RunStore(tmp_path, create=False)


def test_unwritable_folder_under_a_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="sub"):
        RunStore.check_writable(blocker / "sub")
    with pytest.raises(InputError, match="sub"):
        RunStore(blocker / "sub")
    with pytest.raises(InputError, match="not a directory"):
        RunStore.check_writable(blocker)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through chmod 0o500; covered by the file-parent test")
def test_unwritable_folder_chmod(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(InputError, match="not writable"):
            RunStore.check_writable(folder)
    finally:
        folder.chmod(0o700)


# ----------------------------------------------------------------------------- kill and concurrency

# argv: folder, first index, last index (exclusive), seed (0..writers-1), max sleep (s), go-file or "-",
# number of writers that wait for each other (after opening the store) before writing
WRITER = """
import os, random, sys, time
sys.path.insert(0, {repo!r})
from infobound.harness.store import RunStore, config_key
{helpers}
folder, lo, hi, seed, nap, go, writers = sys.argv[1:]
rng = random.Random(int(seed))
order = list(range(int(lo), int(hi)))
rng.shuffle(order)
while go != "-" and not os.path.exists(go):
    time.sleep(0.002)
with RunStore(folder) as store:  # the writers race to create the store here
    print("ready", flush=True)
    if go != "-":  # then start writing together, however long each took to start and open
        open(go + "." + seed, "w").close()
        while not all(os.path.exists(go + "." + str(k)) for k in range(int(writers))):
            time.sleep(0.002)
    start = time.time()
    for n, i in enumerate(order):
        if not store.has(config_key(cfg(i))):
            if n % 3 == 2:  # some batches too, overlapping what may already be there
                store.put_many([(config_key(cfg(j)), rec(j), cfg(j)) for j in order[n - 2:n + 1]])
            else:
                store.put(config_key(cfg(i)), rec(i), cfg(i))
        time.sleep(rng.uniform(0, float(nap)))
    print("span", start, time.time(), flush=True)
""".format(repo=str(REPO), helpers=inspect.getsource(cfg) + inspect.getsource(rec))


def _writer(folder, lo, hi, seed, nap=0.004, go="-", writers=1):
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(folder), str(lo), str(hi), str(seed), str(nap), str(go),
         str(writers)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )


def _check_raw(folder: Path, expected: set[int] | None = None) -> set[int]:
    """Every stored row is complete, valid JSON, equals the recomputed record; no key twice."""
    conn = sqlite3.connect(folder / "records.sqlite")
    try:
        rows = conn.execute("SELECT key, record, config, created_at FROM records").fetchall()
    finally:
        conn.close()
    keys = [row[0] for row in rows]
    assert len(keys) == len(set(keys))
    seen = set()
    for key, record_text, config_text, created_at in rows:
        record = json.loads(record_text)
        i = record["i"]
        assert same_record(record, rec(i))
        assert json.loads(config_text) == cfg(i)
        assert key == hashlib.sha256(config_text.encode()).hexdigest()
        assert created_at.startswith("20")
        seen.add(i)
    if expected is not None:
        assert seen == expected
    return seen


def test_kill_at_random_moments_then_resume(tmp_path):
    rng = random.Random(1234)
    total = 40  # about 40 * (5 ms mean nap + a commit) of writing after "ready"
    kills_mid_sweep = 0
    for trial in range(5):
        folder = tmp_path / f"t{trial}"
        proc = _writer(folder, 0, total, seed=trial, nap=0.01)
        if trial == 0:  # during start-up and store creation
            time.sleep(rng.uniform(0.0, 0.15))
        else:  # during the write loop
            assert proc.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0.0, 0.15))
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        if (folder / "records.sqlite").exists():
            with RunStore(folder) as store:  # opens cleanly after the kill
                partial = {r["i"] for r in store.records()}
            assert _check_raw(folder) == partial
            kills_mid_sweep += 0 < len(partial) < total
        resume = _writer(folder, 0, total, seed=100 + trial, nap=0)
        out, err = resume.communicate(timeout=60)
        assert resume.returncode == 0, err
        _check_raw(folder, set(range(total)))
        with RunStore(folder, create=False) as store:
            assert len(store) == total and store.missing(config_key(cfg(i)) for i in range(total)) == []
    assert kills_mid_sweep >= 2  # the kills did land between finished and unfinished runs


def test_concurrent_writers_end_with_the_union(tmp_path):
    folder = tmp_path / "shared"  # absent: the writers also race to create the store
    go = tmp_path / "go"
    spans = [(0, 25), (10, 35), (20, 45), (5, 40)]
    procs = [_writer(folder, lo, hi, seed=k, nap=0.004, go=go, writers=len(spans))
             for k, (lo, hi) in enumerate(spans)]
    time.sleep(0.3)
    go.write_text("go")
    spans_s = []  # (start, end) of each writer's write loop, seconds since the epoch
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "locked" not in err
        spans_s.append(tuple(float(x) for x in out.split("span")[1].split()))
    assert max(s for s, _ in spans_s) < min(e for _, e in spans_s)  # all four wrote at the same time
    _check_raw(folder, set(range(45)))
    with RunStore(folder) as store:
        assert len(store) == 45
