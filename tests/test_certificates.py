"""Certificates against independent references: mpmath at 50 digits, brute-force grids, scipy's
Clopper–Pearson (beta quantiles), closed forms, and THEORY.md §4's golden values."""

import dataclasses
import json
import math

import mpmath as mp
import numpy as np
import pytest
from scipy import stats

from infobound.certificates import (
    DEFAULT_CATONI_GRID,
    Certificate,
    binary_kl,
    binomial_tail_bound,
    catoni_bound,
    certificate,
    certificates_many,
    fast_rate_mi_bound,
    kl_inverse_upper,
    maurer_bound,
    occam_kl_bound,
    pinsker_bound,
)
from infobound.certificates import test_set_bound as held_out_bound
from infobound.errors import InputError

mp.mp.dps = 50
ULP_ONE_MINUS = float(np.nextafter(1.0, 0.0))


# ---------------------------------------------------------------- independent references (mpmath)


def mp_kl(q, p):
    q, p = mp.mpf(q), mp.mpf(p)
    total = mp.mpf(0)
    if q > 0:
        total += q * mp.log(q / p) if p > 0 else mp.inf
    if q < 1:
        total += (1 - q) * mp.log((1 - q) / (1 - p)) if p < 1 else mp.inf
    return total


def mp_kl_inverse(q, c):
    """sup{p in [q, 1] : kl(q||p) <= c} by bisection at 50 digits."""
    q, c = mp.mpf(q), mp.mpf(c)
    if c == 0:
        return q
    lo, hi = q, mp.mpf(1)
    if mp_kl(q, hi) <= c:
        return hi
    for _ in range(180):
        mid = (lo + hi) / 2
        if mp_kl(q, mid) <= c:
            lo = mid
        else:
            hi = mid
    return lo


def mp_log_binom_cdf(k, n, p):
    """ln sum_{j<=k} C(n,j) p^j (1-p)^(n-j), summed downward from j = k (no underflow in mpmath)."""
    p = mp.mpf(p)
    term = mp.binomial(n, k) * p**k * (1 - p) ** (n - k)
    total = term
    for j in range(k, 0, -1):
        term = term * j * (1 - p) / ((n - j + 1) * p)
        total += term
        if term < total * mp.mpf(10) ** -45:
            break
    return mp.log(total)


def mp_binomial_tail(k, n, delta, bits):
    """Largest p with P[Bin(n,p) <= k] >= delta 2^-bits, by bisection on the log-CDF."""
    target = mp.log(mp.mpf(delta)) - bits * mp.log(2)
    lo, hi = mp.mpf(0), mp.mpf(1)
    for _ in range(80):
        mid = (lo + hi) / 2
        if mp_log_binom_cdf(k, n, mid) >= target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def naive_kl(q, p):
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(q > 0, q * np.log(q / p), 0.0)
        b = np.where(q < 1, (1 - q) * np.log((1 - q) / (1 - p)), 0.0)
    return a + b


# ---------------------------------------------------------------- binary kl


@pytest.mark.parametrize("q,p", [(0.3, 0.5), (0.01, 0.9), (0.5, 0.5 + 1e-7), (1e-300, 1e-12),
                                 (0.999, 0.9999999), (0.2, 1e-9), (0.7, 0.7 - 1e-9), (0.0, 0.4), (1.0, 0.4)])
def test_binary_kl_matches_mpmath(q, p):
    expected = mp_kl(q, p)
    assert binary_kl(q, p) == pytest.approx(float(expected), rel=1e-12, abs=0)


def test_binary_kl_conventions_and_broadcasting():
    assert binary_kl(0.0, 0.0) == 0.0 and binary_kl(1.0, 1.0) == 0.0 and binary_kl(0.4, 0.4) == 0.0
    assert binary_kl(0.0, 0.5) == pytest.approx(math.log(2), rel=1e-15)
    assert binary_kl(1.0, 0.25) == pytest.approx(math.log(4), rel=1e-15)
    for q, p in [(0.3, 0.0), (0.3, 1.0), (0.0, 1.0), (1.0, 0.0)]:
        assert binary_kl(q, p) == math.inf
    out = binary_kl(np.array([[0.1], [0.2]]), np.array([0.3, 0.4, 0.5]))
    assert out.shape == (2, 3)
    assert out[1, 2] == pytest.approx(float(mp_kl(0.2, 0.5)), rel=1e-13)
    assert isinstance(binary_kl(0.1, 0.2), float)


# ---------------------------------------------------------------- kl inverse


@pytest.mark.parametrize("q,c", [(0.1, 0.05), (0.289307, 0.0575), (0.02, 3e-4), (0.5, 0.2), (0.9, 0.01),
                                 (0.0, 0.3), (0.75, 2.0)])
def test_kl_inverse_brute_force_grid(q, c):
    grid = np.linspace(q, 1.0, 2_000_001)[:-1]
    feasible = grid[naive_kl(q, grid) <= c]
    grid_sup = feasible.max()
    got = kl_inverse_upper(q, c)
    assert got >= grid_sup
    assert got - grid_sup <= (1.0 - q) / 2_000_000 + 1e-15


@pytest.mark.parametrize("q,c", [(0.1, 0.05), (0.3, 1e-12), (0.5, 1e-12), (1e-300, 1e-12), (1e-20, 1e-6),
                                 (0.4, 1e-300), (1 - 1e-9, 1e-12), (1 - 1e-12, 1e-3), (ULP_ONE_MINUS, 1e-12),
                                 (0.999999, 10.0), (0.123456789, 0.987654321)])
def test_kl_inverse_never_below_the_true_supremum(q, c):
    exact = mp_kl_inverse(q, c)
    got = kl_inverse_upper(q, c)
    assert mp.mpf(got) >= exact
    assert got == 1.0 or float(mp_kl(q, got)) >= c * (1 - 1e-12)  # not inside the set
    assert got == 1.0 or mp.mpf(got) - exact <= 1e-13 * exact  # and tight


def test_kl_inverse_closed_forms_and_edges():
    for c in [1e-12, 0.01, 0.7, 5.0]:
        got = kl_inverse_upper(0.0, c)
        assert mp.mpf(got) >= 1 - mp.exp(-mp.mpf(c))
        assert got == pytest.approx(-math.expm1(-c), rel=1e-15)
    assert kl_inverse_upper(1.0, 0.3) == 1.0
    assert kl_inverse_upper(0.37, 0.0) == 0.37
    assert kl_inverse_upper(0.37, 1e300) == 1.0
    # kl(q || 1-) is finite in doubles: a c above it returns 1
    q = 0.6
    assert kl_inverse_upper(q, float(mp_kl(q, ULP_ONE_MINUS)) * 1.01) == 1.0


def test_kl_inverse_broadcasts_like_scalars():
    q = np.array([0.0, 0.1, 0.5, 0.99, 1.0])
    c = np.array([[0.01], [0.5]])
    out = kl_inverse_upper(q, c)
    assert out.shape == (2, 5)
    for i in range(2):
        for j in range(5):
            assert out[i, j] >= mp_kl_inverse(q[j], c[i, 0])
            assert out[i, j] == pytest.approx(float(mp_kl_inverse(q[j], c[i, 0])), rel=1e-14)


# ---------------------------------------------------------------- THEORY §4 golden values

LS, KL_NATS, N, DELTA = 0.289307, 1724.0, 30000, 0.05


def test_golden_maurer_occam_pinsker():
    assert round(maurer_bound(LS, N, KL_NATS, DELTA), 5) == 0.45516
    assert round(kl_inverse_upper(LS, (KL_NATS + math.log(1 / DELTA)) / N), 5) == 0.45487
    assert round(pinsker_bound(LS, N, KL_NATS, DELTA), 5) == 0.45925
    # Occam with an integer code: 2487 bits < 1724 nats < 2488 bits brackets the nats value
    exact = float(mp_kl_inverse(LS, (mp.mpf(KL_NATS) + mp.log(1 / mp.mpf(DELTA))) / N))
    assert occam_kl_bound(LS, N, 2487, DELTA) <= exact <= occam_kl_bound(LS, N, 2488, DELTA)
    assert maurer_bound(LS, N, KL_NATS, DELTA) < pinsker_bound(LS, N, KL_NATS, DELTA)


def test_golden_test_set_line():
    assert round(held_out_bound(200, 10_000, 0.05), 6) == 0.022459
    assert round(kl_inverse_upper(0.02, math.log(1 / 0.05) / 10_000), 6) == 0.023621
    assert held_out_bound(200, 10_000, 0.05) == pytest.approx(stats.beta.ppf(0.95, 201, 9800), rel=1e-10)


@pytest.mark.parametrize("q,n,bits,delta", [(0.1, 1000, 100, 0.05), (0.0, 500, 0, 0.01), (0.45, 77, 3, 0.5),
                                            (0.02, 10**6, 50_000, 1e-6)])
def test_occam_against_mpmath(q, n, bits, delta):
    c = (bits * mp.log(2) + mp.log(1 / mp.mpf(delta))) / n
    exact = mp_kl_inverse(q, c)
    got = occam_kl_bound(q, n, bits, delta)
    assert mp.mpf(got) >= exact and got == pytest.approx(float(exact), rel=1e-13)
    assert occam_kl_bound(q, n, 3.0, delta) == occam_kl_bound(q, n, 3, delta)  # exact float integer


@pytest.mark.parametrize("q,info,n", [(0.0, 100.0, 1000), (0.1, 5.0, 200), (0.3, 0.0, 10), (0.05, 1e5, 10)])
def test_fast_rate_mi_bound_against_mpmath(q, info, n):
    exact = mp_kl_inverse(q, mp.mpf(info) / n)
    got = fast_rate_mi_bound(q, info, n)
    assert mp.mpf(got) >= exact and got == pytest.approx(float(exact), rel=1e-13)


# ---------------------------------------------------------------- Catoni


def catoni_closed_form(q, n, kl, delta, c):
    return (1 - math.exp(-c * q - (kl + math.log(1 / delta)) / n)) / (1 - math.exp(-c))


@pytest.mark.parametrize("q,n,kl,delta",
                         [(LS, N, KL_NATS, DELTA), (0.0, 1000, 50.0, 0.05), (0.1, 10**5, 10.0, 0.01)])
def test_catoni_is_the_grid_minimum_with_delta_split(q, n, kl, delta):
    grid = list(DEFAULT_CATONI_GRID)
    values = [catoni_closed_form(q, n, kl, delta / len(grid), c) for c in grid]
    best = int(np.argmin(values))
    got = catoni_bound(q, n, kl, delta)
    assert got.bound == pytest.approx(min(1.0, values[best]), rel=1e-12)
    assert got.C == grid[best]
    unpaid = min(catoni_closed_form(q, n, kl, delta, c) for c in grid)
    assert got.bound >= unpaid
    # a custom grid is honoured and paid for by its own length
    custom = [0.5, 1.0, 2.0]
    expect = min(catoni_closed_form(q, n, kl, delta / 3, c) for c in custom)
    assert catoni_bound(q, n, kl, delta, grid=custom).bound == pytest.approx(min(1.0, expect), rel=1e-12)


def test_catoni_never_beats_the_kl_inverse_it_relaxes():
    # Catoni's bound at any fixed C is a relaxation of kl(L_S || L_mu) <= (KL + ln 1/delta)/n
    exact = float(mp_kl_inverse(LS, (mp.mpf(KL_NATS) + mp.log(len(DEFAULT_CATONI_GRID) / mp.mpf(DELTA))) / N))
    assert catoni_bound(LS, N, KL_NATS, DELTA).bound >= exact * (1 - 1e-12)


# ---------------------------------------------------------------- binomial tail


@pytest.mark.parametrize("k,n,delta,bits", [(0, 1, 0.05, 0), (0, 10, 0.05, 0), (3, 10, 0.05, 0),
                                            (9, 10, 0.3, 2), (12, 50, 0.01, 7), (25, 50, 0.05, 40),
                                            (1, 20, 0.9, 0), (0, 50, 0.05, 100)])
def test_binomial_tail_small_n_against_mpmath_sums(k, n, delta, bits):
    exact = mp_binomial_tail(k, n, delta, bits)
    got = binomial_tail_bound(k, n, delta, bits)
    assert mp.mpf(got) >= exact * (1 - mp.mpf(10) ** -15)
    assert got == pytest.approx(float(exact), rel=1e-12)
    # the returned p is (just) outside: its tail probability is below the target
    assert mp_log_binom_cdf(k, n, got) <= mp.log(delta) - bits * mp.log(2) + 1e-12


@pytest.mark.parametrize("bits", [20_000, 50_000])
def test_binomial_tail_when_the_target_underflows(bits):
    k, n, delta = 1000, 100_000, 0.05
    assert delta * 2.0**-bits == 0.0  # the target is not representable in float64
    exact = mp_binomial_tail(k, n, delta, bits)
    got = binomial_tail_bound(k, n, delta, bits)
    assert got == pytest.approx(float(exact), rel=1e-10)
    assert mp.mpf(got) >= exact * (1 - mp.mpf(10) ** -12)


@pytest.mark.parametrize("k,n", [(0, 100), (5, 100), (200, 10_000), (4321, 10_000), (99, 100)])
@pytest.mark.parametrize("bits", [0, 10, 100, 900])
def test_binomial_tail_agrees_with_clopper_pearson(k, n, bits):
    target = 0.05 * 2.0**-bits
    expected = stats.beta.isf(target, k + 1, n - k)
    assert binomial_tail_bound(k, n, 0.05, bits) == pytest.approx(expected, rel=1e-9)


def test_binomial_tail_closed_forms():
    assert binomial_tail_bound(7, 7, 0.05) == 1.0
    for n in [1, 10, 1000]:
        # k = 0: (1 - p)^n = delta
        assert binomial_tail_bound(0, n, 0.05) == pytest.approx(1 - 0.05 ** (1 / n), rel=1e-12)
    assert held_out_bound(0, 10, 0.05) == binomial_tail_bound(0, 10, 0.05, bits=0)


# ---------------------------------------------------------------- certificate


def test_certificate_fields_union_bound_and_json():
    cert = certificate(0.1, 1000, 100, delta=0.05)
    assert isinstance(cert, Certificate)
    # each method at exactly delta, from independent references
    occam_ref = mp_kl_inverse(0.1, (100 * mp.log(2) + mp.log(20)) / 1000)
    assert cert.occam_kl == pytest.approx(float(occam_ref), rel=1e-12)
    assert cert.binomial == pytest.approx(stats.beta.isf(0.05 * 2.0**-100, 101, 900), rel=1e-9)
    # best: minimum over the two methods, each at delta / 2
    occam_half = float(mp_kl_inverse(0.1, (100 * mp.log(2) + mp.log(40)) / 1000))
    binom_half = stats.beta.isf(0.025 * 2.0**-100, 101, 900)
    assert cert.best == pytest.approx(min(occam_half, binom_half), rel=1e-9)
    assert cert.best_method == ("binomial" if binom_half < occam_half else "occam_kl")
    assert cert.best > min(cert.occam_kl, cert.binomial)  # the union bound is paid
    assert cert.maurer is None and cert.catoni is None
    assert "probability" in cert.kind and "0-1 error" in cert.kind and "0.05" in cert.kind
    d = json.loads(json.dumps(cert.to_dict()))
    assert d["best"] == cert.best and d["methods"] == ["occam_kl", "binomial"] and d["n"] == 1000
    with pytest.raises(dataclasses.FrozenInstanceError):
        cert.best = 0.0


def test_certificate_single_method_and_all_methods():
    one = certificate(0.25, 400, 10, delta=0.1, methods=("occam_kl",))
    assert one.best == one.occam_kl and one.best_method == "occam_kl" and one.binomial is None
    allm = certificate(0.25, 400, 10, delta=0.1, methods=("occam_kl", "binomial", "maurer", "catoni"))
    ln2 = math.log(2)
    maurer_ref = mp_kl_inverse(0.25, (10 * mp.log(2) + mp.log(2 * mp.sqrt(400) / mp.mpf(0.1))) / 400)
    assert allm.maurer == pytest.approx(float(maurer_ref), rel=1e-12)
    grid = DEFAULT_CATONI_GRID
    catoni_ref = min(catoni_closed_form(0.25, 400, 10 * ln2, 0.1 / len(grid), c) for c in grid)
    assert allm.catoni == pytest.approx(catoni_ref, rel=1e-12)
    assert allm.best >= min(allm.occam_kl, allm.binomial, allm.maurer, allm.catoni)


def test_certificate_refuses_a_train_error_that_is_not_a_count():
    with pytest.raises(InputError, match="multiple of 1/n"):
        certificate(0.1234, 1000, 10)
    assert certificate(0.1234, 1000, 10, methods=("occam_kl",)).occam_kl > 0.1234  # no count needed
    assert certificate(123 / 1000 + 1e-12, 1000, 10).binomial == binomial_tail_bound(123, 1000, 0.05, 10)


# ---------------------------------------------------------------- bad input

BAD_REAL = [math.nan, math.inf, -math.inf, None, "0.1", True, False, 1j]
BAD_INT = [math.nan, math.inf, None, "3", True, 2.5, -1]

OCCAM = {"train_error": 0.1, "n": 100, "bits": 10, "delta": 0.05}
PAC = {"train_error": 0.1, "n": 100, "kl_nats": 10.0, "delta": 0.05}
CASES = [
    # (function, valid kwargs, parameter, bad values)
    (binary_kl, {"q": 0.1, "p": 0.2}, "q", BAD_REAL + [-0.1, 1.1]),
    (binary_kl, {"q": 0.1, "p": 0.2}, "p", BAD_REAL + [-0.1, 1.1]),
    (kl_inverse_upper, {"q": 0.1, "c": 0.2}, "q", BAD_REAL + [-0.1, 1.1]),
    (kl_inverse_upper, {"q": 0.1, "c": 0.2}, "c", BAD_REAL + [-1e-9]),
    (occam_kl_bound, OCCAM, "train_error", BAD_REAL + [-0.1, 1.5]),
    (occam_kl_bound, OCCAM, "n", BAD_INT + [0]),
    (occam_kl_bound, OCCAM, "bits", BAD_INT),
    (occam_kl_bound, OCCAM, "delta", BAD_REAL + [0.0, 1.0, -0.5, 2.0]),
    (maurer_bound, PAC, "kl_nats", BAD_REAL + [-1.0]),
    (maurer_bound, PAC, "delta", BAD_REAL + [0.0, 1.0]),
    (maurer_bound, PAC, "n", BAD_INT + [0]),
    (pinsker_bound, PAC, "train_error", BAD_REAL + [2.0]),
    (catoni_bound, PAC, "train_error", BAD_REAL + [-0.1]),
    (catoni_bound, PAC, "kl_nats", BAD_REAL + [-1.0]),
    (catoni_bound, PAC, "grid",
     ["1", True, [1.0, 0.0], [1.0, -2.0], [math.nan], [], [[1.0, 2.0]], [1.0, None]]),
    (binomial_tail_bound, {"k": 3, "n": 10, "delta": 0.05, "bits": 0}, "k", BAD_INT + [11]),
    (binomial_tail_bound, {"k": 3, "n": 10, "delta": 0.05, "bits": 0}, "n", BAD_INT + [0]),
    (binomial_tail_bound, {"k": 3, "n": 10, "delta": 0.05, "bits": 0}, "delta", BAD_REAL + [0.0, 1.0]),
    (binomial_tail_bound, {"k": 3, "n": 10, "delta": 0.05, "bits": 0}, "bits", BAD_INT),
    (held_out_bound, {"errors": 3, "m": 10, "delta": 0.05}, "errors", BAD_INT + [11]),
    (held_out_bound, {"errors": 3, "m": 10, "delta": 0.05}, "m", BAD_INT + [0]),
    (held_out_bound, {"errors": 3, "m": 10, "delta": 0.05}, "delta", BAD_REAL + [0.0]),
    (fast_rate_mi_bound, {"train_loss": 0.1, "info_nats": 5.0, "n": 100}, "train_loss", BAD_REAL + [1.01]),
    (fast_rate_mi_bound, {"train_loss": 0.1, "info_nats": 5.0, "n": 100}, "info_nats", BAD_REAL + [-1.0]),
    (fast_rate_mi_bound, {"train_loss": 0.1, "info_nats": 5.0, "n": 100}, "n", BAD_INT + [0]),
    (certificate, {"train_error": 0.1, "n": 100, "bits": 10}, "train_error", BAD_REAL + [-0.1, 1.1]),
    (certificate, {"train_error": 0.1, "n": 100, "bits": 10}, "n", BAD_INT + [0]),
    (certificate, {"train_error": 0.1, "n": 100, "bits": 10}, "bits", BAD_INT),
    (certificate, {"train_error": 0.1, "n": 100, "bits": 10}, "delta", BAD_REAL + [0.0, 1.0]),
    (certificate, {"train_error": 0.1, "n": 100, "bits": 10}, "methods",
     ["binomial", None, (), ("occam_kl", "occam_kl"), ("nonsense",), 3]),
]


@pytest.mark.parametrize(
    "func,kwargs,param,bad",
    [pytest.param(f, kw, p, b, id=f"{f.__name__}-{p}-{b!r}") for f, kw, p, bads in CASES for b in bads],
)
def test_bad_input_raises_input_error_naming_the_parameter(func, kwargs, param, bad):
    kwargs = dict(kwargs)
    kwargs[param] = bad
    with pytest.raises(InputError) as info:
        func(**kwargs)
    assert param in str(info.value)
    assert isinstance(info.value, ValueError)


def test_array_inputs_reject_bad_elements():
    for bad in ([0.1, math.nan], [0.1, None], ["0.1"], [True, False], np.array([0.1, 2.0])):
        with pytest.raises(InputError, match="q"):
            kl_inverse_upper(bad, 0.1)
    with pytest.raises(InputError, match="c"):
        kl_inverse_upper([0.1, 0.2], [0.1, -0.1])


# ---------------------------------------------------------------- many certificates at once


def test_certificates_many_against_mpmath_in_one_batch():
    """Representable and underflowing targets (bits 0 to 6,000) in one vectorised batch: each entry
    is the mpmath solution, never below it, and equals the one-at-a-time certificate."""
    n, delta = 700, 0.05
    errors = [0.0, 3 / 700, 0.1, 0.45, 0.45, 1.0, 350 / 700]
    bits = [0, 40, 900, 1100, 6000, 5, 2500]
    many = certificates_many(errors, n, bits, delta)
    for cert, q, c in zip(many, errors, bits):
        one = certificate(q, n, c, delta)
        assert (cert.occam_kl, cert.binomial, cert.best, cert.best_method) == \
            (one.occam_kl, one.binomial, one.best, one.best_method)
        k = round(q * n)
        if k < n:
            exact = mp_binomial_tail(k, n, delta, c)
            assert mp.mpf(cert.binomial) >= exact * (1 - mp.mpf(10) ** -12)
            assert cert.binomial == pytest.approx(float(exact), rel=1e-9)
            if cert.best_method == "binomial":  # best: the binomial tail at delta / 2
                assert cert.best == pytest.approx(float(mp_binomial_tail(k, n, delta / 2, c)), rel=1e-9)
        assert cert.occam_kl == pytest.approx(float(mp_kl_inverse(q, (c * mp.log(2) + mp.log(1 / mp.mpf(delta))) / n)),
                                              rel=1e-9, abs=1e-15)
    assert certificates_many([], n, [], delta) == []


def test_certificates_many_bad_input_names_the_parameter():
    with pytest.raises(InputError, match="bits"):
        certificates_many([0.1, 0.2], 10, [3], 0.05)
    with pytest.raises(InputError, match=r"train_errors\[1\]"):
        certificates_many([0.1, 1.5], 10, [3, 4], 0.05)
    with pytest.raises(InputError, match=r"bits\[0\]"):
        certificates_many([0.1], 10, [-1], 0.05)
    with pytest.raises(InputError, match="delta"):
        certificates_many([0.1], 10, [3], 1.0)
