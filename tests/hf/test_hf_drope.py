"""DroPE: q/k norms, inference temperature, and their persistence."""

from __future__ import annotations

import math

import pytest
import torch
from hf_helpers import IdentityRotary, clone_model, logits, tiny_model, token_ids

from longpos.hf import drop_positions, position_plan, set_temperature
from longpos.positions.temperature import TemperatureConfig, drope_beta, temperature


def test_beta_law():
    assert drope_beta(0.412, 2048, 1024) == pytest.approx(1 + 0.412 * math.log(2))
    assert drope_beta(0.103, 32 * 1024, 1024) == pytest.approx(1.357, abs=1e-3)
    assert drope_beta(0.412, 512, 1024) == 1.0  # s <= 1: no temperature
    assert drope_beta(0.412, 1024, 1024) == 1.0
    with pytest.raises(ValueError, match="must be >= 1"):
        drope_beta(0.4, 0, 10)


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_static_temperature_scales_every_logit(attn):
    model = drop_positions(tiny_model("llama", attn=attn))
    ids = token_ids()
    reference = clone_model(model, "llama", attn=attn)
    reference.model.rotary_emb = IdentityRotary(reference.model.rotary_emb)
    temp = temperature("scratch", target_length=4096, train_length=1024)
    set_temperature(model, temp)
    beta = temp.static_beta(1024)
    assert beta == pytest.approx(1 + 0.412 * math.log(4))
    assert position_plan(model).temperature == temp  # stored in the config
    assert model.config.longpos_positions["temperature"]["c"] == pytest.approx(0.412)
    for layer in reference.model.layers:
        layer.self_attn.scaling = beta * layer.self_attn.head_dim**-0.5
    torch.testing.assert_close(logits(model, ids), logits(reference, ids), atol=1e-5, rtol=1e-5)
    set_temperature(model, TemperatureConfig())
    assert not position_plan(model).temperature.enabled
    for layer in reference.model.layers:
        layer.self_attn.scaling = layer.self_attn.head_dim**-0.5
    torch.testing.assert_close(logits(model, ids), logits(reference, ids), atol=1e-6, rtol=0)


def test_dynamic_temperature_is_per_query():
    model = drop_positions(tiny_model("qwen2"))
    ids = token_ids(batch=1, length=24)
    plain = logits(model, ids)
    set_temperature(model, temperature(0.5, mode="dynamic", train_length=8))
    hot = logits(model, ids)
    # Queries within the training length (positions 0..7) are untouched.
    torch.testing.assert_close(hot[:, :8], plain[:, :8], atol=1e-6, rtol=0)
    assert (hot[:, 8:] - plain[:, 8:]).abs().max() > 1e-4
    # One layer: the query at position p sees exactly a static beta for length p + 1.
    one = drop_positions(tiny_model("qwen2", num_hidden_layers=1))
    static = drop_positions(clone_model(one, "qwen2", num_hidden_layers=1))
    set_temperature(one, temperature(0.5, mode="dynamic", train_length=8))
    set_temperature(static, temperature(0.5, target_length=20, train_length=8))
    torch.testing.assert_close(logits(one, ids)[:, 19], logits(static, ids)[:, 19])


def test_temperature_errors():
    with pytest.raises(ValueError, match="unknown"):
        temperature("nope", target_length=2, train_length=1)
    with pytest.raises(ValueError, match="mode"):
        TemperatureConfig(c=1.2, mode="sometimes")
    with pytest.raises(ValueError, match="train_length"):
        TemperatureConfig(c=0.4, train_length=0)
    from longpos import surgery

    model = drop_positions(tiny_model("llama"))
    with pytest.raises(ValueError, match="TemperatureConfig"):
        surgery.set_temperature(model, 0.4)  # type: ignore[arg-type]


def test_temperature_train_length_defaults_to_the_models():
    model = drop_positions(tiny_model("llama"))  # max_position_embeddings 256, no scaling
    set_temperature(model, temperature(0.4, mode="dynamic"))
    assert position_plan(model).temperature.train_length == 256


@pytest.mark.parametrize("qk_norm", ["q", "k", "qk"])
def test_added_norms_are_full_width_with_unit_gain(qk_norm):
    model = drop_positions(tiny_model("llama"), qk_norm=qk_norm)
    attn = model.model.layers[0].self_attn
    assert model.config.longpos_qk_norm == qk_norm
    for side, width in (("q", 4 * 8), ("k", 2 * 8)):
        norm = getattr(attn, f"{side}_norm", None)
        if side in qk_norm:
            assert norm.weight.shape == (width,) and torch.equal(norm.weight, torch.ones(width))
        else:
            assert norm is None


def test_q_norm_makes_logits_invariant_to_query_scale():
    ids = token_ids()
    for qk_norm, invariant in (("none", False), ("q", True)):
        model = drop_positions(tiny_model("mistral"), qk_norm=qk_norm)
        before = logits(model, ids)
        with torch.no_grad():
            for layer in model.model.layers:
                layer.self_attn.q_proj.weight.mul_(7.0)
        changed = (logits(model, ids) - before).abs().max().item()
        assert (changed < 1e-4) == invariant, (qk_norm, changed)


@pytest.mark.parametrize("family", ["qwen3", "olmo2"])
def test_families_with_qk_norm_get_no_second_norm(family):
    model = tiny_model(family)
    ids = token_ids()
    plain = logits(drop_positions(clone_model(model, family)), ids)
    norms_before = sorted(n for n, _ in model.named_parameters() if "_norm" in n)
    with pytest.warns(UserWarning, match="no second norm"):
        drop_positions(model, qk_norm="qk")
    assert sorted(n for n, _ in model.named_parameters() if "_norm" in n) == norms_before
    assert model.config.longpos_qk_norm == "none"
    assert torch.equal(logits(model, ids), plain)
