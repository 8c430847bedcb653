"""Memory tests run single-threaded: their tensors are tiny, and on a shared 2-core machine
multi-threaded small ops stall (about 10x slower under load)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
