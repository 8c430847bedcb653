"""The native ``LongposLM`` and a converted transformers model with copied weights agree."""

from __future__ import annotations

import pytest
import torch
from hf_helpers import VOCAB, logits, tiny_model, token_ids

from longpos.config import ModelConfig
from longpos.hf import apply_longpos, drop_positions, set_temperature
from longpos.hf.compat import CACHE_KWARG
from longpos.memory.placement import MemoryConfig
from longpos.model import LongposLM
from longpos.positions.temperature import temperature
from model_builders import hf_state, spread


def native_model(plan: str, **overrides) -> LongposLM:
    base = dict(
        vocab_size=VOCAB,
        d_model=32,
        n_layers=3,
        n_heads=4,
        n_kv_heads=2,
        ffn_hidden=64,
        plan=plan,
        tie_embeddings=False,
        norm_eps=1e-6,
        init_scheme="normal",
        init_std=0.2,
    )
    base.update(overrides)
    native = LongposLM(ModelConfig(**base), torch.Generator().manual_seed(0)).eval()
    spread(native)  # make the RePo predictors and norm gains matter
    return native


def check(native: LongposLM, hf) -> None:
    missing, unexpected = hf.load_state_dict(hf_state(native), strict=True)
    assert not missing and not unexpected
    ids = token_ids(batch=2, length=40)
    with torch.no_grad():
        expected = native(ids).logits
    torch.testing.assert_close(logits(hf, ids), expected, atol=1e-5, rtol=1e-5)


def hf_model(family: str):
    return tiny_model(family, rms_norm_eps=1e-6, tie_word_embeddings=False)


@pytest.mark.parametrize("plan", ["rope", "r2n1", "rope,repo,repo", "nope"])
def test_native_and_llama_agree(plan):
    check(native_model(plan), apply_longpos(hf_model("llama"), plan))


@pytest.mark.parametrize("plan", ["rope", "repo"])
def test_native_per_head_qk_norm_and_qwen3_agree(plan):
    native = native_model(plan, qk_norm="qk", qk_norm_layout="head", repo_start=1)
    check(native, apply_longpos(hf_model("qwen3"), plan, repo_start=1))


@pytest.mark.parametrize("qk_norm", ["q", "qk"])
def test_native_drope_and_hf_drope_agree(qk_norm):
    native = native_model(
        "nope",
        qk_norm=qk_norm,
        qk_norm_layout="full",
        max_seq_len=16,
        temperature=dict(c=0.412, mode="static", target_length=64),
    )
    hf = drop_positions(hf_model("llama"), qk_norm=qk_norm)
    set_temperature(hf, temperature(0.412, target_length=64, train_length=16))
    check(native, hf)


# ------------------------------------------------------------------ memory layers
FW = dict(d_k=8, d_v=6, sqrt_n=6, heads=2, topk=3, chunk=5)
PK = dict(d_k=8, sqrt_n=6, heads=2, topk=3)
MEMORY_LAYOUTS = {
    "fwpkm": dict(kind="fwpkm", layers="0,2", fwpkm=FW),
    "fwpkm+pkm": dict(kind="fwpkm+pkm", layers="1", pkm_layers="2", fwpkm=FW, pkm=PK),
    "pkm-add": dict(kind="pkm", layers="0", pkm_placement="add", pkm=PK),
}


def memory_pair(layout: str, family: str = "llama", plan: str = "rope", **native_overrides):
    """A native model with memory and the converted HF model holding the same weights."""
    memory = dict(MEMORY_LAYOUTS[layout])
    native = native_model(plan, memory=memory, **native_overrides)
    hf = apply_longpos(hf_model(family), plan, repo_start=1, memory=MemoryConfig(**memory))
    missing, unexpected = hf.load_state_dict(hf_state(native), strict=True)
    assert not missing and not unexpected
    return native.double(), hf.double()


# transformers computes RoPE tables in float32 even in a float64 model, so float64
# comparisons are exact to rounding only for NoPE layers; RoPE plans agree to ~1e-6.
TOL = {"nope": 1e-10, "r2n1": 1e-5}


@pytest.mark.parametrize("plan", list(TOL))
@pytest.mark.parametrize("layout", list(MEMORY_LAYOUTS))
def test_native_and_llama_with_memory_agree(layout, plan):
    native, hf = memory_pair(layout, plan=plan)
    ids = token_ids(batch=2, length=23)  # 4 writes of chunk 5, 3 tokens queued
    with torch.no_grad():
        expected = native(ids).logits
        frozen = native(ids, memory_writes="none").logits
    got = logits(hf, ids)
    torch.testing.assert_close(got, expected, atol=TOL[plan], rtol=TOL[plan])
    if layout != "pkm-add":  # the fast-weight writes matter, so the parity covers them
        assert (expected - frozen).abs().max() > 1e-4


def test_native_and_qwen3_with_memory_agree_incrementally():
    """Prefill + decode through both caches equal each other (and the full forward)."""
    from transformers import DynamicCache

    native, hf = memory_pair("fwpkm+pkm", "qwen3", "nope", qk_norm="qk", qk_norm_layout="head")
    ids = token_ids(batch=2, length=17)
    cache_n, cache_h = native.new_cache(), DynamicCache(config=hf.config)
    got_n, got_h = [], []
    with torch.no_grad():
        for a, b in [(0, 6), (6, 7), (7, 12), *((t, t + 1) for t in range(12, 17))]:
            got_n.append(native(ids[:, a:b], cache=cache_n).logits)
            got_h.append(hf(input_ids=ids[:, a:b], **{CACHE_KWARG: cache_h}).logits)
    torch.testing.assert_close(torch.cat(got_h, 1), torch.cat(got_n, 1), atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(torch.cat(got_h, 1), logits(hf, ids), atol=1e-10, rtol=1e-10)
    state_n, state_h = cache_n.memory[1], cache_h.longpos_memory[1]
    assert state_n is not None and state_h.n_writes == state_n.n_writes == 3
    torch.testing.assert_close(state_h.values, state_n.values, atol=1e-10, rtol=1e-10)


def test_native_and_hf_read_passes_agree():
    native, hf = memory_pair("fwpkm", plan="nope")
    prompt = token_ids(batch=2, length=12)
    with torch.no_grad():
        for passes in (2, 3):
            expected = native(prompt, read_passes=passes).logits
            torch.testing.assert_close(
                logits(hf, prompt, read_passes=passes), expected, atol=1e-10, rtol=1e-10
            )
    # generate: the prompt read twice, then cached decoding (native and HF alike)
    expected_ids = native.generate(prompt, 6, read_passes=2)
    got = hf.generate(
        prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=6, do_sample=False,
        read_passes=2,
    )  # fmt: skip
    assert torch.equal(got, expected_ids)
