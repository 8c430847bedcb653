"""The native ``LongposLM`` and a converted transformers model with copied weights agree."""

from __future__ import annotations

import pytest
import torch
from hf_helpers import VOCAB, logits, tiny_model, token_ids

from longpos.config import ModelConfig
from longpos.hf import apply_longpos, drop_positions, set_temperature
from longpos.model import LongposLM


def native_to_hf_state(native: LongposLM) -> dict[str, torch.Tensor]:
    """Rename the native model's tensors to transformers' Llama / Qwen3 names."""
    renames = {
        "embed.weight": "model.embed_tokens.weight",
        "norm.weight": "model.norm.weight",
        "lm_head.weight": "lm_head.weight",
    }
    inner = {
        "attn_norm": "input_layernorm",
        "mlp_norm": "post_attention_layernorm",
        "attn.q_proj": "self_attn.q_proj",
        "attn.k_proj": "self_attn.k_proj",
        "attn.v_proj": "self_attn.v_proj",
        "attn.o_proj": "self_attn.o_proj",
        "attn.q_norm": "self_attn.q_norm",
        "attn.k_norm": "self_attn.k_norm",
        "attn.assigner": "self_attn.position_assigner",
        "mlp.gate": "mlp.gate_proj",
        "mlp.up": "mlp.up_proj",
        "mlp.down": "mlp.down_proj",
    }
    out = {}
    for name, tensor in native.state_dict().items():
        if name in renames:
            out[renames[name]] = tensor
            continue
        _, idx, rest = name.split(".", 2)
        module = next(m for m in inner if rest.startswith(m + "."))
        out[f"model.layers.{idx}.{inner[module]}{rest[len(module) :]}"] = tensor
    return out


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
    with torch.no_grad():  # make the RePo predictors and norm gains matter
        g = torch.Generator().manual_seed(1)
        for name, param in native.named_parameters():
            if ".assigner." in name:
                param.normal_(0.0, 0.5, generator=g)
            elif name.endswith(("q_norm.weight", "k_norm.weight")):
                param.uniform_(0.5, 1.5, generator=g)
    return native


def check(native: LongposLM, hf) -> None:
    missing, unexpected = hf.load_state_dict(native_to_hf_state(native), strict=True)
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
    set_temperature(hf, c=0.412, eval_length=64, train_length=16)
    check(native, hf)
