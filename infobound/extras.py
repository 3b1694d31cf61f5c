"""Optional dependencies: which extra provides what, and one clear error when it is missing.

The calculator needs numpy, scipy, sympy and matplotlib only. The harness needs torch and
scikit-learn (``pip install "infobound[harness]"``). ``require`` is called by a command before it
touches anything, so a missing extra costs one line on stderr and exit status 2, never a traceback
and never a half-written output folder.
"""

from __future__ import annotations

import importlib.util

from .errors import InputError

HARNESS = {"torch": "torch", "sklearn": "scikit-learn"}
"""Import name -> distribution name, for the ``harness`` extra."""
INSTALL = {"harness": 'pip install torch==2.13.0 && pip install "infobound[harness]"'}


class MissingExtra(InputError):
    """An optional dependency is not installed; the message says which extra to install."""


def missing(modules: dict[str, str]) -> list[str]:
    """The distributions of ``modules`` (import name -> distribution) that cannot be imported."""
    out = []
    for module, dist in modules.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            out.append(dist)
    return out


def require(what: str, extra: str = "harness", modules: dict[str, str] = HARNESS) -> None:
    """Raise ``MissingExtra`` naming ``what`` needs, what is missing, and the install command."""
    absent = missing(modules)
    if absent:
        raise MissingExtra(f"{what} needs {' and '.join(absent)}, which {'is' if len(absent) == 1 else 'are'} "
                           f"not installed: {INSTALL[extra]}")
