"""Stick-breaking attention (arXiv 2410.17980): the weights against a loop over keys, outputs
and gradients through the model's attention, causality, cached decoding and left padding."""

import math

import pytest
import torch

from longpos.model import ForwardContext
from longpos.positions.stick_breaking import StickBreakingAttention, stick_breaking_weights
from model_builders import (
    assert_same_gradients,
    check_causal_cached_and_padded,
    tiny_native,
    token_ids,
)


def test_weights_equal_the_loop_definition():
    z = torch.randn(1, 2, 6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    allowed = torch.ones(6, 6, dtype=torch.bool).tril()[None, None]
    got = stick_breaking_weights(z, allowed)
    for h in range(2):
        for i in range(6):
            for j in range(6):
                if j > i:
                    assert float(got[0, h, i, j]) == 0.0
                    continue
                beta = 1 / (1 + math.exp(-float(z[0, h, i, j])))
                rest = 1.0
                for l in range(j + 1, i + 1):
                    rest *= 1 - 1 / (1 + math.exp(-float(z[0, h, i, l])))
                assert float(got[0, h, i, j]) == pytest.approx(beta * rest, rel=1e-5)
    assert bool((got.sum(-1) <= 1 + 1e-6).all())  # at most the whole stick


def test_model_attention_equals_a_loop_reference_with_gradients():
    model = tiny_native(plan="stickbreaking", n_layers=1).double()
    attn = model.blocks[0].attn
    assert isinstance(attn.encoding, StickBreakingAttention)
    x = torch.randn(2, 7, 32, dtype=torch.float64, requires_grad=True)
    index = torch.arange(7).expand(2, 7)
    out, _, _ = attn(x, ForwardContext(index, index))
    q = attn.q_proj(x).view(2, 7, 4, 8).transpose(1, 2)
    k = attn.k_proj(x).view(2, 7, 4, 8).transpose(1, 2)
    v = attn.v_proj(x).view(2, 7, 4, 8).transpose(1, 2)
    ref = torch.zeros_like(q)
    for i in range(7):
        rest = torch.ones(2, 4, dtype=torch.float64)
        for j in range(i, -1, -1):  # nearest key first
            beta = torch.sigmoid((q[:, :, i] * k[:, :, j]).sum(-1) / math.sqrt(8))
            ref[:, :, i] = ref[:, :, i] + (beta * rest)[..., None] * v[:, :, j]
            rest = rest * (1 - beta)
    ref = attn.o_proj(ref.transpose(1, 2).reshape(2, 7, 32))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)  # weights in float32
    assert_same_gradients(out, ref, [x], rtol=1e-4, atol=1e-6)


def test_causal_cached_padded_and_attention_weights():
    model = tiny_native(plan="stickbreaking", n_kv_heads=2).double()
    ids = token_ids(vocab=61, length=20)
    check_causal_cached_and_padded(model, ids)
    with torch.no_grad():
        weights = model(ids, return_attention=True).attentions[0]
    assert weights.shape == (2, 4, 20, 20) and bool((weights.triu(1) == 0).all())
