"""PoPE (arXiv 2509.10534): the score against its polar formula, one pair at a time; a function
of the distance only; content only in the magnitudes; cached decoding; gradients reach delta."""

import math

import pytest
import torch

from longpos.positions.pope import PoPEEncoding
from model_builders import cached_logits, full_logits, tiny_native, token_ids


def test_score_is_the_polar_formula():
    dim, theta = 6, 10_000.0
    enc = PoPEEncoding(dim, n_kv_heads=1, theta=theta)
    with torch.no_grad():
        enc.delta.copy_(torch.linspace(-1.0, 0.5, dim)[None])
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(dim, generator=g), torch.randn(dim, generator=g)
    for t, s in [(0, 0), (7, 3), (40, 39), (100, 2)]:
        pos = torch.tensor([[t, s]])
        qp, kp = enc(q.expand(1, 1, 2, dim), k.expand(1, 1, 2, dim), pos)
        assert qp.shape[-1] == 2 * dim
        got = float((qp[0, 0, 0] @ kp[0, 0, 1]).detach())
        want = 0.0
        for c in range(dim):
            mu_q = math.log1p(math.exp(float(q[c])))
            mu_k = math.log1p(math.exp(float(k[c])))
            freq = theta ** (-c / dim)
            want += mu_q * mu_k * math.cos((t - s) * freq - float(enc.delta[0, c].detach()))
        assert got == pytest.approx(want, rel=1e-4, abs=1e-5)


def test_only_the_distance_and_the_magnitudes_matter():
    enc = PoPEEncoding(8, n_kv_heads=1)
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(1, 1, 2, 8, generator=g), torch.randn(1, 1, 2, 8, generator=g)

    def score(t, s, q=q, k=k):
        qp, kp = enc(q, k, torch.tensor([[t, s]]))
        return qp[0, 0, 0] @ kp[0, 0, 1]

    torch.testing.assert_close(score(50, 45), score(5, 0), rtol=1e-5, atol=1e-5)
    # a query component's sign changes its magnitude only through softplus, never the phase
    assert float(score(5, 0).detach()) != pytest.approx(float(score(5, 0, q=-q).detach()))


def test_model_caches_and_learns_the_phase_offsets():
    model = tiny_native(plan="pope", n_kv_heads=2).double()
    ids = token_ids(vocab=61, length=20)
    torch.testing.assert_close(cached_logits(model, ids, (4, 11)), full_logits(model, ids))
    out = model(ids).logits
    out.square().mean().backward()
    delta = model.blocks[0].attn.encoding.delta
    assert delta.shape == (2, 8) and float(delta.grad.abs().sum()) > 0
