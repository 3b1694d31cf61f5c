"""The one currency between the torch side and the theory side: ``LayerSpec``, ``AdapterSpec``, ``Mode``.

Standard library only. An ``AdapterSpec`` says which linear layers are adapted, with which rank, which
factors train (the ``Mode``), how many bits each trained parameter is quantised to, and which other
parameters (a classifier head, biases) train in every mode. From it follows the number of trained
parameters ``d_train`` that every information bound charges for.

Conventions (THEORY.md): a layer maps ``d_in -> d_out``; its update is ``ΔW = B A`` with
``A: (r, d_in)`` reading the input and ``B: (d_out, r)`` writing the output.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from .errors import Choice, InputError
from .validation import check_int, describe

MAX_BITS = 64


class Mode(Choice):
    """Which parameters of each adapted layer are trained."""

    LORA = "lora"
    """Both factors A (r × d_in) and B (d_out × r) train: r·(d_in + d_out) per layer."""
    B_ONLY = "b_only"
    """Only B trains; A is frozen at a random draw made before seeing data: r·d_out per layer."""
    A_ONLY = "a_only"
    """Only A trains; B is frozen at a random draw made before seeing data: r·d_in per layer."""
    FULL = "full"
    """The whole target matrix trains (full fine-tuning of the adapted layers): d_in·d_out per layer."""


ALL_MODES: tuple[Mode, ...] = tuple(Mode)


class FrozenInit(Choice):
    """How the random factor is drawn (the frozen one; in ``lora`` mode, A as in standard LoRA)."""

    ORTHONORMAL = "orthonormal"
    """The paper's draw: ``M = Uniform(-0.5, 0.5)`` of W's shape ``(d_out, d_in)`` (float64, from
    ``torch.rand(d_out, d_in, generator=Generator().manual_seed(seed), dtype=float64) - 0.5``);
    ``A`` = the first r right-singular vectors of M (orthonormal rows), a frozen ``B`` = the first r
    left-singular vectors (orthonormal columns). Each vector's sign is fixed so that its entry of
    largest magnitude is positive (independent of the LAPACK build). Close to Haar on the Stiefel
    manifold; costs one SVD of a ``d_out × d_in`` matrix."""
    GAUSSIAN = "gaussian"
    """I.i.d. ``N(0, 1/r)`` entries (variance 1/r, standard deviation 1/√r) for A or B alike."""
    KAIMING = "kaiming"
    """PEFT's ``kaiming_uniform_(a=√5)``: ``Uniform(-1/√fan_in, 1/√fan_in)`` with ``fan_in`` the
    tensor's second dimension: ``d_in`` for ``A: (r, d_in)``, ``r`` for a frozen ``B: (d_out, r)``."""

    @classmethod
    def option_name(cls) -> str:
        return "init"


@dataclass(frozen=True)
class LayerSpec:
    """One adapted linear layer ``d_in -> d_out``; ``rank`` overrides the adapter's rank for it."""

    name: str
    d_in: int
    d_out: int
    rank: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise InputError(f"layer name must be a non-empty string, got {self.name!r}")
        object.__setattr__(self, "d_in", check_int(f"d_in of layer {self.name!r}", self.d_in, 1))
        object.__setattr__(self, "d_out", check_int(f"d_out of layer {self.name!r}", self.d_out, 1))
        if self.rank is not None:
            object.__setattr__(
                self, "rank", check_int(f"rank of layer {self.name!r}", self.rank, 1, self.max_rank)
            )

    @property
    def max_rank(self) -> int:
        """The largest rank a factorisation B A of this layer can have: min(d_in, d_out)."""
        return min(self.d_in, self.d_out)


@dataclass(frozen=True)
class ParamCount:
    """Trained parameters of one layer, split by factor (A, B, or the whole matrix W)."""

    name: str
    rank: int
    a: int
    b: int
    w: int

    @property
    def total(self) -> int:
        return self.a + self.b + self.w


@dataclass(frozen=True)
class AdapterSpec:
    """An adapter: layers, rank, mode, bits per trained parameter, and extra fully trained parameters.

    ``extra`` maps a name (``"classifier"``, ``"biases"``) to a parameter count that trains in every
    mode. All counts are exact Python integers.
    """

    layers: tuple[LayerSpec, ...]
    rank: int = 8
    mode: Mode = Mode.LORA
    bits: int = 16
    extra: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.layers, Mapping):
            raise InputError("layers must be a list of (name, d_in, d_out[, rank]) entries or LayerSpecs, "
                             f"got a {type(self.layers).__name__}")
        layers = tuple(_as_layer(item) for item in _as_iterable("layers", self.layers))
        if not layers:
            raise InputError("layers must list at least one adapted layer (name, d_in, d_out)")
        seen: set[str] = set()
        for layer in layers:
            if layer.name in seen:
                raise InputError(f"layers must have unique names; {layer.name!r} appears twice")
            seen.add(layer.name)
        object.__setattr__(self, "layers", layers)
        object.__setattr__(self, "mode", Mode.parse(self.mode))
        object.__setattr__(self, "bits", check_int("bits", self.bits, 1, MAX_BITS))
        object.__setattr__(self, "rank", check_rank(self.rank, layers))
        if not isinstance(self.extra, Mapping):
            raise InputError(f"extra must map names to parameter counts, got {describe(self.extra)}")
        for k in self.extra:
            if not isinstance(k, str) or not k.strip():
                raise InputError(f"extra must map names (non-empty strings) to counts, got key {k!r}")
        extra = {k: check_int(f"extra[{k!r}]", v, 0) for k, v in self.extra.items()}
        object.__setattr__(self, "extra", _FrozenDict(extra))

    # ----------------------------------------------------------------------------------- counts
    def layer_rank(self, layer: LayerSpec) -> int:
        return self.rank if layer.rank is None else layer.rank

    def breakdown(self) -> tuple[ParamCount, ...]:
        """Trained parameters of every adapted layer, factor by factor."""
        return tuple(_layer_count(layer, self.layer_rank(layer), self.mode) for layer in self.layers)

    def factor_totals(self) -> dict[str, int]:
        """Trained parameters summed by factor: ``A``, ``B``, ``W`` (full matrices), ``extra``."""
        counts = self.breakdown()
        return {
            "A": sum(c.a for c in counts),
            "B": sum(c.b for c in counts),
            "W": sum(c.w for c in counts),
            "extra": self.extra_params,
        }

    @property
    def extra_params(self) -> int:
        return sum(self.extra.values())

    @property
    def trainable_params(self) -> int:
        """d_train: every trained parameter, the extras included."""
        return sum(c.total for c in self.breakdown()) + self.extra_params

    def rank_coefficients(self, mode: Mode | str | None = None) -> tuple[int, int]:
        """``(per_rank, constant)`` with ``d_train(r) = per_rank · r + constant`` for ``mode``.

        Layers with their own rank, full fine-tuning and the extras go into ``constant``; this is
        what lets the numeric bounds vectorise over the adapter rank.
        """
        mode = self.mode if mode is None else Mode.parse(mode)
        per_rank = 0
        constant = self.extra_params
        for layer in self.layers:
            count = _layer_count(layer, 1 if layer.rank is None else layer.rank, mode)
            if layer.rank is None and mode is not Mode.FULL:
                per_rank += count.total
            else:
                constant += count.total
        return per_rank, constant

    @property
    def max_rank(self) -> int:
        """The largest adapter rank allowed by the layers that follow it."""
        return _max_rank(self.layers)[0]

    def with_(self, **changes) -> "AdapterSpec":
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return {
            "layers": [[l.name, l.d_in, l.d_out, l.rank] for l in self.layers],
            "rank": self.rank,
            "mode": self.mode.value,
            "bits": self.bits,
            "extra": dict(self.extra),
        }


def check_rank(rank, layers: Iterable[LayerSpec]) -> int:
    """Validate an adapter rank against the layers without their own rank; name the limiting layer."""
    max_rank, limiting = _max_rank(tuple(layers))
    if limiting is None:  # every layer has its own rank
        return check_int("rank", rank, 1)
    rank = check_int("rank", rank)
    if not 1 <= rank <= max_rank:
        where = f": layer {limiting.name!r} ({limiting.d_in} -> {limiting.d_out}) allows at most {max_rank}"
        raise InputError(f"rank must be an integer in [1, {max_rank}]{where if rank > 1 else ''}, got {rank}")
    return rank


def _max_rank(layers: tuple[LayerSpec, ...]) -> tuple[int, LayerSpec | None]:
    free = [layer for layer in layers if layer.rank is None]
    if not free:
        return math.inf, None  # every layer has its own rank: the adapter rank is unused
    limiting = min(free, key=lambda layer: layer.max_rank)
    return limiting.max_rank, limiting


def _layer_count(layer: LayerSpec, rank: int, mode: Mode) -> ParamCount:
    a = rank * layer.d_in if mode in (Mode.LORA, Mode.A_ONLY) else 0  # A: (r, d_in)
    b = layer.d_out * rank if mode in (Mode.LORA, Mode.B_ONLY) else 0  # B: (d_out, r)
    w = layer.d_in * layer.d_out if mode is Mode.FULL else 0  # W: (d_out, d_in)
    return ParamCount(layer.name, rank, a, b, w)


def _as_iterable(name: str, value) -> Iterable:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise InputError(f"{name} must be a list of (name, d_in, d_out) entries, got {describe(value)}")
    return value


def _as_layer(item) -> LayerSpec:
    if isinstance(item, LayerSpec):
        return item
    if isinstance(item, Mapping):
        allowed = ("name", "d_in", "d_out", "rank")
        unknown = [k for k in item if k not in allowed]
        missing = [k for k in allowed[:3] if k not in item]
        if unknown or missing:
            what = "; ".join(part for part in (
                f"unknown key(s) {unknown}" if unknown else "", f"missing key(s) {missing}" if missing else "")
                if part)
            raise InputError(f"each layer given as a dict must have keys name, d_in, d_out and "
                             f"optionally rank; {what} in {describe(item)}")
        return LayerSpec(**item)
    if isinstance(item, (tuple, list)) and len(item) in (3, 4):
        return LayerSpec(*item)
    raise InputError(f"each layer must be (name, d_in, d_out[, rank]) or a LayerSpec, got {describe(item)}")


class _FrozenDict(dict):
    """A dict that refuses mutation and hashes, so that ``AdapterSpec`` stays frozen and hashable."""

    def _immutable(self, *args, **kwargs):
        raise TypeError("AdapterSpec.extra is read-only; use spec.with_(extra={...})")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _immutable

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(sorted(self.items())))
