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
