import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from viz_helpers import tiny_model, token_sample  # noqa: E402


@pytest.fixture
def model():
    return tiny_model()


@pytest.fixture
def sample():
    return token_sample()
