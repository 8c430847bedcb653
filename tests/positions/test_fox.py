"""FoX (arXiv 2503.02130): the forget-gate bias against a loop over keys, outputs and gradients
(the gates learn), causality, cached decoding and left padding."""

import math

import torch

from longpos.model import ForwardContext
from longpos.positions.fox import FoXAttention, FoXGate
from model_builders import (
    assert_same_gradients,
    check_causal_cached_and_padded,
    tiny_native,
    token_ids,
)


def test_model_attention_equals_a_loop_reference_with_gradients():
    model = tiny_native(plan="fox", n_layers=1).double()
    attn = model.blocks[0].attn
    assert isinstance(attn.assigner, FoXGate) and isinstance(attn.encoding, FoXAttention)
    with torch.no_grad():  # gates that vary with the token
        attn.assigner.gate.weight.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(2))
        attn.assigner.gate.bias.fill_(0.5)
    x = torch.randn(2, 7, 32, dtype=torch.float64, requires_grad=True)
    index = torch.arange(7).expand(2, 7)
    out, log_f, _ = attn(x, ForwardContext(index, index))
    assert log_f.shape == (2, 4, 7) and bool((log_f < 0).all())
    q = attn.q_proj(x).view(2, 7, 4, 8).transpose(1, 2)
    k = attn.k_proj(x).view(2, 7, 4, 8).transpose(1, 2)
    v = attn.v_proj(x).view(2, 7, 4, 8).transpose(1, 2)
    lf = torch.nn.functional.logsigmoid(attn.assigner.gate(x)).transpose(1, 2)  # (B, H, T)
    ref = torch.zeros_like(q)
    for i in range(7):
        logits = []
        for j in range(i + 1):
            decay = sum((lf[:, :, l] for l in range(j + 1, i + 1)), torch.zeros(2, 4).double())
            logits.append((q[:, :, i] * k[:, :, j]).sum(-1) / math.sqrt(8) + decay)
        weights = torch.stack(logits, -1).softmax(-1)
        ref[:, :, i] = sum(weights[..., j, None] * v[:, :, j] for j in range(i + 1))
    ref = attn.o_proj(ref.transpose(1, 2).reshape(2, 7, 32))
    torch.testing.assert_close(out, ref)
    params = [x, attn.assigner.gate.weight, attn.assigner.gate.bias]
    assert_same_gradients(out, ref, params)


def test_causal_cached_and_padded():
    model = tiny_native(plan="fox", n_kv_heads=2).double()
    for block in model.blocks:
        with torch.no_grad():
            block.attn.assigner.gate.weight.normal_(0.0, 0.5, generator=torch.Generator())
    ids = token_ids(vocab=61, length=20)
    check_causal_cached_and_padded(model, ids)


def test_gate_starts_slow():
    gate = FoXGate(16, 2)
    f = gate(torch.zeros(1, 3, 16), torch.arange(3)[None]).exp()
    torch.testing.assert_close(f, torch.full_like(f, 1 / (1 + math.exp(-3.0))))
