"""The one exception type for bad user input.

``InputError`` is a ``ValueError``: API users catch ``ValueError`` as usual, while the CLI catches
exactly this class to turn a message into one stderr line and exit status 2, so that a genuine bug
(any other exception) still surfaces with its traceback.
"""

from __future__ import annotations

from enum import Enum


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


class RunFailed(RuntimeError):
    """Work failed while running (a worker's error, not bad input); the message says what was kept.

    The CLI prints the message as one line and exits with status 1."""


class Interrupted(Exception):
    """Work stopped by the user (Ctrl-C); the message says what was kept and how to go on.

    The CLI prints the message as one line and exits with status 130, as shells do for SIGINT.
    """
