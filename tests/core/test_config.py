"""Config validation and JSON round trips."""

import json

import pytest

from longpos.config import PRESETS, ModelConfig, RePoConfig, preset, resolve_plan


@pytest.mark.parametrize(
    "overrides, field, hint",
    [
        (dict(d_model=30, n_heads=4), "n_heads", "divide d_model"),
        (dict(n_heads=4, n_kv_heads=3), "n_kv_heads", "allowed"),
        (dict(repo_start=4), "repo_start", "allowed 0..3"),
        (dict(repo_start=-1), "repo_start", "allowed 0..3"),
        (dict(plan="warp"), "plan", "allowed"),
        (dict(plan="rope,magic,rope,rope"), "plan", "allowed"),
        (dict(plan="rope,nope"), "plan", "n_layers=4"),
        (dict(rope=dict(scaling="pi", factor=-2.0)), "rope.scaling.factor", "must be"),
        (dict(rope=dict(scaling="warp")), "rope.scaling", "allowed"),
        (dict(n_layers=0), "n_layers", ">= 1"),
        (dict(vocab_size=1), "vocab_size", ">= 2"),
        (dict(head_dim=7), "head_dim", "even"),
        (dict(norm_eps=0.0), "norm_eps", "> 0"),
        (dict(init_scheme="xavier"), "init_scheme", "allowed"),
        (dict(max_seq_len=0), "max_seq_len", ">= 1"),
    ],
)
def test_bad_values_name_field_and_range(overrides, field, hint):
    base = dict(vocab_size=64, d_model=32, n_layers=4, n_heads=4)
    base.update(overrides)
    with pytest.raises(ValueError) as err:
        ModelConfig(**base)
    assert field in str(err.value) and hint in str(err.value)


def test_bad_repo_options():
    with pytest.raises(ValueError, match="repo.variant"):
        RePoConfig(variant="mlp")
    with pytest.raises(ValueError, match=r"repo.index_blend"):
        RePoConfig(index_blend=1.5)
    with pytest.raises(ValueError, match="repo.lr_multiplier"):
        RePoConfig(lr_multiplier=0)


@pytest.mark.parametrize("name", list(PRESETS))
@pytest.mark.parametrize("plan", ["rope", "nope", "r2n1", "n2r1", "repo"])
def test_presets_round_trip_through_json(name, plan):
    cfg = preset(name, plan=plan)
    text = cfg.to_json()
    assert ModelConfig.from_json(text) == cfg
    assert json.loads(text)["rope"]["theta"] == cfg.rope.theta


def test_unknown_fields_and_presets_are_rejected():
    with pytest.raises(ValueError, match="unknown ModelConfig fields"):
        ModelConfig.from_dict({"d_model": 32, "colour": "red"})
    with pytest.raises(ValueError, match="preset='huge'"):
        preset("huge")


def test_plans():
    assert resolve_plan("r2n1", 6, 2) == ["rope", "rope", "nope"] * 2
    assert resolve_plan("n2r1", 6, 2) == ["nope", "nope", "rope"] * 2
    assert resolve_plan("repo", 16, 5) == ["rope"] * 5 + ["repo"] * 11
    assert ModelConfig(n_layers=16, d_model=64, plan="repo").layer_plan().count("rope") == 5
    assert ModelConfig(n_layers=4, d_model=64, plan="repo").layer_plan() == ["rope"] + ["repo"] * 3
    assert resolve_plan("NoPe, RePo", 2, 0) == ["nope", "repo"]


def test_preset_sizes():
    from longpos.model import LongposLM

    tiny = LongposLM(preset("tiny")).num_parameters()
    small = LongposLM(preset("small")).num_parameters()
    assert 0.7e6 < tiny < 1.3e6
    assert 20e6 < small < 30e6
