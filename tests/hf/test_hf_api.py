"""Errors a user can cause, the evaluation adapter, and position recording."""

from __future__ import annotations

import pytest
import torch
from hf_helpers import N_KV, spread_repo, tiny_model, token_ids
from transformers import GPT2Config, GPT2LMHeadModel, LlamaModel

from longpos.hf import (
    SUPPORTED_FAMILIES,
    HFEvalModel,
    apply_longpos,
    assigned_positions,
    drop_positions,
    greedy_generate,
    layer_plan,
    load_eval_model,
    record_positions,
)


def test_unsupported_family_lists_supported_ones():
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=4, vocab_size=50))
    with pytest.raises(ValueError, match="model_type='gpt2' is not supported") as info:
        apply_longpos(gpt2, "repo")
    for name in SUPPORTED_FAMILIES:
        assert name in str(info.value)
    with pytest.raises(ValueError, match="not supported"):
        drop_positions(gpt2)


def test_base_model_without_lm_head_is_rejected():
    base = LlamaModel(tiny_model("llama").config)
    with pytest.raises(ValueError, match="AutoModelForCausalLM"):
        apply_longpos(base, "nope")


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(plan="rotary"), "plan='rotary' is unknown"),
        (dict(plan=""), "plan is empty"),
        (dict(plan="rope,nope"), "plan lists 2 layers"),
        (dict(plan="rope,nope,warp"), "unknown techniques"),
        (dict(plan=["rope", "repo"]), "plan lists 2 layers"),
        (dict(plan=["rope", "repo", "warp"]), "unknown techniques"),
        (dict(plan=["rope", "repo", "cope"]), "cannot be put into a pretrained model"),
        (dict(plan="repo", repo_start=3), "repo_start=3 is out of range: allowed 0..2"),
        (dict(plan="repo", repo_start=-1), "out of range"),
        (dict(plan="nope", qk_norm="v"), "qk_norm='v' is unknown"),
    ],
)
def test_bad_plans_raise_clear_errors(kwargs, message):
    model = tiny_model("llama")
    with pytest.raises(ValueError, match=message):
        apply_longpos(model, **kwargs)
    assert type(model).__name__ == "LlamaForCausalLM"  # nothing half-converted


def test_explicit_list_plan():
    model = apply_longpos(tiny_model("olmo2"), ["repo", "NoPE", "rope"])
    assert layer_plan(model) == ["repo", "nope", "rope"]
    assert model.config.longpos_positions["plan"] == "repo,nope,rope"


def test_eval_adapter_greedy_with_cache(tmp_path):
    model = apply_longpos(tiny_model("llama"), "repo")
    spread_repo(model)
    adapter = HFEvalModel(model, max_length=40)
    assert adapter.tokenizer is None and adapter.max_length == 40
    prompt = token_ids(batch=1, length=12)[0].tolist()
    out = adapter.generate_ids(prompt, 6)
    assert len(out) == 6
    assert out == greedy_generate(model, prompt, 6, use_cache=False)
    assert adapter.generate_ids(prompt, 0) == []
    with pytest.raises(ValueError, match="empty"):
        adapter.generate_ids([], 3)
    with pytest.raises(ValueError, match="must be in"):
        adapter.generate_ids([500], 3)
    with pytest.raises(ValueError, match="max_length=40"):
        adapter.generate_ids(prompt, 30)
    # EOS stops generation and is not returned.
    model.generation_config.eos_token_id = out[2]
    assert HFEvalModel(model).generate_ids(prompt, 6) == out[: out.index(out[2])]

    model.save_pretrained(tmp_path)
    loaded = load_eval_model(tmp_path)
    assert loaded.tokenizer is None and loaded.generate_ids(prompt, 2) == out[:2]


def test_record_positions_during_cached_generation():
    model = apply_longpos(tiny_model("qwen2"), "repo", repo_start=1)
    spread_repo(model)
    ids = token_ids(batch=1, length=10)
    positions, learned = assigned_positions(model, ids)
    with record_positions(model) as rec:
        greedy_generate(model, ids[0].tolist(), 4)
    z = rec.by_layer
    assert sorted(z) == [1, 2] and learned == [False, True, True]
    # The prompt's positions plus one per generated token (the last is never fed back).
    assert z[1].shape == (1, N_KV, 10 + 3)
    torch.testing.assert_close(z[1][..., :10], positions[1], atol=1e-5, rtol=1e-5)
    # Recording stops outside the block.
    model(input_ids=ids)
    assert z[1].shape[-1] == 13
    assert all(layer.self_attn._longpos_record is None for layer in model.model.layers)


def test_positions_are_padding_invariant_for_repo():
    model = apply_longpos(tiny_model("llama"), "repo", repo_start=0)
    spread_repo(model)
    ids = token_ids(batch=1, length=6)
    padded = torch.cat((torch.zeros(1, 2, dtype=torch.long), ids), dim=1)
    mask = torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1]])
    alone, _ = assigned_positions(model, ids)
    pad, _ = assigned_positions(model, padded, attention_mask=mask)
    # First layer's z depends only on the token itself.
    torch.testing.assert_close(pad[0][..., 2:], alone[0], atol=1e-5, rtol=1e-5)


def test_folder_tokenizer_is_loaded_offline(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from longpos.hf import local_tokenizer

    words = ["<unk>", "<eos>", "the", "key", "is", "red", "blue"]
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", eos_token="<eos>")
    model = apply_longpos(tiny_model("llama"), "repo")
    model.save_pretrained(tmp_path)
    assert local_tokenizer(tmp_path) is None
    tok.save_pretrained(tmp_path)
    assert local_tokenizer(tmp_path).encode("the key is red") == [2, 3, 4, 5]
    adapter = load_eval_model(tmp_path)
    assert adapter.tokenizer.encode("the key is blue") == [2, 3, 4, 6]
    assert len(adapter.generate_ids([2, 3, 4], 3)) <= 3
