"""Tiny transformers models gain nothing from intra-op threads, and on a shared 2-core
machine spinning threads slow them down tenfold: run each hf test single-threaded."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
