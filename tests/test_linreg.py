"""Tests of infobound.linreg against independent references.

References: Monte-Carlo regression data (population loss), ``np.linalg.lstsq`` on the least-squares
problem ‖(Δ − B A) Σ^{1/2}‖_F² written out here, ``scipy.optimize.minimize`` on the flattened
factor, central finite differences, Haar draws from ``scipy.stats.ortho_group``, and the Beta law
of a uniform unit vector's squared coordinate. Dimensions d_in = 12, d_out = 8, r = 3.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
from scipy import optimize, stats

from infobound.errors import InputError
from infobound.linreg import (
    expected_loss_a_frozen_isotropic,
    expected_loss_b_frozen,
    haar_orthonormal_columns,
    haar_orthonormal_rows,
    loss_a_frozen,
    loss_a_frozen_rank_r_input,
    loss_b_frozen,
    optimal_a,
    optimal_b,
    paper_frozen_a,
    population_loss,
    rank_r_input_gap,
)

D_IN, D_OUT, R = 12, 8, 3
NOISE = 0.3
N_HAAR = 3000


# ----------------------------------------------------------------------------------- fixtures
def _setup(seed: int = 0, decay: float = 0.7):
    """Δ (d_out, d_in), an anisotropic Σ with eigenvalues decay**k, and its symmetric square root."""
    rng = np.random.default_rng(seed)
    delta = rng.standard_normal((D_OUT, D_IN))
    basis, _ = np.linalg.qr(rng.standard_normal((D_IN, D_IN)))
    eig = 2.0 * decay ** np.arange(D_IN)
    cov = (basis * eig) @ basis.T
    cov = 0.5 * (cov + cov.T)
    sqrt_cov = (basis * np.sqrt(eig)) @ basis.T  # Σ^{1/2}
    return rng, delta, cov, sqrt_cov


def _ref_loss(A, B, delta, sqrt_cov, noise_var):
    """Reference loss ‖(Δ − B A) Σ^{1/2}‖_F² + d_out s², written independently of the module."""
    return float(np.sum(((delta - B @ A) @ sqrt_cov) ** 2)) + delta.shape[0] * noise_var


def _ortho_first(d, k, n, seed):
    """n Haar (d, k) matrices with orthonormal columns, from scipy's Haar sampler on O(d)."""
    mats = stats.ortho_group.rvs(dim=d, size=n, random_state=seed)
    return mats.reshape(n, d, d)[:, :, :k]  # size=1 returns a single (d, d) matrix


def _within_4se(samples, target):
    mean = float(np.mean(samples))
    se = float(np.std(samples, ddof=1) / np.sqrt(len(samples)))
    return abs(mean - target) <= 4.0 * se, mean, se


# ------------------------------------------------------------------------------ population loss
def test_population_loss_matches_monte_carlo_regression():
    """L(A, B) equals the mean squared error of y − (W0 + BA)x on simulated data (4 s.e.)."""
    rng, delta, cov, sqrt_cov = _setup(1)
    A = rng.standard_normal((R, D_IN)) * 0.3
    B = rng.standard_normal((D_OUT, R)) * 0.3
    w0 = rng.standard_normal((D_OUT, D_IN))
    w_targ = w0 + delta
    n = 200_000
    x = rng.standard_normal((n, D_IN)) @ sqrt_cov  # E[x xᵀ] = Σ
    y = x @ w_targ.T + np.sqrt(NOISE) * rng.standard_normal((n, D_OUT))
    sq_err = np.sum((y - x @ (w0 + B @ A).T) ** 2, axis=1)
    ok, mean, se = _within_4se(sq_err, population_loss(A, B, delta, cov, NOISE))
    assert ok, (mean, se, population_loss(A, B, delta, cov, NOISE))


# ------------------------------------------------------------------ Lemma 4.1: A frozen, B trained
def test_lemma_4_1_closed_form_equals_direct_minimum():
    rng, delta, cov, sqrt_cov = _setup(2)
    Q = _ortho_first(D_IN, R, 1, 11)[0].T  # (r, d_in)
    b_star = optimal_b(Q, delta, cov)
    closed = loss_a_frozen(Q, delta, cov, NOISE)
    # closed form == loss evaluated at B*
    assert closed == pytest.approx(population_loss(Q, b_star, delta, cov, NOISE), rel=1e-10)
    assert closed == pytest.approx(_ref_loss(Q, b_star, delta, sqrt_cov, NOISE), rel=1e-10)
    # min_B ‖Δ S − B (Q S)‖_F² as an ordinary least-squares problem (Q S)ᵀ Bᵀ ≈ (Δ S)ᵀ
    bt_ls, _, _, _ = np.linalg.lstsq((Q @ sqrt_cov).T, (delta @ sqrt_cov).T, rcond=None)
    assert np.allclose(b_star, bt_ls.T, rtol=1e-8, atol=1e-10)
    ls_min = _ref_loss(Q, bt_ls.T, delta, sqrt_cov, NOISE)
    assert closed == pytest.approx(ls_min, rel=1e-10)
    # generic optimiser over the flattened B, started at zero
    res = optimize.minimize(
        lambda b: _ref_loss(Q, b.reshape(D_OUT, R), delta, sqrt_cov, NOISE),
        np.zeros(D_OUT * R),
        method="BFGS",
        options={"gtol": 1e-10},
    )
    assert res.fun == pytest.approx(closed, rel=1e-7)
    assert closed >= res.fun - 1e-9 * abs(res.fun)


def test_lemma_4_1_b_star_is_stationary_and_unbeaten():
    rng, delta, cov, sqrt_cov = _setup(3)
    Q = _ortho_first(D_IN, R, 1, 12)[0].T
    b_star = optimal_b(Q, delta, cov)
    f = lambda b: _ref_loss(Q, b.reshape(D_OUT, R), delta, sqrt_cov, NOISE)  # noqa: E731
    grad = _central_grad(f, b_star.ravel(), h=1e-5)
    assert np.max(np.abs(grad)) < 1e-6 * max(1.0, f(b_star.ravel()))
    best = f(b_star.ravel())
    for _ in range(300):
        scale = 10.0 ** rng.uniform(-4, 1)
        trial = b_star + scale * rng.standard_normal(b_star.shape)
        assert f(trial.ravel()) >= best - 1e-12 * best
    for _ in range(100):
        assert f(rng.standard_normal(D_OUT * R) * 3) >= best


# ------------------------------------------------------------------ Lemma 4.2: B frozen, A trained
def test_lemma_4_2_closed_form_equals_direct_minimum():
    rng, delta, cov, sqrt_cov = _setup(4)
    U = _ortho_first(D_OUT, R, 1, 13)[0]  # (d_out, r)
    a_star = optimal_a(U, delta)
    closed = loss_b_frozen(U, delta, cov, NOISE)
    assert closed == pytest.approx(population_loss(a_star, U, delta, cov, NOISE), rel=1e-10)
    assert closed == pytest.approx(_ref_loss(a_star, U, delta, sqrt_cov, NOISE), rel=1e-10)
    # min_A ‖Δ S − U (A S)‖_F²: least squares for M = A S, then A = M S⁻¹ (Σ ≻ 0 here)
    m_ls, _, _, _ = np.linalg.lstsq(U, delta @ sqrt_cov, rcond=None)
    a_ls = np.linalg.solve(sqrt_cov.T, m_ls.T).T
    assert np.allclose(a_star, a_ls, rtol=1e-7, atol=1e-9)
    assert closed == pytest.approx(_ref_loss(a_ls, U, delta, sqrt_cov, NOISE), rel=1e-10)
    res = optimize.minimize(
        lambda a: _ref_loss(a.reshape(R, D_IN), U, delta, sqrt_cov, NOISE),
        np.zeros(R * D_IN),
        method="BFGS",
        options={"gtol": 1e-10},
    )
    assert res.fun == pytest.approx(closed, rel=1e-7)
    assert closed >= res.fun - 1e-9 * abs(res.fun)


def test_lemma_4_2_a_star_is_stationary_and_unbeaten():
    rng, delta, cov, sqrt_cov = _setup(5)
    U = _ortho_first(D_OUT, R, 1, 14)[0]
    a_star = optimal_a(U, delta)
    f = lambda a: _ref_loss(a.reshape(R, D_IN), U, delta, sqrt_cov, NOISE)  # noqa: E731
    grad = _central_grad(f, a_star.ravel(), h=1e-5)
    assert np.max(np.abs(grad)) < 1e-6 * max(1.0, f(a_star.ravel()))
    best = f(a_star.ravel())
    for _ in range(300):
        scale = 10.0 ** rng.uniform(-4, 1)
        trial = a_star + scale * rng.standard_normal(a_star.shape)
        assert f(trial.ravel()) >= best - 1e-12 * best
    for _ in range(100):
        assert f(rng.standard_normal(R * D_IN) * 3) >= best


def _central_grad(f, x, h):
    grad = np.empty_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e[i] = h
        grad[i] = (f(x + e) - f(x - e)) / (2 * h)
    return grad


# ---------------------------------------------------------------------------- Haar expectations
def test_expected_loss_b_frozen_anisotropic_monte_carlo():
    _, delta, cov, _ = _setup(6)
    us = _ortho_first(D_OUT, R, N_HAAR, 21)
    losses = np.array([loss_b_frozen(u, delta, cov, NOISE) for u in us])
    target = expected_loss_b_frozen(delta, cov, NOISE, R)
    ok, mean, se = _within_4se(losses, target)
    assert ok, (mean, se, target)


def test_expected_loss_a_frozen_isotropic_monte_carlo():
    _, delta, _, _ = _setup(7)
    qs = _ortho_first(D_IN, R, N_HAAR, 22)
    eye = np.eye(D_IN)
    losses = np.array([loss_a_frozen(q.T, delta, eye, NOISE) for q in qs])
    target = expected_loss_a_frozen_isotropic(delta, NOISE, R)
    ok, mean, se = _within_4se(losses, target)
    assert ok, (mean, se, target)
    # the d_out variant of the factor is distinguishable and rejected by the same data
    wrong = D_OUT * NOISE + (1 - R / D_OUT) * np.sum(delta**2)
    assert abs(mean - wrong) > 8 * se


def test_trained_b_beats_trained_a_for_anisotropic_cov():
    """Asymmetry: with a strongly anisotropic Σ, E_Q L(Q, B*) < E_U L(A*, U) by many s.e."""
    _, delta, cov, _ = _setup(8, decay=0.3)
    qs = _ortho_first(D_IN, R, N_HAAR, 23)
    a_frozen = np.array([loss_a_frozen(q.T, delta, cov, NOISE) for q in qs])
    mean = float(np.mean(a_frozen))
    se = float(np.std(a_frozen, ddof=1) / np.sqrt(N_HAAR))
    b_frozen = expected_loss_b_frozen(delta, cov, NOISE, R)
    assert mean + 4 * se < b_frozen, (mean, se, b_frozen)


# --------------------------------------------------------------------------------- rank-r inputs
def _rank_r_setup(seed, k=R, s_x2=1.7):
    rng = np.random.default_rng(seed)
    delta = rng.standard_normal((D_OUT, D_IN))
    u_x, _ = np.linalg.qr(rng.standard_normal((D_IN, k)))
    cov = s_x2 * u_x @ u_x.T
    return rng, delta, u_x, s_x2, 0.5 * (cov + cov.T)


@pytest.mark.parametrize("k", [R, 2])
def test_rank_r_input_trained_b_reaches_noise_floor(k):
    rng, delta, u_x, s_x2, cov = _rank_r_setup(30 + k, k=k)
    expected = D_OUT * NOISE
    assert loss_a_frozen_rank_r_input(delta, u_x, s_x2, NOISE, R) == expected
    s = np.sqrt(s_x2) * u_x  # Σ = S Sᵀ, S: (d_in, k)
    for seed in range(20):
        Q = _ortho_first(D_IN, R, 1, 100 + seed)[0].T
        # independent minimum over B: least squares of (Q S)ᵀ Bᵀ ≈ (Δ S)ᵀ
        bt, _, _, _ = np.linalg.lstsq((Q @ s).T, (delta @ s).T, rcond=None)
        ls_min = float(np.sum((delta @ s - bt.T @ Q @ s) ** 2)) + expected
        assert ls_min == pytest.approx(expected, abs=1e-8)
        if k == R:  # Q Σ Qᵀ is invertible: the closed form of Lemma 4.1 applies
            assert loss_a_frozen(Q, delta, cov, NOISE) == pytest.approx(expected, abs=1e-8)


def test_rank_r_input_gap_monte_carlo_uses_d_out():
    rng, delta, u_x, s_x2, cov = _rank_r_setup(40)
    us = _ortho_first(D_OUT, R, N_HAAR, 41)
    floor = D_OUT * NOISE
    gaps = np.array([loss_b_frozen(u, delta, cov, NOISE) - floor for u in us])
    gap = rank_r_input_gap(delta, u_x, s_x2, R)
    ok, mean, se = _within_4se(gaps, gap)
    assert ok, (mean, se, gap)
    # the same factor with d = d_in (rows of U_X) is rejected by the Monte-Carlo data
    tr = s_x2 * np.trace(u_x @ u_x.T @ delta.T @ delta)
    assert gap == pytest.approx((1 - R / D_OUT) * tr, rel=1e-12)
    assert abs(mean - (1 - R / D_IN) * tr) > 8 * se


# -------------------------------------------------------------------------------- haar samplers
def test_haar_samplers_orthonormal():
    rng = np.random.default_rng(50)
    for _ in range(20):
        q = haar_orthonormal_rows(R, D_IN, rng)
        u = haar_orthonormal_columns(D_OUT, R, rng)
        assert q.shape == (R, D_IN) and u.shape == (D_OUT, R)
        assert np.max(np.abs(q @ q.T - np.eye(R))) < 1e-12
        assert np.max(np.abs(u.T @ u - np.eye(R))) < 1e-12
    full = haar_orthonormal_columns(5, 5, rng)
    assert np.max(np.abs(full @ full.T - np.eye(5))) < 1e-12


def test_haar_rows_distribution():
    """Each row is uniform on the sphere: E Q_ij = 0, E Q_ij² = 1/d, Q_11² ~ Beta(1/2, (d−1)/2)."""
    rng = np.random.default_rng(51)
    d, n = D_IN, 4000
    qs = np.stack([haar_orthonormal_rows(R, d, rng) for _ in range(n)])  # (n, r, d)
    for i in range(R):
        ok, mean, se = _within_4se(qs[:, i, 0], 0.0)  # the sign fix makes this symmetric
        assert ok, (i, mean, se)
        ok, mean, se = _within_4se(qs[:, i, 0] ** 2, 1.0 / d)
        assert ok, (i, mean, se)
    assert stats.kstest(qs[:, 0, 0] ** 2, stats.beta(0.5, (d - 1) / 2).cdf).pvalue > 1e-3
    assert stats.kstest(qs[:, R - 1, 3] ** 2, stats.beta(0.5, (d - 1) / 2).cdf).pvalue > 1e-3


def test_haar_columns_distribution():
    rng = np.random.default_rng(52)
    d, n = D_OUT, 4000
    us = np.stack([haar_orthonormal_columns(d, R, rng) for _ in range(n)])  # (n, d, r)
    for j in range(R):
        ok, mean, se = _within_4se(us[:, 0, j], 0.0)
        assert ok, (j, mean, se)
        ok, mean, se = _within_4se(us[:, 2, j] ** 2, 1.0 / d)
        assert ok, (j, mean, se)


def test_haar_seed_reproducible():
    assert np.array_equal(haar_orthonormal_rows(R, D_IN, 7), haar_orthonormal_rows(R, D_IN, 7))


def test_paper_frozen_a_orthonormal_rows_and_singular_vectors():
    a = paper_frozen_a(D_OUT, D_IN, R, 9)
    assert a.shape == (R, D_IN)
    assert np.max(np.abs(a @ a.T - np.eye(R))) < 1e-12
    # the same draw, through scipy's SVD: top-r right-singular subspace agrees (projectors)
    w = np.random.default_rng(9).uniform(-0.5, 0.5, size=(D_OUT, D_IN))
    _, _, vt = scipy.linalg.svd(w, full_matrices=False)
    assert np.allclose(a.T @ a, vt[:R].T @ vt[:R], atol=1e-10)


# ---------------------------------------------------------------------------------- bad inputs
def _bad_cases():
    _, delta, cov, _ = _setup(60)
    q = haar_orthonormal_rows(R, D_IN, 1)
    u = haar_orthonormal_columns(D_OUT, R, 2)
    u_x = haar_orthonormal_columns(D_IN, R, 3)
    asym = cov.copy()
    asym[0, 1] += 0.1
    indefinite = cov - 3.0 * np.eye(D_IN)
    a = np.ones((R, D_IN))
    b = np.ones((D_OUT, R))
    return [
        ("cov", lambda: population_loss(a, b, delta, asym, NOISE)),
        ("cov", lambda: loss_a_frozen(q, delta, indefinite, NOISE)),
        ("cov", lambda: loss_b_frozen(u, delta, np.eye(D_IN + 1), NOISE)),
        ("cov", lambda: optimal_b(q, delta, np.zeros((D_IN, D_IN)))),
        ("noise_var", lambda: loss_b_frozen(u, delta, cov, -0.1)),
        ("noise_var", lambda: population_loss(a, b, delta, cov, float("nan"))),
        ("noise_var", lambda: expected_loss_a_frozen_isotropic(delta, "x", R)),
        ("delta", lambda: optimal_a(u, np.ones(D_OUT))),
        ("delta", lambda: optimal_a(u, np.full((D_OUT, D_IN), np.inf))),
        ("A", lambda: population_loss(np.ones((R, D_IN + 1)), b, delta, cov, NOISE)),
        ("B", lambda: population_loss(a, np.ones((D_OUT, R + 1)), delta, cov, NOISE)),
        ("A", lambda: population_loss(np.ones((D_OUT + 1, D_IN)), np.ones((D_OUT, D_OUT + 1)), delta, cov, NOISE)),
        ("Q", lambda: optimal_b(2.0 * q, delta, cov)),
        ("Q", lambda: loss_a_frozen(q[:, :-1], delta, cov, NOISE)),
        ("U", lambda: optimal_a(u + 0.01, delta)),
        ("U", lambda: loss_b_frozen(u[:-1], delta, cov, NOISE)),
        ("r", lambda: expected_loss_b_frozen(delta, cov, NOISE, 0)),
        ("r", lambda: expected_loss_b_frozen(delta, cov, NOISE, D_OUT + 1)),
        ("r", lambda: expected_loss_a_frozen_isotropic(delta, NOISE, 1.5)),
        ("r", lambda: rank_r_input_gap(delta, u_x, 1.0, 0)),
        ("U_X", lambda: rank_r_input_gap(delta, u_x, 1.0, R - 1)),
        ("U_X", lambda: rank_r_input_gap(delta, 2 * u_x, 1.0, R)),
        ("U_X", lambda: loss_a_frozen_rank_r_input(delta, u_x[:-1], 1.0, NOISE, R)),
        ("s_x2", lambda: rank_r_input_gap(delta, u_x, 0.0, R)),
        ("r", lambda: haar_orthonormal_rows(D_IN + 1, D_IN, 0)),
        ("d", lambda: haar_orthonormal_columns(0, 1, 0)),
        ("rng", lambda: haar_orthonormal_columns(D_OUT, R, "seed")),
        ("rng", lambda: paper_frozen_a(D_OUT, D_IN, R, -1)),
        ("r", lambda: paper_frozen_a(D_OUT, D_IN, D_OUT + 1, 0)),
    ]


@pytest.mark.parametrize("index", range(len(_bad_cases())))
def test_bad_inputs_raise_input_error_naming_argument(index):
    name, call = _bad_cases()[index]
    with pytest.raises(InputError) as info:
        call()
    assert str(info.value).startswith(name + " "), str(info.value)
    assert isinstance(info.value, ValueError)
