"""The one validation layer: every public entry point checks its arguments here, before any work.

Each check takes the parameter's ``name`` (as the user wrote it: ``n``, ``--ranks``, ``config.lr``)
and raises ``InputError`` (a ``ValueError``) whose message names the parameter, the value received
and what is allowed. Types are checked before values, so ``None``, a string or a bool never reaches
a formula as ``nan`` or ``1``. Sizes that cannot be represented are refused with the allowed range
instead of overflowing later: counts are exact Python integers up to ``MAX_COUNT`` (2**53, the
largest integer float64 holds exactly), reals are finite float64.

numpy and the standard library only; the CLI's argument types (``infobound.cliargs``) are built on
these functions, so the API and the command line refuse the same values with the same words.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from numbers import Integral, Real
from pathlib import Path

import numpy as np

from .errors import InputError

MAX_COUNT = 2**53
"""Largest count accepted by default (layer sizes, parameter counts, seeds, steps, ...)."""
FLOAT_MAX = float(np.finfo(np.float64).max)
FLOAT_TINY = float(np.finfo(np.float64).tiny)


def describe(value) -> str:
    """A short repr for messages: long integers and long sequences are abbreviated."""
    if isinstance(value, Integral) and not isinstance(value, bool) and abs(int(value)) >= 10**20:
        digits = len(str(abs(int(value))))
        return f"an integer of {digits} digits ({str(value)[:6]}...)"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def range_text(kind: str, low, high, open_low: bool = False, open_high: bool = False) -> str:
    """'a finite number in (0, 1]', 'an integer >= 1', ...: the allowed values, in words."""
    fmt = lambda x: f"{x:,}" if isinstance(x, int) and abs(x) >= 10**6 else f"{x:g}" if isinstance(x, float) else str(x)  # noqa: E731
    if low is not None and high is not None:
        return f"{kind} in {'(' if open_low else '['}{fmt(low)}, {fmt(high)}{')' if open_high else ']'}"
    if low is not None:
        return f"{kind} {'>' if open_low else '>='} {fmt(low)}"
    if high is not None:
        return f"{kind} {'<' if open_high else '<='} {fmt(high)}"
    return kind


def is_number(value) -> bool:
    """A real number that is not a bool (numpy scalars included)."""
    return isinstance(value, (Real, np.number)) and not isinstance(value, (bool, np.bool_))


def check_int(name: str, value, low: int | None = None, high: int | None = MAX_COUNT) -> int:
    """``value`` as an ``int`` in [low, high]; a float with no fraction (``1e6``) is accepted.

    The default ``high`` (``MAX_COUNT``) is named in the message only when a value exceeds it.
    """
    value = _unwrap(value)
    allowed = range_text("an integer", low, None if high == MAX_COUNT else high)
    if not is_number(value):
        raise InputError(f"{name} must be {allowed}, got {describe(value)}")
    if not isinstance(value, (Integral, np.integer)):
        fvalue = float(value)
        if not math.isfinite(fvalue) or fvalue != math.floor(fvalue):
            raise InputError(f"{name} must be {allowed}, got {describe(value)}")
    ivalue = int(value)
    if high is not None and ivalue > high:
        raise InputError(f"{name} must be {range_text('an integer', low, high)}, got {describe(ivalue)}")
    if low is not None and ivalue < low:
        raise InputError(f"{name} must be {allowed}, got {describe(ivalue)}")
    return ivalue


def check_real(name: str, value, low: float | None = None, high: float | None = None, *,
               open_low: bool = False, open_high: bool = False) -> float:
    """``value`` as a finite float in the given range (ends open or closed)."""
    value = _unwrap(value)
    allowed = range_text("a finite number", low, high, open_low, open_high)
    if not is_number(value):
        raise InputError(f"{name} must be {allowed}, got {describe(value)}")
    try:
        fvalue = float(value)
    except OverflowError:
        raise InputError(f"{name} must be {allowed}, got {describe(value)} (beyond float64)") from None
    if not math.isfinite(fvalue) or (low is not None and (fvalue < low or (open_low and fvalue == low))) \
            or (high is not None and (fvalue > high or (open_high and fvalue == high))):
        raise InputError(f"{name} must be {allowed}, got {describe(value)}")
    return fvalue


def check_reals(name: str, value, *, low: float, high: float | None = None, open_low: bool = False,
                integer: bool = False) -> np.ndarray:
    """A number or an array of numbers, all finite and in range; returned as float64 (0-d for scalars)."""
    kind = "an integer" if integer else "a finite number"
    allowed = range_text(kind, low, high, open_low)
    if value is None or isinstance(value, (str, bytes, bool, np.bool_, Mapping)):
        raise InputError(f"{name} must be {allowed} or an array of them, got {describe(value)}")
    try:
        arr = np.asarray(value)
        if arr.dtype == object or arr.dtype.kind not in "iuf":
            raise TypeError
        arr = arr.astype(np.float64)
    except OverflowError:
        raise InputError(f"{name} must be {allowed} (at most {FLOAT_MAX:.3g}), got "
                         f"{describe(value)}") from None
    except (TypeError, ValueError):
        raise InputError(f"{name} must be {allowed} or an array of them, got {describe(value)}") from None
    if arr.size == 0:
        raise InputError(f"{name} must hold at least one value, got an empty array")
    bad = ~np.isfinite(arr)
    with np.errstate(invalid="ignore"):
        bad |= (arr <= low) if open_low else (arr < low)
        if high is not None:
            bad |= arr > high
        if integer:
            bad |= np.floor(arr) != arr
    if bad.any():
        first = arr[bad].flat[0] if arr.ndim else arr.item()
        raise InputError(f"{name} must be {allowed}, got {_fmt(first)}")
    return arr


def scalar_or_array(value):
    """0-d arrays become Python scalars (float, or bool for masks); arrays stay arrays."""
    arr = np.asarray(value)
    if arr.ndim == 0:
        return bool(arr) if arr.dtype == bool else float(arr)
    return arr


def check_finite_result(name: str, value, why) -> None:
    """Refuse a result that float64 cannot represent (an overflow to inf or an underflow to 0).

    ``why`` (a string, or a function returning one, called only on failure) says what to change.
    """
    arr = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(arr)) or np.any(arr < FLOAT_TINY):
        with np.errstate(all="ignore"):
            text = why() if callable(why) else why
        raise InputError(f"{name} is not representable in float64 (range {FLOAT_TINY:.3g} to "
                         f"{FLOAT_MAX:.3g}) for these inputs: {text}")


def check_instance(name: str, value, types, what: str):
    """``value`` if it is an instance of ``types``; else an error saying ``what`` is expected."""
    if not isinstance(value, types):
        raise InputError(f"{name} must be {what}, got {type(value).__name__} {describe(value)}")
    return value


def check_names(name: str, value) -> tuple[str, ...]:
    """Names as a tuple: a comma-separated string (``"fc1,fc2"``) or an iterable of strings."""
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, Iterable) and not isinstance(value, (bytes, Mapping)):
        items = list(value)
        for item in items:
            if not isinstance(item, str):
                raise InputError(f"{name} must be names (strings), got {describe(item)} in {describe(value)}")
    else:
        raise InputError(f"{name} must be a comma-separated string or a list of names, got {describe(value)}")
    names = tuple(dict.fromkeys(s.strip() for s in items if s.strip()))
    if not names:
        raise InputError(f"{name} must name at least one item, got {describe(value)}")
    return names


def check_list(name: str, value, item) -> tuple:
    """A non-empty tuple of distinct values, each checked by ``item(name, v)``.

    One value, a comma-separated string, or an iterable of values are accepted; a string is never
    iterated character by character.
    """
    if isinstance(value, str):
        raw = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, Iterable) and not isinstance(value, (bytes, Mapping)):
        raw = list(value)
    else:
        raw = [value]
    values = tuple(item(name, v) for v in raw)
    if not values:
        raise InputError(f"{name} must list at least one value")
    if len(set(values)) != len(values):
        raise InputError(f"{name} must not repeat values, got {list(values)}")
    return values


def check_path(name: str, value) -> Path:
    """A filesystem path given as ``str`` or ``os.PathLike`` (never ``None``, never empty)."""
    if not isinstance(value, (str, os.PathLike)) or not str(os.fspath(value)).strip():
        raise InputError(f"{name} must be a folder or file path (str or pathlib.Path), got {describe(value)}")
    path = Path(value)
    try:
        path.exists()
    except OSError as exc:  # a name too long for the file system, say
        raise InputError(f"{name} is not a usable path ({exc.strerror}): {describe(str(path))}") from None
    return path


def check_choice(name: str, value, allowed) -> str:
    """One of the ``allowed`` strings."""
    if not isinstance(value, str) or value not in allowed:
        raise InputError(f"{name} must be one of {', '.join(allowed)}, got {describe(value)}")
    return value


def _unwrap(value):
    """A 0-d numeric numpy array is its scalar."""
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iuf":
        return value.item()
    return value


def _fmt(x) -> str:
    x = float(x)
    return str(int(x)) if x.is_integer() and abs(x) < 1e16 else repr(x)
