"""The reference model: causality, KV-cache equivalence, generation, analysis outputs."""

import pytest
import torch

from longpos.model import KVCache

# every technique, with and without GQA, plus scaled RoPE and QK-norm
VARIANTS = {
    "rope": dict(plan="rope"),
    "nope": dict(plan="nope"),
    "r2n1": dict(plan="r2n1"),
    "n2r1": dict(plan="n2r1"),
    "repo": dict(plan="repo"),
    "repo_start0": dict(plan="repo", repo_start=0),
    "mixed_list": dict(plan="repo,nope,rope"),
    "yarn": dict(plan="rope", rope=dict(scaling="yarn", factor=4.0, original_length=8)),
    "pi": dict(plan="rope", rope=dict(scaling="pi", factor=2.0)),
    "repo_yarn": dict(plan="repo", rope=dict(scaling="yarn", factor=4.0, original_length=8)),
    "repo_qknorm": dict(plan="repo", qk_norm="qk"),
    "nope_qnorm_full": dict(plan="nope", qk_norm="q", qk_norm_layout="full"),
    "drope_temp": dict(plan="nope", temperature=dict(c=0.412, target_length=64)),
}
GQA = {"mha": dict(n_kv_heads=None), "gqa": dict(n_kv_heads=2), "mqa": dict(n_kv_heads=1)}


def ids(seed=0, batch=2, length=20, vocab=61):
    return torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("gqa", GQA)
@pytest.mark.parametrize("variant", VARIANTS)
def test_causality(make_model, variant, gqa):
    model = make_model(**VARIANTS[variant], **GQA[gqa])
    x = ids()
    y = x.clone()
    y[:, 12:] = (y[:, 12:] + 7) % 61  # change later tokens only
    a, b = model(x).logits, model(y).logits
    torch.testing.assert_close(a[:, :12], b[:, :12], rtol=0, atol=1e-6)
    assert (a[:, 12:] - b[:, 12:]).abs().max() > 1e-3  # and later logits did change


@pytest.mark.parametrize("gqa", GQA)
@pytest.mark.parametrize("variant", VARIANTS)
def test_incremental_decoding_equals_full_forward(make_model, variant, gqa):
    model = make_model(**VARIANTS[variant], **GQA[gqa])
    x = ids(length=24)
    full = model(x).logits
    cache = model.new_cache()
    pieces = [model(x[:, :9], cache=cache).logits]  # prefill
    pieces += [model(x[:, 9:14], cache=cache).logits]  # a chunk
    pieces += [model(x[:, t : t + 1], cache=cache).logits for t in range(14, 24)]  # one by one
    assert cache.length == 24
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("variant", ["rope", "repo", "nope"])
def test_generate_with_and_without_cache_agree(make_model, variant):
    model = make_model(**VARIANTS[variant], n_kv_heads=2)
    prompt = ids(length=10)
    with_cache = model.generate(prompt, 12)
    without = model.generate(prompt, 12, use_cache=False)
    assert with_cache.shape == (2, 22)
    assert with_cache.equal(without)
    assert with_cache[:, :10].equal(prompt)
    # greedy: each new token is the argmax of the full forward on its prefix
    logits = model(with_cache[:, :-1]).logits
    assert logits[:, 9:].argmax(-1).equal(with_cache[:, 10:])


def test_sampling_is_seeded_and_respects_top_k(make_model):
    model = make_model(plan="repo")
    prompt = ids(length=6)
    a = model.generate(prompt, 16, temperature=1.0, generator=torch.Generator().manual_seed(3))
    b = model.generate(prompt, 16, temperature=1.0, generator=torch.Generator().manual_seed(3))
    assert a.equal(b)
    greedy = model.generate(prompt, 16)
    top1 = model.generate(prompt, 16, temperature=1.0, top_k=1, generator=torch.Generator())
    assert top1.equal(greedy)
    nucleus = model.generate(prompt, 16, temperature=0.7, top_p=1e-6, generator=torch.Generator())
    assert nucleus.equal(greedy)


def test_generation_stops_at_eos(make_model):
    model = make_model(plan="rope")
    prompt = ids(length=5, batch=1)
    first = int(model.generate(prompt, 1)[0, -1])
    out = model.generate(prompt, 10, eos_id=first)
    assert out.shape == (1, 6) and int(out[0, -1]) == first


def test_returned_attention_is_a_causal_distribution_and_matches_sdpa(make_model):
    model = make_model(plan="repo", n_kv_heads=2)
    x = ids(length=12)
    out = model(x, return_attention=True, return_positions=True)
    assert len(out.attentions) == 3
    for probs in out.attentions:
        assert probs.shape == (2, 4, 12, 12)
        torch.testing.assert_close(probs.sum(-1), torch.ones(2, 4, 12))
        assert probs.triu(1).abs().max() == 0
    torch.testing.assert_close(out.logits, model(x).logits, rtol=1e-5, atol=1e-5)
    assert [tuple(p.shape) for p in out.positions] == [(2, 12), (2, 2, 12), (2, 2, 12)]
    assert out.positions[1].dtype == torch.float32


def test_left_padding_gives_the_unpadded_logits(make_model):
    model = make_model(plan="r2n1", n_kv_heads=2)
    x = ids(length=8, batch=1)
    padded = torch.cat((torch.zeros(1, 3, dtype=torch.long), x), dim=1)
    mask = torch.cat((torch.zeros(1, 3), torch.ones(1, 8)), dim=1).long()
    plain = model(x).logits
    masked = model(padded, attention_mask=mask).logits[:, 3:]
    torch.testing.assert_close(masked, plain, rtol=1e-5, atol=1e-5)


def test_kv_cache_holds_rotated_keys(make_model):
    model = make_model(plan="rope")
    cache = KVCache(3)
    model(ids(length=4, batch=1), cache=cache)
    k0 = cache.keys[0]
    raw = model.blocks[0].attn.k_proj(
        model.blocks[0].attn_norm(model.embed(ids(length=4, batch=1)))
    )
    raw = raw.view(1, 4, 4, 8).transpose(1, 2)
    assert torch.allclose(k0[:, :, 0], raw[:, :, 0], atol=1e-6)  # position 0: no rotation
    assert not torch.allclose(k0[:, :, 3], raw[:, :, 3], atol=1e-3)  # position 3: rotated


def test_bad_inputs_are_rejected(make_model):
    model = make_model()
    with pytest.raises(ValueError, match="batch, time"):
        model(torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="max_new_tokens"):
        model.generate(ids(length=3), -1)
    with pytest.raises(ValueError, match="top_p"):
        model.generate(ids(length=3), 2, temperature=1.0, top_p=1.5)


def test_init_scales_embeddings_by_scheme():
    """fan_in: unit-std token embeddings next to 1/sqrt(fan_in) linears; normal: all init_std."""
    from longpos.config import ModelConfig
    from longpos.model import LongposLM

    base = dict(vocab_size=4096, d_model=64, n_layers=2, n_heads=4, max_seq_len=32)
    gen = torch.Generator().manual_seed(0)
    fan_in = LongposLM(ModelConfig(**base), gen)
    assert fan_in.embed.weight.std().item() == pytest.approx(1.0, rel=0.02)
    assert fan_in.lm_head.weight is not fan_in.embed.weight  # untied by default
    assert fan_in.lm_head.weight.std().item() == pytest.approx(64**-0.5, rel=0.05)
    small = LongposLM(ModelConfig(**base, embed_std=0.1), gen)
    assert small.embed.weight.std().item() == pytest.approx(0.1, rel=0.02)
    normal = LongposLM(ModelConfig(**base, init_scheme="normal", embed_std=5.0), gen)
    assert normal.embed.weight.std().item() == pytest.approx(0.02, rel=0.02)  # init_std
    with pytest.raises(ValueError, match="embed_std"):
        ModelConfig(**base, embed_std=0.0)
