"""Shared test set-up: the helper modules at the top of ``tests/`` (``model_builders``) are
importable from every test folder (``from model_builders import ...``), and ``make_model``
builds a tiny native model (the core and positions tests' fixture)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from model_builders import tiny_native  # noqa: E402


@pytest.fixture
def make_model():
    return tiny_native
