"""CoPE (arXiv 2405.18719): gate-counted positions against their definition, a loop-over-keys
reference for outputs and gradients, causality, cached decoding and left padding."""

import math

import pytest
import torch

from longpos.model import ForwardContext
from longpos.positions.cope import CoPEAttention
from model_builders import (
    assert_same_gradients,
    check_causal_cached_and_padded,
    tiny_native,
    token_ids,
)


def test_positions_count_the_gates_up_to_the_query():
    cope = CoPEAttention(head_dim=4, n_positions=8)
    z = torch.randn(1, 1, 5, 5, generator=torch.Generator().manual_seed(0))
    allowed = torch.ones(5, 5, dtype=torch.bool).tril()[None, None]
    pos = cope.contextual_positions(z, allowed)
    for i in range(5):
        for j in range(i + 1):
            want = sum(1 / (1 + math.exp(-float(z[0, 0, i, t]))) for t in range(j, i + 1))
            assert float(pos[0, 0, i, j]) == pytest.approx(min(want, 7), rel=1e-5)
    capped = CoPEAttention(head_dim=4, n_positions=2).contextual_positions(z + 10, allowed)
    assert float(capped.max()) == pytest.approx(1.0)


def test_model_attention_equals_a_loop_reference_with_gradients():
    model = tiny_native(plan="cope", n_layers=1, max_seq_len=16).double()
    attn = model.blocks[0].attn
    cope = attn.encoding
    with torch.no_grad():
        cope.table.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(1))
    x = torch.randn(2, 7, 32, dtype=torch.float64, requires_grad=True)
    index = torch.arange(7).expand(2, 7)
    out, _, _ = attn(x, ForwardContext(index, index))
    q = attn.q_proj(x).view(2, 7, 4, 8).transpose(1, 2)
    k = attn.k_proj(x).view(2, 7, 4, 8).transpose(1, 2)
    v = attn.v_proj(x).view(2, 7, 4, 8).transpose(1, 2)
    s = 1 / math.sqrt(8)
    ref = torch.zeros_like(q)
    for i in range(7):
        z = torch.stack([(q[:, :, i] * k[:, :, j]).sum(-1) * s for j in range(i + 1)], -1)
        gates = torch.sigmoid(z)  # (B, H, i + 1)
        logits = []
        for j in range(i + 1):
            p = gates[..., j:].sum(-1).clamp(max=cope.n_positions - 1)
            lo = p.floor()
            e_lo = cope.table[:, lo.long()].permute(1, 2, 0)  # (B, H, D)
            e_hi = cope.table[:, (lo.long() + 1).clamp(max=cope.n_positions - 1)].permute(1, 2, 0)
            e = e_lo * (1 - (p - lo))[..., None] + e_hi * (p - lo)[..., None]
            logits.append(z[..., j] + (q[:, :, i] * e).sum(-1) * s)
        weights = torch.stack(logits, -1).softmax(-1)
        ref[:, :, i] = sum(weights[..., j, None] * v[:, :, j] for j in range(i + 1))
    ref = attn.o_proj(ref.transpose(1, 2).reshape(2, 7, 32))
    torch.testing.assert_close(out, ref)
    params = [x, cope.table]
    assert_same_gradients(out, ref, params)


def test_causal_cached_and_padded():
    model = tiny_native(plan="cope", n_kv_heads=2).double()
    for block in model.blocks:
        with torch.no_grad():
            block.attn.encoding.table.mul_(50)
    ids = token_ids(vocab=61, length=20)
    check_causal_cached_and_padded(model, ids)
