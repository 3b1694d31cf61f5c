"""The one exception type for bad user input.

``InputError`` is a ``ValueError``: API users catch ``ValueError`` as usual, while the CLI catches
exactly this class to turn a message into one stderr line and exit status 2, so that a genuine bug
(any other exception) still surfaces with its traceback.
"""

from __future__ import annotations

import math
from enum import Enum
from numbers import Integral, Real


class InputError(ValueError):
    """Raised for invalid user input; the message names the parameter and what is allowed."""


class Choice(str, Enum):
    """A string option (``Mode``, ``FrozenInit``, ...): users pass the member or its value."""

    @classmethod
    def option_name(cls) -> str:
        """The parameter's name in error messages."""
        return cls.__name__.lower()

    @classmethod
    def parse(cls, value):
        """Accept a member or its string value; raise ``InputError`` listing the allowed values."""
        if isinstance(value, cls):
            return value
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            allowed = ", ".join(m.value for m in cls)
            raise InputError(f"{cls.option_name()} must be one of {allowed}, got {value!r}") from None

    def __str__(self) -> str:  # "b_only", not "Mode.B_ONLY", in messages and tables
        return self.value


def check_int(name: str, value, low: int | None = None, high: int | None = None) -> int:
    """Return ``value`` as an ``int`` or raise ``InputError`` naming ``name`` and the allowed range."""
    allowed = _range_text("an integer", low, high)
    if isinstance(value, bool) or not isinstance(value, (Integral, Real)):
        raise InputError(f"{name} must be {allowed}, got {value!r}")
    if isinstance(value, Real) and not isinstance(value, Integral):
        if not math.isfinite(value) or value != int(value):
            raise InputError(f"{name} must be {allowed}, got {value!r}")
    ivalue = int(value)
    if (low is not None and ivalue < low) or (high is not None and ivalue > high):
        raise InputError(f"{name} must be {allowed}, got {ivalue}")
    return ivalue


def _range_text(kind: str, low, high) -> str:
    if low is not None and high is not None:
        return f"{kind} in [{low}, {high}]"
    if low is not None:
        return f"{kind} >= {low}"
    if high is not None:
        return f"{kind} <= {high}"
    return kind
