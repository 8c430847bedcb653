"""NoPE with Llama 4's log-length query temperature, and the nope_every_K plans."""

import math

import pytest
import torch

from longpos.config import preset
from longpos.positions.query_temperature import QueryTemperatureNoPE
from model_builders import cached_logits, full_logits, tiny_native, token_ids


def test_factor_is_one_below_the_floor_and_grows_with_log_length():
    enc = QueryTemperatureNoPE(attn_scale=0.1, floor_scale=4)
    positions = torch.tensor([[0, 2, 3, 7, 11, 15, 399]])
    want = [1 + 0.1 * math.log(math.floor((p + 1) / 4) + 1) for p in positions[0].tolist()]
    torch.testing.assert_close(enc.scale(positions)[0, 0, :, 0], torch.tensor(want))
    assert want[:2] == [1.0, 1.0]
    q, k = torch.randn(1, 2, 7, 4), torch.randn(1, 2, 7, 4)
    q2, k2 = enc(q, k, positions)
    assert torch.equal(k2, k)  # keys untouched: the cache is unaffected
    for t, factor in enumerate(want):  # each query by its own position
        torch.testing.assert_close(q2[0, :, t], q[0, :, t] * factor)
    with pytest.raises(ValueError, match="floor_scale"):
        QueryTemperatureNoPE(floor_scale=0)


def test_nope_every_k_plans():
    assert preset("small", plan="nope_every_4").layer_plan() == ["rope"] * 3 + ["nope"] + [
        "rope"
    ] * 3 + ["nope"]
    assert preset("tiny", plan="nope_every_2_temp").layer_plan() == ["rope", "nope_temp"] * 2
    with pytest.raises(ValueError, match="K must be >= 1"):
        preset("tiny", plan="nope_every_0")


def test_cached_decoding_equals_the_full_forward_past_the_floor():
    model = tiny_native(plan="nope_every_2_temp").double()
    for block in model.blocks:
        if isinstance(block.attn.encoding, QueryTemperatureNoPE):
            block.attn.encoding.floor_scale = 4  # the factor changes within the test's length
    ids = token_ids(vocab=61, length=30)
    torch.testing.assert_close(cached_logits(model, ids, (5, 17)), full_logits(model, ids))
    plain = tiny_native(plan="nope_every_2").double()
    assert (full_logits(plain, ids) - full_logits(model, ids)).abs().max() > 1e-6
