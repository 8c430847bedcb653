"""RoPE maths: relative property with real and per-head positions, GQA expansion, precision."""

import torch

from longpos.positions.rope import NoPE, RotaryEncoding, apply_rotary, rope_cos_sin
from longpos.positions.scaling import RopeConfig, default_inv_freq


def rotated_score(q, k, m, n, inv_freq):
    """Score between q rotated at (real) position m and k rotated at n."""
    cos_m, sin_m = rope_cos_sin(torch.tensor([m], dtype=torch.float64), inv_freq.double())
    cos_n, sin_n = rope_cos_sin(torch.tensor([n], dtype=torch.float64), inv_freq.double())
    qr = apply_rotary(q[None], cos_m.double(), sin_m.double())
    kr = apply_rotary(k[None], cos_n.double(), sin_n.double())
    return float((qr * kr).sum())


def test_score_depends_only_on_the_difference_integer_and_real():
    gen = torch.Generator().manual_seed(0)
    q, k = torch.randn(64, generator=gen).double(), torch.randn(64, generator=gen).double()
    inv_freq = default_inv_freq(64, 10_000.0)
    tol = 1e-4 * float(q.norm() * k.norm())  # angles are float32 by design
    for m, n in [(3, 10), (0.25, 7.75), (-4.5, 2.0), (1000.3, 1017.1)]:
        reference = rotated_score(q, k, 0.0, n - m, inv_freq)
        for shift in (0.0, 1.0, 13.37, -250.5):
            assert abs(rotated_score(q, k, m + shift, n + shift, inv_freq) - reference) < tol
    # and it does depend on the difference
    assert (
        abs(rotated_score(q, k, 0, 1, inv_freq) - rotated_score(q, k, 0, 2, inv_freq)) > 100 * tol
    )


def scores(q, k, positions, enc):
    qr, kr = enc(q, k, positions)
    groups = q.shape[1] // k.shape[1]
    kr = kr.repeat_interleave(groups, dim=1)
    return qr.double() @ kr.double().transpose(-1, -2)  # (B, H, T, T)


def test_per_head_positions_relative_and_shared_by_query_group():
    gen = torch.Generator().manual_seed(1)
    enc = RotaryEncoding(16, RopeConfig())
    q = torch.randn(2, 4, 5, 16, generator=gen)  # 4 query heads
    k = torch.randn(2, 2, 5, 16, generator=gen)  # 2 key-value heads
    z = torch.randn(2, 2, 5, generator=gen) * 10  # real positions per kv head
    base = scores(q, k, z, enc)
    shifted = scores(q, k, z + torch.tensor([3.3, -7.1])[None, :, None], enc)
    torch.testing.assert_close(base, shifted, rtol=1e-5, atol=1e-4)
    # query heads 0,1 use kv head 0's positions: rotating with a shared (B, T) z0 equals it
    shared = scores(q[:, :2], k[:, :1], z[:, 0], enc)
    torch.testing.assert_close(base[:, :2], shared, rtol=1e-5, atol=1e-5)


def test_integer_positions_bit_identical_to_float_positions_of_same_value():
    enc = RotaryEncoding(32, RopeConfig())
    q, k = torch.randn(1, 2, 6, 32), torch.randn(1, 2, 6, 32)
    ints = torch.arange(6)[None]
    a = enc(q, k, ints)
    b = enc(q, k, ints.float())
    c = enc(q, k, ints[:, None].expand(1, 2, 6).float())
    assert a[0].equal(b[0]) and a[1].equal(b[1]) and a[0].equal(c[0])


def test_angles_in_float32_under_bfloat16_activations():
    enc = RotaryEncoding(32, RopeConfig())
    q = torch.randn(1, 1, 3, 32)
    pos = torch.tensor([[3000.0, 3001.0, 3002.5]])
    exact = enc(q, q, pos)[0]
    bf = enc(q.bfloat16(), q.bfloat16(), pos)[0]
    assert bf.dtype == torch.bfloat16
    # the only error is the bf16 rounding of inputs/outputs, not of the angles
    torch.testing.assert_close(bf.float(), exact, rtol=2e-2, atol=3e-2)


def test_nope_is_identity():
    q, k = torch.randn(1, 2, 4, 8), torch.randn(1, 1, 4, 8)
    qr, kr = NoPE()(q, k, torch.arange(4)[None])
    assert qr is q and kr is k
