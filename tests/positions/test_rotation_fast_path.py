"""The pairwise rotation of issue 17 (RePo's cost) computes the same numbers as the
``rotate_half`` formula it replaced in the model's layers: outputs and input gradients
bit-identical, gradients of learned positions equal to float32 rounding, in float32 and bf16,
with partial rotary and RoPE scaling, for shared and per-key-value-head positions."""

from __future__ import annotations

import pytest
import torch

from longpos.positions.rope import (
    RotaryEncoding,
    _PairRotation,
    apply_rotary,
    rope_cos_sin,
    rope_half_cos_sin,
    rotate_pairs,
)
from longpos.positions.scaling import RopeConfig, default_inv_freq

ROPES = {
    "plain": RopeConfig(),
    "partial": RopeConfig(partial_rotary_factor=0.5),
    "yarn": RopeConfig.scaled("yarn", factor=4.0, original_length=16),
    "dynamic_ntk": RopeConfig.scaled("dynamic_ntk", factor=2.0, original_length=16),
}


def reference(enc: RotaryEncoding, q, k, positions):
    """The previous implementation: repeated tables, ``apply_rotary``, autograd throughout."""
    cos, sin = enc.tables(positions)
    if positions.dim() == 2:
        cos, sin = cos[:, None], sin[:, None]
        return enc._rotate(q, cos, sin), enc._rotate(k, cos, sin)
    bsz, heads, seq, dim = q.shape
    n_kv = k.shape[1]
    grouped = q.view(bsz, n_kv, heads // n_kv, seq, dim)
    q_rot = enc._rotate(grouped, cos[:, :, None], sin[:, :, None]).view_as(q)
    return q_rot, enc._rotate(k, cos, sin)


@pytest.mark.parametrize("rope", list(ROPES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shared", [True, False])
def test_same_numbers_as_the_rotate_half_formula(rope, dtype, shared):
    gen = torch.Generator().manual_seed(0)
    enc = RotaryEncoding(32, ROPES[rope])
    # (B, T, H, D) projections viewed as (B, H, T, D), as the attention layers do
    q0 = torch.randn(2, 40, 6, 32, generator=gen).to(dtype).requires_grad_()
    k0 = torch.randn(2, 40, 3, 32, generator=gen).to(dtype).requires_grad_()
    if shared:
        pos = torch.arange(40)[None].expand(2, 40)
    else:
        pos = (torch.randn(2, 3, 40, generator=gen) * 50).requires_grad_()
    gq = torch.randn(2, 6, 40, 32, generator=gen).to(dtype)
    gk = torch.randn(2, 3, 40, 32, generator=gen).to(dtype)
    got = []
    for fn in (reference, lambda e, q, k, p: e(q, k, p)):
        q, k = fn(enc, q0.transpose(1, 2), k0.transpose(1, 2), pos)
        torch.autograd.backward((q, k), (gq, gk))
        grads = [q0.grad.clone(), k0.grad.clone()]
        if not shared:
            grads.append(pos.grad.clone())
            pos.grad = None
        got.append((q.detach(), k.detach(), *grads))
        q0.grad = k0.grad = None
    ref, new = got
    for a, b in zip(ref[:4], new[:4], strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b)
    if not shared:  # d loss / d position: the same sum in another order
        torch.testing.assert_close(new[4], ref[4], rtol=1e-5, atol=1e-5 * ref[4].abs().max())


def test_rotate_pairs_keeps_the_layout_and_passes_the_rest_through():
    x = torch.randn(1, 5, 4, 16).transpose(1, 2)  # (B, H, T, D), not contiguous
    inv_freq = default_inv_freq(8, 10_000.0)  # partial rotary: 8 of 16 dims
    cos, sin = rope_half_cos_sin(torch.arange(5.0)[None, None], inv_freq)
    out = rotate_pairs(x, cos, sin)
    assert out.stride() == x.stride()
    assert torch.equal(out[..., 8:], x[..., 8:])
    full_cos, full_sin = rope_cos_sin(torch.arange(5.0)[None, None], inv_freq)
    assert torch.equal(out[..., :8], apply_rotary(x[..., :8], full_cos, full_sin))


def test_pair_rotation_gradcheck_float64():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 2, 5, 10, dtype=torch.float64, generator=gen, requires_grad=True)
    c = torch.randn(2, 3, 1, 5, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    s = torch.randn(2, 3, 1, 5, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    assert torch.autograd.gradcheck(_PairRotation.apply, (x, c, s))
