"""Fixtures shared by the harness tests."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

# Pretrained weights go to a folder of this test session, never the user's cache (set at import, so
# also for code that runs while tests are collected and for the worker processes sweeps start).
_CACHE = tempfile.mkdtemp(prefix="infobound-test-cache-")
os.environ["INFOBOUND_CACHE"] = _CACHE


@pytest.fixture(scope="session", autouse=True)
def pretrain_cache_folder():
    """The session's disk cache of pretrained weights (``$INFOBOUND_CACHE``), removed at the end."""
    yield _CACHE
    shutil.rmtree(_CACHE, ignore_errors=True)


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op torch thread for a module (restored after): the networks are tiny, and on a
    busy machine several threads only contend, which slows training by an order of magnitude.
    Modules use it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def finish_sweep(tmp_path_factory):
    """``finish_sweep(config, name)``: run ``validate`` into a fresh folder and return the folder,
    validate's result, the stored records and their arrays."""

    def run(config, name: str) -> dict:
        from infobound.harness.store import open_for_reading
        from infobound.harness.validate import validate

        folder = tmp_path_factory.mktemp(name) / "out"
        result = validate(config, folder, progress=False)
        with open_for_reading(folder) as store:
            records = store.records()
            arrays = store.arrays_many([r["key"] for r in records])
        return {"folder": folder, "result": result, "records": records, "arrays": arrays}

    return run
