"""Shared test set-up: the helper modules at the top of ``tests/`` (``model_builders``) are
importable from every test folder (``from model_builders import ...``), ``make_model`` builds
a tiny native model (the core and positions tests' fixture), and the tiny-model folders run
single-threaded."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import torch  # noqa: E402

from model_builders import tiny_native  # noqa: E402

SINGLE_THREAD_FOLDERS = {"hf", "memory", "positions"}
"""Tests of tiny models gain nothing from intra-op threads, and on a shared 2-core machine
spinning threads slow them down tenfold: these folders run single-threaded."""


@pytest.fixture(autouse=True)
def _single_thread(request):
    if Path(str(request.node.fspath)).parent.name not in SINGLE_THREAD_FOLDERS:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def make_model():
    return tiny_native
