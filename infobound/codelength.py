"""Length in bits of a prefix-free code of an adapter's quantised tensors (THEORY.md §4).

A single-run certificate (Occam, Clopper–Pearson with ``δ · 2^-|c|``) needs ``|c(h)|``, the length of
the trained adapter under a prefix-free code fixed before the data are seen. This module builds
that code for real: every tensor is written to a bit stream that a decoder reads back exactly
(``decode_tensor``, ``decode_adapter``), and the symbols are arithmetic-coded with constriction's
range coder, so the payload length is the compressed length, not an entropy estimate (the
empirical entropy ``-Σ n_s log2(n_s / N)`` is reported beside it).

Code of one tensor of grid indices (``levels`` grid points, indices in ``[0, levels)``):

* shape: Elias-delta of ``ndim + 1``, then of each dimension (dimensions ≥ 1);
* table: the range ``[lo, hi]`` of the indices that occur (Elias-delta of the zigzagged offset of
  ``lo`` from the grid's middle, and of ``hi - lo + 1``); if ``lo == hi`` the tensor is constant
  and nothing else is written. Otherwise a 2-bit model tag, then the model's parameters:

  - ``raw``: none; every index is written with ``ceil(log2(hi - lo + 1))`` bits;
  - ``empirical``: the set of indices that occur (gaps, Elias-delta, or a bitmap, whichever is
    shorter, 1 bit to say which) and their counts (Elias-delta, the last one implied by ``N``);
    the payload is range-coded under a categorical model built from the counts;
  - ``gaussian`` / ``laplace``: a discretised distribution on ``[lo, hi]`` with location on a
    half-index grid (Elias-delta of ``2·loc - 2·lo + 1``) and scale ``2**(j/8)`` index units
    (Elias-delta of zigzag ``j`` + 1), ``j`` searched to minimise the real payload;

* length: Elias-delta of the number of 32-bit payload words + 1 (entropy-coded models only);
* payload: the range coder's words (32 bits each), or the fixed-width indices for ``raw``.

The encoder writes every applicable model and keeps the shortest; the 2-bit tag pays for that
choice, so the code stays a fixed, prefix-free code. The adapter's stream is an Elias-delta of the
number of tensors followed by the tensor codes in a fixed order: the order is the architecture's
(the order of the mapping passed in), so names are not coded. The stream is self-delimiting —
a decoder reads it without being told its length (``decode_adapter`` returns how many bits it read)
— so it is prefix-free as it stands and the ``prefix`` item is 0.

Choices that the decoder needs but that are not written to the stream are charged by a union
bound, ``log2`` of the number of candidates each: the grid of each tensor (``grid_candidates``),
every hyper-parameter or setting chosen after looking at data or results (``choices``), and the
seed of a frozen random factor (``seed_bits``; the factor itself is then free, THEORY §4). With
these the total satisfies Kraft's inequality over all adapters, and the certificate may use
``total_bits`` as ``|c(h)|``.

numpy, the standard library and constriction only (no torch): ``Grid`` reproduces
``infobound.quantize.UniformGrid`` in numpy, index for index, so float tensors can be quantised here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar
from numbers import Integral, Real

import constriction
import numpy as np

from .errors import InputError

__all__ = [
    "MAX_BITS",
    "MODELS",
    "CodeLength",
    "EncodedTensor",
    "Grid",
    "GridChoice",
    "GridOption",
    "adapter_code_length",
    "adapter_code_length_from_values",
    "choose_grid",
    "decode_adapter",
    "decode_tensor",
    "entropy_bits",
    "entropy_bits_many",
    "encode_tensor",
]

MAX_BITS = 53
"""Largest grid width: beyond 53 bits the float64 index ``(x + clip) / step`` is no finer than the grid."""
MODELS = ("raw", "empirical", "gaussian", "laplace")
"""The probability models a tensor code may use, in the order of their 2-bit tag."""
MAX_ALPHABET = 2**20
"""Largest alphabet the range-coded models accept (constriction's probabilities have 24 bits)."""
SCALE_STEPS = 8
"""The parametric models' scale is ``2**(j / SCALE_STEPS)`` index units for an integer ``j``."""
WORD_BITS = 32
LN2 = math.log(2.0)
_MODEL_TAG_BITS = 2
_METRICS = ("max", "rms")
_PATIENCE = 6
_J_MIN, _J_MAX = -8 * SCALE_STEPS, (MAX_BITS + 2) * SCALE_STEPS  # scales 2**-8 .. 2**55 index units


# --------------------------------------------------------------------------- input checks


def _describe(value) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of dtype {value.dtype} and shape {value.shape}"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _check_int(name: str, value, low: int, high: int | None = None) -> int:
    """``value`` as an ``int`` (integral floats accepted), or ``InputError`` naming ``name``."""
    allowed = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
    ok = not isinstance(value, bool) and isinstance(value, (Integral, Real))
    if ok and not isinstance(value, Integral):
        ok = math.isfinite(value) and value == int(value)
    if not ok:
        raise InputError(f"{name} must be {allowed}, got {_describe(value)}")
    ivalue = int(value)
    if ivalue < low or (high is not None and ivalue > high):
        raise InputError(f"{name} must be {allowed}, got {ivalue}")
    return ivalue


def _check_levels(name: str, levels) -> int:
    return _check_int(name, levels, 2, 2**MAX_BITS)


def _check_indices(name: str, indices, levels: int) -> np.ndarray:
    """An int64 array of grid indices in ``[0, levels)`` with at least one element."""
    if indices is None or isinstance(indices, (str, bytes)):
        raise InputError(f"{name} must be an integer array of grid indices, got {_describe(indices)}")
    try:
        array = np.asarray(indices)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be an integer array of grid indices, got {_describe(indices)}") from exc
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer):
        raise InputError(f"{name} must be an integer array of grid indices, got an array of dtype {array.dtype}")
    if array.size == 0:
        raise InputError(f"{name} must have at least one element, got shape {array.shape}")
    low, high = array.min(), array.max()
    if low < 0 or int(high) >= levels:
        bad = int(low) if low < 0 else int(high)
        raise InputError(f"{name} must hold grid indices in [0, {levels}), got {bad}")
    return array.astype(np.int64)


def _check_values(name: str, values) -> np.ndarray:
    """A float64 array without NaN (±inf allowed: the grid clamps it), at least one element."""
    if values is None or isinstance(values, (str, bytes)):
        raise InputError(f"{name} must be a floating-point array, got {_describe(values)}")
    try:
        array = np.asarray(values)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be a floating-point array, got {_describe(values)}") from exc
    if not np.issubdtype(array.dtype, np.floating):
        raise InputError(f"{name} must be a floating-point array, got an array of dtype {array.dtype}")
    if array.size == 0:
        raise InputError(f"{name} must have at least one element, got shape {array.shape}")
    x = array.astype(np.float64)
    if np.isnan(x).any():
        raise InputError(f"{name} must not contain NaN, got {int(np.isnan(x).sum())} NaN of {x.size}")
    return x


def _check_mapping(name: str, value) -> Mapping:
    if not isinstance(value, Mapping):
        raise InputError(f"{name} must be a dict of name -> array, got {_describe(value)}")
    if not value:
        raise InputError(f"{name} must hold at least one tensor, got an empty dict")
    for key in value:
        if not isinstance(key, str) or not key:
            raise InputError(f"{name} keys must be non-empty strings, got {key!r}")
    return value


def _check_choices(choices) -> dict[str, int]:
    if choices is None:
        return {}
    if not isinstance(choices, Mapping):
        raise InputError(f"choices must be a dict of name -> number of candidates, got {_describe(choices)}")
    out = {}
    for key, count in choices.items():
        if not isinstance(key, str) or not key:
            raise InputError(f"choices keys must be non-empty strings, got {key!r}")
        out[key] = _check_int(f"choices[{key!r}]", count, 1)
    return out


def _check_metric(metric) -> str:
    if metric not in _METRICS:
        raise InputError(f"metric must be one of {', '.join(_METRICS)}, got {_describe(metric)}")
    return metric


# --------------------------------------------------------------------------- the grid


@dataclass(frozen=True)
class Grid:
    """``2**bits`` points evenly spaced on ``[-clip, clip]``: ``UniformGrid``'s rounding, in numpy.

    ``indices`` computes exactly what ``UniformGrid.quantize`` computes (float64, values clamped to
    ``[-clip, clip]``, index ``round((x + clip) / step)`` with ties to even), and ``values`` maps an
    index back to its grid point (the last point is exactly ``clip``), so
    ``Grid(b, c).values(Grid(b, c).indices(x))`` cast to the input's dtype equals
    ``UniformGrid(b, c).quantize(x)``.
    """

    bits: int
    clip: float

    max_bits: ClassVar[int] = MAX_BITS
    """The most bits a grid of this class may have (int64 indices exact in float64)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "bits", _check_int("bits", self.bits, 1, self.max_bits))
        clip = self.clip
        if isinstance(clip, bool) or not isinstance(clip, Real) or not math.isfinite(clip) or clip <= 0:
            raise InputError(f"clip must be a finite number > 0, got {_describe(clip)}")
        object.__setattr__(self, "clip", float(clip))

    @property
    def levels(self) -> int:
        """Number of grid points, ``2**bits``."""
        return 2**self.bits

    @property
    def step(self) -> float:
        """Spacing of neighbouring points, ``2·clip / (2**bits - 1)``."""
        return 2.0 * self.clip / (self.levels - 1)

    def indices(self, values) -> np.ndarray:
        """The index (int64, in ``[0, 2**bits)``) of the grid point nearest each value (clamped)."""
        x = np.clip(_check_values("values", values), -self.clip, self.clip)
        last = float(self.levels - 1)
        return np.clip(np.rint((x + self.clip) / self.step), 0.0, last).astype(np.int64)

    def values(self, indices) -> np.ndarray:
        """The grid point (float64) of each index."""
        index = _check_indices("indices", indices, self.levels).astype(np.float64)
        last = float(self.levels - 1)
        return np.where(index == last, self.clip, index * self.step - self.clip)

    def to_dict(self) -> dict:
        return {"bits": self.bits, "clip": self.clip}


def as_grid(name: str, value) -> Grid:
    """A ``Grid`` from a ``Grid``, a ``(bits, clip)`` pair or any object with ``bits`` and ``clip``."""
    if type(value) is Grid:
        return value
    if isinstance(value, tuple) and len(value) == 2:
        bits, clip = value
    elif not isinstance(value, (str, bytes)) and hasattr(value, "bits") and hasattr(value, "clip"):
        bits, clip = value.bits, value.clip
    else:
        raise InputError(f"{name} must be a Grid, a (bits, clip) pair or a UniformGrid, got {_describe(value)}")
    try:
        return Grid(bits, clip)
    except InputError as exc:
        raise InputError(f"{name}: {exc}") from None


# --------------------------------------------------------------------------- bit streams


class _BitWriter:
    """Bits appended as numpy uint8 arrays of 0/1, and integers kept as (value, nbits) until
    ``bits`` spells them out (most candidate codes are measured, never written)."""

    def __init__(self) -> None:
        self._parts: list[np.ndarray | tuple] = []  # arrays, (value, nbits), ("deltas", values, lengths)
        self.length = 0

    def _append(self, bits: np.ndarray) -> None:
        self._parts.append(bits.astype(np.uint8, copy=False))
        self.length += bits.size

    def write(self, value: int, nbits: int) -> None:
        """``value`` (``0 <= value < 2**nbits``) in ``nbits`` bits, most significant first."""
        if nbits:
            self._parts.append((value, nbits))
            self.length += nbits

    def delta(self, n: int) -> None:
        """Elias-delta code of ``n >= 1``: Elias-gamma of its bit length, then its low bits."""
        width = n.bit_length()
        lw = width.bit_length()
        # lw − 1 zeros, width in lw bits, the low width − 1 bits of n: one integer of 2·lw + width − 2 bits
        self.write((width << (width - 1)) | (n - (1 << (width - 1))), 2 * lw + width - 2)

    def deltas(self, values: np.ndarray) -> None:
        """``delta`` of each of ``values`` (integers >= 1), in order; kept as one part until ``bits``."""
        values = np.asarray(values, dtype=np.int64).reshape(-1)
        if values.size == 0:
            return
        if int(values.max()) >= 2**53:  # beyond exact float64 bit lengths: one at a time
            for v in values.tolist():
                self.delta(v)
            return
        lengths = _delta_lens(values)
        self._parts.append(("deltas", values, lengths))
        self.length += int(lengths.sum())

    def fixed(self, values: np.ndarray, width: int) -> None:
        """Each of ``values`` (non-negative int64) in ``width`` bits."""
        if width:
            shifts = np.arange(width - 1, -1, -1, dtype=np.int64)
            self._append(((values[:, None] >> shifts[None, :]) & 1).ravel())

    def words(self, words: np.ndarray) -> None:
        """32-bit words, most significant bit first."""
        self._append(np.unpackbits(words.astype(">u4").view(np.uint8)))

    def extend(self, other: _BitWriter) -> None:
        self._parts.extend(other._parts)
        self.length += other.length

    def bits(self) -> np.ndarray:
        parts, text = [], []
        for part in self._parts:  # runs of integers spelled out as one string of 0s and 1s
            if isinstance(part, tuple):
                if part[0] == "deltas":
                    for v in part[1].tolist():
                        width = v.bit_length()
                        lw = width.bit_length()
                        text.append(format((width << (width - 1)) | (v - (1 << (width - 1))), f"0{2 * lw + width - 2}b"))
                else:
                    text.append(format(part[0], f"0{part[1]}b"))
                continue
            if text:
                parts.append(_spelled("".join(text)))
                text = []
            parts.append(part)
        if text:
            parts.append(_spelled("".join(text)))
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint8)


def _spelled(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("ascii"), dtype=np.uint8) - ord("0")


class _BitReader:
    def __init__(self, bits: np.ndarray) -> None:
        self._bits = bits
        self.pos = 0

    def _take(self, n: int) -> np.ndarray:
        if self.pos + n > self._bits.size:
            raise InputError(f"stream ends after {self._bits.size} bits, a code needs at least {self.pos + n}")
        out = self._bits[self.pos:self.pos + n]
        self.pos += n
        return out

    def read(self, nbits: int) -> int:
        value = 0
        for bit in self._take(nbits):
            value = (value << 1) | int(bit)
        return value

    def delta(self) -> int:
        zeros = 0
        while self.read(1) == 0:
            zeros += 1
            if zeros > 64:
                raise InputError("stream does not hold an Elias-delta code at this position")
        width = (1 << zeros) | self.read(zeros)
        return (1 << (width - 1)) | self.read(width - 1)

    def fixed(self, count: int, width: int) -> np.ndarray:
        out = np.zeros(count, dtype=np.int64)
        if width:
            block = self._take(count * width).reshape(count, width).astype(np.int64)
            for col in range(width):
                out = (out << 1) | block[:, col]
        return out

    def words(self, count: int) -> np.ndarray:
        return np.packbits(self._take(WORD_BITS * count)).view(">u4").astype(np.uint32)


def _delta_len(n: int) -> int:
    width = n.bit_length()
    return width - 1 + 2 * (width.bit_length() - 1) + 1


def _delta_lens(values: np.ndarray) -> np.ndarray:
    """``_delta_len`` of each of ``values`` (int64, 1 <= v < 2**53: bit lengths exact by frexp)."""
    width = np.frexp(values.astype(np.float64))[1].astype(np.int64)
    lw = np.frexp(width.astype(np.float64))[1].astype(np.int64)
    return width + 2 * lw - 2


def _zigzag(v: int) -> int:
    return 2 * v if v >= 0 else -2 * v - 1


def _unzigzag(z: int) -> int:
    return z // 2 if z % 2 == 0 else -(z + 1) // 2


def _to_bytes(bits: np.ndarray) -> bytes:
    return np.packbits(bits).tobytes()


def _from_bytes(name: str, stream) -> np.ndarray:
    if not isinstance(stream, (bytes, bytearray, memoryview)):
        raise InputError(f"{name} must be bytes, got {_describe(stream)}")
    return np.unpackbits(np.frombuffer(bytes(stream), dtype=np.uint8))


# --------------------------------------------------------------------------- probability models


def _categorical(counts: np.ndarray):
    return constriction.stream.model.Categorical(counts.astype(np.float64) / float(counts.sum()), perfect=False)


def _parametric(model: str, size: int, loc2: int, j: int):
    """The discretised Gaussian/Laplace on ``[0, size)`` with location ``loc2 / 2``, scale ``2**(j/8)``."""
    scale = 2.0 ** (j / SCALE_STEPS)
    cls = constriction.stream.model.QuantizedGaussian if model == "gaussian" else constriction.stream.model.QuantizedLaplace
    return cls(0, size - 1, loc2 / 2.0, scale)


def _range_encode(symbols: np.ndarray, model) -> np.ndarray:
    encoder = constriction.stream.queue.RangeEncoder()
    encoder.encode(symbols.astype(np.int32, copy=False), model)
    return encoder.get_compressed()


def _range_decode(words: np.ndarray, model, count: int) -> np.ndarray:
    return constriction.stream.queue.RangeDecoder(words).decode(model, count).astype(np.int64)


@dataclass
class _Candidate:
    model: str
    table: _BitWriter  # model tag and parameters
    words: np.ndarray | None  # range-coder payload (None for raw)
    raw: tuple[np.ndarray, int] | None = None  # (symbols, width) for raw

    @property
    def length_bits(self) -> int:
        return 0 if self.words is None else _delta_len(self.words.size + 1)

    @property
    def payload_bits(self) -> int:
        if self.words is None:
            symbols, width = self.raw
            return symbols.size * width
        return WORD_BITS * self.words.size

    @property
    def total(self) -> int:
        return self.table.length + self.length_bits + self.payload_bits


def _tag(model: str) -> _BitWriter:
    w = _BitWriter()
    w.write(MODELS.index(model), _MODEL_TAG_BITS)
    return w


def _raw_candidate(symbols: np.ndarray, size: int) -> _Candidate:
    return _Candidate("raw", _tag("raw"), None, (symbols, (size - 1).bit_length()))


_COUNT_SPAN = 2**22  # integer arrays spanning fewer values are counted with bincount, not sorted


def _counts(flat: np.ndarray, inverse: bool = False):
    """``np.unique(flat, return_counts=True)`` (and ``return_inverse``): the sorted values that occur
    and their counts, the same arrays; for an integer array of small span by one ``np.bincount``."""
    if flat.dtype.kind not in "iu" or int(flat.max()) - int(flat.min()) >= _COUNT_SPAN:
        out = np.unique(flat, return_inverse=inverse, return_counts=True)
        return (out[0], out[2], out[1]) if inverse else out
    lo = flat.min()
    shifted = (flat - lo).astype(np.intp)
    every = np.bincount(shifted)
    present = np.flatnonzero(every)
    values, counts = (present + lo).astype(flat.dtype), every[present]
    if not inverse:
        return values, counts
    rank = np.cumsum(every > 0) - 1
    return values, counts, rank[shifted]


def _empirical_candidate(symbols: np.ndarray, size: int) -> _Candidate | None:
    support, counts, inverse = _counts(symbols, inverse=True)
    k = support.size
    if k > MAX_ALPHABET:
        return None
    table = _tag("empirical")
    if size > 2:  # support = {0, ..., size - 1} ∩ occurring; 0 and size - 1 always occur
        gaps = (np.diff(support) - 1).astype(np.int64)
        gap_bits = _delta_len(k - 1) + (int(_delta_lens(gaps[:-1] + 1).sum()) if k > 2 else 0)
        table.write(int(gap_bits > size - 2), 1)
        if gap_bits <= size - 2:
            table.delta(k - 1)
            table.deltas(gaps[:-1] + 1)
        else:
            bitmap = np.zeros(size - 2, dtype=np.uint8)
            bitmap[support[1:-1] - 1] = 1
            table._append(bitmap)
    table.deltas(counts[:-1])
    return _Candidate("empirical", table, _range_encode(inverse.reshape(-1), _categorical(counts)))


def _parametric_candidate(model: str, symbols: np.ndarray, size: int) -> _Candidate | None:
    if size > MAX_ALPHABET:
        return None
    x = symbols.astype(np.float64)
    if model == "gaussian":
        loc2 = int(np.rint(2.0 * x.mean()))
        spread = math.sqrt(float(np.mean((x - loc2 / 2.0) ** 2)) + 1.0 / 12.0)
    else:
        loc2 = int(np.rint(2.0 * np.median(x)))
        spread = float(np.mean(np.abs(x - loc2 / 2.0))) + 0.25
    loc2 = min(max(loc2, 0), 2 * (size - 1))
    cache: dict[int, np.ndarray] = {}
    costs: dict[int, int] = {}
    symbols32 = symbols.astype(np.int32)  # once, not per scale tried

    def words(j: int) -> np.ndarray:
        if j not in cache:
            cache[j] = _range_encode(symbols32, _parametric(model, size, loc2, j))
        return cache[j]

    def cost(j: int) -> int:  # everything that depends on j
        if j not in costs:
            costs[j] = _delta_len(_zigzag(j) + 1) + _delta_len(words(j).size + 1) + WORD_BITS * words(j).size
        return costs[j]

    # Search j on the real code length. Lengths move in whole 32-bit words, so they have plateaus:
    # walk each way until _PATIENCE steps in a row bring no improvement.
    j = start = min(max(round(SCALE_STEPS * math.log2(spread)), _J_MIN), _J_MAX)
    for direction in (-1, 1):
        k, misses = start, 0
        while misses < _PATIENCE and _J_MIN <= k + direction <= _J_MAX:
            k += direction
            if cost(k) < cost(j):
                j, misses = k, 0
            else:
                misses += 1
    table = _tag(model)
    table.delta(loc2 + 1)
    table.delta(_zigzag(j) + 1)
    return _Candidate(model, table, words(j))


# --------------------------------------------------------------------------- one tensor


@dataclass(frozen=True, eq=False)
class EncodedTensor:
    """The code of one tensor of grid indices: the bit stream, its parts, and the entropy beside it."""

    levels: int
    """Grid points of the tensor's grid (known to the decoder: the grid choice is charged separately)."""
    shape: tuple[int, ...]
    model: str
    """``constant`` (one index only), or one of ``MODELS``."""
    stream: bytes
    """The code, padded with zero bits to whole bytes; ``length`` says how many bits are code."""
    length: int
    """Length of the code in bits; equals ``sum(bits.values())``."""
    bits: dict[str, int]
    """Itemised length: ``shape``, ``table`` (range, model tag, model parameters), ``length``
    (payload word count) and ``payload``."""
    payload: np.ndarray
    """The range coder's 32-bit words (empty for ``constant`` and ``raw``)."""
    entropy_bits: float
    """``N`` times the empirical entropy of the indices, ``-Σ n_s log2(n_s / N)``: what an ideal
    coder that knew the counts would spend on the payload."""

    @property
    def total_bits(self) -> int:
        return self.length

    def to_dict(self) -> dict:
        return {"levels": self.levels, "shape": list(self.shape), "model": self.model,
                "length": self.length, "bits": dict(self.bits), "payload_words": int(self.payload.size),
                "entropy_bits": self.entropy_bits}


def entropy_bits(indices) -> float:
    """``N`` times the empirical entropy of the indices, in bits: ``-Σ n_s log2(n_s / N)``."""
    indices = np.asarray(indices)
    if indices.size == 0:
        return 0.0
    counts = _counts(indices.reshape(-1))[1].astype(np.float64)
    total = counts.sum()
    return float(-(counts * np.log2(counts / total)).sum()) + 0.0  # + 0.0: no -0.0


def entropy_bits_many(arrays) -> list[float]:
    """``entropy_bits`` of each of ``arrays`` (integer arrays), the same numbers, counted by one
    ``np.bincount`` for all (for many small tensors, e.g. every replica's on every candidate grid)."""
    flats = [np.asarray(a).reshape(-1) for a in arrays]
    if not flats or any(f.size == 0 or f.dtype.kind not in "iu" for f in flats):
        return [entropy_bits(f) for f in flats]
    every = np.concatenate(flats)
    if (every.dtype.kind not in "iu" or int(every.max()) >= 2**62
            or int(every.max()) - int(every.min()) >= _COUNT_SPAN // len(flats)):
        return [entropy_bits(f) for f in flats]
    lo = int(every.min())
    span = int(every.max()) - lo + 1
    offsets = np.repeat(np.arange(len(flats), dtype=np.intp) * span - lo, [f.size for f in flats])
    shifted = every.astype(np.intp) + offsets
    rows = np.bincount(shifted, minlength=span * len(flats)).reshape(len(flats), span)
    present = (rows > 0).sum(axis=1)
    out = np.empty(len(flats))
    for width in np.unique(present).tolist():  # rows with as many symbols: one (rows, width) array,
        chosen = present == width              # each row summed as entropy_bits sums its counts
        block = rows[chosen]
        counts = block[block > 0].reshape(-1, width).astype(np.float64)
        out[chosen] = -(counts * np.log2(counts / counts.sum(axis=1, keepdims=True))).sum(axis=1)
    return [float(h) + 0.0 for h in out]


def _encode(indices: np.ndarray, levels: int, model: str | None) -> tuple[_BitWriter, EncodedTensor]:
    flat = indices.reshape(-1)
    writer = _BitWriter()
    writer.delta(indices.ndim + 1)
    for dim in indices.shape:
        writer.delta(int(dim))
    shape_bits = writer.length

    lo, hi = int(flat.min()), int(flat.max())
    size = hi - lo + 1
    table = _BitWriter()
    table.delta(_zigzag(lo - (levels - 1) // 2) + 1)
    table.delta(size)
    chosen: _Candidate | None = None
    if size > 1:
        symbols = flat - lo
        if model is None:
            options = [_raw_candidate(symbols, size), _empirical_candidate(symbols, size),
                       _parametric_candidate("gaussian", symbols, size),
                       _parametric_candidate("laplace", symbols, size)]
            chosen = min((c for c in options if c is not None), key=lambda c: c.total)
        else:
            builder = {"raw": _raw_candidate, "empirical": _empirical_candidate}.get(model)
            chosen = builder(symbols, size) if builder else _parametric_candidate(model, symbols, size)
            if chosen is None:
                raise InputError(f"model {model!r} needs at most {MAX_ALPHABET} symbols in the range of the "
                                 f"indices, got {size}; use model='raw' or None")
        table.extend(chosen.table)
    writer.extend(table)
    length_bits = payload_bits = 0
    words = np.zeros(0, dtype=np.uint32)
    if chosen is not None:
        if chosen.words is None:
            symbols, width = chosen.raw
            writer.fixed(symbols, width)
        else:
            words = chosen.words
            writer.delta(words.size + 1)
            writer.words(words)
        length_bits, payload_bits = chosen.length_bits, chosen.payload_bits
    bits = {"shape": shape_bits, "table": table.length, "length": length_bits, "payload": payload_bits}
    assert sum(bits.values()) == writer.length
    encoded = EncodedTensor(levels, tuple(int(d) for d in indices.shape),
                            "constant" if chosen is None else chosen.model, _to_bytes(writer.bits()),
                            writer.length, bits, words, entropy_bits(flat))
    return writer, encoded


def encode_tensor(indices, levels, *, model: str | None = None) -> EncodedTensor:
    """The code of an integer array of grid indices in ``[0, levels)``.

    ``model=None`` writes every applicable model and keeps the shortest (the 2-bit model tag is in
    the code); a name from ``MODELS`` forces that model (for comparisons). A tensor holding one index
    only is coded as ``constant`` (shape and range, no tag, no payload) whatever ``model`` says.
    """
    levels = _check_levels("levels", levels)
    if model is not None and model not in MODELS:
        raise InputError(f"model must be None or one of {', '.join(MODELS)}, got {_describe(model)}")
    return _encode(_check_indices("indices", indices, levels), levels, model)[1]


def _read_tensor(reader: _BitReader, levels: int) -> np.ndarray:
    ndim = reader.delta() - 1
    shape = tuple(reader.delta() for _ in range(ndim))
    count = math.prod(shape)
    lo = _unzigzag(reader.delta() - 1) + (levels - 1) // 2
    size = reader.delta()
    if lo < 0 or lo + size > levels:
        raise InputError(f"stream holds index range [{lo}, {lo + size - 1}] outside a grid of {levels} points")
    if size == 1:
        return np.full(shape, lo, dtype=np.int64)
    tag = reader.read(_MODEL_TAG_BITS)
    model = MODELS[tag]
    if model == "raw":
        symbols = reader.fixed(count, (size - 1).bit_length())
    elif model == "empirical":
        if size == 2:
            support = np.array([0, 1], dtype=np.int64)
        elif reader.read(1) == 0:
            k = reader.delta() + 1
            gaps = [reader.delta() - 1 for _ in range(k - 2)]
            support = np.concatenate([[0], np.cumsum(np.array(gaps, dtype=np.int64) + 1), [size - 1]])
        else:
            interior = np.flatnonzero(reader.fixed(size - 2, 1)) + 1
            support = np.concatenate([[0], interior, [size - 1]]).astype(np.int64)
        counts = [reader.delta() for _ in range(support.size - 1)]
        counts.append(count - sum(counts))
        if counts[-1] < 1:
            raise InputError("stream holds symbol counts that exceed the tensor's size")
        words = reader.words(reader.delta() - 1)
        symbols = support[_range_decode(words, _categorical(np.array(counts, dtype=np.int64)), count)]
    else:
        loc2 = reader.delta() - 1
        j = _unzigzag(reader.delta() - 1)
        words = reader.words(reader.delta() - 1)
        symbols = _range_decode(words, _parametric(model, size, loc2, j), count)
    return (symbols + lo).reshape(shape)


def decode_tensor(encoded: EncodedTensor) -> np.ndarray:
    """The int64 indices back from ``encoded`` (read from its bit stream alone, with its ``levels``)."""
    if not isinstance(encoded, EncodedTensor):
        raise InputError(f"encoded must be an EncodedTensor, got {_describe(encoded)}")
    reader = _BitReader(_from_bytes("encoded.stream", encoded.stream))
    out = _read_tensor(reader, encoded.levels)
    if reader.pos != encoded.length:
        raise InputError(f"encoded.length is {encoded.length} bits but its code is {reader.pos} bits")
    return out


# --------------------------------------------------------------------------- the adapter


@dataclass(frozen=True, eq=False)
class CodeLength:
    """The length of an adapter's code, itemised; ``total_bits`` is the ``|c(h)|`` of THEORY §4."""

    total_bits: float
    items: dict[str, float]
    """``header`` (number of tensors); per tensor ``NAME.shape``, ``NAME.table``, ``NAME.length``,
    ``NAME.payload`` (and ``NAME.grid`` when each tensor's grid was chosen); ``grid`` (a shared
    grid's choice), ``choice.KEY`` per hyper-parameter, ``seed``, ``prefix``. Sums to ``total_bits``."""
    entropy_bits: dict[str, float]
    """Per tensor, ``N`` times the empirical entropy of its indices (compare with ``NAME.payload``)."""
    models: dict[str, str]
    """Per tensor, the probability model its code uses."""
    grids: dict[str, Grid]
    """Per tensor, its grid."""
    stream: bytes = field(repr=False)
    """The self-delimiting code of the indices (header and tensors), padded to whole bytes."""
    stream_bits: int = 0
    """Length of ``stream`` in bits: the items that are written, without the union-bound charges."""

    @property
    def total_nats(self) -> float:
        return self.total_bits * LN2

    def to_dict(self) -> dict:
        return {"total_bits": self.total_bits, "total_nats": self.total_nats, "items": dict(self.items),
                "entropy_bits": dict(self.entropy_bits), "models": dict(self.models),
                "grids": {name: grid.to_dict() for name, grid in self.grids.items()},
                "stream_bits": self.stream_bits}

    def table(self) -> str:
        """A plain-text itemised table (bits), with each payload's entropy beside it."""
        rows = []
        for key, value in self.items.items():
            note = ""
            name, _, part = key.rpartition(".")
            if part == "payload" and name in self.entropy_bits:
                note = f"entropy {self.entropy_bits[name]:.1f}, {self.models[name]}"
            elif key == "prefix":
                note = "stream is self-delimiting"
            rows.append((key, _fmt_bits(value), note))
        rows.append(("total", _fmt_bits(self.total_bits), f"{self.total_nats:.1f} nats"))
        width = max(len(r[0]) for r in rows)
        num = max(len(r[1]) for r in rows)
        lines = [f"{'item':<{width}}  {'bits':>{num}}"]
        lines += [f"{k:<{width}}  {v:>{num}}" + (f"  ({n})" if n else "") for k, v, n in rows]
        return "\n".join(lines)


def _fmt_bits(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}"


def _grids_for(tensors: Mapping, grid) -> tuple[dict[str, Grid], bool]:
    """Per tensor grid, and whether one grid is shared by all."""
    if isinstance(grid, Mapping):
        if set(grid) != set(tensors):
            raise InputError(f"grid must have the same names as tensors ({sorted(tensors)}), got {sorted(grid)}")
        return {name: as_grid(f"grid[{name!r}]", grid[name]) for name in tensors}, False
    shared = as_grid("grid", grid)
    return {name: shared for name in tensors}, True


def _charges(items: dict[str, float], choices: dict[str, int], seed_bits: int) -> None:
    for key, count in choices.items():
        items[f"choice.{key}"] = math.log2(count)
    items["seed"] = float(seed_bits)
    items["prefix"] = 0.0


def _assemble(names, encoded: dict[str, EncodedTensor], writers: dict[str, _BitWriter], grids: dict[str, Grid],
              grid_items: dict[str, float], choices: dict[str, int], seed_bits: int) -> CodeLength:
    stream = _BitWriter()
    stream.delta(len(names))
    items: dict[str, float] = {"header": float(stream.length)}
    for name in names:
        for part, bits in encoded[name].bits.items():
            items[f"{name}.{part}"] = float(bits)
        if f"{name}.grid" in grid_items:
            items[f"{name}.grid"] = grid_items[f"{name}.grid"]
        stream.extend(writers[name])
    if "grid" in grid_items:
        items["grid"] = grid_items["grid"]
    _charges(items, choices, seed_bits)
    return CodeLength(math.fsum(items.values()), items, {n: encoded[n].entropy_bits for n in names},
                      {n: encoded[n].model for n in names}, dict(grids), _to_bytes(stream.bits()), stream.length)


def adapter_code_length(tensors, grid, *, choices=None, seed_bits=0, grid_candidates=1) -> CodeLength:
    """The itemised code length of an adapter's trained tensors, given as grid indices.

    ``tensors``: name -> integer array of indices, in the architecture's fixed order (names are not
    coded). ``grid``: one grid for all (a ``Grid``, ``(bits, clip)`` or ``UniformGrid``) or a dict
    name -> grid. ``grid_candidates``: how many grids the grid was chosen from — charged
    ``log2(grid_candidates)`` once for a shared grid, per tensor for a dict (1: fixed in advance).
    ``choices``: name -> number of candidates of each setting chosen after looking at data or
    results, ``log2`` bits each. ``seed_bits``: bits of the frozen factor's seed (0 if nothing frozen
    is random, or if its draw is part of the prior).
    """
    tensors = _check_mapping("tensors", tensors)
    grids, shared = _grids_for(tensors, grid)
    count = _check_int("grid_candidates", grid_candidates, 1)
    choices = _check_choices(choices)
    seed_bits = _check_int("seed_bits", seed_bits, 0)
    names = list(tensors)
    writers, encoded = {}, {}
    for name in names:
        levels = grids[name].levels
        writers[name], encoded[name] = _encode(_check_indices(f"tensors[{name!r}]", tensors[name], levels), levels, None)
    charge = math.log2(count)
    grid_items = {"grid": charge} if shared else {f"{n}.grid": charge for n in names}
    return _assemble(names, encoded, writers, grids, grid_items, choices, seed_bits)


def decode_adapter(stream, levels) -> tuple[list[np.ndarray], int]:
    """The tensors' indices back from an adapter's ``stream``, and the number of bits read.

    ``levels``: the grid points of each tensor's grid, in order (one int for all). Bytes after the
    code are ignored: the stream says where it ends.
    """
    bits = _from_bytes("stream", stream)
    reader = _BitReader(bits)
    count = reader.delta()
    if isinstance(levels, Sequence) and not isinstance(levels, (str, bytes)):
        per = [_check_levels(f"levels[{i}]", v) for i, v in enumerate(levels)]
        if len(per) != count:
            raise InputError(f"levels must give one value per tensor ({count} in the stream), got {len(per)}")
    else:
        per = [_check_levels("levels", levels)] * count
    return [_read_tensor(reader, n) for n in per], reader.pos


# --------------------------------------------------------------------------- grid choice


@dataclass(frozen=True)
class GridOption:
    """One candidate grid for one tensor: its code length and quantisation error."""

    grid: Grid
    code_bits: int
    max_error: float
    """Largest ``|q(x) - x|`` (clipped values included)."""
    rms_error: float
    feasible: bool
    """Whether the error (in the chosen metric) is within the tolerance."""


@dataclass(frozen=True, eq=False)
class GridChoice:
    """The shortest feasible grid among the candidates, with the whole trade-off."""

    grid: Grid
    index: int
    """Position of ``grid`` among the candidates."""
    encoded: EncodedTensor
    choice_bits: float
    """``log2(len(candidates))``: the price of choosing, to add to the code."""
    options: tuple[GridOption, ...]

    def table(self) -> str:
        lines = [f"{'bits':>4} {'clip':>10} {'code bits':>10} {'max err':>10} {'rms err':>10}  feasible"]
        for i, o in enumerate(self.options):
            mark = "  <- chosen" if i == self.index else ""
            lines.append(f"{o.grid.bits:>4} {o.grid.clip:>10.4g} {o.code_bits:>10} {o.max_error:>10.3g} "
                         f"{o.rms_error:>10.3g}  {'yes' if o.feasible else 'no'}{mark}")
        return "\n".join(lines)


def _check_candidates(candidates) -> list[Grid]:
    if candidates is None or isinstance(candidates, (str, bytes)) or not isinstance(candidates, Sequence):
        raise InputError(f"candidates must be a non-empty list of grids, got {_describe(candidates)}")
    if not candidates:
        raise InputError("candidates must be a non-empty list of grids, got an empty list")
    return [as_grid(f"candidates[{i}]", c) for i, c in enumerate(candidates)]


def _check_tolerance(tolerance) -> float | None:
    if tolerance is None:
        return None
    if isinstance(tolerance, bool) or not isinstance(tolerance, Real) or math.isnan(tolerance) or tolerance < 0:
        raise InputError(f"tolerance must be None or a number >= 0, got {_describe(tolerance)}")
    return float(tolerance)


def _choose(x: np.ndarray, grids: list[Grid], tolerance: float | None, metric: str):
    options, codes = [], []
    for grid in grids:
        idx = grid.indices(x)
        with np.errstate(invalid="ignore", over="ignore"):
            err = np.abs(grid.values(idx) - x)
        max_err = float(err.max())
        rms = float(np.sqrt(np.mean(err**2)))
        error = max_err if metric == "max" else rms
        writer, enc = _encode(idx, grid.levels, None)
        codes.append((writer, enc))
        options.append(GridOption(grid, enc.length, max_err, rms, tolerance is None or error <= tolerance))
    feasible = [i for i, o in enumerate(options) if o.feasible]
    if not feasible:
        best = min(o.max_error if metric == "max" else o.rms_error for o in options)
        raise InputError(f"tolerance {tolerance} ({metric} error) is met by no candidate grid; "
                         f"the smallest error among them is {best:.4g}")
    key = (lambda i: (options[i].code_bits, options[i].max_error if metric == "max" else options[i].rms_error, i))
    index = min(feasible, key=key)
    return index, options, codes


def choose_grid(values, candidates, *, tolerance=None, metric="max") -> GridChoice:
    """Among ``candidates`` (grids fixed in advance), the grid giving ``values`` the shortest code
    whose quantisation error (``metric``: ``max`` or ``rms`` of ``|q(x) - x|``) is at most
    ``tolerance`` (``None``: no constraint). The choice costs ``log2(len(candidates))`` bits."""
    x = _check_values("values", values)
    grids = _check_candidates(candidates)
    index, options, codes = _choose(x, grids, _check_tolerance(tolerance), _check_metric(metric))
    return GridChoice(grids[index], index, codes[index][1], math.log2(len(grids)), tuple(options))


def adapter_code_length_from_values(values, grid=None, *, candidates=None, tolerance=None, metric="max",
                                    choices=None, seed_bits=0, grid_candidates=1) -> CodeLength:
    """``adapter_code_length`` for float tensors, quantised here exactly as ``UniformGrid`` does.

    Give either ``grid`` (one grid, or a dict name -> grid; ``grid_candidates`` as in
    ``adapter_code_length``) or ``candidates``: then each tensor gets the shortest grid within
    ``tolerance`` (``choose_grid``) and pays ``log2(len(candidates))`` bits (item ``NAME.grid``).
    """
    values = _check_mapping("values", values)
    if (grid is None) == (candidates is None):
        raise InputError("give exactly one of grid and candidates, got "
                         + ("neither" if grid is None else "both"))
    choices = _check_choices(choices)
    seed_bits = _check_int("seed_bits", seed_bits, 0)
    arrays = {name: _check_values(f"values[{name!r}]", v) for name, v in values.items()}
    names = list(arrays)
    count = _check_int("grid_candidates", grid_candidates, 1)
    if grid is not None:
        if tolerance is not None:
            raise InputError("tolerance applies only with candidates, got a fixed grid")
        _check_metric(metric)
        grids, shared = _grids_for(values, grid)
        writers, encoded = {}, {}
        for name in names:
            g = grids[name]
            writers[name], encoded[name] = _encode(g.indices(arrays[name]), g.levels, None)
        charge = math.log2(count)
        grid_items = {"grid": charge} if shared else {f"{n}.grid": charge for n in names}
        return _assemble(names, encoded, writers, grids, grid_items, choices, seed_bits)
    if count != 1:
        raise InputError(f"grid_candidates applies only with a fixed grid (candidates are counted "
                         f"themselves), got {count}")
    grid_list = _check_candidates(candidates)
    tolerance, metric = _check_tolerance(tolerance), _check_metric(metric)
    writers, encoded, grids = {}, {}, {}
    for name in names:
        index, _, codes = _choose(arrays[name], grid_list, tolerance, metric)
        grids[name] = grid_list[index]
        writers[name], encoded[name] = codes[index]
    charge = math.log2(len(grid_list))
    return _assemble(names, encoded, writers, grids, {f"{n}.grid": charge for n in names}, choices, seed_bits)
