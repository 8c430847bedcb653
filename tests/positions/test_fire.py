"""FIRE (arXiv 2310.04418) through the attention's additive-bias seam: the interpolated
distance against its formula, a loop-over-positions reference for outputs and gradients,
causality, cached decoding and left padding."""

import math

import pytest
import torch

from longpos.model import ForwardContext
from longpos.positions.fire import FIREEncoding
from model_builders import (
    assert_same_gradients,
    check_causal_cached_and_padded,
    loop_softmax_attention,
    tiny_native,
    token_ids,
)


def test_interpolated_distance_follows_the_formula():
    enc = FIREEncoding(n_heads=2, train_length=8)
    with torch.no_grad():
        enc.raw_c.fill_(0.3)
    c, L = float(enc.c.detach()), float(enc.threshold.detach())
    assert pytest.approx(8.0) == L
    index = torch.tensor([[3, 20]])
    keys = torch.tensor([[0, 2, 3, 19]])
    got = enc.interpolated_distance(index, keys)[0]
    for a, i in enumerate([3, 20]):
        for b, j in enumerate([0, 2, 3, 19]):
            d = max(i - j, 0)
            want = math.log(c * d + 1) / math.log(c * max(L, i) + 1)
            assert float(got[a, b]) == pytest.approx(want, rel=1e-5)
    assert float(got.max()) <= 1.0 + 1e-6  # every distance lands in [0, 1]


def test_model_attention_equals_the_loop_reference_with_gradients():
    model = tiny_native(plan="fire", n_layers=1).double()
    attn = model.blocks[0].attn
    enc = attn.encoding
    with torch.no_grad():  # a bias large enough to matter
        enc.mlp_out.weight.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(0))
    x = torch.randn(2, 9, 32, dtype=torch.float64, requires_grad=True)
    index = torch.arange(9).expand(2, 9)
    out, _, _ = attn(x, ForwardContext(index, index))

    def bias(h, i, j):  # the MLP on one interpolated distance, by hand
        c, L = enc.c, enc.threshold
        d = torch.log1p(c * (i - j)) / torch.log1p(c * torch.clamp(L, min=i))
        hidden = torch.relu(enc.mlp_in.weight[:, 0] * d + enc.mlp_in.bias)
        return hidden @ enc.mlp_out.weight[h] + enc.mlp_out.bias[h]

    q = attn.q_proj(x).view(2, 9, 4, 8).transpose(1, 2)
    k = attn.k_proj(x).view(2, 9, 4, 8).transpose(1, 2)
    v = attn.v_proj(x).view(2, 9, 4, 8).transpose(1, 2)
    ref = attn.o_proj(
        loop_softmax_attention(q, k, v, bias, 1 / math.sqrt(8)).transpose(1, 2).reshape(2, 9, 32)
    )
    # the bias is computed in float32 (like RoPE's angles), the reference in float64
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    params = [x, enc.raw_c, enc.raw_threshold, enc.mlp_in.weight, enc.mlp_out.weight]
    g1 = assert_same_gradients(out, ref, params, rtol=1e-4, atol=1e-6)
    assert float(g1[1].abs()) > 0  # c is learned


def test_causal_cached_and_padded():
    model = tiny_native(plan="fire").double()
    for block in model.blocks:
        with torch.no_grad():
            block.attn.encoding.mlp_out.weight.mul_(50)
    ids = token_ids(vocab=61, length=20)
    check_causal_cached_and_padded(model, ids)
