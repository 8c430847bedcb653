"""save_pretrained / from_pretrained round trips through the registered types."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from hf_helpers import FAMILY_NAMES, NO_ROPE_SCALING, logits, spread_repo, tiny_model, token_ids
from transformers import AutoConfig, AutoModelForCausalLM

from longpos.hf import (
    CONFIG_CLASSES,
    MODEL_CLASSES,
    apply_longpos,
    drop_positions,
    layer_plan,
    load_hf_model,
    set_temperature,
)
from longpos.positions.scaling import RopeConfig
from longpos.positions.temperature import temperature


def _repo_yarn(model):
    apply_longpos(
        model,
        "rope,nope,repo",
        rope=RopeConfig.scaled("yarn", factor=2.0, original_length=16),
    )
    spread_repo(model)
    return model


def _repo_plan_only(model):
    apply_longpos(model, "rope,nope,repo")
    spread_repo(model)
    return model


def _drope_qk_beta(model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        drop_positions(model, qk_norm="qk")
    with torch.no_grad():  # trained-looking norm gains
        for name, param in model.named_parameters():
            if name.endswith(("q_norm.weight", "k_norm.weight")):
                param.uniform_(0.5, 1.5)
    set_temperature(model, temperature(0.412, target_length=64, train_length=16))
    return model


@pytest.mark.parametrize("family", FAMILY_NAMES)
@pytest.mark.parametrize("make", [_repo_yarn, _drope_qk_beta], ids=["repo_yarn", "drope_qk_beta"])
def test_round_trip_is_exact(tmp_path, family, make):
    if family in NO_ROPE_SCALING and make is _repo_yarn:
        make = _repo_plan_only  # Phi-3 refuses YaRN (tested in test_hf_cache.py)
    model = make(tiny_model(family))
    ids = token_ids(length=30)
    expected = logits(model, ids)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == f"{family}_longpos"
    # for tools that never import longpos (tests/hf/test_hf_portable.py); with longpos.hf
    # imported the registered types load it, no trust_remote_code needed
    assert saved["auto_map"]["AutoModelForCausalLM"].startswith("longpos_auto.")
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(loaded) is MODEL_CLASSES[family]
    assert type(loaded.config) is CONFIG_CLASSES[family]
    assert layer_plan(loaded) == layer_plan(model)
    assert loaded.config.longpos_positions == model.config.longpos_positions
    assert loaded.config.rope_parameters == model.config.rope_parameters
    assert set(loaded.state_dict()) == set(model.state_dict())
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert torch.equal(logits(loaded, ids), expected)


def test_load_hf_model_reads_stock_and_converted_folders(tmp_path):
    stock = tiny_model("qwen3")
    stock.save_pretrained(tmp_path / "stock")
    ids = token_ids()
    plain = load_hf_model(tmp_path / "stock").eval()
    assert type(plain).__name__ == "Qwen3ForCausalLM"
    torch.testing.assert_close(logits(plain, ids), logits(stock, ids), atol=0, rtol=0)
    converted = load_hf_model(tmp_path / "stock", plan="repo", attn_implementation="eager")
    assert converted.config._attn_implementation == "eager"
    assert layer_plan(converted) == ["rope", "repo", "repo"]
    converted.save_pretrained(tmp_path / "repo")
    again = load_hf_model(tmp_path / "repo", dtype="bfloat16")
    assert again.dtype == torch.bfloat16 and layer_plan(again) == ["rope", "repo", "repo"]
    same = load_hf_model(converted)  # already loaded: returned as is
    assert same is converted
    config = AutoConfig.from_pretrained(tmp_path / "repo")
    assert config.longpos_positions["plan"] == "repo"


def test_load_hf_model_errors(tmp_path):
    with pytest.raises(ValueError, match="no config.json"):
        load_hf_model(tmp_path / "missing")


def test_from_pretrained_on_converted_type_without_weights_initialises_repo(tmp_path):
    model = tiny_model("llama")
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config.update(model_type="llama_longpos", longpos_positions={"plan": "rope,repo,repo"})
    (tmp_path / "config.json").write_text(json.dumps(config))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    weight = loaded.model.layers[1].self_attn.assigner.assign.weight
    assert torch.isfinite(weight).all()
    assert 0 < weight.std() < 0.05 and weight.abs().max() <= 0.06 + 1e-6  # paper init


def test_tied_embeddings_survive_conversion_and_reload(tmp_path):
    model = apply_longpos(tiny_model("qwen2", tie_word_embeddings=True), "repo")
    spread_repo(model)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert loaded.lm_head.weight is loaded.model.embed_tokens.weight
    ids = token_ids()
    assert torch.equal(logits(loaded, ids), logits(model, ids))
