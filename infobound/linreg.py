"""Closed forms of the least-squares asymmetry between the two LoRA factors (THEORY.md §2).

Setting (Zhu et al., ICML 2024, §4.1): a linear layer with frozen weight ``W0`` (d_out × d_in) is
adapted to ``W0 + B A`` with ``A: (r, d_in)`` reading the input and ``B: (d_out, r)`` writing the
output. The target is ``y = W_targ x + ε`` with ``E[x xᵀ] = Σ`` (d_in × d_in) and ``Cov(ε) = s² I``
(d_out × d_out); ``Δ = W_targ − W0``. The population squared-error loss of the adapted layer is

    L(A, B) = E‖y − (W0 + B A) x‖² = Tr[(Δ − B A) Σ (Δ − B A)ᵀ] + d_out s².

Freezing one factor at a random orthonormal draw and training the other in closed form:

* ``a_only`` is the mode where B is frozen; ``b_only`` the mode where A is frozen. Here the
  function names say which factor is frozen: ``loss_a_frozen`` trains B (Lemma 4.1),
  ``loss_b_frozen`` trains A (Lemma 4.2).
* B* sees the input covariance Σ; A* cannot. Averaged over Haar draws of the frozen factor, the
  trained-B loss is the smaller one whenever Σ is far enough from isotropic; with Σ of rank ≤ r it
  reaches the noise floor ``d_out s²`` for almost every frozen A.

Argument names: ``delta`` is Δ (d_out, d_in); ``cov`` is Σ (d_in, d_in); ``noise_var`` is s²;
``Q`` is a frozen A with orthonormal rows (r, d_in); ``U`` is a frozen B with orthonormal columns
(d_out, r). Losses are in the squared units of y. numpy/scipy only.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import scipy.linalg

from .errors import InputError
from .validation import check_int

__all__ = [
    "expected_loss_a_frozen_isotropic",
    "expected_loss_b_frozen",
    "haar_orthonormal_columns",
    "haar_orthonormal_rows",
    "loss_a_frozen",
    "loss_a_frozen_rank_r_input",
    "loss_b_frozen",
    "optimal_a",
    "optimal_b",
    "paper_frozen_a",
    "population_loss",
    "rank_r_input_gap",
]

ORTHO_TOL = 1e-8
"""Largest entry of ``Q Qᵀ − I`` (or ``Uᵀ U − I``) accepted as orthonormal."""
SYM_TOL = 1e-10
"""Relative tolerance for the symmetry and positive semi-definiteness of ``cov``."""


# --------------------------------------------------------------------------------- population loss
def population_loss(A, B, delta, cov, noise_var) -> float:
    """L(A, B) = Tr[(Δ − B A) Σ (Δ − B A)ᵀ] + d_out s² for any factors of matching shapes.

    ``A: (r, d_in)``, ``B: (d_out, r)``, ``delta: (d_out, d_in)``, ``cov: (d_in, d_in)`` symmetric
    PSD, ``noise_var >= 0``; ``1 <= r <= min(d_in, d_out)``.
    """
    delta = _matrix("delta", delta)
    d_out, d_in = delta.shape
    cov = _cov(cov, d_in)
    s2 = _noise_var(noise_var)
    A = _matrix("A", A)
    B = _matrix("B", B)
    r = A.shape[0]
    _check_rank_dim("A", r, d_in, d_out, what="number of rows")
    _check_shape("A", A, (r, d_in))
    _check_shape("B", B, (d_out, r))
    resid = delta - B @ A  # (d_out, d_in) − (d_out, r) @ (r, d_in)
    return float(np.trace(resid @ cov @ resid.T)) + d_out * s2


# ------------------------------------------------------------------ Lemma 4.1: A frozen, B trained
def optimal_b(Q, delta, cov) -> np.ndarray:
    """B* = Δ Σ Qᵀ (Q Σ Qᵀ)⁻¹, the loss-minimising B for A frozen at ``Q`` (Lemma 4.1).

    ``Q: (r, d_in)`` with orthonormal rows. Returns ``(d_out, r)``. Solved as the symmetric
    positive-definite system ``(Q Σ Qᵀ) B*ᵀ = Q Σ Δᵀ``; raises ``InputError`` when ``Q Σ Qᵀ`` is
    singular (Σ blind to a direction that ``Q`` reads), where B* is not unique.
    """
    delta = _matrix("delta", delta)
    d_out, d_in = delta.shape
    cov = _cov(cov, d_in)
    Q = _orthonormal_rows("Q", Q, d_in, d_out)
    return _optimal_b(Q, delta, cov)


def loss_a_frozen(Q, delta, cov, noise_var) -> float:
    """Lemma 4.1: min_B L(Q, B) = d_out s² + Tr[Δ Σ Δᵀ] − Tr[Q Σ Δᵀ Δ Σ Qᵀ (Q Σ Qᵀ)⁻¹]."""
    delta = _matrix("delta", delta)
    d_out, d_in = delta.shape
    cov = _cov(cov, d_in)
    s2 = _noise_var(noise_var)
    Q = _orthonormal_rows("Q", Q, d_in, d_out)
    b_star = _optimal_b(Q, delta, cov)  # (d_out, r) = (Δ Σ Qᵀ)(Q Σ Qᵀ)⁻¹
    cross = delta @ cov @ Q.T  # (d_out, d_in) @ (d_in, d_in) @ (d_in, r)
    # Tr[Q Σ Δᵀ Δ Σ Qᵀ (Q Σ Qᵀ)⁻¹] = Tr[(Δ Σ Qᵀ)ᵀ B*] by cyclicity
    explained = float(np.sum(cross * b_star))
    return d_out * s2 + float(np.trace(delta @ cov @ delta.T)) - explained


# ------------------------------------------------------------------ Lemma 4.2: B frozen, A trained
def optimal_a(U, delta) -> np.ndarray:
    """A* = Uᵀ Δ, the loss-minimising A for B frozen at ``U`` (Lemma 4.2), for every Σ ≻ 0.

    ``U: (d_out, r)`` with orthonormal columns. Returns ``(r, d_in)``. (For a singular Σ, A* is
    still a minimiser, though no longer the only one.)
    """
    delta = _matrix("delta", delta)
    d_out, d_in = delta.shape
    U = _orthonormal_columns("U", U, d_out, d_in)
    return U.T @ delta  # (r, d_out) @ (d_out, d_in)


def loss_b_frozen(U, delta, cov, noise_var) -> float:
    """Lemma 4.2: min_A L(A, U) = d_out s² + Tr[Δ Σ Δᵀ] − Tr[Uᵀ Δ Σ Δᵀ U]."""
    delta = _matrix("delta", delta)
    d_out, d_in = delta.shape
    cov = _cov(cov, d_in)
    s2 = _noise_var(noise_var)
    U = _orthonormal_columns("U", U, d_out, d_in)
    m = delta @ cov @ delta.T  # (d_out, d_out)
    return d_out * s2 + float(np.trace(m)) - float(np.trace(U.T @ m @ U))


# ----------------------------------------------------------------- expectations over Haar draws
def expected_loss_b_frozen(delta, cov, noise_var, r) -> float:
    """E_U min_A L(A, U) = d_out s² + (1 − r/d_out) Tr[Δ Σ Δᵀ], U Haar on (d_out, r), any Σ.

    Follows from Lemma 4.2 and E[U Uᵀ] = (r/d_out) I for a Haar-distributed U.
    """
    delta = _matrix("delta", delta)
    d_out, d_in = delta.shape
    cov = _cov(cov, d_in)
    s2 = _noise_var(noise_var)
    r = _rank(r, d_in, d_out)
    return d_out * s2 + (1.0 - r / d_out) * float(np.trace(delta @ cov @ delta.T))


def expected_loss_a_frozen_isotropic(delta, noise_var, r) -> float:
    """E_Q min_B L(Q, B) = d_out s² + (1 − r/d_in) ‖Δ‖_F², Q Haar on (r, d_in), Σ = I only.

    With Σ = I, Lemma 4.1 reads d_out s² + ‖Δ‖_F² − Tr[Q Δᵀ Δ Qᵀ], and E[Qᵀ Q] = (r/d_in) I.
    For an anisotropic Σ no closed form is given here.
    """
    delta = _matrix("delta", delta)
    d_out, d_in = delta.shape
    s2 = _noise_var(noise_var)
    r = _rank(r, d_in, d_out)
    return d_out * s2 + (1.0 - r / d_in) * float(np.sum(delta**2))


# ------------------------------------------------------------------------------ rank-r inputs
def rank_r_input_gap(delta, U_X, s_x2, r) -> float:
    """E_U L(A*, U) − L(Q, B*) for inputs of rank ≤ r: Σ = s_x² U_X U_Xᵀ.

    ``U_X: (d_in, k)`` with orthonormal columns and ``1 <= k <= r`` (THEORY.md states k = r);
    ``s_x2 > 0``; ``r`` is the adapter rank. Then

        gap = (1 − r/d_out) · s_x² · Tr[U_X U_Xᵀ Δᵀ Δ]   with  d = d_out,

    the output dimension (the number of rows of Δ and of the frozen B), not d_in. Reason: the
    trained-B loss L(Q, B*) is exactly d_out s² for almost every Q (see
    ``loss_a_frozen_rank_r_input``), and the Haar average of the trained-A loss is
    d_out s² + (1 − r/d_out) Tr[Δ Σ Δᵀ] (``expected_loss_b_frozen``), with
    Tr[Δ Σ Δᵀ] = s_x² Tr[U_X U_Xᵀ Δᵀ Δ]. THEORY.md §2 writes the factor as (1 − r/d) with
    U_X ∈ R^{d×r}, which reads as d = d_in; the two agree only for square Δ. A Monte-Carlo average
    over Haar U confirms d_out and rules out d_in when they differ.
    """
    delta = _matrix("delta", delta)
    d_out, d_in = delta.shape
    r = _rank(r, d_in, d_out)
    U_X = _input_basis(U_X, d_in, r)
    s_x2 = _positive_scalar("s_x2", s_x2)
    proj = U_X @ U_X.T  # (d_in, d_in) projector onto the input subspace
    return (1.0 - r / d_out) * s_x2 * float(np.trace(proj @ delta.T @ delta))


def loss_a_frozen_rank_r_input(delta, U_X, s_x2, noise_var, r) -> float:
    """L(Q, B*) = d_out s² for Σ = s_x² U_X U_Xᵀ of rank k ≤ r and almost every frozen Q.

    Q U_X (r × k) has full column rank for almost every Q, so some B solves B Q U_X = Δ U_X and the
    fit on the input subspace is exact: only the noise floor remains. Arguments as in
    ``rank_r_input_gap``; they are validated so that the claim applies.
    """
    delta = _matrix("delta", delta)
    d_out, d_in = delta.shape
    r = _rank(r, d_in, d_out)
    _input_basis(U_X, d_in, r)
    _positive_scalar("s_x2", s_x2)
    return d_out * _noise_var(noise_var)


# ----------------------------------------------------------------------------- frozen factors
def haar_orthonormal_rows(r, d, rng) -> np.ndarray:
    """A Haar-distributed (r, d) matrix with orthonormal rows (uniform on the Stiefel manifold).

    QR of a (d, r) standard Gaussian with the signs of R's diagonal moved into Q (Mezzadri 2007),
    transposed. ``rng``: a ``numpy.random.Generator``, an integer seed, or ``None``.
    """
    d = check_int("d", d, 1)
    r = check_int("r", r, 1, d)
    return _haar_columns(d, r, _generator(rng)).T


def haar_orthonormal_columns(d, r, rng) -> np.ndarray:
    """A Haar-distributed (d, r) matrix with orthonormal columns (see ``haar_orthonormal_rows``)."""
    d = check_int("d", d, 1)
    r = check_int("r", r, 1, d)
    return _haar_columns(d, r, _generator(rng))


def paper_frozen_a(d_out, d_in, r, rng) -> np.ndarray:
    """The frozen A of Zhu et al.'s code: first r right-singular vectors of a U(−0.5, 0.5) matrix.

    The matrix has W's shape (d_out, d_in); the result is (r, d_in) with orthonormal rows (close to,
    but not exactly, Haar).
    """
    d_out = check_int("d_out", d_out, 1)
    d_in = check_int("d_in", d_in, 1)
    r = check_int("r", r, 1, min(d_in, d_out))
    gen = _generator(rng)
    w = gen.uniform(-0.5, 0.5, size=(d_out, d_in))
    _, _, vt = np.linalg.svd(w, full_matrices=False)  # vt: (min(d_out, d_in), d_in)
    return vt[:r].copy()


# ----------------------------------------------------------------------------------- internals
def _optimal_b(Q: np.ndarray, delta: np.ndarray, cov: np.ndarray) -> np.ndarray:
    gram = Q @ cov @ Q.T  # (r, r) = Q Σ Qᵀ
    rhs = Q @ cov @ delta.T  # (r, d_out) = Q Σ Δᵀ
    try:
        bt = scipy.linalg.solve(gram, rhs, assume_a="pos", check_finite=False)
    except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):
        raise InputError(
            "cov must be positive definite on the row space of Q (Q cov Qᵀ invertible); "
            "Q cov Qᵀ is singular for the given Q and cov"
        ) from None
    return bt.T  # (d_out, r)


def _haar_columns(d: int, r: int, gen: np.random.Generator) -> np.ndarray:
    g = gen.standard_normal((d, r))
    q, rr = np.linalg.qr(g)  # q: (d, r), rr: (r, r)
    signs = np.sign(np.diag(rr))
    signs[signs == 0] = 1.0
    return q * signs  # scale column j by sign(R_jj): makes the law invariant (Haar)


def _generator(rng) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or (isinstance(rng, Integral) and not isinstance(rng, bool) and rng >= 0):
        return np.random.default_rng(rng)
    raise InputError(f"rng must be a numpy.random.Generator, a non-negative integer seed or None, got {rng!r}")


def _matrix(name: str, value) -> np.ndarray:
    if np.iscomplexobj(value):
        raise InputError(f"{name} must be a real 2-D array, got a complex array")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a real 2-D array of numbers, got {value!r}") from None
    if arr.ndim != 2 or 0 in arr.shape:
        raise InputError(f"{name} must be a non-empty 2-D array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise InputError(f"{name} must have finite entries only")
    return arr


def _check_shape(name: str, arr: np.ndarray, shape: tuple[int, int]) -> None:
    if arr.shape != shape:
        raise InputError(f"{name} must have shape {shape}, got {arr.shape}")


def _check_rank_dim(name: str, r: int, d_in: int, d_out: int, *, what: str) -> None:
    high = min(d_in, d_out)
    if not 1 <= r <= high:
        raise InputError(f"{name} must have a {what} (the rank r) in [1, {high}] = [1, min(d_in, d_out)], got {r}")


def _rank(r, d_in: int, d_out: int) -> int:
    return check_int("r", r, 1, min(d_in, d_out))


def _cov(value, d_in: int) -> np.ndarray:
    cov = _matrix("cov", value)
    _check_shape("cov", cov, (d_in, d_in))
    scale = max(1.0, float(np.max(np.abs(cov))))
    if np.max(np.abs(cov - cov.T)) > SYM_TOL * scale:
        raise InputError("cov must be symmetric (cov == cov.T)")
    cov = 0.5 * (cov + cov.T)
    low = float(np.linalg.eigvalsh(cov)[0])
    if low < -SYM_TOL * scale * d_in:
        raise InputError(f"cov must be positive semi-definite, its smallest eigenvalue is {low:.3g}")
    return cov


def _noise_var(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (Real, np.floating, np.integer)):
        raise InputError(f"noise_var must be a finite number >= 0, got {value!r}")
    value = float(value)
    if not np.isfinite(value) or value < 0:
        raise InputError(f"noise_var must be a finite number >= 0, got {value!r}")
    return value


def _positive_scalar(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (Real, np.floating, np.integer)):
        raise InputError(f"{name} must be a finite number > 0, got {value!r}")
    value = float(value)
    if not np.isfinite(value) or value <= 0:
        raise InputError(f"{name} must be a finite number > 0, got {value!r}")
    return value


def _orthonormal_rows(name: str, value, d_in: int, d_out: int) -> np.ndarray:
    Q = _matrix(name, value)
    r = Q.shape[0]
    _check_rank_dim(name, r, d_in, d_out, what="number of rows")
    _check_shape(name, Q, (r, d_in))
    err = float(np.max(np.abs(Q @ Q.T - np.eye(r))))
    if err > ORTHO_TOL:
        raise InputError(f"{name} must have orthonormal rows ({name} {name}ᵀ = I), max deviation {err:.3g}")
    return Q


def _orthonormal_columns(name: str, value, d_out: int, d_in: int) -> np.ndarray:
    U = _matrix(name, value)
    r = U.shape[1]
    _check_rank_dim(name, r, d_in, d_out, what="number of columns")
    _check_shape(name, U, (d_out, r))
    err = float(np.max(np.abs(U.T @ U - np.eye(r))))
    if err > ORTHO_TOL:
        raise InputError(f"{name} must have orthonormal columns ({name}ᵀ {name} = I), max deviation {err:.3g}")
    return U


def _input_basis(value, d_in: int, r: int) -> np.ndarray:
    U_X = _matrix("U_X", value)
    k = U_X.shape[1]
    if U_X.shape[0] != d_in:
        raise InputError(f"U_X must have d_in = {d_in} rows (the input dimension of delta), got {U_X.shape[0]}")
    if not 1 <= k <= r:
        raise InputError(f"U_X must have between 1 and r = {r} columns (input rank <= adapter rank), got {k}")
    err = float(np.max(np.abs(U_X.T @ U_X - np.eye(k))))
    if err > ORTHO_TOL:
        raise InputError(f"U_X must have orthonormal columns (U_Xᵀ U_X = I), max deviation {err:.3g}")
    return U_X
