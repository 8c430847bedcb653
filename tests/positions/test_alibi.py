"""ALiBi (arXiv 2108.12409) through the attention's additive-bias seam: the paper's slopes, a
loop-over-positions reference for outputs and gradients, causality, cached decoding and left
padding."""

import math

import pytest
import torch

from longpos.positions.alibi import ALiBiEncoding, alibi_slopes
from model_builders import (
    assert_same_gradients,
    check_causal_cached_and_padded,
    full_logits,
    loop_softmax_attention,
    tiny_native,
    token_ids,
)


def test_slopes_follow_the_paper():
    torch.testing.assert_close(alibi_slopes(8), torch.tensor([2.0 ** -(i + 1) for i in range(8)]))
    four = [2.0 ** -(2 * (i + 1)) for i in range(4)]
    torch.testing.assert_close(alibi_slopes(4), torch.tensor(four))
    # 6 heads: the 4 slopes of 4 heads, then every other slope of 8 heads
    torch.testing.assert_close(alibi_slopes(6), torch.tensor(four + [2.0**-1, 2.0**-3]))
    with pytest.raises(ValueError):
        alibi_slopes(0)


def test_model_attention_equals_the_loop_reference_with_gradients():
    model = tiny_native(plan="alibi", n_layers=1).double()
    attn = model.blocks[0].attn
    assert isinstance(attn.encoding, ALiBiEncoding)
    x = torch.randn(2, 9, 32, dtype=torch.float64, requires_grad=True)
    from longpos.model import ForwardContext

    index = torch.arange(9).expand(2, 9)
    out, _, _ = attn(x, ForwardContext(index, index))
    q = attn.q_proj(x).view(2, 9, 4, 8).transpose(1, 2)
    k = attn.k_proj(x).view(2, 9, 4, 8).transpose(1, 2)
    v = attn.v_proj(x).view(2, 9, 4, 8).transpose(1, 2)
    slopes = alibi_slopes(4).double()
    ref = loop_softmax_attention(q, k, v, lambda h, i, j: -slopes[h] * (i - j), 1 / math.sqrt(8))
    ref = attn.o_proj(ref.transpose(1, 2).reshape(2, 9, 32))
    torch.testing.assert_close(out, ref)
    assert_same_gradients(out, ref, [x])


def test_causal_cached_and_padded():
    model = tiny_native(plan="alibi").double()
    ids = token_ids(vocab=61, length=20)
    full = check_causal_cached_and_padded(model, ids)
    # the bias is a penalty: ALiBi differs from NoPE with the same weights
    nope = tiny_native(plan="nope").double()
    nope.load_state_dict(model.state_dict())
    assert (full_logits(nope, ids) - full).abs().max() > 1e-4
