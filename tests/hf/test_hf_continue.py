"""Generation continues from the cache it returned (multi-turn chat, streaming): for every
family, plan and memory option, ``generate(seq, cache=out.cache)`` gives the same tokens and
logits as one longer ``generate``; FwPKM's fast weights travel on that cache."""

from __future__ import annotations

import copy

import pytest
import torch
from hf_helpers import FAMILY_NAMES, tiny_model, token_ids
from packaging.version import Version
from transformers import __version__ as transformers_version

from longpos.hf import apply_longpos, drop_positions, set_temperature
from longpos.hf.compat import CACHE_KWARG, output_cache
from longpos.memory.placement import MemoryConfig
from longpos.positions.temperature import temperature

FW = dict(d_k=8, d_v=8, sqrt_n=8, topk=2, chunk=4)
CONVERSIONS = {
    "rope": lambda m: apply_longpos(m, "rope"),
    "repo": lambda m: apply_longpos(m, "repo", repo_start=1),
    "r2n1": lambda m: apply_longpos(m, "r2n1"),
    "drope+temp": lambda m: set_temperature(
        drop_positions(m), temperature(0.4, mode="dynamic", train_length=8)
    ),
    "fwpkm": lambda m: apply_longpos(
        m, "repo", memory=MemoryConfig(kind="fwpkm", layers="0,2", fwpkm=FW)
    ),
}
# Keywords the installed transformers takes for a cache: `cache` from 5.24 on (with
# `past_key_values` kept as a deprecated alias), `past_key_values` before.
KEYWORDS = [CACHE_KWARG]
if Version(transformers_version) >= Version("5.24"):
    KEYWORDS.append("past_key_values")


def converted(family: str, plan: str):
    torch.manual_seed(5)  # new RePo / memory modules draw from the default generator
    model = CONVERSIONS[plan](tiny_model(family))
    return model.to(torch.float64)


def generate(model, ids, new, **kwargs):
    """``generate`` with an explicit all-ones mask (the tiny models emit the pad id 0, which
    generate would otherwise take for padding)."""
    return model.generate(
        ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, pad_token_id=0,
        return_dict_in_generate=True, output_logits=True, **kwargs,
    )  # fmt: skip


@pytest.mark.parametrize("plan", list(CONVERSIONS))
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_greedy_continues_from_the_returned_cache(family, plan):
    model = converted(family, plan)
    ids = token_ids(batch=2, length=9)
    whole = generate(model, ids, 8, do_sample=False)
    first = generate(model, ids, 5, do_sample=False)
    cache = output_cache(first)
    assert cache is not None
    for keyword in KEYWORDS:
        again = generate(
            model, first.sequences, 3, do_sample=False, **{keyword: copy.deepcopy(cache)}
        )
        assert torch.equal(again.sequences, whole.sequences), keyword
        torch.testing.assert_close(
            torch.stack(again.logits, 1), torch.stack(whole.logits[5:], 1), rtol=1e-9, atol=1e-9
        )


@pytest.mark.parametrize("plan", ["repo", "fwpkm"])
def test_sampling_continues_from_the_returned_cache(plan):
    model = converted("qwen2", plan)
    ids = token_ids(batch=2, length=9)
    torch.manual_seed(11)
    whole = generate(model, ids, 8, do_sample=True, top_k=20)
    torch.manual_seed(11)
    first = generate(model, ids, 5, do_sample=True, top_k=20)
    again = generate(
        model, first.sequences, 3, do_sample=True, top_k=20, **{CACHE_KWARG: output_cache(first)}
    )
    assert torch.equal(again.sequences, whole.sequences)


def test_memory_state_continues_with_the_cache():
    model = converted("llama", "fwpkm")
    ids = token_ids(batch=1, length=10)
    first = generate(model, ids, 3, do_sample=False)
    cache = output_cache(first)
    states = dict(cache.longpos_memory)
    assert set(states) == {0, 2}
    again = generate(model, first.sequences, 6, do_sample=False, **{CACHE_KWARG: cache})
    assert again.sequences.shape[1] == first.sequences.shape[1] + 6
    # the continuation wrote the memory further (one write every 4 tokens of the stream)
    assert all(cache.longpos_memory[i].n_writes > states[i].n_writes for i in states)


def test_beam_search_accepts_its_cache_like_the_stock_model():
    """Beam search returns the cache of all beams (not of the winner), so its continuation is
    not one longer search, in stock transformers too; a converted RoPE model behaves exactly
    as the stock one."""
    stock = tiny_model("llama").to(torch.float64)
    ours = apply_longpos(copy.deepcopy(stock), "rope")
    ids = token_ids(batch=2, length=9)
    results = []
    for model in (stock, ours):
        first = generate(model, ids, 4, do_sample=False, num_beams=3)
        again = generate(
            model, first.sequences, 3, do_sample=False, num_beams=3,
            **{CACHE_KWARG: output_cache(first)},
        )  # fmt: skip
        results.append(again.sequences)
    assert torch.equal(results[0], results[1])
