"""The command line's parts that every subcommand shares: the registry and the argument types.

``register(name, help, add_arguments, run)`` adds a subcommand; ``infobound.cli`` builds the parser
from ``COMMANDS``. The argument types turn text into values through ``infobound.validation``, so a
value the API refuses is refused by the CLI with the same words (argparse adds ``argument --x:``).
Options whose default is ``None`` can be told apart from options the user wrote: ``given(args, x)``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Callable

from .errors import InputError
from .spec import ALL_MODES, Mode
from .validation import MAX_COUNT, check_int, check_real

MODES_TEXT = ", ".join(m.value for m in Mode)


# ------------------------------------------------------------------------------------ registry
@dataclass(frozen=True)
class Command:
    """A subcommand: ``add_arguments(parser)`` declares its options, ``run(args)`` returns a status."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: dict[str, Command] = {}


def register(name: str, help: str, add_arguments, run) -> Command:
    """Add a subcommand to the registry (a later registration under the same name replaces it)."""
    COMMANDS[name] = Command(name, help, add_arguments, run)
    return COMMANDS[name]


def warn(message: str) -> None:
    """One line on stderr that the user should read, without stopping the command."""
    print(f"infobound: warning: {' '.join(message.split())}", file=sys.stderr)


# ------------------------------------------------------------------------------ argument types
def _short(text: str) -> str:
    return repr(text) if len(text) <= 40 else repr(text[:20] + "..." + text[-8:]) + f" ({len(text)} characters)"


def _to_number(text: str):
    """int for integer text (any length Python parses), else float; ArgumentTypeError otherwise."""
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {_short(text)}") from None


def integer_type(low: int | None = None, high: int | None = MAX_COUNT) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high], also written as ``1e6``; never NaN or inf."""

    def parse(text: str) -> int:
        try:
            return check_int("value", _to_number(text), low, high)
        except InputError as exc:
            raise argparse.ArgumentTypeError(str(exc).replace("value must", "must", 1)
                                             .split(", got")[0] + f", got {_short(text)}") from None
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {_short(text)}") from None

    parse.__name__ = "integer"
    return parse


def number_type(low: float | None = None, high: float | None = None, *, open_low: bool = False,
                open_high: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number in the given range."""

    def parse(text: str) -> float:
        try:
            return check_real("value", _to_number(text), low, high, open_low=open_low, open_high=open_high)
        except InputError as exc:
            raise argparse.ArgumentTypeError(str(exc).replace("value must", "must", 1)
                                             .split(", got")[0] + f", got {_short(text)}") from None

    parse.__name__ = "number"
    return parse


integer = integer_type()
"""Any integer up to 2**53."""
number = number_type()
"""Any finite number."""


def modes(text: str) -> tuple[Mode, ...]:
    """One mode, a comma list, or ``all``."""
    if text.strip().lower() == "all":
        return ALL_MODES
    out = []
    for item in text.split(","):
        try:
            out.append(Mode.parse(item))
        except InputError:
            raise argparse.ArgumentTypeError(
                f"must be one of {MODES_TEXT}, a comma list of them, or all; got {item.strip()!r}"
            ) from None
    return tuple(dict.fromkeys(out))


def int_list(low: int = 1, high: int | None = MAX_COUNT) -> Callable[[str], tuple[int, ...]]:
    """An argparse type: a comma list of integers in [low, high]."""
    item = integer_type(low, high)

    def parse(text: str) -> tuple[int, ...]:
        parts = [t for t in text.split(",") if t.strip()]
        if not parts:
            raise argparse.ArgumentTypeError(f"must be a comma list of integers, got {_short(text)}")
        try:
            return tuple(item(t) for t in parts)
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentTypeError(f"must be a comma list of integers ({exc})") from None

    parse.__name__ = "integer list"
    return parse


def bits_list(text: str) -> tuple[int | None, ...]:
    """Bit widths 1 to 64, comma separated; ``none`` evaluates the unquantised model."""
    item = integer_type(1, 64)
    out = []
    for part in (t.strip().lower() for t in text.split(",") if t.strip()):
        try:
            out.append(None if part in ("none", "float") else item(part))
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentTypeError(f"must be a comma list of bit widths 1 to 64 or 'none' "
                                             f"({exc})") from None
    if not out:
        raise argparse.ArgumentTypeError("must list at least one bit width (1 to 64) or 'none'")
    return tuple(out)


def given(args: argparse.Namespace, name: str) -> bool:
    """Whether an option whose default is ``None`` (or a flag whose default is False) was written."""
    value = getattr(args, name, None)
    return value is not None and value is not False


def refuse_inert(args: argparse.Namespace, options: dict[str, str]) -> None:
    """Refuse the first option in ``options`` (attribute -> why it would do nothing) that was given."""
    for attr, why in options.items():
        if given(args, attr):
            raise InputError(f"--{attr.replace('_', '-')} {why}")


def fill_defaults(args: argparse.Namespace, defaults: dict) -> None:
    """Set the options that were not given to their documented defaults."""
    for attr, value in defaults.items():
        if getattr(args, attr, None) is None:
            setattr(args, attr, value)
