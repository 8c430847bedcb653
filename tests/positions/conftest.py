import pytest
import torch

from longpos.config import ModelConfig
from longpos.model import LongposLM


def tiny_config(**overrides) -> ModelConfig:
    base = dict(vocab_size=61, d_model=32, n_layers=3, n_heads=4, max_seq_len=32)
    base.update(overrides)
    return ModelConfig(**base)


def tiny_model(seed: int = 0, **overrides) -> LongposLM:
    model = LongposLM(tiny_config(**overrides), torch.Generator().manual_seed(seed))
    return model.eval()


@pytest.fixture
def make_model():
    return tiny_model
