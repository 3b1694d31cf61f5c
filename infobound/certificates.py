"""Binary-kl inversion and single-run generalisation certificates (THEORY.md §3 and §4). numpy/scipy only.

All information is in nats; a code length of ``bits`` bits costs ``bits · ln 2`` nats. Losses are
fractions in [0, 1]. kl(q‖p) = q ln(q/p) + (1−q) ln((1−q)/(1−p)) is the binary relative entropy.

Two kinds of statement live here; they must not be confused.

*High-probability certificates* (THEORY §4): with probability at least 1 − δ over the draw of the
n i.i.d. training examples, the population error of the trained hypothesis is at most the returned
value. They hold for every hypothesis simultaneously, given a prior (a prefix-free code or a
PAC-Bayes prior P) fixed *before* the data were seen.

- ``occam_kl_bound`` (Occam-kl; Langford 2005): for a prefix-free code c fixed in advance,
  kl(L_S(h) ‖ L_μ(h)) ≤ (|c(h)| ln 2 + ln(1/δ)) / n, so L_μ ≤ kl⁻¹(L_S, that). Loss in [0, 1].
- ``maurer_bound`` (PAC-Bayes-kl; Maurer 2004): for a posterior Q and a prior P fixed in advance,
  kl(E_Q L_S ‖ E_Q L_μ) ≤ (KL(Q‖P) + ln(2√n/δ)) / n (needs n ≥ 8 in Maurer's statement; the form is
  evaluated for any n ≥ 1). A deterministic h with prior 2^−|c(h)| has KL = |c(h)| ln 2.
- ``pinsker_bound``: the Pinsker relaxation of Maurer's bound, E_Q L_S + sqrt((KL + ln(2√n/δ)) / 2n);
  always looser than ``maurer_bound``; reported for comparison with the literature.
- ``catoni_bound`` (Catoni 2007): for a fixed C > 0,
  L_μ ≤ (1 − exp(−C L_S − (KL + ln(1/δ))/n)) / (1 − e^−C). Choosing C on the data is paid by a union
  bound: each of the G grid values is evaluated at δ/G and the smallest result is returned.
- ``binomial_tail_bound`` (0-1 loss, the tightest; Langford 2005): with k training errors out of n,
  L_μ ≤ the largest p with P[Bin(n, p) ≤ k] ≥ δ · 2^−|c(h)|. With ``bits = 0`` this is the one-sided
  Clopper–Pearson upper limit, which is also the held-out test-set bound (``test_set_bound``): m test
  examples never used in training or selection, e errors, L_μ ≤ binomial_tail_bound(e, m, δ). Always
  report it beside a certificate: it is the best any certificate could do.
- ``certificate`` bundles these for one trained hypothesis; its ``best`` pays for choosing the
  smallest of the requested methods after seeing the data by evaluating each at δ / (number of
  methods).

*Expectation bounds* (THEORY §3): ``fast_rate_mi_bound`` (Hellström, Durisi, Guedj & Raginsky 2023):
for a loss in [0, 1], kl(E L_S ‖ E L_μ) ≤ I(W; S) / n, so E L_μ ≤ kl⁻¹(E L_S, I/n). It bounds the
*expected* population loss over the draw of S and of the training randomness, not one run.

Numerics. ``kl_inverse_upper`` and ``binomial_tail_bound`` bisect on the floating-point numbers
themselves until the bracket is two adjacent doubles and return the upper end, so the result is never
below the exact supremum: a point counts as inside while its evaluated kl (log-CDF) is within an
allowance for rounding of the threshold, so the upper end is outside even after that error. The
binomial log-CDF is computed in log space, so codes far longer than 1 000 bits (where δ · 2^−bits
underflows float64) are handled exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import NamedTuple

import numpy as np
from scipy import special

from .errors import InputError
from .validation import check_int, check_real, range_text

LN2 = math.log(2.0)
METHODS = ("occam_kl", "binomial", "maurer", "catoni")
"""Certificate methods ``certificate`` knows."""
DEFAULT_CATONI_GRID = np.geomspace(1e-4, 1e2, 64)
"""Default C grid for ``catoni_bound``: 64 geometric values in [1e-4, 100]; costs ln 64 nats."""
TRAIN_ERROR_TOLERANCE = 1e-9
"""How far ``train_error`` may be from a multiple of 1/n for the binomial method."""

_ONE_MINUS = float(np.nextafter(1.0, 0.0))  # the largest double below 1
_SERIES_LIMIT = 0.1  # |x| below which x − log1p(x) is summed as a series
_SERIES_TERMS = 24
_KL_MARGIN = 64 * np.finfo(np.float64).eps  # relative error allowance of the evaluated kl


# ----------------------------------------------------------------------------------------------
# input checks: types first, then finiteness, then range


def _is_bad_type(value) -> bool:
    return value is None or isinstance(value, (bool, np.bool_, str, bytes))


def _check_real_array(name, value, low=None, high=None, low_open=False, high_open=False):
    """Like ``_check_real`` but also accepts array-likes; returns (float64 array, was_scalar)."""
    if not isinstance(value, (np.ndarray, list, tuple)):
        return np.asarray(check_real(name, value, low, high, open_low=low_open, open_high=high_open)), True
    allowed = range_text("finite real numbers", low, high, low_open, high_open)
    elements = np.ravel(np.asarray(value, dtype=object)) if isinstance(value, (list, tuple)) else ()
    if any(_is_bad_type(v) for v in elements):
        raise InputError(f"{name} must hold {allowed}, got {value!r}")
    arr = np.asarray(value)
    if arr.dtype.kind not in "iuf":
        raise InputError(f"{name} must hold {allowed}, got an array of dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    bad = ~np.isfinite(arr)
    if low is not None:
        bad |= (arr < low) | ((arr == low) if low_open else False)
    if high is not None:
        bad |= (arr > high) | ((arr == high) if high_open else False)
    if np.any(bad):
        raise InputError(f"{name} must hold {allowed}, got {float(arr[bad].flat[0])!r}")
    return arr, arr.ndim == 0


def _check_delta(delta) -> float:
    return check_real("delta", delta, 0.0, 1.0, open_low=True, open_high=True)


def _out(arr: np.ndarray, scalar: bool):
    return float(arr) if scalar else arr


# ----------------------------------------------------------------------------------------------
# binary kl and its inverse


def _x_minus_log1p(x: np.ndarray) -> np.ndarray:
    """x − ln(1 + x) for x ≥ −1, accurate to a few ulps (series near 0, where it cancels)."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    small = np.abs(x) < _SERIES_LIMIT
    xs = x[small]
    acc = np.zeros_like(xs)
    for k in range(_SERIES_TERMS + 1, 1, -1):  # Σ_{k≥2} (−1)^k x^k / k, Horner in x
        acc = acc * xs + (1.0 if k % 2 == 0 else -1.0) / k
    out[small] = acc * xs * xs
    xl = x[~small]
    with np.errstate(divide="ignore"):
        out[~small] = xl - np.log1p(xl)
    return out


def _kl(q: np.ndarray, p: np.ndarray) -> np.ndarray:
    """kl(q‖p) for validated arrays in [0, 1] (broadcast); written as two non-negative terms.

    kl = a + b with a = q ln(q/p) + (p − q) = q·g((p−q)/q) and b = (1−q) ln((1−q)/(1−p)) − (p − q)
    = (1−q)·g((q−p)/(1−q)), g(x) = x − ln(1+x) ≥ 0. Near p = q each term is summed as a series, so a
    tiny kl (1e-12) keeps its relative accuracy instead of cancelling.
    """
    q, p = np.broadcast_arrays(np.asarray(q, dtype=np.float64), np.asarray(p, dtype=np.float64))
    d = p - q
    r = 1.0 - q
    with np.errstate(divide="ignore", invalid="ignore"):
        xa = np.where(q > 0, d / np.where(q > 0, q, 1.0), np.inf)
        xb = np.where(r > 0, -d / np.where(r > 0, r, 1.0), np.inf)
        a_direct = special.xlogy(q, q) - special.xlogy(q, p) + d
        b_direct = special.xlog1py(r, -q) - special.xlog1py(r, -p) - d
        near_a, near_b = np.abs(xa) < _SERIES_LIMIT, np.abs(xb) < _SERIES_LIMIT
        a = np.where(near_a, q * _x_minus_log1p(np.where(near_a, xa, 0.0)), a_direct)
        b = np.where(near_b, r * _x_minus_log1p(np.where(near_b, xb, 0.0)), b_direct)
    out = a + b
    out = np.where(q == p, 0.0, out)
    return np.maximum(out, 0.0)


def binary_kl(q, p):
    """kl(q‖p) in nats, with 0·ln 0 = 0; +inf where p ∈ {0, 1} and q ≠ p. Broadcasts over arrays."""
    q, q_scalar = _check_real_array("q", q, 0.0, 1.0)
    p, p_scalar = _check_real_array("p", p, 0.0, 1.0)
    return _out(_kl(q, p), q_scalar and p_scalar)


def _bisect_floats(lo: np.ndarray, hi: np.ndarray, inside) -> np.ndarray:
    """Bisect on the doubles in [lo, hi] (non-negative) until hi is the successor of lo.

    ``inside(x)`` is True on [lo, x*] and False beyond (``inside(lo)`` True, ``inside(hi)`` False).
    Returns hi: the smallest double found outside, never below x* up to the accuracy of ``inside``.
    """
    lo_i = np.ascontiguousarray(lo, dtype=np.float64).view(np.int64).copy()
    hi_i = np.ascontiguousarray(hi, dtype=np.float64).view(np.int64).copy()
    for _ in range(70):  # the doubles in [0, 1] number < 2^62
        active = hi_i - lo_i > 1
        if not np.any(active):
            break
        mid_i = lo_i + (hi_i - lo_i) // 2
        ok = inside(mid_i.view(np.float64))
        lo_i = np.where(active & ok, mid_i, lo_i)
        hi_i = np.where(active & ~ok, mid_i, hi_i)
    return hi_i.view(np.float64)


_NEAR_ULPS = (2**6, 2**20)
"""Half-widths, in doubles, of the brackets ``_bisect_near`` tries around an estimate before the full range."""


def _bisect_near(lo: np.ndarray, hi: np.ndarray, estimate: np.ndarray, inside) -> np.ndarray:
    """``_bisect_floats`` on [lo, hi] that evaluates ``inside`` only inside a short bracket [a, b]
    around ``estimate`` (NaN for none) which ``inside`` confirms (``inside(a)``, not ``inside(b)``).

    It walks the same midpoints as the full bisection; a midpoint at or below a counts as inside and
    one at or above b as outside without evaluating ``inside``, so the result is the full
    bisection's double wherever ``inside`` is monotone outside (a, b), i.e. wherever its rounding
    noise stays within the bracket (``_NEAR_ULPS``: 2^6 doubles each side, then 2^20; an element
    whose brackets both fail is bisected in full). The steps decided by position are taken first, so
    each evaluation serves every element: ~9 evaluations instead of ~64."""
    lo_i = np.ascontiguousarray(lo, dtype=np.float64).view(np.int64).copy()
    hi_i = np.ascontiguousarray(hi, dtype=np.float64).view(np.int64).copy()
    est = np.asarray(estimate, dtype=np.float64)
    known = np.isfinite(est)
    est_i = np.clip(np.where(known, np.maximum(est, 0.0), 0.0).view(np.int64), lo_i, hi_i)
    left, right = lo_i.copy(), hi_i.copy()  # the confirmed bracket: full range unless confirmed
    todo = known.copy()
    for width in _NEAR_ULPS:
        if not np.any(todo):
            break
        a = np.where(todo, np.maximum(est_i - width, lo_i), lo_i)
        b = np.where(todo, np.minimum(est_i + width, hi_i), hi_i)
        # the ends of [lo, hi] need no check: inside(lo) and not inside(hi) by contract
        ok = todo & ((a == lo_i) | inside(a.view(np.float64))) & ((b == hi_i) | ~inside(b.view(np.float64)))
        left, right = np.where(ok, a, left), np.where(ok, b, right)
        todo &= ~ok
    for _ in range(70):
        for _ in range(70):  # the steps decided by position, until every midpoint needs ``inside``
            active = hi_i - lo_i > 1
            mid_i = lo_i + (hi_i - lo_i) // 2
            known = active & ((mid_i <= left) | (mid_i >= right))
            if not np.any(known):
                break
            lo_i = np.where(known & (mid_i <= left), mid_i, lo_i)
            hi_i = np.where(known & (mid_i >= right), mid_i, hi_i)
        if not np.any(active):
            break
        ok = inside(mid_i.view(np.float64))  # one evaluation serves every element's next step
        lo_i = np.where(active & ok, mid_i, lo_i)
        hi_i = np.where(active & ~ok, mid_i, hi_i)
    return hi_i.view(np.float64)


def _log_odds_near_one(log_complement: np.ndarray) -> np.ndarray:
    """ln(p / (1 − p)) of p = 1 − e^u, given u = ln(1 − p) < 0 (exact where p rounds to 1)."""
    return np.log(-np.expm1(log_complement)) - log_complement


def _newton_in_bracket(g, lo: np.ndarray, hi: np.ndarray, start: np.ndarray, iterations: int = 60) -> np.ndarray:
    """A root in (lo, hi) ⊂ [0, 1] of the decreasing ``g`` by Newton steps on the log-odds s of p,
    from ``start`` (log-odds), so roots near 0 or 1 take as few steps as any; wherever a step leaves
    the bracket kept from the signs seen the log-odds are bisected. ``g(p)`` returns (value,
    d value / dp). Stops when every step is short (a Newton step of 1e-9 leaves an error of about
    its square), no longer moves p, or the bracket has closed. Only an estimate: it picks the bracket ``_bisect_near``
    checks with the exact predicate."""
    lo, hi, s = (np.array(a, dtype=np.float64) for a in np.broadcast_arrays(lo, hi, start))
    with np.errstate(all="ignore"):
        lo, hi = np.clip(special.logit(lo), -750.0, 750.0), np.clip(special.logit(hi), -750.0, 750.0)
        s = np.clip(np.where(np.isnan(s), 0.0, s), lo, hi)
        p = special.expit(s)
        for _ in range(iterations):
            value, slope = g(p)
            lo = np.where(value > 0, s, lo)
            hi = np.where(value <= 0, s, hi)
            step = s - value / (slope * p * (1.0 - p))
            bad = ~np.isfinite(step) | (step < lo) | (step > hi)  # a step onto an end: converged there
            new = np.where(bad, 0.5 * (lo + hi), step)
            p_new = special.expit(new)
            # (or the bracket is a few doubles of p wide: or crossed, where the signs seen are noise)
            converged = ((~bad & (np.abs(new - s) <= 1e-9)) | (p_new == p)
                         | (special.expit(hi) - special.expit(lo) <= 4.0 * np.spacing(p)))
            s, p = new, p_new
            if np.all(converged):
                break
    return p


def _kl_rough(q: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """kl(q‖p) by its direct formula and its derivative in p (for estimates only; ``_kl`` is exact)."""
    value = special.xlogy(q, q) - special.xlogy(q, p) + special.xlog1py(1.0 - q, -q) - special.xlog1py(1.0 - q, -p)
    return value, (p - q) / (p * (1.0 - p))


def _kl_inverse_estimate(q: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Close to kl⁻¹(q, c) for 0 < q < 1, c > 0: Newton on the direct formula, from the nearer of
    two points above the root (Pinsker's kl ≥ 2(p − q)², and the bound below)."""
    def g(p):
        value, slope = _kl_rough(q, p)
        return c - value, -slope

    pinsker = special.logit(np.minimum(q + np.sqrt(c / 2.0), _ONE_MINUS))
    # kl(q‖p) ≥ −H(q) − (1 − q) ln(1 − p): the p where that equals c is above the root too
    entropy = -special.xlogy(q, q) - special.xlog1py(1.0 - q, -q)
    near_one = _log_odds_near_one(-(c + entropy) / (1.0 - q))
    return _newton_in_bracket(g, q, np.ones_like(q), np.minimum(pinsker, near_one))


def _kl_inverse(q: np.ndarray, c: np.ndarray, near: bool = True) -> np.ndarray:
    """kl⁻¹ elementwise for validated arrays. ``near``: bisect from a checked bracket around an
    estimate (``_bisect_near``); False: over the whole range [q, 1] (``_bisect_floats``)."""
    q, c = np.broadcast_arrays(np.asarray(q, dtype=np.float64), np.asarray(c, dtype=np.float64))
    q, c = q.ravel().copy(), c.ravel().copy()
    out = np.empty_like(q)
    zero_q = q == 0
    one_q = q == 1
    zero_c = (c == 0) & ~zero_q & ~one_q
    # q = 0: kl(0‖p) = −ln(1 − p) ≤ c  ⇔  p ≤ 1 − e^−c; round up one ulp so it is never below.
    out[zero_q] = np.minimum(np.nextafter(-np.expm1(-c[zero_q]), 2.0), 1.0)
    out[zero_q & (c == 0)] = 0.0
    out[one_q] = 1.0
    out[zero_c] = q[zero_c]
    rest = ~(zero_q | one_q | zero_c)
    if np.any(rest):
        qr, cr = q[rest], c[rest]
        saturated = _kl(qr, np.full_like(qr, _ONE_MINUS)) <= cr  # kl(q‖1⁻) ≤ c: everything fits
        res = np.ones_like(qr)
        todo = ~saturated
        if np.any(todo):
            qt, ct = qr[todo], cr[todo]
            # Points whose evaluated kl is within the rounding allowance of c count as inside, so the
            # returned upper end is outside the set even after the evaluation error.
            ceiling = ct * (1.0 + _KL_MARGIN)
            inside = lambda p: _kl(qt, p) <= ceiling  # noqa: E731
            if near:
                res[todo] = _bisect_near(qt, np.ones_like(qt), _kl_inverse_estimate(qt, ceiling), inside)
            else:
                res[todo] = _bisect_floats(qt, np.ones_like(qt), inside)
        out[rest] = res
    return out


SEARCHES = ("bracket", "full")
"""How the bisections on the doubles start: ``bracket`` (a checked bracket around an estimate, the
default) or ``full`` (the whole range, the reference); both return the same doubles."""


def _check_search(search) -> bool:
    if search not in SEARCHES:
        raise InputError(f"search must be one of {', '.join(SEARCHES)}, got {search!r}")
    return search == "bracket"


def kl_inverse_upper(q, c, *, search: str = "bracket"):
    """kl⁻¹(q, c) = sup{p ∈ [q, 1] : kl(q‖p) ≤ c}; broadcasts over arrays.

    kl(q‖·) increases on [q, 1), so the set is an interval [q, p*]. Closed forms: q = 0 gives
    1 − e^−c (rounded up one ulp), q = 1 gives 1, c = 0 gives q. If kl(q‖1⁻) ≤ c (1⁻ the largest double
    below 1) the answer is 1. Otherwise the doubles in [q, 1] are bisected to a bracket of two adjacent
    doubles and its upper end is returned, so the result is never below p*. ``search`` (``SEARCHES``)
    says where the bisection starts; the result is the same.
    """
    near = _check_search(search)
    q, q_scalar = _check_real_array("q", q, 0.0, 1.0)
    c, c_scalar = _check_real_array("c", c, 0.0)
    shape = np.broadcast_shapes(q.shape, c.shape)
    return _out(_kl_inverse(q, c, near=near).reshape(shape), q_scalar and c_scalar)


def kl_inverse_estimate(q, c):
    """An estimate of ``kl_inverse_upper(q, c)`` without its guarantee: Newton on the direct kl formula
    (the closed forms where they apply), usually within a few doubles of it, at a fraction of the
    cost; for screening many candidates whose deciding values then come from ``kl_inverse_upper``."""
    q, q_scalar = _check_real_array("q", q, 0.0, 1.0)
    c, c_scalar = _check_real_array("c", c, 0.0)
    q, c = np.broadcast_arrays(q, c)
    out = np.where(q == 1, 1.0, np.where(c == 0, q, -np.expm1(-c)))  # q = 0: 1 − e^−c
    rest = (q > 0) & (q < 1) & (c > 0)
    if np.any(rest):
        out[rest] = _kl_inverse_estimate(q[rest], c[rest] * (1.0 + _KL_MARGIN))
    return _out(out, q_scalar and c_scalar)


# ----------------------------------------------------------------------------------------------
# PAC-Bayes and Occam certificates


def occam_kl_bound(train_error, n, bits, delta) -> float:
    """Occam-kl: L_μ ≤ kl⁻¹(L_S, (bits · ln 2 + ln(1/δ)) / n), with probability ≥ 1 − δ over S.

    ``bits`` is the length |c(h)| of the hypothesis under a prefix-free code fixed before seeing S.
    """
    q = check_real("train_error", train_error, 0.0, 1.0)
    n = check_int("n", n, 1)
    bits = check_int("bits", bits, 0)
    delta = _check_delta(delta)
    return float(_kl_inverse(np.array(q), np.array((bits * LN2 + math.log(1.0 / delta)) / n))[0])


def maurer_bound(train_error, n, kl_nats, delta) -> float:
    """PAC-Bayes-kl (Maurer 2004): E_Q L_μ ≤ kl⁻¹(E_Q L_S, (KL(Q‖P) + ln(2√n/δ)) / n), prob. ≥ 1 − δ."""
    q = check_real("train_error", train_error, 0.0, 1.0)
    n = check_int("n", n, 1)
    kl_nats = check_real("kl_nats", kl_nats, 0.0)
    delta = _check_delta(delta)
    c = (kl_nats + math.log(2.0 * math.sqrt(n) / delta)) / n
    return float(_kl_inverse(np.array(q), np.array(c))[0])


def pinsker_bound(train_error, n, kl_nats, delta) -> float:
    """Pinsker relaxation of Maurer's bound: L_S + sqrt((KL + ln(2√n/δ)) / (2n)), capped at 1."""
    q = check_real("train_error", train_error, 0.0, 1.0)
    n = check_int("n", n, 1)
    kl_nats = check_real("kl_nats", kl_nats, 0.0)
    delta = _check_delta(delta)
    return min(1.0, q + math.sqrt((kl_nats + math.log(2.0 * math.sqrt(n) / delta)) / (2.0 * n)))


class CatoniBound(NamedTuple):
    """Result of ``catoni_bound``: the bound and the C that attains it (each C paid δ/len(grid))."""

    bound: float
    C: float


def catoni_bound(train_error, n, kl_nats, delta, grid=None) -> CatoniBound:
    """Catoni (2007), minimised over a grid of C with the union bound paid by splitting δ.

    For each C in ``grid``: (1 − exp(−C L_S − (KL + ln(G/δ))/n)) / (1 − e^−C), G = len(grid); the
    smallest value (capped at 1, a trivial bound for a [0, 1] loss) and its C are returned. The result
    holds with probability ≥ 1 − δ for the chosen C. Default grid: ``DEFAULT_CATONI_GRID``.
    """
    q = check_real("train_error", train_error, 0.0, 1.0)
    n = check_int("n", n, 1)
    kl_nats = check_real("kl_nats", kl_nats, 0.0)
    delta = _check_delta(delta)
    if grid is None:
        c_grid = DEFAULT_CATONI_GRID
    else:
        if isinstance(grid, (np.ndarray, list, tuple)) and np.ndim(grid) == 1 and len(grid) == 0:
            raise InputError("grid must hold at least one C > 0, got an empty grid")
        c_grid, _ = _check_real_array("grid", grid, 0.0, low_open=True)
        c_grid = np.atleast_1d(c_grid)
        if c_grid.ndim != 1:
            raise InputError(f"grid must be one-dimensional, got shape {c_grid.shape}")
    log_term = (kl_nats + math.log(len(c_grid) / delta)) / n
    values = -np.expm1(-c_grid * q - log_term) / -np.expm1(-c_grid)
    best = int(np.argmin(values))
    return CatoniBound(min(1.0, float(values[best])), float(c_grid[best]))


# ----------------------------------------------------------------------------------------------
# binomial tail (0-1 loss)


def _log_binom_cdf_many(k: np.ndarray, n: np.ndarray, p: np.ndarray) -> np.ndarray:
    """``_log_binom_cdf`` elementwise over arrays (0 ≤ k < n): one vectorised pass where the CDF is
    representable, the windowed log-sum-exp of the deep lower tail for the rest."""
    k, n, p = (np.asarray(a, dtype=np.float64) for a in np.broadcast_arrays(k, n, p))
    out = np.where(p <= 0.0, 0.0, -np.inf)
    mid = (p > 0.0) & (p < 1.0)
    cdf = np.zeros_like(p)
    cdf[mid] = special.bdtr(k[mid].astype(np.int64), n[mid].astype(np.int64), p[mid])  # integer k, n
    ok = mid & (cdf > 1e-280)
    out[ok] = np.log(cdf[ok])
    deep = np.flatnonzero(mid & ~ok)
    if deep.size:
        kd, nd, pd = k[deep], n[deep], p[deep]
        r = kd * (1.0 - pd) / ((nd - kd + 1) * pd)
        with np.errstate(divide="ignore"):
            width = np.where((r > 0) & (r < 1), np.ceil((80.0 - np.log1p(-np.minimum(r, 0.5))) /
                                                        -np.log(np.where((r > 0) & (r < 1), r, 0.5))) + 1, 0)
        width = np.where(r >= 1, kd, np.minimum(width, kd))  # r ≥ 1: sum every term
        if width.max() > 100_000:  # a very slow geometric fall: the scalar form per element
            out[deep] = [_log_binom_cdf(int(a), int(b), float(c)) for a, b, c in zip(kd, nd, pd)]
            return out
        steps = np.arange(int(width.max()) + 1, dtype=np.float64)
        j = kd[:, None] - steps[None, :]  # (m, W): k, k − 1, ..., masked below k − width
        used = steps[None, :] <= width[:, None]
        j = np.where(used, j, kd[:, None])
        log_pmf = (special.gammaln(nd + 1.0)[:, None] - special.gammaln(j + 1.0) - special.gammaln(nd[:, None] - j + 1.0)
                   + j * np.log(pd)[:, None] + (nd[:, None] - j) * np.log1p(-pd)[:, None])
        out[deep] = special.logsumexp(np.where(used, log_pmf, -np.inf), axis=1)
    return out


def _log_binom_cdf(k: int, n: int, p: float) -> float:
    """ln P[Bin(n, p) ≤ k] for 0 ≤ k < n, also where the probability underflows float64."""
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return -math.inf
    cdf = float(special.bdtr(k, n, p))
    if cdf > 1e-280:
        return math.log(cdf)
    # Deep lower tail: here p > k/(n+1), so the terms P[X = j] fall geometrically as j goes down
    # from k, with ratio at most r = k(1−p) / ((n−k+1)p) < 1. Sum a window that leaves < e^−80.
    r = k * (1.0 - p) / ((n - k + 1) * p)
    if 0.0 < r < 1.0:
        width = math.ceil((80.0 - math.log1p(-r)) / -math.log(r)) + 1
        j_low = max(0, k - width)
    else:
        j_low = 0 if r > 0 else k
    j = np.arange(j_low, k + 1, dtype=np.float64)
    log_pmf = (special.gammaln(n + 1.0) - special.gammaln(j + 1.0) - special.gammaln(n - j + 1.0)
               + j * math.log(p) + (n - j) * math.log1p(-p))
    return float(special.logsumexp(log_pmf))


MAX_BINOMIAL_N = 2**31 - 1


def binomial_tail_bound(k, n, delta, bits=0) -> float:
    """The largest p with P[Bin(n, p) ≤ k] ≥ δ · 2^−bits (0-1 loss; Langford 2005).

    With probability ≥ 1 − δ, a hypothesis with a ``bits``-bit code (fixed before seeing the data)
    and k errors on n examples has population error at most this. Solved in log space,
    ln P[Bin(n, p) ≤ k] = ln δ − bits · ln 2, by bisection on the doubles; the upper end of the final
    bracket is returned. k = n gives 1.
    """
    k = check_int("k", k, 0)
    n = check_int("n", n, 1)
    if n > MAX_BINOMIAL_N:  # scipy's bdtr works in C int: beyond it, NaN and a fallback over every k
        raise InputError(f"n must be at most {MAX_BINOMIAL_N:,} for the binomial tail, got {n:,}; "
                         "use the kl-based bounds (occam_kl) for larger n")
    if k > n:
        raise InputError(f"k must be an integer in [0, n] = [0, {n}], got {k}")
    delta = _check_delta(delta)
    bits = check_int("bits", bits, 0)
    if k == n:
        return 1.0
    return float(_binomial_tails(np.array([k]), n, np.array([delta]), np.array([bits]))[0])


def binomial_tail_bounds(k, n, delta, bits=0, *, search: str = "bracket") -> np.ndarray:
    """``binomial_tail_bound`` for arrays (broadcast) of error counts ``k``, δs and bit counts on
    ``n`` examples, in one vectorised bisection; ``search`` as for ``kl_inverse_upper``."""
    near = _check_search(search)
    n = check_int("n", n, 1, MAX_BINOMIAL_N)
    k, _ = _check_real_array("k", k, 0.0, float(n))
    bits, _ = _check_real_array("bits", bits, 0.0)
    delta, _ = _check_real_array("delta", delta, 0.0, 1.0, low_open=True, high_open=True)
    for name, values in (("k", k), ("bits", bits)):
        if np.any(values != np.round(values)):
            raise InputError(f"{name} must hold integers, got {values[values != np.round(values)][:3]}")
    shape = np.broadcast_shapes(k.shape, delta.shape, bits.shape)
    return _binomial_tails(k, n, delta, bits, near=near).reshape(shape)


def _binomial_tails(k: np.ndarray, n, delta: np.ndarray, bits: np.ndarray, near: bool = True) -> np.ndarray:
    """``binomial_tail_bound`` for validated arrays (k ≤ n ≤ MAX_BINOMIAL_N; n one int or one per
    element): one bisection for all. ``near`` as for ``_kl_inverse``."""
    k, n, delta, bits = (np.asarray(a, dtype=np.float64).ravel() for a in np.broadcast_arrays(k, n, delta, bits))
    out = np.ones_like(k)
    todo = k < n
    if np.any(todo):
        kt, nt = k[todo], n[todo]
        log_target = np.log(delta[todo]) - bits[todo] * LN2
        # allowance for the error of the evaluated log-CDF (log-gamma terms of size ln n! included),
        # so that the returned upper end is outside the set even after that error
        log_factorial = {v: math.lgamma(v + 1.0) for v in np.unique(nt).tolist()}
        margin = 1e-12 * (1.0 + np.abs(log_target)) + 1e-14 * np.array([log_factorial[v] for v in nt.tolist()])
        floor = log_target - margin
        inside = lambda p: _log_binom_cdf_many(kt, nt, p) >= floor  # noqa: E731
        if near:
            out[todo] = _bisect_near(np.zeros_like(kt), np.ones_like(kt), _binomial_estimate(kt, nt, floor), inside)
        else:
            out[todo] = _bisect_floats(np.zeros_like(kt), np.ones_like(kt), inside)
    return out


_SHALLOW = 1e-280  # a CDF above this is computed by scipy's bdtr directly (as in _log_binom_cdf_many)


def _binomial_estimate(k: np.ndarray, n: np.ndarray, log_level: np.ndarray) -> np.ndarray:
    """Close to the p with ln P[Bin(n, p) ≤ k] = ``log_level`` (0 ≤ k < n): Newton on ln bdtr, or in
    the deep tail on its leading term ln P[X = k] − ln(1 − r), from scipy's bdtri (near 1 from the
    last term); then two Newton
    steps on the exact ``_log_binom_cdf_many``. d/dp ln P[X ≤ k] = −n P[Bin(n−1, p) = k] / P[X ≤ k]."""
    ki, ni = k.astype(np.int64), n.astype(np.int64)
    log_choose = special.gammaln(n + 1.0) - special.gammaln(k + 1.0) - special.gammaln(n - k + 1.0)
    log_choose_less = special.gammaln(n) - special.gammaln(k + 1.0) - special.gammaln(n - k)

    def slope(p, log_cdf):
        return -n * np.exp(log_choose_less + special.xlogy(k, p) + special.xlog1py(n - 1.0 - k, -p) - log_cdf)

    def rough(p):
        cdf = special.bdtr(ki, ni, p)
        r = k * (1.0 - p) / ((n - k + 1.0) * p)
        tail = log_choose + special.xlogy(k, p) + special.xlog1py(n - k, -p) - np.log1p(-np.minimum(r, 0.5))
        log_cdf = np.where(cdf > _SHALLOW, np.log(np.maximum(cdf, _SHALLOW)), tail)
        return log_cdf - log_level, slope(p, log_cdf)

    with np.errstate(all="ignore"):
        start = special.logit(special.bdtri(ki, ni, np.clip(np.exp(log_level), _SHALLOW, 1.0)))
        # near 1 the tail is about its last term: ln(1 − p) ≈ (level − ln C(n, k)) / (n − k)
        deep = ~np.isfinite(start) | (np.exp(log_level) < _SHALLOW)
        start = np.where(deep, _log_odds_near_one(np.minimum(log_level - log_choose, -1e-300) / (n - k)), start)
        p = _newton_in_bracket(rough, np.zeros_like(k), np.ones_like(k), start)
        for _ in range(2):
            log_cdf = _log_binom_cdf_many(k, n, p)
            step = p - (log_cdf - log_level) / slope(p, log_cdf)
            p = np.where(np.isfinite(step) & (step > 0) & (step < 1), step, p)
    return p


def test_set_bound(errors, m, delta) -> float:
    """Held-out test-set bound: ``errors`` mistakes on ``m`` unseen examples; one-sided Clopper–Pearson.

    With probability ≥ 1 − δ over the test draw, L_μ ≤ binomial_tail_bound(errors, m, δ, bits=0).
    """
    errors = check_int("errors", errors, 0)
    m = check_int("m", m, 1)
    if errors > m:
        raise InputError(f"errors must be an integer in [0, m] = [0, {m}], got {errors}")
    return binomial_tail_bound(errors, m, delta, bits=0)


test_set_bound.__test__ = False  # not a pytest test despite its name


# ----------------------------------------------------------------------------------------------
# expectation bound (THEORY §3)


def fast_rate_mi_bound(train_loss, info_nats, n) -> float:
    """E L_μ ≤ kl⁻¹(E L_S, I(W; S) / n) (Hellström, Durisi, Guedj & Raginsky 2023). Loss in [0, 1].

    An expectation bound over S and the training randomness; ``info_nats`` is (an upper bound on)
    I(W; S) in nats, e.g. min(q · d_train, E|c(W)|) · ln 2.
    """
    q = check_real("train_loss", train_loss, 0.0, 1.0)
    info = check_real("info_nats", info_nats, 0.0)
    n = check_int("n", n, 1)
    return float(_kl_inverse(np.array(q), np.array(info / n))[0])


# ----------------------------------------------------------------------------------------------
# one certificate for one trained hypothesis


@dataclass(frozen=True)
class Certificate:
    """High-probability bounds on the population 0-1 error of one trained hypothesis.

    Each method's field is its bound at exactly ``delta`` (None when not requested). ``best`` is the
    smallest of the requested methods each evaluated at ``delta / len(methods)``, so choosing it after
    seeing the data is paid for; it holds with probability ≥ 1 − ``delta``.
    """

    train_error: float
    n: int
    bits: int
    delta: float
    methods: tuple
    occam_kl: float | None
    binomial: float | None
    maurer: float | None
    catoni: float | None
    best: float
    best_method: str
    kind: str

    def to_dict(self) -> dict:
        """Plain Python values, ready for JSON."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


def _errors_count(train_error: float, n: int) -> int:
    k = round(train_error * n)
    tolerance = min(TRAIN_ERROR_TOLERANCE, 0.01 / n)
    if abs(train_error - k / n) > tolerance:
        raise InputError(
            f"train_error must be a multiple of 1/n = 1/{n} (within {tolerance:g}) for the binomial "
            f"method, since it counts errors k = train_error · n; got {train_error!r} "
            f"(train_error · n = {train_error * n!r})")
    return k


def certificates_many(train_errors, n, bits, delta=0.05, methods=("occam_kl", "binomial")) -> list[Certificate]:
    """``certificate`` for many hypotheses at once (one per train error and bit count, same n and δ):
    the same numbers, computed with one vectorised bisection per method (for a sweep's runs)."""
    if isinstance(train_errors, (str, bytes)) or not hasattr(train_errors, "__len__"):
        raise InputError(f"train_errors must be a list of errors in [0, 1], got {train_errors!r}")
    if isinstance(bits, (str, bytes)) or not hasattr(bits, "__len__") or len(bits) != len(train_errors):
        raise InputError(f"bits must be a list of code lengths, one per train error ({len(train_errors)}), "
                         f"got {bits!r}")
    qs = [check_real(f"train_errors[{i}]", q, 0.0, 1.0) for i, q in enumerate(train_errors)]
    cs = [check_int(f"bits[{i}]", b, 0) for i, b in enumerate(bits)]
    n = check_int("n", n, 1)
    delta = _check_delta(delta)
    methods = _check_methods(methods)
    if not qs:
        return []
    binomial = "binomial" in methods
    if binomial and n > MAX_BINOMIAL_N:
        raise InputError(f"n must be at most {MAX_BINOMIAL_N:,} for the binomial tail, got {n:,}; "
                         "use the kl-based bounds (occam_kl) for larger n")
    ks = [_errors_count(q, n) for q in qs] if binomial else None
    q_arr, c_arr = np.array(qs), np.array(cs, dtype=np.float64)
    deltas = [delta] if len(methods) == 1 else [delta, delta / len(methods)]
    values: dict[tuple[str, float], np.ndarray] = {}
    count = len(qs)
    delta_of = np.repeat(np.array(deltas), count)  # every δ in one batch per vectorised method
    for m in methods:
        if m == "occam_kl":
            both = _kl_inverse(np.tile(q_arr, len(deltas)),
                               np.concatenate([(c_arr * LN2 + math.log(1.0 / d)) / n for d in deltas]))
        elif m == "binomial":
            both = _binomial_tails(np.tile(np.array(ks), len(deltas)), n, delta_of, np.tile(c_arr, len(deltas)))
        for j, d in enumerate(deltas):
            if m == "maurer":
                values[m, d] = np.array([maurer_bound(q, n, c * LN2, d) for q, c in zip(qs, cs)])
            elif m == "catoni":
                values[m, d] = np.array([catoni_bound(q, n, c * LN2, d).bound for q, c in zip(qs, cs)])
            else:
                values[m, d] = both[j * count:(j + 1) * count]
    paid_delta = deltas[-1]
    out = []
    for i, (q, c) in enumerate(zip(qs, cs)):
        at = {m: float(values[m, delta][i]) for m in methods}
        paid = {m: float(values[m, paid_delta][i]) for m in methods}
        best = min(methods, key=lambda m: paid[m])
        kind = (f"high-probability certificate: with probability >= {1 - delta:g} (delta = {delta:g}) over "
                f"the n = {n} training examples, the population 0-1 error is at most 'best' "
                f"(the minimum over {len(methods)} method(s), each at delta/{len(methods)})")
        out.append(Certificate(train_error=q, n=n, bits=c, delta=delta, methods=methods,
                               occam_kl=at.get("occam_kl"), binomial=at.get("binomial"),
                               maurer=at.get("maurer"), catoni=at.get("catoni"),
                               best=paid[best], best_method=best, kind=kind))
    return out


def _check_methods(methods) -> tuple:
    if isinstance(methods, (str, bytes)) or not isinstance(methods, (list, tuple)):
        raise InputError(
            f"methods must be a non-empty list or tuple of names from {METHODS}, got {methods!r}")
    methods = tuple(methods)
    if not methods or any(m not in METHODS for m in methods) or len(set(methods)) != len(methods):
        raise InputError(
            f"methods must be a non-empty list of distinct names from {METHODS}, got {methods!r}")
    return methods


def certificate(train_error, n, bits, delta=0.05, methods=("occam_kl", "binomial")) -> Certificate:
    """Certificates for a hypothesis with a ``bits``-bit prefix-free code, ``train_error`` on n examples.

    Methods: ``occam_kl`` (Occam-kl), ``binomial`` (binomial tail, k = round(train_error · n)),
    ``maurer`` and ``catoni`` (PAC-Bayes with KL = bits · ln 2, the point-mass posterior).
    """
    q = check_real("train_error", train_error, 0.0, 1.0)
    bits = check_int("bits", bits, 0)
    return certificates_many([q], n, [bits], delta, methods)[0]
