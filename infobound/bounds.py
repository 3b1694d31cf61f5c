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
from .validation import check_finite_result, check_instance, check_real, check_reals, scalar_or_array

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
    """bits · d_train + choice_bits: the upper bound on I(W; S) in bits."""
    info_nats: object
    bound: object
    """sqrt(2 σ² · info_nats / n): bound on the expected generalisation gap, in loss units."""
    vacuous: object
    """True where the bound is at least the loss range 2σ and so says nothing."""
    kind: str = SEED_BOUND_KIND
    choice_bits: float = 0.0
    """Bits of settings chosen from the training data (log2 of the candidates, e.g. a tuned learning
    rate), included in ``info_bits``: I(W; S) ≤ I(H; S) + I(W; S | H) ≤ log2 |H| + bits · d_train."""

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
    choice_bits: float = 0.0,
) -> SeedBound:
    """The seed bound of THEORY §1 for ``spec``; ``bits``, ``rank``, ``mode`` default to the spec's.

    ``choice_bits``: information in settings chosen from the training data (``log2`` of how many
    candidates there were), added to ``bits · d_train``."""
    spec = check_spec(spec)
    mode = spec.mode if mode is None else Mode.parse(mode)
    n = check_reals("n", n, low=1.0)  # a count, but real values draw smooth curves
    sigma = check_sigma(sigma)
    bits = check_bits(spec.bits if bits is None else bits)
    rank = rank_values(spec, rank)
    d_train = trainable_params(spec, rank=rank, mode=mode)
    choice_bits = check_real("choice_bits", choice_bits, 0.0)

    # The bound, assembled from its named terms in one place:
    info_bits = bits * d_train + choice_bits  # H(W) <= bits · d_train, plus the chosen settings' entropy (bits)
    info_nats = info_bits * LN2  # I(W; S) <= info_nats   (nats)
    # |E gen| <= sqrt(2 σ² I / n), written σ · sqrt(2 I / n) so that no σ² overflows or underflows.
    with np.errstate(over="ignore", under="ignore", divide="ignore"):
        per_sigma = np.sqrt(2.0 * info_nats / n)
        bound = sigma * per_sigma
    check_finite_result("bound", bound, lambda: "sigma · sqrt(2 · info_nats / n) with sigma = "
                        f"{_span(sigma)}, n = {_span(n)}; sigma must lie within about "
                        f"[{1e-300 / np.min(per_sigma):.3g}, {1e300 / np.max(per_sigma):.3g}] here")
    vacuous = per_sigma >= 2.0  # bound >= 2σ: no better than the loss range

    return SeedBound(
        mode=mode,
        rank=scalar_or_array(rank),
        bits=scalar_or_array(bits),
        n=scalar_or_array(n),
        sigma=scalar_or_array(sigma),
        trainable_params=_count(d_train),
        info_bits=_count(info_bits) if choice_bits == 0 else scalar_or_array(info_bits),
        info_nats=scalar_or_array(info_nats),
        bound=scalar_or_array(bound),
        vacuous=scalar_or_array(vacuous),
        choice_bits=choice_bits,
    )


bound = seed_bound  # the front door: infobound.bound(spec, n=...)


def seed_bounds_all_modes(spec: AdapterSpec, n, **kwargs) -> dict[Mode, SeedBound]:
    """The seed bound of every mode for the same layers, rank, bits, n and σ."""
    if "mode" in kwargs:
        raise InputError("mode must not be given to seed_bounds_all_modes (it computes every mode)")
    return {mode: seed_bound(spec, n, mode=mode, **kwargs) for mode in Mode}


def trainable_params(spec: AdapterSpec, *, rank=None, mode: Mode | str | None = None):
    """d_train for ``mode`` at ``rank`` (array-valued for an array of ranks), as float64."""
    spec = check_spec(spec)
    per_rank, constant = spec.rank_coefficients(mode)
    rank = rank_values(spec, rank)
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
    spec = check_spec(spec)
    gap = check_reals("gap", gap, low=0.0, open_low=True)
    sigma = check_sigma(sigma)
    bits = check_bits(spec.bits if bits is None else bits)
    d_train = trainable_params(spec, rank=rank, mode=mode)
    ratio = gap / sigma  # the gap in units of σ; a gap of 2σ or more is the whole loss range
    if np.any(ratio >= 2.0):
        gaps, ratios = np.broadcast_arrays(gap, ratio)
        worst = gaps[ratios >= 2.0].flat[0]
        raise InputError(f"gap must be in (0, 2·sigma) = (0, {2 * float(np.max(sigma)):.4g}): a gap of 2σ or "
                         f"more is the whole loss range and needs no data; got {_fmt(worst)}")
    with np.errstate(over="ignore", under="ignore", divide="ignore"):
        n = 2.0 * LN2 * bits * d_train / ratio**2  # 2 σ² ln2 · bits · d_train / gap², without σ²
    check_finite_result("the n for that gap", n, lambda: "2 σ² ln2 · bits · d_train / gap² exceeds "
                        "float64; gap must be at least about "
                        f"{float(np.max(np.sqrt(2.0 * LN2 * bits * d_train / 1e300) * sigma)):.3g} here")
    return scalar_or_array(n)


def mode_ratio(spec: AdapterSpec, mode: Mode | str, other: Mode | str, *, rank=None):
    """bound(mode) / bound(other) at the same rank, bits, n, σ: sqrt(d_train(mode) / d_train(other))."""
    spec = check_spec(spec)
    numerator = trainable_params(spec, rank=rank, mode=mode)
    denominator = trainable_params(spec, rank=rank, mode=other)
    return scalar_or_array(np.sqrt(numerator / denominator))


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
    spec = check_spec(spec)
    target = trainable_params(spec, rank=rank, mode=reference)
    per_rank, constant = spec.rank_coefficients(mode)
    if per_rank == 0:
        raise InputError(f"mode {Mode.parse(mode)} has no rank-dependent parameters in this spec")
    return scalar_or_array((target - constant) / per_rank)


# ------------------------------------------------------------------------------------ validation
def check_spec(spec) -> AdapterSpec:
    """``spec`` if it is an ``AdapterSpec``; else an error saying how to build one."""
    return check_instance("spec", spec, AdapterSpec,
                          "an AdapterSpec (from preset_spec, custom_spec or AdapterSpec(...))")


def check_sigma(sigma) -> np.ndarray:
    return check_reals("sigma", sigma, low=0.0, open_low=True)


def check_bits(bits) -> np.ndarray:
    return check_reals("bits", bits, low=1.0, high=MAX_BITS, integer=True)


def rank_values(spec: AdapterSpec, rank) -> np.ndarray:
    """The adapter rank(s) to evaluate, as float64 (the spec's rank when ``None``), checked against
    the layers (the message names the layer that limits the rank)."""
    if rank is None:
        return np.asarray(float(spec.rank))
    arr = check_reals("rank", rank, low=1.0, integer=True)
    too_large = arr > spec.max_rank
    if too_large.any():
        check_rank(int(arr[too_large].flat[0]) if arr.ndim else int(arr), spec.layers)  # names the layer
    return arr


def _count(value):
    """A parameter or bit count: a Python int for a scalar (exact below 2**53), else a float64 array."""
    arr = np.asarray(value)
    return int(arr) if arr.ndim == 0 else arr


def _span(arr) -> str:
    arr = np.asarray(arr)
    lo, hi = float(np.min(arr)), float(np.max(arr))
    return f"{lo:.3g}" if lo == hi else f"{lo:.3g}..{hi:.3g}"


def _fmt(x) -> str:
    x = float(x)
    return str(int(x)) if x.is_integer() and abs(x) < 1e16 else repr(x)
