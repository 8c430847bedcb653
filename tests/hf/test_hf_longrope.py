"""LongRoPE (Phi-3 128k, Phi-4-mini): the frequencies and attention factor equal transformers',
and a longrope Phi-3 converts: RoPE plan bit-identical, RePo layers on the same frequencies."""

from __future__ import annotations

import math

import pytest
import torch
from hf_helpers import logits, spread_repo, tiny_model, token_ids
from transformers import Phi3Config
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

from longpos.hf import apply_longpos, layer_plan, model_rope
from longpos.hf.compat import CACHE_KWARG
from longpos.positions.scaling import LongRopeScaling, RopeConfig

HALF = 2  # head_dim 8 with partial_rotary_factor 0.5: 4 rotated dims, 2 frequencies
LONGROPE = {
    "rope_type": "longrope",
    "rope_theta": 10_000.0,
    "short_factor": [1.0, 1.3],
    "long_factor": [1.7, 4.5],
    "original_max_position_embeddings": 16,
    "partial_rotary_factor": 0.5,
}


def longrope_phi3():
    return tiny_model(
        "phi3", max_position_embeddings=64, original_max_position_embeddings=16,
        rope_parameters=dict(LONGROPE),
    )  # fmt: skip


@pytest.mark.parametrize("seq_len", [None, 10, 16, 17, 60])
def test_frequencies_and_attention_factor_equal_transformers(seq_len):
    config = Phi3Config(
        hidden_size=32, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        original_max_position_embeddings=16, rope_parameters=dict(LONGROPE),
    )  # fmt: skip
    want, want_factor = ROPE_INIT_FUNCTIONS["longrope"](config, "cpu", seq_len=seq_len)
    rope = model_rope(longrope_phi3())
    assert isinstance(rope.scaling, LongRopeScaling)
    got, factor = rope.frequencies(8, seq_len=seq_len)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert factor == pytest.approx(want_factor)
    assert factor == pytest.approx(math.sqrt(1 + math.log(4) / math.log(16)))


def test_round_trip_and_errors():
    rope = RopeConfig.from_hf(dict(LONGROPE), 64)
    assert RopeConfig.from_hf(rope.to_hf(8), 64) == rope
    assert RopeConfig.from_dict(rope.to_dict()) == rope
    with pytest.raises(ValueError, match="short_factor"):
        LongRopeScaling(short_factor=(1.0,), long_factor=(1.0, 2.0), original_length=16)
    with pytest.raises(ValueError, match="missing the required key 'long_factor'"):
        RopeConfig.from_hf({k: v for k, v in LONGROPE.items() if k != "long_factor"}, 64)
    with pytest.raises(ValueError, match="frequencies"):
        RopeConfig.from_hf(dict(LONGROPE), 64).frequencies(16)  # 4 frequencies, 2 factors


def test_longrope_phi3_converts_exactly_and_runs_repo():
    stock = longrope_phi3()
    ids = token_ids(length=12)  # below the original length: short factors
    long_ids = token_ids(length=40)  # past it: long factors
    before, before_long = logits(stock, ids), logits(stock, long_ids)
    model = apply_longpos(stock, None)
    assert torch.equal(logits(model, ids), before)
    assert torch.equal(logits(model, long_ids), before_long)
    apply_longpos(model, "repo", repo_start=1)
    assert layer_plan(model) == ["rope", "repo", "repo"]
    spread_repo(model)
    model = model.to(torch.float64)
    with torch.no_grad():  # cached decoding equals the full forward below the switch
        full = model(input_ids=ids, use_cache=False).logits
        out = model(input_ids=ids[:, :7], use_cache=True)
        rest = model(
            input_ids=ids[:, 7:],
            use_cache=True,
            **{
                CACHE_KWARG: out.cache
                if hasattr(out, "cache") and out.cache is not None
                else out.past_key_values
            },
        )
    torch.testing.assert_close(torch.cat((out.logits, rest.logits), 1), full)
