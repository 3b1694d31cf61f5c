"""Numeric information-theoretic bounds over an ``AdapterSpec`` (THEORY.md §1). numpy only.

The seed bound (Xu & Raginsky 2017; Zhu et al. 2024, Lemma 4.5): for a σ-sub-Gaussian loss and every
trained parameter quantised to ``bits`` bits, ``I(W; S) <= H(W) <= bits · d_train`` bits, and

    |E gen| <= sqrt(2 σ² · ln 2 · bits · d_train / n).

It is an *expectation* bound (over the training set, the frozen factor's draw and training
randomness), not a statement about one run. ``rank``, ``n``, ``bits`` and ``sigma`` may be numpy
arrays that broadcast; everything is float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from .errors import InputError
from .spec import MAX_BITS, AdapterSpec, Mode, check_rank

LN2 = math.log(2.0)
DEFAULT_SIGMA = 0.5  # a loss with values in [0, 1] is 1/2-sub-Gaussian
SEED_BOUND_KIND = "expectation bound on |E[gen]| (Xu & Raginsky 2017; Zhu et al. 2024, Lemma 4.5)"


@dataclass(frozen=True)
class SeedBound:
    """The seed bound with its named terms; array-valued when any input was an array."""

    mode: Mode
    rank: object
    bits: object
    n: object
    sigma: object
    trainable_params: object
    """d_train: parameters that carry information about the training set."""
    info_bits: object
    """bits · d_train: the upper bound on I(W; S) in bits."""
    info_nats: object
    bound: object
    """sqrt(2 σ² · info_nats / n): bound on the expected generalisation gap, in loss units."""
    vacuous: object
    """True where the bound is at least the loss range 2σ and so says nothing."""
    kind: str = SEED_BOUND_KIND

    def to_dict(self) -> dict:
        """Plain Python values (lists for arrays), ready for JSON."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Mode):
                value = value.value
            elif isinstance(value, np.ndarray):
                value = value.tolist()
            out[f.name] = value
        return out


def seed_bound(
    spec: AdapterSpec,
    n,
    *,
    sigma=DEFAULT_SIGMA,
    bits=None,
    rank=None,
    mode: Mode | str | None = None,
) -> SeedBound:
    """The seed bound of THEORY §1 for ``spec``; ``bits``, ``rank``, ``mode`` default to the spec's."""
    mode = spec.mode if mode is None else Mode.parse(mode)
    n = _positive("n", n, low=1.0)  # a count, but real values draw smooth curves
    sigma = _positive("sigma", sigma, low=0.0, open_low=True)
    bits = _positive("bits", spec.bits if bits is None else bits, low=1.0, high=MAX_BITS, integer=True)
    rank = _rank(spec, rank)
    d_train = trainable_params(spec, rank=rank, mode=mode)

    # The bound, assembled from its named terms in one place:
    info_bits = bits * d_train  # H(W) <= bits · d_train   (bits)
    info_nats = info_bits * LN2  # I(W; S) <= info_nats   (nats)
    bound = np.sqrt(2.0 * sigma**2 * info_nats / n)  # |E gen| <= sqrt(2 σ² I / n)
    vacuous = bound >= 2.0 * sigma  # no better than the loss range

    return SeedBound(
        mode=mode,
        rank=_out(rank),
        bits=_out(bits),
        n=_out(n),
        sigma=_out(sigma),
        trainable_params=_count(d_train),
        info_bits=_count(info_bits),
        info_nats=_out(info_nats),
        bound=_out(bound),
        vacuous=_out(vacuous),
    )


bound = seed_bound  # the front door: infobound.bound(spec, n=...)


def seed_bounds_all_modes(spec: AdapterSpec, n, **kwargs) -> dict[Mode, SeedBound]:
    """The seed bound of every mode for the same layers, rank, bits, n and σ."""
    return {mode: seed_bound(spec, n, mode=mode, **kwargs) for mode in Mode}


def trainable_params(spec: AdapterSpec, *, rank=None, mode: Mode | str | None = None):
    """d_train for ``mode`` at ``rank`` (array-valued for an array of ranks), as float64."""
    per_rank, constant = spec.rank_coefficients(mode)
    rank = _rank(spec, rank)
    return per_rank * rank + float(constant)


def sample_size(
    spec: AdapterSpec,
    gap,
    *,
    sigma=DEFAULT_SIGMA,
    bits=None,
    rank=None,
    mode: Mode | str | None = None,
):
    """The n at which the seed bound equals ``gap``: n = 2 σ² ln2 · bits · d_train / gap²."""
    gap = _positive("gap", gap, low=0.0, open_low=True)
    sigma = _positive("sigma", sigma, low=0.0, open_low=True)
    bits = _positive("bits", spec.bits if bits is None else bits, low=1.0, high=MAX_BITS, integer=True)
    d_train = trainable_params(spec, rank=rank, mode=mode)
    return _out(2.0 * sigma**2 * LN2 * bits * d_train / gap**2)


def mode_ratio(spec: AdapterSpec, mode: Mode | str, other: Mode | str, *, rank=None):
    """bound(mode) / bound(other) at the same rank, bits, n, σ: sqrt(d_train(mode) / d_train(other))."""
    numerator = trainable_params(spec, rank=rank, mode=mode)
    denominator = trainable_params(spec, rank=rank, mode=other)
    return _out(np.sqrt(numerator / denominator))


def equivalent_rank(
    spec: AdapterSpec,
    rank=None,
    *,
    mode: Mode | str = Mode.B_ONLY,
    reference: Mode | str = Mode.LORA,
):
    """The (real) rank at which ``mode`` has the seed bound of ``reference`` at ``rank``.

    For square layers and no extras, B-only at rank 2r matches LoRA at rank r. The result may exceed
    what the layers allow; compare it with ``spec.max_rank`` before building such an adapter.
    """
    target = trainable_params(spec, rank=rank, mode=reference)
    per_rank, constant = spec.rank_coefficients(mode)
    if per_rank == 0:
        raise InputError(f"mode {Mode.parse(mode)} has no rank-dependent parameters in this spec")
    return _out((target - constant) / per_rank)


# ------------------------------------------------------------------------------------ validation
def _positive(name, value, *, low, high=None, open_low=False, integer=False) -> np.ndarray:
    """Validate a scalar or array input; return it as a float64 array (0-d for scalars)."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {value!r}") from None
    allowed = _allowed_text(low, high, open_low, integer)
    bad = ~np.isfinite(arr)
    bad |= (arr <= low) if open_low else (arr < low)
    if high is not None:
        bad |= arr > high
    if integer:
        bad |= np.floor(arr) != arr
    if bad.any():
        first = arr[bad].flat[0] if arr.ndim else arr.item()
        raise InputError(f"{name} must be {allowed}, got {_fmt(first)}")
    return arr


def _rank(spec: AdapterSpec, rank) -> np.ndarray:
    if rank is None:
        return np.asarray(float(spec.rank))
    arr = _positive("rank", rank, low=1.0, integer=True)
    too_large = arr > spec.max_rank
    if too_large.any():
        check_rank(int(arr[too_large].flat[0]) if arr.ndim else int(arr), spec.layers)  # names the layer
    return arr


def _allowed_text(low, high, open_low, integer) -> str:
    kind = "an integer" if integer else "a finite number"
    low_text = f"> {_fmt(low)}" if open_low else f">= {_fmt(low)}"
    if high is not None:
        return f"{kind} in [{_fmt(low)}, {_fmt(high)}]"
    return f"{kind} {low_text}"


def _fmt(x) -> str:
    x = float(x)
    return str(int(x)) if x.is_integer() and abs(x) < 1e16 else repr(x)


def _count(value):
    """A parameter or bit count: a Python int for a scalar (exact below 2**53), else a float64 array."""
    arr = np.asarray(value)
    return int(arr) if arr.ndim == 0 else arr


def _out(value):
    """0-d arrays become Python scalars (float, or bool for masks); arrays stay arrays."""
    arr = np.asarray(value)
    if arr.ndim == 0:
        return bool(arr) if arr.dtype == bool else float(arr)
    return arr
