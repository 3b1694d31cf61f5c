"""Atomic file output: write beside the target, then ``os.replace``. Standard library only.

A failure part-way (an exception, a kill) never leaves a truncated or half-written file at the
target path: either the old file stays, or the complete new one replaces it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


@contextlib.contextmanager
def atomic_output(path, mode: str = "wb", **open_kwargs) -> Iterator[IO]:
    """Yield a file handle on a temporary file beside ``path``; on success it replaces ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, mode, **open_kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write(path, data: bytes | str) -> Path:
    """Write ``data`` (text is UTF-8 encoded) to ``path`` atomically."""
    with atomic_output(path, "wb") as handle:
        handle.write(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_file(path, data: bytes | str) -> Path:
    """``atomic_write`` that first creates the folder ``path`` lies in, when it is missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, data)


def safe_name(text: str) -> str:
    """``text`` as one file or folder name: ``/`` becomes ``-``, ``:`` and anything else outside
    letters, digits, ``.``, ``_``, ``-`` become ``_`` (``mnist/vit:permute`` -> ``mnist-vit_permute``)."""
    import re

    return re.sub(r"[^A-Za-z0-9._-]", "_", str(text).replace("/", "-"))
