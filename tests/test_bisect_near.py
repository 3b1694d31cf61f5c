"""The bracketed bisection (``_bisect_near``, from an estimate) against the full-range bisection it
replaces (``_bisect_floats``, kept as its fallback): the same doubles on random and edge cases."""

from __future__ import annotations

import numpy as np

from infobound import certificates as C


def _kl_cases(rng, m):
    n = rng.integers(1, 5001, m)
    q = np.where(rng.random(m) < 0.5, rng.integers(0, n + 1) / n, rng.random(m))
    q[:40] = [0.0, 1.0, 1e-300, 1e-12, 1 - 1e-12, 0.5, 0.999999, 1e-6] * 5
    c = np.exp(rng.uniform(np.log(1e-12), np.log(1e3), m))
    c[::17] = 0.0
    c[::19] = 1e-300
    c[::23] = 1e6
    c[::29] = rng.uniform(0.0, 10.0, c[::29].size)
    return q, c


def test_kl_inverse_near_equals_full_bisection():
    rng = np.random.default_rng(20)
    q, c = _kl_cases(rng, 20_000)
    near = C._kl_inverse(q, c)
    full = C._kl_inverse(q, c, near=False)
    assert np.array_equal(near, full), np.flatnonzero(near != full)[:10]
    assert np.all(near >= q)


def test_binomial_tails_near_equals_full_bisection():
    rng = np.random.default_rng(21)
    m = 20_000
    n = np.exp(rng.uniform(0.0, np.log(5000.0), m)).astype(np.int64)
    n[:200] = np.arange(1, 201)
    k = (rng.random(m) * (n + 1)).astype(np.int64).clip(0, n)
    k[::7] = 0
    k[::11] = n[::11] - 1
    k[::13] = n[::13]  # k = n gives 1 without bisecting
    delta = np.exp(rng.uniform(np.log(1e-10), np.log(0.5), m))
    bits = rng.integers(0, 20_001, m)
    bits[::5] = 0
    bits[::9] = rng.integers(0, 50, bits[::9].size)
    for part in np.array_split(np.arange(m), 10):
        args = (k[part], n[part], delta[part], bits[part])
        near, full = C._binomial_tails(*args), C._binomial_tails(*args, near=False)
        assert np.array_equal(near, full), part[np.flatnonzero(near != full)[:10]]


def test_a_wrong_estimate_falls_back_to_the_full_range():
    """Estimates far off (or NaN) fail the bracket check and are bisected over the whole range."""
    rng = np.random.default_rng(22)
    q, c = _kl_cases(rng, 2_000)
    keep = (q > 0) & (q < 1) & (c > 0) & (C._kl(q, np.full_like(q, C._ONE_MINUS)) > c)
    q, c = q[keep], c[keep]
    ceiling = c * (1.0 + C._KL_MARGIN)
    inside = lambda p: C._kl(q, p) <= ceiling  # noqa: E731
    full = C._bisect_floats(q, np.ones_like(q), inside)
    for wrong in (np.full_like(q, np.nan), (q + 1) / 2, np.minimum(full * 1.5, 1.0), q):
        assert np.array_equal(C._bisect_near(q, np.ones_like(q), wrong, inside), full)


def test_public_searches_agree_and_match_clopper_pearson():
    """The public vectorised forms: both searches give the same doubles, and with no code (bits 0)
    the binomial tail is the one-sided Clopper-Pearson bound scipy's beta quantile gives."""
    from scipy import stats

    rng = np.random.default_rng(21)
    n = 700
    k = rng.integers(0, n, 200)
    delta = rng.uniform(1e-4, 0.5, 200)
    full = C.binomial_tail_bounds(k, n, delta, search="full")
    bracket = C.binomial_tail_bounds(k, n, delta)
    assert np.array_equal(full, bracket)
    reference = stats.beta.ppf(1.0 - delta, k + 1, n - k)
    assert np.allclose(bracket, reference, rtol=1e-9, atol=0)
    assert np.all(bracket >= reference * (1 - 1e-12))
    assert C.binomial_tail_bounds([n], n, [0.05])[0] == 1.0
    q, c = rng.random(200), rng.uniform(0, 2, 200)
    assert np.array_equal(C.kl_inverse_upper(q, c), C.kl_inverse_upper(q, c, search="full"))


def test_public_searches_reject_bad_input():
    import pytest

    with pytest.raises(ValueError, match="search"):
        C.kl_inverse_upper(0.1, 0.2, search="fast")
    with pytest.raises(ValueError, match="k must hold integers"):
        C.binomial_tail_bounds([1.5], 10, [0.05])
    with pytest.raises(ValueError, match="delta"):
        C.binomial_tail_bounds([1], 10, [0.0])
    with pytest.raises(ValueError, match="k"):
        C.binomial_tail_bounds([11], 10, [0.05])
    with pytest.raises(ValueError, match="n"):
        C.binomial_tail_bounds([1], 0, [0.05])
