"""set_plan: RePo layers added to a RoPE model (RePo's continued pretraining), weights kept."""

from __future__ import annotations

import copy

import pytest
import torch

from longpos.config import ModelConfig
from longpos.model import LongposLM
from longpos.surgery import set_plan


def rope_model() -> LongposLM:
    cfg = ModelConfig(vocab_size=50, d_model=32, n_layers=3, n_heads=2, max_seq_len=32)
    return LongposLM(cfg, torch.Generator().manual_seed(0))


def test_rope_to_repo_keeps_weights_and_adds_fresh_predictors():
    model = rope_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    set_plan(model, "repo", generator=torch.Generator().manual_seed(1))
    assert [b.technique for b in model.blocks] == ["rope", "repo", "repo"]
    assert model.config.plan == "repo"
    fresh = LongposLM(ModelConfig(**{**model.config.__dict__}))
    assert set(model.state_dict()) == set(fresh.state_dict())
    after = model.state_dict()
    new = set(after) - set(before)
    assert new and all(".assigner." in k for k in new)
    for k, v in before.items():
        assert torch.equal(after[k], v), k
    ids = torch.randint(0, 50, (2, 16))
    logits = model(ids).logits
    assert torch.isfinite(logits).all()
    loss = logits.logsumexp(-1).mean()
    loss.backward()
    assert model.blocks[1].attn.assigner.assign.weight.grad is not None


def test_round_trip_back_to_rope_gives_the_same_logits():
    model = rope_model()
    ids = torch.randint(0, 50, (2, 16))
    expected = model(ids).logits
    twin = set_plan(set_plan(copy.deepcopy(model), "repo"), "rope")
    assert set(twin.state_dict()) == set(model.state_dict())
    torch.testing.assert_close(twin(ids).logits, expected, rtol=0, atol=0)


def test_repo_start_and_unknown_plan():
    model = set_plan(rope_model(), "repo", repo_start=0)
    assert [b.technique for b in model.blocks] == ["repo"] * 3
    with pytest.raises(ValueError, match="unknown|allowed"):
        set_plan(rope_model(), "no_such_plan")


def test_hf_models_are_pointed_to_the_converter():
    with pytest.raises(ValueError, match="apply_longpos"):
        set_plan(torch.nn.Linear(2, 2), "repo")
