"""Product-key search is exact: it equals brute-force top-k over all N = S*S slots."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from longpos.memory.pkm import brute_force_topk, product_topk, subkey_scores


@pytest.mark.parametrize("score", ["dot", "idw"])
@pytest.mark.parametrize(
    ("S", "k", "D", "H"), [(4, 1, 2, 1), (7, 3, 4, 2), (16, 8, 6, 3), (32, 32, 4, 1)]
)
def test_product_topk_equals_brute_force(score: str, S: int, k: int, D: int, H: int) -> None:
    gen = torch.Generator().manual_seed(S * 100 + k)
    for _ in range(5):
        q = torch.randn(2, 9, H, 2 * D, generator=gen, dtype=torch.float64)  # (G, R, H, d_k)
        keys = torch.randn(2, H, 2, S, D, generator=gen, dtype=torch.float64)
        s1, _ = subkey_scores(q[..., :D], keys[:, :, 0], score)  # (G, R, H, S)
        s2, _ = subkey_scores(q[..., D:], keys[:, :, 1], score)
        fast_s, fast_i = product_topk(s1, s2, k)
        ref_s, ref_i = brute_force_topk(s1, s2, k)
        torch.testing.assert_close(fast_s, ref_s, rtol=0, atol=1e-12)
        assert torch.equal(fast_i.sort(-1).values, ref_i.sort(-1).values)
        # brute force from the definition of a slot's key: [K1_i ; K2_j] for slot i*S + j
        full_keys = torch.cat(
            [
                keys[:, :, 0].unsqueeze(3).expand(-1, -1, -1, S, -1),
                keys[:, :, 1].unsqueeze(2).expand(-1, -1, S, -1, -1),
            ],
            dim=-1,
        ).reshape(2, H, S * S, 2 * D)  # (G, H, N, d_k)
        if score == "dot":
            full = torch.einsum("grhd,ghnd->grhn", q, full_keys)
            ref2 = full.topk(k, dim=-1).values
            torch.testing.assert_close(fast_s, ref2, rtol=0, atol=1e-10)
        else:
            # IDW pair weight = 1 / ((eps + d1^2)(eps + d2^2)): a product of half distances
            d1 = ((q[..., :D].unsqueeze(3) - keys[:, :, 0].unsqueeze(1)) ** 2).sum(-1)
            d2 = ((q[..., D:].unsqueeze(3) - keys[:, :, 1].unsqueeze(1)) ** 2).sum(-1)
            full = -torch.log((1e-3 + d1).unsqueeze(-1) * (1e-3 + d2).unsqueeze(-2)).flatten(-2)
            torch.testing.assert_close(fast_s, full.topk(k, dim=-1).values, rtol=0, atol=1e-10)


def test_product_topk_index_layout() -> None:
    # the best pair is (argmax s1, argmax s2) with flat index i*S + j
    s1 = torch.tensor([0.0, 5.0, 1.0])
    s2 = torch.tensor([2.0, 0.0, 3.0])
    scores, idx = product_topk(s1, s2, 2)
    assert idx.tolist() == [1 * 3 + 2, 1 * 3 + 0]
    assert scores.tolist() == [8.0, 7.0]


def test_product_topk_gradient_reaches_both_halves() -> None:
    s1 = torch.randn(5, dtype=torch.float64, requires_grad=True)
    s2 = torch.randn(5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: product_topk(a, b, 3)[0], (s1, s2))


def test_product_topk_rejects_bad_k() -> None:
    with pytest.raises(ValueError, match="sqrt_n"):
        product_topk(torch.randn(4), torch.randn(4), 5)
    with pytest.raises(ValueError, match="same number of sub-keys"):
        product_topk(torch.randn(4), torch.randn(5), 2)


@settings(max_examples=40, deadline=None)
@given(
    S=st.integers(1, 12),
    data=st.data(),
    seed=st.integers(0, 2**16),
    score=st.sampled_from(["dot", "idw"]),
)
def test_product_topk_property(S: int, data, seed: int, score: str) -> None:
    k = data.draw(st.integers(1, S))
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(1, 3, 2, 4, generator=gen, dtype=torch.float64)
    keys = torch.randn(1, 2, 2, S, 2, generator=gen, dtype=torch.float64)
    s1, _ = subkey_scores(q[..., :2], keys[:, :, 0], score)
    s2, _ = subkey_scores(q[..., 2:], keys[:, :, 1], score)
    fast_s, fast_i = product_topk(s1, s2, k)
    ref_s, ref_i = brute_force_topk(s1, s2, k)
    torch.testing.assert_close(fast_s, ref_s, rtol=0, atol=1e-12)
    assert torch.equal(fast_i.sort(-1).values, ref_i.sort(-1).values)
    assert int(fast_i.max()) < S * S
