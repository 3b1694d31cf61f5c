"""Per-run certificates of a seed sweep (kind "seeds"), end to end, against independent references.

One tiny digits sweep (B-only and LoRA, rank 1, n = 60, 2 seeds, 4 and 8 bits) is run through
``validate``; then every quantised record is checked against things rebuilt here:

* the model: the pretrained network with a fresh stack-of-one adapter (frozen factor drawn from the
  run's seed), its trained tensors set from the STORED grid indices, evaluated here (argmax of the
  logits against the labels) on the run's training subset and on the test set: its errors are the
  record's, exactly — so the stored code describes exactly the model that was evaluated;
* the code: decoded back to the stored indices, with the recorded length; its empirical entropy
  counted here with ``np.unique``;
* the certificates: the binomial tail by an mpmath log-CDF (δ·2^-C underflows float64 here), the
  Occam-kl bound by kl(q‖p) written out in mpmath, the union-bounded ``cert_best`` by solving both
  at δ/2 with scipy's brentq on those references, the test-set bound by scipy's beta quantile
  (Clopper–Pearson);
* the command line: ``certificate --code-length-of DIR`` (text and JSON) and the tightness table
  of ``summary.md``; bad input exits 2 with one line.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import mpmath
import numpy as np
import pytest
import torch
from cli_helpers import one_error_line, run_cli, snapshot
from scipy import optimize, stats

MODES, RANKS, NS, SEEDS, BITS, STEPS = ("b_only", "lora"), (1,), (60,), 2, (4, 8), 40
DELTA = 0.05  # the certificates' δ (infobound.harness.codes.CERT_DELTA)
LN2 = math.log(2.0)
DIGITS_TEST_N = 360  # ceil(0.2 · 1,797) held-out images
SEED_BITS = {"b_only": 20, "a_only": 20, "lora": 0}  # ceil(log2 1e6): a frozen factor pays its seed
ADAPTIVE_BITS, ADAPTIVE_CLIPS = (2, 3, 4, 5, 6, 8), (0.5, 1.0, 2.0, 4.0)
CANDIDATES = 24  # 6 bit widths × 4 clips
D_TRAIN = {"b_only": 2 * 64, "lora": 2 * (64 + 64)}  # rank 1: fc1 and fc2 are 64 -> 64
CERT_KEYS = ("code_length_bits", "code_seed_bits", "code_entropy_bits", "cert_delta", "cert_occam_kl",
             "cert_binomial", "cert_best", "cert_method", "test_set_bound")


# ------------------------------------------------------------------------------------ fixtures
pytestmark = pytest.mark.usefixtures("one_thread")


def sweep_config():
    from infobound.harness.sweep import SweepConfig

    return SweepConfig(task="digits", modes=MODES, ranks=RANKS, ns=NS, seeds=SEEDS, bits=BITS, steps=STEPS,
                       split="fixed")  # the tests rebuild runs on task.test_set()


@pytest.fixture(scope="module")
def sweep(finish_sweep):
    """The finished sweep: folder, validate's result, the stored records and their arrays."""
    return finish_sweep(sweep_config(), "seed-certs")


@pytest.fixture(scope="module")
def task():
    from infobound.harness.tasks import get_task

    return get_task("digits")


def quantised(sweep) -> list[dict]:
    return [r for r in sweep["records"] if r["bits"] is not None]


def tensors_of(arrays: dict, prefix: str) -> dict:
    return {name[len(prefix):]: value for name, value in arrays.items() if name.startswith(prefix)}


def frozen_seed_of(record: dict) -> int:
    """The frozen factor's seed of a run, from the group that trained it."""
    (group,) = [g for g in sweep_config().groups() if g.mode.value == record["mode"] and g.rank == record["rank"]
                and g.n == record["n"]]
    return group.frozen_seeds()[group.seeds.index(record["seed"])]


def rebuilt_errors(task, record: dict, tensors: dict, bits: int, clip: float) -> tuple[float, float]:
    """0-1 errors on the run's training subset and on the test set of the model rebuilt by hand
    from the stored grid indices ``tensors`` (name -> indices) on the grid (bits, clip)."""
    from infobound.codelength import Grid
    from infobound.lora import inject_lora

    model = task.base_model()
    inject_lora(model, task.default_targets, record["rank"], mode=record["mode"], alpha=record["alpha"],
                init=record["init"], stack=1, seeds=[frozen_seed_of(record)])
    params = dict(model.named_parameters())
    trained = {name for name, p in params.items() if p.requires_grad}
    assert trained == set(tensors), (sorted(trained), sorted(tensors))
    grid = Grid(bits, clip)
    with torch.no_grad():
        for name, idx in tensors.items():
            assert tuple(params[name].shape) == (1, *idx.shape), name
            params[name].copy_(torch.from_numpy(grid.values(idx).astype(np.float32))[None])
    model.eval()
    x_train, y_train = task.train_set(record["n"], record["seed"])
    x_test, y_test = task.test_set()
    with torch.no_grad():
        train_wrong = int((model(x_train[None])[0].argmax(-1) != y_train).sum())
        test_wrong = int((model(x_test[None])[0].argmax(-1) != y_test).sum())
    return train_wrong / len(y_train), test_wrong / len(y_test)


# ------------------------------------------------------------------ independent references
def log_binom_cdf(k: int, n: int, p: float):
    """ln P[Bin(n, p) ≤ k] in mpmath (60 digits), p taken exactly as the double it is."""
    with mpmath.workdps(60):
        p = mpmath.mpf(p)
        q = 1 - p
        total = mpmath.fsum(mpmath.binomial(n, j) * p**j * q ** (n - j) for j in range(k + 1))
        return mpmath.log(total) if total > 0 else mpmath.mpf("-inf")


def kl(q: float, p: float):
    """kl(q‖p) = q ln(q/p) + (1−q) ln((1−q)/(1−p)) in mpmath, with 0 ln 0 = 0."""
    with mpmath.workdps(60):
        q, p = mpmath.mpf(q), mpmath.mpf(p)
        out = mpmath.mpf(0)
        if q > 0:
            out += q * mpmath.log(q / p)
        if q < 1:
            out += (1 - q) * mpmath.log((1 - q) / (1 - p))
        return out


BELOW_ONE = float(np.nextafter(1.0, 0.0))


def binomial_root(k: int, n: int, bits: int, delta: float) -> float:
    """The largest p with P[Bin(n, p) ≤ k] ≥ δ 2^-bits, by brentq on the mpmath log-CDF."""
    target = mpmath.log(delta) - bits * mpmath.log(2)
    f = lambda p: float(log_binom_cdf(k, n, p) - target)
    if f(BELOW_ONE) >= 0:
        return 1.0
    return optimize.brentq(f, k / n, BELOW_ONE, xtol=1e-300, maxiter=500)


def occam_root(q: float, n: int, bits: int, delta: float) -> float:
    """sup{p ≥ q : kl(q‖p) ≤ (bits ln 2 + ln(1/δ)) / n}, by brentq on the mpmath kl."""
    c = (bits * mpmath.log(2) + mpmath.log(1 / mpmath.mpf(delta))) / n
    f = lambda p: float(kl(q, p) - c)
    if f(BELOW_ONE) <= 0:
        return 1.0
    return optimize.brentq(f, q, BELOW_ONE, xtol=1e-300, maxiter=500)


def close(a: float, b: float) -> bool:
    """Equal to 1e-9 of the distance to the nearer end of [0, 1], or within 16 ulps of 1."""
    return abs(a - b) <= 1e-9 * min(b, 1.0 - b) + 16 * np.spacing(1.0)


def code_bits(record: dict, prefix: str) -> int:
    """C, the code length in whole bits the certificates use (a length is rounded up)."""
    return math.ceil(record[prefix + "code_length_bits"] - 1e-9)


def errors_count(error: float, m: int) -> int:
    k = round(error * m)
    assert abs(k / m - error) < 1e-12, (error, m)
    return k


PREFIXES = pytest.mark.parametrize("prefix", ["", "adaptive_"], ids=["sweep-grid", "chosen-grid"])


def train_error_of(record: dict, prefix: str) -> float:
    return record[prefix + "train_error"]


# ------------------------------------------------------------------------- 1. the records
def test_every_quantised_run_has_its_certificate_fields(sweep):
    records = sweep["records"]
    got = sorted((r["mode"], r["rank"], r["n"], r["seed"], r["bits"]) for r in records)
    assert got == sorted((m, 1, 60, s, b) for m in MODES for s in range(SEEDS) for b in BITS)
    for r in records:
        assert r["kind"] == "seeds" and r["test_n"] == DIGITS_TEST_N and r["trainable_params"] == D_TRAIN[r["mode"]]
        for key in CERT_KEYS:
            assert r.get(key) is not None, (key, r["key"])
        assert r["cert_delta"] == DELTA and r["adaptive_cert_delta"] == DELTA
        assert r["cert_method"] in ("occam_kl", "binomial")
    # each seed draws its own frozen factor: the rebuilt models below cannot all share one
    assert len({frozen_seed_of(r) for r in records if r["mode"] == "b_only"}) == SEEDS


def test_stored_indices_rebuild_the_evaluated_model(sweep, task):
    """The model rebuilt from the stored sweep-grid indices has the record's errors, exactly."""
    for r in quantised(sweep):
        tensors = tensors_of(sweep["arrays"][r["key"]], "adapter.")
        assert all(v.dtype == np.uint8 for v in tensors.values())  # 2^bits ≤ 256 levels
        assert all(int(v.max()) < 2 ** r["bits"] for v in tensors.values())
        train, test = rebuilt_errors(task, r, tensors, r["bits"], r["clip"])
        assert (train, test) == (r["train_error"], r["test_error"]), (r["mode"], r["seed"], r["bits"])


def test_adaptive_indices_rebuild_the_chosen_model(sweep, task):
    """The model rebuilt from the stored chosen-grid indices has the adaptive errors, exactly."""
    for r in quantised(sweep):
        tensors = tensors_of(sweep["arrays"][r["key"]], "adaptive.")
        bits, clip = r["adaptive_grid_bits"], r["adaptive_grid_clip"]
        assert all(int(v.max()) < 2**bits for v in tensors.values())
        train, test = rebuilt_errors(task, r, tensors, bits, clip)
        assert (train, test) == (r["adaptive_train_error"], r["adaptive_test_error"]), (r["mode"], r["seed"])


@PREFIXES
def test_code_decodes_to_the_stored_indices_with_the_recorded_length(sweep, prefix):
    from infobound.codelength import Grid, adapter_code_length, decode_adapter

    arrays_prefix = "adaptive." if prefix else "adapter."
    for r in quantised(sweep):
        tensors = tensors_of(sweep["arrays"][r["key"]], arrays_prefix)
        grid = Grid(r["adaptive_grid_bits"], r["adaptive_grid_clip"]) if prefix else Grid(r["bits"], r["clip"])
        assert r[prefix + "code_seed_bits"] == SEED_BITS[r["mode"]]
        code = adapter_code_length(tensors, grid, seed_bits=r[prefix + "code_seed_bits"],
                                   grid_candidates=CANDIDATES if prefix else 1)
        decoded, read = decode_adapter(code.stream, grid.levels)
        assert read == code.stream_bits
        assert len(decoded) == len(tensors)
        for got, (name, want) in zip(decoded, tensors.items()):
            assert got.shape == want.shape and np.array_equal(got, want), name
        assert code.total_bits == r[prefix + "code_length_bits"]
        assert code.items["seed"] == SEED_BITS[r["mode"]]
        assert code.items["grid"] == (math.log2(CANDIDATES) if prefix else 0.0)
        # the charges on top of the written stream: the seed and (chosen grid) log2 24
        assert code.total_bits == pytest.approx(code.stream_bits + SEED_BITS[r["mode"]] + code.items["grid"],
                                                abs=1e-9)
        entropy = 0.0
        for v in tensors.values():
            counts = np.unique(v, return_counts=True)[1].astype(float)
            entropy += float(-(counts * np.log2(counts / counts.sum())).sum())
        assert r[prefix + "code_entropy_bits"] == pytest.approx(entropy, rel=1e-12, abs=1e-12)


# ------------------------------------------------------------------------ the certificates
@PREFIXES
def test_binomial_certificate_against_an_mpmath_log_cdf(sweep, prefix):
    """At p = cert_binomial the tail is (within rounding) at δ·2^-C; one double below it, above."""
    for r in quantised(sweep):
        n, c = r["n"], code_bits(r, prefix)
        k = errors_count(train_error_of(r, prefix), n)
        p = r[prefix + "cert_binomial"]
        target = mpmath.log(DELTA) - c * mpmath.log(2)
        tiny = 1e-9 * (1 + abs(target))
        assert 0 < p <= 1 and p >= k / n
        # never below the supremum: at p itself the tail is already at or under δ·2^-C
        assert log_binom_cdf(k, n, p) < target, (r["key"], p)
        # and tight: the double below p (or p, when the tail is flat there) is still inside
        below = float(np.nextafter(p, 0.0))
        assert log_binom_cdf(k, n, below) >= target - tiny, (r["key"], p)
        above = float(np.nextafter(p, 1.0)) * (1 + 1e-9)
        if above < 1.0:
            assert log_binom_cdf(k, n, above) < target, (r["key"], p)


@PREFIXES
def test_occam_kl_certificate_solves_kl_equal_to_the_rate(sweep, prefix):
    for r in quantised(sweep):
        n, c = r["n"], code_bits(r, prefix)
        q, p = train_error_of(r, prefix), r[prefix + "cert_occam_kl"]
        rate = (c * mpmath.log(2) + mpmath.log(1 / mpmath.mpf(DELTA))) / n
        assert q <= p <= 1
        if p == 1.0:  # saturated: every p below 1 fits
            assert kl(q, BELOW_ONE) <= rate
            continue
        # the root lies between p and the double below it: p is never below the supremum, and tight
        # (near 1 one double moves kl by ~1e-8 here, so the bracket, not |kl - rate|, is the test)
        assert kl(q, p) >= rate, (r["key"], p)
        assert kl(q, float(np.nextafter(p, 0.0))) <= rate * (1 + 1e-12), (r["key"], p)


@PREFIXES
def test_best_certificate_pays_the_union_bound(sweep, prefix):
    """cert_best is the smaller of both methods each at δ/2 (references solved here)."""
    for r in quantised(sweep):
        n, c = r["n"], code_bits(r, prefix)
        q = train_error_of(r, prefix)
        ref = {"occam_kl": occam_root(q, n, c, DELTA / 2), "binomial": binomial_root(errors_count(q, n), n, c, DELTA / 2)}
        # the references at δ reproduce the per-method fields (sanity of the references themselves)
        assert close(r[prefix + "cert_occam_kl"], occam_root(q, n, c, DELTA))
        assert close(r[prefix + "cert_binomial"], binomial_root(errors_count(q, n), n, c, DELTA))
        best = r[prefix + "cert_best"]
        assert close(best, min(ref.values())), (r["key"], best, ref)
        at_delta = min(r[prefix + "cert_occam_kl"], r[prefix + "cert_binomial"])
        assert best >= at_delta and (best > at_delta or at_delta == 1.0)  # δ was split, not reused
        lo, hi = sorted(ref.values())
        if not close(lo, hi):
            assert r[prefix + "cert_method"] == min(ref, key=ref.__getitem__)


@PREFIXES
def test_test_set_bound_is_clopper_pearson(sweep, prefix):
    for r in quantised(sweep):
        m = r["test_n"]
        e = errors_count(r[prefix + "test_error"], m)
        want = 1.0 if e == m else float(stats.beta.ppf(1 - DELTA, e + 1, m - e))
        assert r[prefix + "test_set_bound"] == pytest.approx(want, rel=1e-9), (r["key"], e)


def test_unquantised_errors_and_the_adaptive_grid_fields(sweep):
    for r in quantised(sweep):
        for key in ("unquantised_train_error", "unquantised_test_error"):
            assert isinstance(r[key], float) and 0.0 <= r[key] <= 1.0, key
        assert r["unquantised_train_error"] * r["n"] == pytest.approx(round(r["unquantised_train_error"] * r["n"]))
        assert r["unquantised_test_error"] * r["test_n"] == pytest.approx(round(r["unquantised_test_error"] * r["test_n"]))
        assert r["adaptive_grid_bits"] in ADAPTIVE_BITS
        assert r["adaptive_grid_clip"] in ADAPTIVE_CLIPS
        assert r["adaptive_grid_candidates"] == CANDIDATES
        assert r["adaptive_code_seed_bits"] == SEED_BITS[r["mode"]]
    # the chosen grid depends on the trained adapter, not on the sweep's bit width: one per run
    for mode in MODES:
        for seed in range(SEEDS):
            runs = [r for r in quantised(sweep) if r["mode"] == mode and r["seed"] == seed]
            assert len({(r["adaptive_grid_bits"], r["adaptive_grid_clip"], r["adaptive_code_length_bits"])
                        for r in runs}) == 1


# ------------------------------------------------------------------- 2. stored code lengths
def test_stored_code_lengths_rebuild_every_recorded_length(sweep):
    from infobound.harness.codes import stored_code_lengths

    codes = stored_code_lengths(sweep["folder"])
    assert codes and all(c.matches for c in codes)
    got = sorted((c.record["key"], c.grid, c.code.total_bits) for c in codes)
    want = sorted([(r["key"], "sweep", r["code_length_bits"]) for r in quantised(sweep)]
                  + [(r["key"], "chosen", r["adaptive_code_length_bits"]) for r in quantised(sweep)])
    assert got == want


def _config_blocks(text: str) -> dict:
    """The blocks of the text output on the sweep's grid: (mode, bits) -> (runs, mean, item means);
    the chosen-grid blocks under (mode, "chosen")."""
    blocks, current = {}, None
    for line in text.splitlines():
        head = re.match(r"^digits (\w+) rank (\d+) n ([\d,]+), (?:the sweep's grid \((\d+) bits, clip [\d.]+\)|"
                        r"(a grid chosen per run) \([^)]*\)): (\d+) run\(s\), code length "
                        r"([\d,.]+)–([\d,.]+) bits, mean ([\d,.]+)$", line)
        if head:
            current = (head[1], int(head[4]) if head[4] else "chosen")
            blocks[current] = {"runs": int(head[6]), "mean": float(head[9].replace(",", "")), "items": {}}
            continue
        item = re.match(r"^  (\S+)\s+([\d,.]+)$", line)
        if item and current is not None:
            blocks[current]["items"][item[1]] = float(item[2].replace(",", ""))
    return blocks


def test_code_length_of_prints_a_block_per_configuration(sweep):
    status, out, err = run_cli(["certificate", "--code-length-of", str(sweep["folder"])])
    assert status == 0, err
    assert "warning" not in out
    blocks = _config_blocks(out)
    # chosen-grid blocks are one per (mode, bits of the sweep): same key, so one per mode survives
    assert set(blocks) == {(m, b) for m in MODES for b in BITS} | {(m, "chosen") for m in MODES}
    for block in blocks.values():
        assert block["items"]["total"] == block["mean"]


def test_code_length_of_totals_are_the_recorded_sweep_grid_lengths(sweep):
    status, out, err = run_cli(["certificate", "--code-length-of", str(sweep["folder"])])
    assert status == 0, err
    blocks = _config_blocks(out)
    for (mode, bits), block in blocks.items():
        if bits == "chosen":
            continue
        runs = [r for r in quantised(sweep) if r["mode"] == mode and r["bits"] == bits]
        assert block["runs"] == len(runs) == SEEDS
        assert block["items"]["total"] == pytest.approx(np.mean([r["code_length_bits"] for r in runs]), abs=0.05)
        assert block["items"]["seed"] == SEED_BITS[mode]


def _json_runs(folder) -> tuple[dict, str]:
    status, out, err = run_cli(["certificate", "--code-length-of", str(folder), "--json"])
    assert status == 0, err
    assert out.count("\n") == 1 and out.endswith("\n")  # one JSON object, one line
    return json.loads(out), err


def test_code_length_of_json_gives_the_recorded_lengths(sweep):
    data, _ = _json_runs(sweep["folder"])
    assert data["mismatches"] == 0
    for r in quantised(sweep):
        mine = [run for run in data["runs"] if run["key"] == r["key"]]
        assert len(mine) == 2  # the sweep's grid and the chosen grid
        (on_sweep_grid,) = [run for run in mine if run["code"]["items"]["grid"] == 0.0]
        assert on_sweep_grid["recorded_bits"] == r["code_length_bits"]
        assert on_sweep_grid["code"]["total_bits"] == r["code_length_bits"]
        assert on_sweep_grid["matches"] is True
        assert (on_sweep_grid["mode"], on_sweep_grid["seed"], on_sweep_grid["bits"]) == (r["mode"], r["seed"], r["bits"])


def test_code_length_of_json_chosen_grid_entries_give_their_own_recorded_length(sweep):
    data, _ = _json_runs(sweep["folder"])
    for r in quantised(sweep):
        (chosen,) = [run for run in data["runs"] if run["key"] == r["key"]
                     and run["code"]["items"]["grid"] == pytest.approx(math.log2(CANDIDATES))]
        assert chosen["code"]["total_bits"] == r["adaptive_code_length_bits"]
        assert chosen["recorded_bits"] == r["adaptive_code_length_bits"]


def _empty(tmp_path: Path) -> Path:
    folder = tmp_path / "empty"
    folder.mkdir()
    return folder


BAD_CODE_LENGTH_ARGS = [  # (argv builder, words the one error line must contain)
    (lambda folder, tmp: ["certificate", "--code-length-of", str(tmp / "absent")], ["--code-length-of", "absent"]),
    (lambda folder, tmp: ["certificate", "--code-length-of", str(_empty(tmp))], ["records.sqlite", "empty"]),
    (lambda folder, tmp: ["certificate", "--code-length-of", str(folder), "--n", "5"], ["--n", "--code-length-of"]),
    (lambda folder, tmp: ["certificate"], ["--train-error", "--code-length-of"]),
]


@pytest.mark.parametrize("argv, words", BAD_CODE_LENGTH_ARGS, ids=["missing", "no-store", "with-n", "nothing"])
def test_certificate_bad_input_exits_2_with_one_line(sweep, tmp_path, argv, words):
    before = snapshot(sweep["folder"])
    line = one_error_line(*run_cli(argv(sweep["folder"], tmp_path)))
    for word in words:
        assert word in line, (word, line)
    assert snapshot(sweep["folder"]) == before


def test_certificate_folder_without_store_names_the_option(tmp_path):
    line = one_error_line(*run_cli(["certificate", "--code-length-of", str(_empty(tmp_path))]))
    assert "--code-length-of" in line


# --------------------------------------------------------------------- 3. the tightness table
def _tightness_rows(markdown: str) -> list[dict]:
    section = markdown.split("## Tightness: every bound beside what it bounds", 1)[1]
    section = section.split("\n## ", 1)[0]
    split = lambda line: [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])]
    lines = [line for line in section.splitlines() if line.startswith("| ")]
    header = split(lines[0])
    return [dict(zip(header, split(line))) for line in lines[1:]]


def test_summary_tightness_table_has_seed_fast_cert_and_chosen_grid_rows(sweep):
    rows = _tightness_rows((sweep["folder"] / "summary.md").read_text(encoding="utf-8"))
    kinds = {}
    for row in rows:
        kinds.setdefault((row["mode"], int(row["bits"])), []).append(row["kind"])
    assert set(kinds) == {(m, b) for m in MODES for b in BITS}
    for config, got in kinds.items():
        assert sorted(got) == ["cert", "cert*", "fast", "seed"], config
    for row in rows:  # the certificate rows: the mean over runs of each run's recorded certificate
        runs = [r for r in quantised(sweep) if r["mode"] == row["mode"] and r["bits"] == int(row["bits"])]
        assert int(row["runs"]) == len(runs) == SEEDS
        if row["kind"] == "cert":
            assert row["bound"] == f"{np.mean([r['cert_best'] for r in runs]):.4g}"
        elif row["kind"] == "cert*":
            assert row["bound"] == f"{np.mean([r['adaptive_cert_best'] for r in runs]):.4g}"


def test_report_refuses_cmi_bounds_on_a_seed_folder(sweep, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(sweep["folder"], folder)
    before = snapshot(folder)
    line = one_error_line(*run_cli(["report", str(folder), "--bounds", "cmi"]))
    assert "bounds" in line and "cmi" in line
    line = one_error_line(*run_cli(["report", str(folder), "--bounds", "nope"]))
    assert "--bounds" in line and "nope" in line
    assert snapshot(folder) == before


def _validate_cmi_bounds(out: Path) -> list[str]:
    return ["validate", "--out", str(out), "--modes", "lora", "--ranks", "1", "--n", "30", "--seeds", "2",
            "--bits", "8", "--steps", "5", "--bounds", "cmi", "--no-progress"]


def test_validate_refuses_cmi_bounds_for_a_seed_sweep(tmp_path):
    line = one_error_line(*run_cli(_validate_cmi_bounds(tmp_path / "out")))
    assert "bounds" in line and "cmi" in line and "--kind cmi" in line


def test_validate_refuses_cmi_bounds_before_writing_anything(tmp_path):
    out = tmp_path / "out"
    one_error_line(*run_cli(_validate_cmi_bounds(out)))
    assert not out.exists(), sorted(p.name for p in out.iterdir())
