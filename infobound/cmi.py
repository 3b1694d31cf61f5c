"""Supersample (conditional mutual information) bounds estimated from many runs (THEORY.md §5).

numpy/scipy only. Every bound here is an *estimate of an expectation bound*: it bounds the expected
generalisation gap over the supersample, the selector and the training randomness, and it is
estimated by plug-in mutual information from a finite number of runs. It is not a certificate.

Setup (Steinke & Zakynthinou 2020). A supersample Z̃ holds n pairs (Z̃_{i,0}, Z̃_{i,1}); a selector
U ∈ {0,1}^n, uniform and independent of Z̃, picks the training point Z̃_{i,U_i} of each pair; the
other point, Z̃_{i,1−U_i}, is that pair's test point. Per run and pair: the loss pair
L_i = (ℓ(W, Z̃_{i,0}), ℓ(W, Z̃_{i,1})) and the loss difference ΔL_i = ℓ(W, Z̃_{i,1}) − ℓ(W, Z̃_{i,0}).

Input arrays. ``losses`` has shape (k1, k2, n, 2): supersample j, mask (training run) m, pair i,
slot s ∈ {0, 1}, the loss of point Z̃_{i,s} under the weights trained with mask m. ``masks`` has shape
(k1, k2, n) with U_i ∈ {0, 1}. ``k2 >= 2`` masks per supersample are needed to estimate anything.

Plug-in estimators (natural logarithms, so nats). For supersample j and pair i, the k2 runs give k2
samples of (X, U_i) with X = ΔL_i or X = L_i; Î^{Z̃_j}(X; U_i) is the mutual information of their
empirical joint distribution. It is biased upward by about (|X| − 1)(|U| − 1) / (2 k2) nats
(|U| = 2; |ΔL| = 3 and |L| = 4 for a 0-1 loss). ``correction=True`` subtracts the Miller–Madow
estimate of that bias per pair, computed from the cells actually observed, (m_XU − m_X − m_U + 1) /
(2 k2), and clips at 0; it is a heuristic, not a guarantee.

Bounds (losses in [0, 1]; Ê is the mean over all runs):

- ``ld_cmi_bound`` (Wang & Mao 2023, loss-difference CMI): |E gen| ≤ (1/n) Σ_i E_Z̃ sqrt(2 I^{Z̃}(ΔL_i;
  U_i)); estimated as the mean over pairs of the mean over supersamples of sqrt(2 Î). 0-1 loss only.
- ``ekl_cmi_bound`` (Hellström & Durisi 2022, binary-kl e-CMI): kl(E L_S ‖ (E L_S + E L_μ)/2) ≤ R,
  R = (1/n) Σ_i I(L_i; U_i | Z̃), estimated by the mean over supersamples and pairs of Î(L_i; U_i).
  Inverting, E L_μ ≤ 2 kl⁻¹(E L_S, R) − E L_S; the function returns the bound on E L_μ − E L_S.
- ``fast_rate_cmi_bound`` (Wang & Mao 2023): for C2 ∈ (0, ln2/2) and C1 with
  e^{2 C2} + e^{−2 C2 (C1+1)} ≤ 2: E L_μ − E L_S ≤ C1 E L_S + (1/(C2 n)) Σ_i I(L_i⁺; U_i). The
  smallest admissible C1 for a given C2 is C1 = −ln(2 − e^{2 C2}) / (2 C2) − 1, and since E L_S ≥ 0
  a smaller C1 is always better, so the minimum is taken over a grid of C2 only. Here L_i⁺ is a
  single loss of the pair. By default the information term uses the whole loss pair, Î(L_i; U_i)
  averaged over supersamples: L_i⁺ is a function of L_i and U_i ⊥ Z̃, so I(L_i⁺; U_i) ≤ I(L_i⁺; U_i | Z̃)
  ≤ I(L_i; U_i | Z̃), and the estimate is of a valid, possibly looser, bound. ``slot=0`` or ``slot=1``
  uses the loss of that fixed point of each pair instead (still conditioned on Z̃). Optimising the
  constants needs no union bound: the bound holds for every admissible (C1, C2) at once.
- ``interpolation_estimate`` (Wang & Mao 2023; 0-1 loss, zero training error): E L_μ =
  (1/(n ln 2)) Σ_i I(ΔL_i; U_i) with I in nats, i.e. the mean over pairs of I in bits. Derivation:
  the trained point has loss 0, so ΔL_i = +T_i when U_i = 0 and −T_i when U_i = 1, T_i ∈ {0,1} the
  test point's loss. ΔL_i ≠ 0 reveals U_i; ΔL_i = 0 leaves U_i uniform when, as exchangeability of
  the two points of a pair guarantees without conditioning on Z̃, P[T_i = 1 | U_i = 0] =
  P[T_i = 1 | U_i = 1]. Hence I(ΔL_i; U_i) = ln 2 · P[ΔL_i ≠ 0] = ln 2 · E T_i nats, and dividing by
  ln 2 (nats → bits) gives E T_i. The identity is for the *unconditional* I(ΔL_i; U_i), so by default
  the plug-in pools the k1 · k2 runs of each pair; ``conditional=True`` averages the per-supersample
  Î^{Z̃} instead, which estimates an upper bound (conditioning on Z̃ cannot decrease this MI).
- ``cmi_summary`` gathers the measured errors and all of the above.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import NamedTuple

import numpy as np

from .certificates import kl_inverse_upper
from .errors import InputError

LN2 = math.log(2.0)
_HALF_LN2 = LN2 / 2.0
FAST_RATE_C2_GRID = _HALF_LN2 * np.concatenate(
    [np.geomspace(1e-6, 0.5, 120, endpoint=False), 1.0 - np.geomspace(0.5, 1e-12, 120)])
"""Default grid of C2 values for ``fast_rate_cmi_bound``: 240 values in (0, ln2/2), dense at both ends."""
ESTIMATE_NOTE = ("estimates of expectation bounds (over the supersample, the selector and training "
                 "randomness) from plug-in mutual information over k2 masks per supersample; not "
                 "high-probability certificates")


# ----------------------------------------------------------------------------------------------
# input checks


def _as_array(name: str, value) -> np.ndarray:
    if value is None or isinstance(value, (bool, np.bool_, str, bytes, int, float)):
        raise InputError(f"{name} must be an array of numbers, got {value!r}")
    try:
        arr = np.asarray(value)
    except ValueError as exc:  # ragged nested lists
        raise InputError(f"{name} must be a rectangular array of numbers ({exc})") from None
    return arr


def _check_inputs(losses, masks, binary: bool):
    """Validate and return (losses float64 (k1,k2,n,2), masks int8 (k1,k2,n))."""
    lo = _as_array("losses", losses)
    mk = _as_array("masks", masks)
    if lo.dtype.kind not in "iuf":
        raise InputError(f"losses must hold real numbers in [0, 1], got an array of dtype {lo.dtype}")
    if mk.dtype.kind not in "biuf":
        raise InputError(f"masks must hold 0 or 1, got an array of dtype {mk.dtype}")
    if lo.ndim != 4 or lo.shape[-1] != 2:
        raise InputError(f"losses must have shape (k1, k2, n, 2), got shape {lo.shape}")
    if mk.shape != lo.shape[:3]:
        raise InputError(
            f"masks must have shape (k1, k2, n) = {lo.shape[:3]} to match losses, got shape {mk.shape}")
    k1, k2, n = mk.shape
    if k1 < 1 or n < 1:
        raise InputError(f"losses must hold at least one supersample and one pair, got shape {lo.shape}")
    if k2 < 2:
        raise InputError(f"k2 (masks per supersample, axis 1 of losses and masks) must be >= 2, got {k2}")
    lo = lo.astype(np.float64)
    if not np.all(np.isfinite(lo)):
        raise InputError("losses must be finite, got NaN or inf")
    if binary:
        if not np.all((lo == 0.0) | (lo == 1.0)):
            bad = float(lo[(lo != 0.0) & (lo != 1.0)].flat[0])
            raise InputError(f"losses must be 0-1 losses (values 0 or 1) for this estimator, got {bad!r}")
    elif np.any((lo < 0.0) | (lo > 1.0)):
        bad = float(lo[(lo < 0.0) | (lo > 1.0)].flat[0])
        raise InputError(f"losses must lie in [0, 1], got {bad!r}")
    mkf = mk.astype(np.float64)
    if not np.all(np.isfinite(mkf)):
        raise InputError("masks must be 0 or 1, got NaN or inf")
    if not np.all((mkf == 0.0) | (mkf == 1.0)):
        bad = float(mkf[(mkf != 0.0) & (mkf != 1.0)].flat[0])
        raise InputError(f"masks must be 0 or 1, got {bad!r}")
    return lo, mkf.astype(np.int8)


# ----------------------------------------------------------------------------------------------
# plug-in mutual information


def _codes(values: np.ndarray, pairs: bool) -> tuple[np.ndarray, int]:
    """Integer codes 0..m−1 for the distinct values of ``values`` (of its last-axis rows if ``pairs``)."""
    if pairs:
        _, inv = np.unique(values.reshape(-1, values.shape[-1]), axis=0, return_inverse=True)
        return inv.reshape(values.shape[:-1]), int(inv.max()) + 1
    _, inv = np.unique(values.ravel(), return_inverse=True)
    return inv.reshape(values.shape), int(inv.max()) + 1


def _check_flag(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise InputError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _batched_mi(x_codes: np.ndarray, nx: int, u: np.ndarray, correction: bool) -> np.ndarray:
    """Plug-in MI in nats between x and u along axis 1; x_codes, u shape (k1, K, n) → (k1, n)."""
    k1, K, n = x_codes.shape
    joint = x_codes.astype(np.int64) * 2 + u.astype(np.int64)
    cell = (np.arange(k1)[:, None, None] * n + np.arange(n)[None, None, :]) * (2 * nx) + joint
    counts = np.bincount(cell.ravel(), minlength=k1 * n * 2 * nx).reshape(k1, n, nx, 2).astype(np.float64)
    cx = counts.sum(axis=3, keepdims=True)
    cu = counts.sum(axis=2, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(counts > 0, counts / K * np.log(counts * K / (cx * cu)), 0.0)
    mi = np.maximum(terms.sum(axis=(2, 3)), 0.0)
    if correction:
        m_xu = (counts > 0).sum(axis=(2, 3))
        m_x = (cx[..., 0] > 0).sum(axis=2)
        m_u = (cu[:, :, 0, :] > 0).sum(axis=2)
        mi = np.maximum(mi - (m_xu - m_x - m_u + 1) / (2.0 * K), 0.0)
    return mi


def plugin_mutual_information(x, y) -> float:
    """Plug-in mutual information (nats) of two equally long discrete samples (numbers or labels)."""
    xa, ya = _as_array("x", x), _as_array("y", y)
    if xa.ndim != 1 or ya.ndim != 1 or len(xa) != len(ya) or len(xa) == 0:
        raise InputError(
            f"x and y must be non-empty 1-D samples of equal length, got shapes {xa.shape}, {ya.shape}")
    for name, arr in (("x", xa), ("y", ya)):
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise InputError(f"{name} must not hold NaN or inf")
        if arr.dtype.kind == "O":
            raise InputError(f"{name} must hold numbers or strings, got objects")
    _, xc = np.unique(xa, return_inverse=True)
    _, yc = np.unique(ya, return_inverse=True)
    nx, ny, N = int(xc.max()) + 1, int(yc.max()) + 1, len(xa)
    counts = np.bincount(xc * ny + yc, minlength=nx * ny).reshape(nx, ny).astype(np.float64)
    cx, cy = counts.sum(axis=1, keepdims=True), counts.sum(axis=0, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(counts > 0, counts / N * np.log(counts * N / (cx * cy)), 0.0)
    return max(float(terms.sum()), 0.0)


def mi_delta_loss(losses, masks, correction: bool = False) -> np.ndarray:
    """Î^{Z̃_j}(ΔL_i; U_i) in nats, shape (k1, n): per supersample and pair, over the k2 masks. 0-1 loss."""
    correction = _check_flag("correction", correction)
    lo, mk = _check_inputs(losses, masks, binary=True)
    delta = (lo[..., 1] - lo[..., 0]).astype(np.int64) + 1  # codes 0, 1, 2 for −1, 0, +1
    return _batched_mi(delta, 3, mk, correction)


def mi_loss_pair(losses, masks, correction: bool = False, slot=None) -> np.ndarray:
    """Î^{Z̃_j}(L_i; U_i) in nats, shape (k1, n), for the loss pair (or one slot's loss). Losses in [0, 1]."""
    correction = _check_flag("correction", correction)
    lo, mk = _check_inputs(losses, masks, binary=False)
    return _mi_pair(lo, mk, correction, _check_slot(slot))


def _check_slot(slot):
    if slot is None:
        return None
    if isinstance(slot, (bool, np.bool_)) or slot not in (0, 1):
        raise InputError(f"slot must be None (the loss pair), 0 or 1, got {slot!r}")
    return int(slot)


def _mi_pair(lo: np.ndarray, mk: np.ndarray, correction: bool, slot) -> np.ndarray:
    values = lo if slot is None else lo[..., slot]
    codes, nx = _codes(values, pairs=slot is None)
    return _batched_mi(codes, nx, mk, correction)


# ----------------------------------------------------------------------------------------------
# bounds


def _errors(lo: np.ndarray, mk: np.ndarray) -> tuple[float, float]:
    """Mean training loss (loss at slot U) and mean test loss (slot 1 − U) over all runs and pairs."""
    trained = np.where(mk == 1, lo[..., 1], lo[..., 0])
    tested = np.where(mk == 1, lo[..., 0], lo[..., 1])
    return float(trained.mean()), float(tested.mean())


def ld_cmi_bound(losses, masks, correction: bool = False) -> float:
    """Loss-difference CMI (Wang & Mao 2023): estimate of (1/n) Σ_i E_Z̃ sqrt(2 I^{Z̃}(ΔL_i; U_i)).

    Bounds |E L_μ − E L_S|. 0-1 losses.
    """
    correction = _check_flag("correction", correction)
    mi = mi_delta_loss(losses, masks, correction)
    return float(np.sqrt(2.0 * mi).mean(axis=0).mean())


def _ekl_from(train: float, rate: float) -> float:
    return 2.0 * (float(kl_inverse_upper(train, rate)) - train)


def ekl_cmi_bound(losses, masks, correction: bool = False) -> float:
    """Binary-kl e-CMI (Hellström & Durisi 2022): bound on E L_μ − E L_S.

    Solves kl(Ê L_S ‖ (Ê L_S + E L_μ)/2) ≤ R with R the mean over supersamples and pairs of Î(L_i; U_i):
    E L_μ − E L_S ≤ 2 (kl⁻¹(Ê L_S, R) − Ê L_S). Losses in [0, 1].
    """
    correction = _check_flag("correction", correction)
    lo, mk = _check_inputs(losses, masks, binary=False)
    train, _ = _errors(lo, mk)
    rate = float(_mi_pair(lo, mk, correction, None).mean())
    return _ekl_from(train, rate)


def fast_rate_c1(c2):
    """The smallest C1 with e^{2 C2} + e^{−2 C2 (C1+1)} ≤ 2 for C2 ∈ (0, ln2/2).

    Solving the constraint with equality: C1 = −ln(2 − e^{2 C2}) / (2 C2) − 1 (→ 0 as C2 → 0).
    """
    c2 = np.asarray(c2, dtype=np.float64)
    if not np.all((c2 > 0) & (c2 < _HALF_LN2)):
        raise InputError(f"C2 must lie in (0, ln2/2) = (0, {_HALF_LN2:.6f}), got {c2!r}")
    c1 = -np.log1p(-np.expm1(2.0 * c2)) / (2.0 * c2) - 1.0
    return np.maximum(c1, 0.0)


class FastRateBound(NamedTuple):
    """Result of ``fast_rate_cmi_bound``: the bound on E L_μ − E L_S and the constants attaining it."""

    bound: float
    C1: float
    C2: float


def _fast_rate_from(train: float, rate: float, grid: np.ndarray) -> FastRateBound:
    c1 = fast_rate_c1(grid)
    values = c1 * train + rate / grid
    best = int(np.argmin(values))
    return FastRateBound(float(values[best]), float(c1[best]), float(grid[best]))


def fast_rate_cmi_bound(losses, masks, grid=None, slot=None, correction: bool = False) -> FastRateBound:
    """Fast-rate CMI (Wang & Mao 2023): min over C2 of C1(C2) Ê L_S + R / C2; bound on E L_μ − E L_S.

    R = (1/n) Σ_i Î(L_i⁺; U_i) averaged over supersamples, with L_i⁺ the loss pair (``slot=None``, an
    upper bound by data processing) or the loss of slot 0 or 1. ``grid``: C2 values in (0, ln2/2);
    default ``FAST_RATE_C2_GRID``. Losses in [0, 1].
    """
    correction = _check_flag("correction", correction)
    lo, mk = _check_inputs(losses, masks, binary=False)
    slot = _check_slot(slot)
    if grid is None:
        c2 = FAST_RATE_C2_GRID
    else:
        if isinstance(grid, (bool, np.bool_, str, bytes)):
            raise InputError(f"grid must be a 1-D array of C2 values in (0, ln2/2), got {grid!r}")
        c2 = np.atleast_1d(np.asarray(grid))
        if c2.dtype.kind not in "iuf" or c2.ndim != 1 or c2.size == 0:
            raise InputError(f"grid must be a non-empty 1-D array of C2 values in (0, ln2/2), got {grid!r}")
        c2 = c2.astype(np.float64)
        if not np.all(np.isfinite(c2) & (c2 > 0) & (c2 < _HALF_LN2)):
            raise InputError(f"grid values must lie in (0, ln2/2) = (0, {_HALF_LN2:.6f}), got {grid!r}")
    train, _ = _errors(lo, mk)
    rate = float(_mi_pair(lo, mk, correction, slot).mean())
    return _fast_rate_from(train, rate, c2)


def interpolation_estimate(losses, masks, conditional: bool = False, correction: bool = False) -> float:
    """E L_μ = (1/(n ln 2)) Σ_i I(ΔL_i; U_i) for a 0-1 loss with zero training error (Wang & Mao 2023).

    By default I(ΔL_i; U_i) is the plug-in over all k1 · k2 runs of pair i (the unconditional MI of
    the identity); ``conditional=True`` averages the per-supersample plug-in (an upper estimate).
    Raises ``InputError`` if any run has a training error.
    """
    correction = _check_flag("correction", correction)
    conditional = _check_flag("conditional", conditional)
    lo, mk = _check_inputs(losses, masks, binary=True)
    return _interpolation_from(lo, mk, conditional, correction)


def _interpolation_from(lo, mk, conditional, correction) -> float:
    train, _ = _errors(lo, mk)
    if train != 0.0:
        raise InputError(f"losses must have zero training error for the interpolation estimate, got mean "
                         f"training error {train!r}")
    delta = (lo[..., 1] - lo[..., 0]).astype(np.int64) + 1
    if conditional:
        mi = _batched_mi(delta, 3, mk, correction).mean(axis=0)
    else:
        k1, k2, n = mk.shape
        mi = _batched_mi(delta.reshape(1, k1 * k2, n), 3, mk.reshape(1, k1 * k2, n), correction)[0]
    return float(mi.mean() / LN2)


# ----------------------------------------------------------------------------------------------
# summary


@dataclass(frozen=True)
class CMISummary:
    """Measured errors and the supersample bounds of one set of runs (see the module docstring)."""

    k1: int
    k2: int
    n: int
    train_error: float
    """Mean loss of the trained points over all runs and pairs (Ê L_S)."""
    test_error: float
    """Mean loss of the held-out points (Ê L_μ)."""
    gap: float
    """test_error − train_error."""
    ld_cmi: float | None
    """Bound on |E gen| (None unless the losses are 0-1)."""
    ekl_cmi: float
    """Bound on E L_μ − E L_S."""
    fast_rate_cmi: float
    """Bound on E L_μ − E L_S (loss-pair information)."""
    fast_rate_C1: float
    fast_rate_C2: float
    interpolation: float | None
    """Estimate of E L_μ when the training error is zero and the losses are 0-1, else None."""
    mi_delta_loss: float | None
    """Mean over supersamples and pairs of Î(ΔL_i; U_i), nats (None unless 0-1 losses)."""
    mi_loss_pair: float
    """Mean over supersamples and pairs of Î(L_i; U_i), nats."""
    bias_delta_loss: float | None
    """Plug-in bias estimate (|ΔL| − 1)(2 − 1) / (2 k2) nats per pair, |ΔL| = 3 for 0-1 loss."""
    bias_loss_pair: float
    """(|L| − 1)(2 − 1) / (2 k2) nats per pair; |L| = 4 for 0-1 loss, else the distinct pairs seen."""
    correction: bool
    """Whether the Miller–Madow correction was subtracted from each Î before the bounds."""
    note: str = ESTIMATE_NOTE

    def to_dict(self) -> dict:
        """Plain Python values, ready for JSON."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def cmi_summary(losses, masks, correction: bool = False) -> CMISummary:
    """All supersample estimates for losses (k1, k2, n, 2) in [0, 1] and masks (k1, k2, n)."""
    correction = _check_flag("correction", correction)
    lo, mk = _check_inputs(losses, masks, binary=False)
    k1, k2, n = mk.shape
    binary = bool(np.all((lo == 0.0) | (lo == 1.0)))
    train, test = _errors(lo, mk)
    pair_mi = _mi_pair(lo, mk, correction, None)
    rate = float(pair_mi.mean())
    fast = _fast_rate_from(train, rate, FAST_RATE_C2_GRID)
    if binary:
        delta = (lo[..., 1] - lo[..., 0]).astype(np.int64) + 1
        delta_mi = _batched_mi(delta, 3, mk, correction)
        ld = float(np.sqrt(2.0 * delta_mi).mean(axis=0).mean())
        mi_delta = float(delta_mi.mean())
        bias_delta = (3 - 1) * (2 - 1) / (2.0 * k2)
        pair_alphabet = 4
        interp = _interpolation_from(lo, mk, False, correction) if train == 0.0 else None
    else:
        ld = mi_delta = bias_delta = interp = None
        pair_alphabet = _codes(lo, pairs=True)[1]
    return CMISummary(
        k1=k1, k2=k2, n=n, train_error=train, test_error=test, gap=test - train,
        ld_cmi=ld, ekl_cmi=_ekl_from(train, rate), fast_rate_cmi=fast.bound,
        fast_rate_C1=fast.C1, fast_rate_C2=fast.C2, interpolation=interp,
        mi_delta_loss=mi_delta, mi_loss_pair=rate, bias_delta_loss=bias_delta,
        bias_loss_pair=(pair_alphabet - 1) * (2 - 1) / (2.0 * k2), correction=bool(correction))
