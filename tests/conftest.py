"""Fixtures shared by the harness tests."""

from __future__ import annotations

import pytest


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
