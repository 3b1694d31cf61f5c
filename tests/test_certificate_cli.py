"""``infobound certificate``: numbers against independent references, and one-line errors.

References, written here without ``infobound.certificates``:
- binomial tail / Clopper–Pearson: the largest p with P[Bin(n, p) ≤ k] ≥ δ · 2^−C is
  ``scipy.stats.beta.isf(δ · 2^−C, k + 1, n − k)`` while δ · 2^−C is a float64; beyond, the root of
  ln Σ_{j ≤ k} P[Bin(n, p) = j] = ln δ − C ln 2 (``binom.logpmf`` summed in log space, ``brentq``);
- Occam-kl (and Maurer): a brute-force kl inverse, the largest point of a fine grid on [q, 1] with
  kl(q‖p) ≤ c, c = (C ln 2 + ln(1/δ)) / n (Maurer: ln(2√n/δ)), refined on a second grid;
- ``best``: the minimum of those references each recomputed at δ / (number of methods).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from scipy import optimize, special, stats

from cli_helpers import one_error_line, run_cli
from infobound.cli import main

LN2 = math.log(2.0)
WIDTH = 100
REL = 1e-9  # the references agree with the command to this relative accuracy


# ---------------------------------------------------------------------------- references
def ref_binomial(k: int, n: int, delta: float, bits: int = 0) -> float:
    """Largest p with P[Bin(n, p) ≤ k] ≥ δ · 2^−bits."""
    if k == n:
        return 1.0
    target = delta * 2.0**-bits
    if target > 1e-300:
        return float(stats.beta.isf(target, k + 1, n - k))
    log_target = math.log(delta) - bits * LN2
    j = np.arange(k + 1)

    def gap(p):
        return special.logsumexp(stats.binom.logpmf(j, n, p)) - log_target

    return optimize.brentq(gap, k / n, 1.0 - 1e-15, xtol=1e-15, rtol=1e-14, maxiter=500)


def _kl(q: float, p: np.ndarray) -> np.ndarray:
    return special.rel_entr(q, p) + special.rel_entr(1.0 - q, 1.0 - p)


def ref_kl_inverse(q: float, c: float) -> float:
    """sup{p ∈ [q, 1] : kl(q‖p) ≤ c} by brute force: a grid of 10^6 steps, then 10^6 within a step."""
    lo, hi = q, 1.0
    for _ in range(2):
        grid = np.linspace(lo, hi, 1_000_001)
        inside = np.nonzero(_kl(q, grid) <= c)[0]
        last = inside[-1]
        if last == len(grid) - 1:
            return float(grid[-1])
        lo, hi = grid[last], grid[last + 1]
    return float(hi)


def ref_occam(q: float, n: int, bits: int, delta: float) -> float:
    return ref_kl_inverse(q, (bits * LN2 + math.log(1.0 / delta)) / n)


def ref_maurer(q: float, n: int, bits: int, delta: float) -> float:
    return ref_kl_inverse(q, (bits * LN2 + math.log(2.0 * math.sqrt(n) / delta)) / n)


def ref_catoni(q: float, n: int, bits: int, delta: float) -> float:
    grid = np.geomspace(1e-4, 1e2, 64)  # the documented default grid, each C at δ/64
    values = (1.0 - np.exp(-grid * q - (bits * LN2 + math.log(64 / delta)) / n)) / (1.0 - np.exp(-grid))
    return min(1.0, float(values.min()))


def reference(method: str, q: float, n: int, bits: int, delta: float) -> float:
    if method == "binomial":
        return ref_binomial(round(q * n), n, delta, bits)
    return {"occam_kl": ref_occam, "maurer": ref_maurer, "catoni": ref_catoni}[method](q, n, bits, delta)


# ------------------------------------------------------------------------------- helpers
def _no_constants(name):
    raise AssertionError(f"JSON holds {name}")


def run_json(capsys, *argv) -> dict:
    assert main(["certificate", *argv, "--json"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    lines = captured.out.splitlines()
    assert len(lines) == 1
    return json.loads(lines[0], parse_constant=_no_constants)


def run_text(capsys, *argv) -> str:
    assert main(["certificate", *argv]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    for line in captured.out.splitlines():
        assert len(line) <= WIDTH, line
    return captured.out


def args(q, n, bits, delta=None, *rest):
    out = ["--train-error", str(q), "--n", str(n), "--bits", str(bits)]
    return out + (["--delta", str(delta)] if delta is not None else []) + list(rest)


# ------------------------------------------------------------------------------- numbers
CASES = [  # train error, n, bits, delta (None: the default 0.05)
    (0.02, 10000, 8000, None),
    (0.02, 10000, 0, None),
    (0.1, 1000, 100, 0.01),
    (0.0, 500, 20, 0.1),
    (0.25, 40, 3, 0.5),
    (0.3, 2000, 5000, 1e-6),
]


@pytest.mark.parametrize("q, n, bits, delta", CASES)
def test_json_matches_references(capsys, q, n, bits, delta):
    record = run_json(capsys, *args(q, n, bits, delta))
    d = 0.05 if delta is None else delta
    assert (record["train_error"], record["n"], record["bits"], record["delta"]) == (q, n, bits, d)
    assert record["methods"] == ["occam_kl", "binomial"]
    for method in ("occam_kl", "binomial"):
        ref = reference(method, q, n, bits, d)
        assert isinstance(record[method], float)
        assert record[method] == pytest.approx(ref, rel=REL), method
    # best: each method recomputed at δ/2 by the references, the smallest
    paid = {m: reference(m, q, n, bits, d / 2) for m in ("occam_kl", "binomial")}
    assert record["best"] == pytest.approx(min(paid.values()), rel=REL)
    # the method named attains the minimum (at q = 0 Occam-kl and the binomial tail coincide)
    assert paid[record["best_method"]] == pytest.approx(min(paid.values()), rel=REL)
    assert record["best_delta"] == d / 2
    assert record["best"] >= min(record["occam_kl"], record["binomial"])  # paying costs something
    assert "high-probability certificate" in record["kind"]
    assert "test_set_bound" not in record


def test_binomial_log_space_reference_agrees_with_beta_where_both_apply():
    k, n, bits, delta = 200, 10000, 900, 0.05  # δ · 2^−900 ≈ 6e-273 is still a float64
    beta = ref_binomial(k, n, delta, bits)
    j = np.arange(k + 1)
    log_cdf = special.logsumexp(stats.binom.logpmf(j, n, beta))
    assert log_cdf == pytest.approx(math.log(delta) - bits * LN2, rel=1e-9)


def test_all_methods_and_the_union_over_four(capsys):
    q, n, bits, d = 0.05, 20000, 300, 0.05
    record = run_json(capsys, *args(q, n, bits), "--methods", "all")
    methods = ("occam_kl", "binomial", "maurer", "catoni")
    assert record["methods"] == list(methods)
    for method in methods:
        assert record[method] == pytest.approx(reference(method, q, n, bits, d), rel=REL), method
    paid = {m: reference(m, q, n, bits, d / 4) for m in methods}
    assert record["best"] == pytest.approx(min(paid.values()), rel=REL)
    assert paid[record["best_method"]] == pytest.approx(min(paid.values()), rel=REL)
    assert record["best_delta"] == d / 4
    # the kl-based bounds order as their constants do: Occam-kl ≤ Maurer (ln(2√n) more)
    assert record["occam_kl"] <= record["maurer"]


def test_one_method_pays_nothing(capsys):
    record = run_json(capsys, *args(0.02, 10000, 50), "--methods", "occam_kl")
    assert record["binomial"] is None and record["best_method"] == "occam_kl"
    assert record["best"] == record["occam_kl"] == pytest.approx(ref_occam(0.02, 10000, 50, 0.05), rel=REL)
    assert record["best_delta"] == 0.05


def test_bits_zero_is_the_test_set_bound(capsys):
    record = run_json(capsys, *args(0.02, 10000, 0), "--test-errors", "200", "--test-n", "10000")
    assert record["binomial"] == record["test_set_bound"]
    assert record["test_set_bound"] == pytest.approx(stats.beta.isf(0.05, 201, 9800), rel=REL)
    assert (record["test_errors"], record["test_n"]) == (200, 10000)
    assert round(record["binomial"], 6) == 0.022459  # THEORY §4's test-set line: Clopper–Pearson
    assert round(record["occam_kl"], 6) == 0.023621  # and its kl-inverse
    assert "test-set bound" in record["note"]


def test_test_set_bound_beside_a_certificate(capsys):
    record = run_json(capsys, *args(0.01, 5000, 2000, 0.01), "--test-errors", "17", "--test-n", "1000")
    assert record["test_set_bound"] == pytest.approx(stats.beta.isf(0.01, 18, 983), rel=REL)
    assert record["binomial"] == pytest.approx(ref_binomial(50, 5000, 0.01, 2000), rel=REL)


def test_text_names_delta_n_bits_and_the_assumption(capsys):
    out = run_text(capsys, *args(0.02, 10000, 8000), "--test-errors", "30", "--test-n", "2000")
    first = out.split("\n\n")[0]
    assert first.startswith("High-probability certificate: with probability ≥ 1 − δ = 0.95")
    assert "population 0-1 error" in first
    assert "δ = 0.05" in first and "n = 10,000" in first and "bits = 8,000" in first
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line[:1].islower()}
    assert {"method", "occam_kl", "binomial", "best"} <= set(rows)
    assert rows["occam_kl"][1] == "0.05" and rows["best"][1] == "0.025"
    record = run_json(capsys, *args(0.02, 10000, 8000))
    assert float(rows["binomial"][2]) == pytest.approx(record["binomial"], rel=1e-5)
    assert float(rows["best"][2]) == pytest.approx(record["best"], rel=1e-5)
    text = " ".join(out.split())
    assert "fixed before the training data were seen" in text
    assert "pretrained base network is part of the prior only if it never saw the training data" in text
    assert "Held-out test-set bound: 30 errors in 2,000 test examples" in text
    assert f"{stats.beta.isf(0.05, 31, 1970):.6g}" in text


@pytest.mark.parametrize("n, bits", [(100, 8), (10**9, 123456789)])
def test_text_keeps_each_value_with_its_name(capsys, n, bits):
    out = run_text(capsys, *args(0.02, n, bits, 0.05))
    assert "δ = 0.05" in out and f"n = {n:,}" in out and f"bits = {bits:,}" in out


def test_text_says_bits_zero_is_the_test_set_bound(capsys):
    out = run_text(capsys, *args(0.02, 10000, 0))
    text = " ".join(out.split())
    assert "bits = 0: the held-out test-set bound" in text
    assert "one-sided Clopper-Pearson" in text


def test_vacuous_bound_is_marked(capsys):
    out = run_text(capsys, *args(0.5, 10, 10000))
    assert "1 (vacuous)" in out


def test_large_n_without_binomial(capsys):
    n = 2**31
    record = run_json(capsys, *args(0.5, n, 10), "--methods", "occam_kl")
    assert record["occam_kl"] == pytest.approx(ref_occam(0.5, n, 10, 0.05), rel=1e-7)


def test_methods_match_the_api_and_no_torch():
    from infobound import certificate_command, certificates

    assert certificate_command.METHOD_NAMES == certificates.METHODS
    code = ("import sys; from infobound.cli import main; "
            "assert main(['certificate', '--train-error', '0.1', '--n', '100', '--bits', '5']) == 0; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr


# ------------------------------------------------------------------------------ bad input
BASE = ["certificate", "--train-error", "0.02", "--n", "10000", "--bits", "8"]
BIG = "1" + "0" * 300


def _replace(option, value):
    out = list(BASE)
    out[out.index(option) + 1] = value
    return out


BAD = [
    (BASE + ["--delta", "0"], "--delta"),
    (BASE + ["--delta", "1"], "--delta"),
    (BASE + ["--delta", "-0.1"], "--delta"),
    (BASE + ["--delta", "1.5"], "--delta"),
    (BASE + ["--delta", "nan"], "--delta"),
    (BASE + ["--delta", "inf"], "--delta"),
    (BASE + ["--delta", "1e-400"], "--delta"),  # underflows to 0
    (BASE + ["--delta", BIG], "--delta"),
    (_replace("--train-error", "-0.01"), "--train-error"),
    (_replace("--train-error", "1.01"), "--train-error"),
    (_replace("--train-error", "nan"), "--train-error"),
    (_replace("--train-error", "-inf"), "--train-error"),
    (_replace("--train-error", BIG), "--train-error"),
    (_replace("--train-error", "0.02001"), "--train-error"),  # not a multiple of 1/n (binomial)
    (_replace("--train-error", "abc"), "--train-error"),
    (_replace("--bits", "-1"), "--bits"),
    (_replace("--bits", "1.5"), "--bits"),
    (_replace("--bits", "nan"), "--bits"),
    (_replace("--bits", "inf"), "--bits"),
    (_replace("--bits", BIG), "--bits"),
    (_replace("--n", "0"), "--n"),
    (_replace("--n", "-5"), "--n"),
    (_replace("--n", "2.5"), "--n"),
    (_replace("--n", "nan"), "--n"),
    (_replace("--n", BIG), "--n"),
    (_replace("--n", str(2**31)), "--n"),  # beyond the binomial CDF's range
    (BASE + ["--test-errors", "5"], "--test-errors"),
    (BASE + ["--test-n", "100"], "--test-n"),
    (BASE + ["--test-errors", "101", "--test-n", "100"], "--test-errors"),
    (BASE + ["--test-errors", "-1", "--test-n", "100"], "--test-errors"),
    (BASE + ["--test-errors", "1", "--test-n", "0"], "--test-n"),
    (BASE + ["--test-errors", "1", "--test-n", BIG], "--test-n"),
    (BASE + ["--methods", "occam"], "--methods"),
    (BASE + ["--methods", "occam_kl,pinsker"], "--methods"),
    (BASE + ["--methods", ","], "--methods"),
    (["certificate", "--n", "100", "--bits", "1"], "--train-error"),
    (["certificate", "--train-error", "0.1", "--bits", "1"], "--n"),
    (["certificate", "--train-error", "0.1", "--n", "100"], "--bits"),
]


@pytest.mark.parametrize("argv, option", BAD, ids=[f"{i}:{o}" for i, (_, o) in enumerate(BAD)])
def test_bad_input_is_one_line_naming_the_option(capsys, argv, option):
    message = one_error_line(*run_cli(argv))
    assert option in message
    assert len(message) < 400  # long values are abbreviated, not echoed


def test_binomial_refusals_go_away_without_binomial(capsys):
    record = run_json(capsys, *args(0.02001, 10000, 8), "--methods", "occam_kl,maurer")
    assert record["occam_kl"] == pytest.approx(ref_occam(0.02001, 10000, 8, 0.05), rel=REL)
