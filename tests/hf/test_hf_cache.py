"""KV cache: chunked prefill + decode equals the full forward; generate with and without
the cache agree, for every family and every plan (spec hf-integration §7, repo §4.1)."""

from __future__ import annotations

import warnings

import pytest
import torch
from hf_helpers import FAMILY_NAMES, NO_ROPE_SCALING, spread_repo, tiny_model, token_ids
from transformers import DynamicCache

from longpos.hf import apply_longpos, drop_positions, greedy_generate, set_temperature
from longpos.hf.compat import CACHE_KWARG
from longpos.positions.scaling import RopeConfig
from longpos.positions.temperature import temperature

YARN = RopeConfig.scaled("yarn", factor=4.0, original_length=8)


def convert(model, variant: str, spread: bool = True):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # qk-norm on Qwen3 / OLMo2 warns (no second norm)
        if variant in ("rope", "nope", "r2n1", "n2r1"):
            apply_longpos(model, variant)
        elif variant == "repo":
            apply_longpos(model, "repo", repo_start=1)
        elif variant == "repo_yarn":
            apply_longpos(model, "repo", repo_start=1, rope=YARN)
        elif variant == "yarn":
            apply_longpos(model, "rope", rope=YARN)
        elif variant == "drope":
            drop_positions(model)
        elif variant == "drope_qk":
            drop_positions(model, qk_norm="qk")
        elif variant == "drope_q_beta":
            drop_positions(model, qk_norm="q")
            set_temperature(model, temperature("scratch", target_length=32, train_length=8))
        elif variant == "drope_dynamic":
            drop_positions(model)
            set_temperature(model, temperature(0.412, mode="dynamic", train_length=8))
        else:
            raise AssertionError(variant)
    if spread:
        spread_repo(model)
    return model


VARIANTS = [
    "rope",
    "nope",
    "r2n1",
    "repo",
    "repo_yarn",
    "yarn",
    "drope",
    "drope_qk",
    "drope_q_beta",
    "drope_dynamic",
]


def chunked_and_full(model, ids):
    with torch.no_grad():
        full = model(input_ids=ids, use_cache=False).logits  # (B, T, V)
        cache = DynamicCache(config=model.config)
        parts = [model(input_ids=ids[:, :11], **{CACHE_KWARG: cache}, use_cache=True).logits]
        parts.append(model(input_ids=ids[:, 11:15], **{CACHE_KWARG: cache}, use_cache=True).logits)
        for t in range(15, ids.shape[1]):
            step = model(input_ids=ids[:, t : t + 1], **{CACHE_KWARG: cache}, use_cache=True)
            parts.append(step.logits)
    assert cache.get_seq_length() == ids.shape[1]
    return torch.cat(parts, dim=1), full


@pytest.mark.parametrize("family", FAMILY_NAMES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_chunked_prefill_and_decode_equal_full_forward(family, variant):
    # float64 with large RePo weights (z spans tens of units): any cache or position
    # bug shows up far above rounding; float32 amplifies rounding through large z.
    if family in NO_ROPE_SCALING and "yarn" in variant:
        with pytest.raises(ValueError, match="does not take RoPE scaling 'yarn'"):
            convert(tiny_model(family), variant)
        return
    model = convert(tiny_model(family), variant).to(torch.float64)
    chunked, full = chunked_and_full(model, token_ids(batch=2, length=20))
    torch.testing.assert_close(chunked, full, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize(
    "family,variant",
    [(f, "repo") for f in FAMILY_NAMES] + [("llama", "drope_qk"), ("qwen2", "yarn")],
)
def test_chunked_prefill_float32_paper_init(family, variant):
    model = convert(tiny_model(family), variant, spread=False)  # RePo init std 0.02
    chunked, full = chunked_and_full(model, token_ids(batch=2, length=20))
    torch.testing.assert_close(chunked, full, atol=1e-5, rtol=1e-5)


GENERATE_CASES = [(f, "repo") for f in FAMILY_NAMES] + [
    ("llama", "drope_qk"),
    ("olmo2", "drope_qk"),
    ("qwen3", "repo_yarn"),
    ("mistral", "drope_dynamic"),
    ("qwen2", "r2n1"),
]


@pytest.mark.parametrize("family,variant", GENERATE_CASES)
def test_generate_with_and_without_cache(family, variant):
    model = convert(tiny_model(family), variant).to(torch.float64)
    ids = token_ids(batch=2, length=9)
    kwargs = dict(
        attention_mask=torch.ones_like(ids),
        max_new_tokens=8,
        do_sample=False,
        return_dict_in_generate=True,
        output_logits=True,
    )
    cached = model.generate(ids, use_cache=True, **kwargs)
    uncached = model.generate(ids, use_cache=False, **kwargs)
    assert torch.equal(cached.sequences, uncached.sequences)
    torch.testing.assert_close(
        torch.stack(cached.logits), torch.stack(uncached.logits), atol=1e-9, rtol=1e-9
    )
    if family == "llama":  # our plain greedy loop agrees with generate()
        row = ids[0].tolist()
        assert greedy_generate(model, row, 8) == cached.sequences[0, 9:].tolist()
        assert greedy_generate(model, row, 8, use_cache=False) == cached.sequences[0, 9:].tolist()


def test_left_padding_gives_the_same_tokens_for_repo():
    model = convert(tiny_model("llama"), "repo")
    short = token_ids(batch=1, length=6, seed=5)
    long = token_ids(batch=1, length=9, seed=6)
    padded = torch.cat((torch.zeros(1, 3, dtype=torch.long), short), dim=1)
    batch = torch.cat((padded, long), dim=0)
    mask = torch.ones_like(batch)
    mask[0, :3] = 0
    out = model.generate(batch, attention_mask=mask, max_new_tokens=6, do_sample=False)
    alone = model.generate(
        short, attention_mask=torch.ones_like(short), max_new_tokens=6, do_sample=False
    )
    assert out[0, 9:].tolist() == alone[0, 6:].tolist()
