"""xPos (arXiv 2212.10554): the maths against a loop over pairs, the relative property with its
decay, and the technique in both back ends (logit parity and cache equality for every
registered technique are in test_backend_parity.py)."""

import math

import pytest
import torch

from longpos.positions.scaling import RopeConfig
from longpos.positions.xpos import XPosEncoding, xpos_zeta
from model_builders import cached_logits, full_logits, native_model, token_ids, twins


def naive_score(q, k, m, n, dim, theta=10_000.0, gamma=0.4, base=512.0):
    """q_m . k_n after xPos, one 2-D pair at a time (half-split layout)."""
    total = 0.0
    half = dim // 2
    for i in range(half):
        omega = theta ** (-2 * i / dim)
        zeta = (2 * i / dim + gamma) / (1 + gamma)
        qa, qb = rotate_pair(q[i], q[i + half], m * omega)
        ka, kb = rotate_pair(k[i], k[i + half], n * omega)
        total += (qa * ka + qb * kb) * zeta ** (m / base) * zeta ** (-n / base)
    return total


def rotate_pair(a, b, angle):
    c, s = math.cos(angle), math.sin(angle)
    return a * c - b * s, b * c + a * s


def test_matches_a_loop_over_pairs_and_is_relative_with_decay():
    dim = 16
    enc = XPosEncoding(dim, RopeConfig())
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(dim, generator=g), torch.randn(dim, generator=g)
    for m, n in [(0, 0), (5, 2), (700, 100), (40, 39)]:
        pos = torch.tensor([[m, n]])
        qr, kr = enc(q.expand(1, 1, 2, dim), k.expand(1, 1, 2, dim), pos)
        got = float(qr[0, 0, 0] @ kr[0, 0, 1])
        assert got == pytest.approx(naive_score(q.tolist(), k.tolist(), m, n, dim), rel=1e-4)
    # only the distance matters
    far = enc(q.expand(1, 1, 2, dim), k.expand(1, 1, 2, dim), torch.tensor([[1000, 990]]))
    near = enc(q.expand(1, 1, 2, dim), k.expand(1, 1, 2, dim), torch.tensor([[10, 0]]))
    far_score, near_score = far[0][0, 0, 0] @ far[1][0, 0, 1], near[0][0, 0, 0] @ near[1][0, 0, 1]
    torch.testing.assert_close(far_score, near_score, rtol=1e-5, atol=1e-4)  # float32 angles


def test_zeta_and_decay_shapes():
    zeta = xpos_zeta(8)
    torch.testing.assert_close(zeta, torch.tensor([0.4, 0.65, 0.9, 1.15]) / 1.4)
    assert bool((zeta < 1).all())
    with pytest.raises(ValueError, match="gamma"):
        XPosEncoding(8, RopeConfig(), gamma=0.0)
    with pytest.raises(ValueError, match="positions"):
        XPosEncoding(8, RopeConfig())(
            torch.ones(1, 1, 3, 8), torch.ones(1, 1, 3, 8), torch.ones(1, 1, 3)
        )


def test_xpos_differs_from_rope_and_keeps_cache_equal_to_full_forward():
    ids = token_ids(length=30)
    xpos, rope = native_model("xpos"), native_model("rope")
    assert (full_logits(xpos, ids) - full_logits(rope, ids)).abs().max() > 1e-3
    torch.testing.assert_close(cached_logits(xpos, ids, (7, 19)), full_logits(xpos, ids))


def test_xpos_is_one_implementation_for_both_back_ends():
    native, hf = twins("rope,xpos,xpos")
    ids = token_ids()
    torch.testing.assert_close(full_logits(hf, ids), full_logits(native, ids), atol=3e-5, rtol=3e-5)
    assert type(hf.model.layers[1].self_attn.encoding) is XPosEncoding
