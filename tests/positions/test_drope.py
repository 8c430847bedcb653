"""DroPE on native models: every rotation removed, weights kept, QK-norm variants, temperature."""

import dataclasses
import math

import pytest
import torch

from longpos.checkpoint import load_model, save_model
from longpos.model import LongposLM
from longpos.positions.rope import NoPE
from longpos.positions.temperature import TemperatureConfig, temperature
from longpos.surgery import drop_positions, scaled_rope, set_rope, set_temperature


@pytest.mark.parametrize("plan", ["rope", "repo", "r2n1"])
def test_drop_removes_rotation_everywhere_and_keeps_weights(make_model, plan):
    model = make_model(plan=plan, n_kv_heads=2)
    before = {k: v.clone() for k, v in model.state_dict().items() if ".assigner." not in k}
    drop_positions(model)
    assert all(isinstance(b.attn.encoding, NoPE) for b in model.blocks)
    assert model.config.plan == "nope" and model.config.layer_plan() == ["nope"] * 3
    after = model.state_dict()
    assert not any(".assigner." in k for k in after)
    assert set(after) == set(before) and all(after[k].equal(before[k]) for k in before)
    # no positional signal left: even stretched integer indices change nothing
    x = torch.randint(0, 61, (2, 12))
    shifted = model(x, index=(torch.arange(12) * 7 + 500).expand(2, 12)).logits
    torch.testing.assert_close(model(x).logits, shifted, rtol=0, atol=0)
    # and it is exactly the NoPE model with the same weights
    nope = LongposLM(model.config)
    nope.load_state_dict(model.state_dict())
    assert nope.eval()(x).logits.equal(model(x).logits)


def test_rope_model_did_have_positional_signal(make_model):
    model = make_model(plan="rope")
    x = torch.randint(0, 61, (1, 12))
    shifted = model(x, index=(torch.arange(12) * 7 + 500)[None]).logits
    assert (model(x).logits - shifted).abs().max() > 1e-4


@pytest.mark.parametrize("qk_norm", ["q", "k", "qk"])
def test_qk_norm_variants_persist_and_keep_cache_consistent(tmp_path, make_model, qk_norm):
    model = drop_positions(make_model(plan="rope", n_kv_heads=2), qk_norm=qk_norm)
    attn = model.blocks[0].attn
    assert (attn.q_norm is not None) == ("q" in qk_norm)
    assert (attn.k_norm is not None) == ("k" in qk_norm)
    if attn.q_norm is not None:
        assert attn.q_norm.weight.shape == (4 * 8,) and bool((attn.q_norm.weight == 1).all())
    x = torch.randint(0, 61, (2, 14))
    save_model(model, tmp_path / "d")
    loaded = load_model(tmp_path / "d").eval()
    assert loaded(x).logits.equal(model(x).logits)
    cache = model.new_cache()
    steps = [model(x[:, :6], cache=cache).logits]
    steps += [model(x[:, t : t + 1], cache=cache).logits for t in range(6, 14)]
    torch.testing.assert_close(torch.cat(steps, 1), model(x).logits, rtol=1e-5, atol=1e-5)


def test_no_second_qk_norm(make_model):
    model = make_model(plan="rope", qk_norm="qk")
    with pytest.raises(ValueError, match="already normalises"):
        drop_positions(model, qk_norm="qk")
    with pytest.raises(ValueError, match="qk_norm='x'"):
        drop_positions(model, "x")


def test_temperature_values():
    paper = TemperatureConfig(c=0.412, target_length=None)
    assert paper.static_beta(1024) == 1.0  # static, no target: off
    for s, expected in [(1, 1.0), (2, 1.286), (4, 1.571), (8, 1.857), (16, 2.142), (32, 2.428)]:
        cfg = temperature("scratch", target_length=1024 * s)
        assert cfg.static_beta(1024) == pytest.approx(expected, abs=1e-3)
    assert temperature("smollm", 8192).static_beta(2048) == pytest.approx(1 + 0.103 * math.log(4))
    # dynamic: one beta per query, from its own position p: 1 + c ln(max(1, (p + 1) / L))
    dyn = temperature(0.5, mode="dynamic")
    q = torch.ones(1, 1, 4, 2)
    index = torch.tensor([[0, 99, 199, 399]])
    scaled, scalar = dyn.scale_queries(q, index, 100)
    assert scalar == 1.0
    want = [1.0, 1.0, 1 + 0.5 * math.log(2), 1 + 0.5 * math.log(4)]
    torch.testing.assert_close(scaled[0, 0, :, 0], torch.tensor(want))
    with pytest.raises(ValueError, match="unknown"):
        temperature("hot", 10)
    with pytest.raises(ValueError, match="temperature.c"):
        TemperatureConfig(c=-1)


def test_dynamic_temperature_cached_decoding_equals_full_forward(make_model):
    model = set_temperature(
        drop_positions(make_model(plan="rope")), temperature(0.412, mode="dynamic")
    )
    x = torch.randint(0, 61, (2, 70))  # max_seq_len 32: beta > 1 for the last 38 queries
    full = model(x).logits
    cache = model.new_cache()
    steps = [model(x[:, :20], cache=cache).logits]
    steps += [model(x[:, t : t + 1], cache=cache).logits for t in range(20, 70)]
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=1e-5, atol=1e-5)
    plain = set_temperature(drop_positions(make_model(plan="rope")), None)(x).logits
    assert plain[:, :32].equal(full[:, :32])  # identity up to the training length
    assert (plain[:, 40:] - full[:, 40:]).abs().max() > 1e-4


def test_temperature_is_identity_up_to_training_length_and_scales_beyond(make_model):
    model = drop_positions(make_model(plan="rope"))  # max_seq_len 32
    x = torch.randint(0, 61, (1, 20))
    plain = model(x, return_attention=True)
    set_temperature(model, temperature(0.412, target_length=32))
    assert model(x, return_attention=True).logits.equal(plain.logits)
    set_temperature(model, temperature(0.412, target_length=128))
    hot = model(x, return_attention=True)
    assert (hot.logits - plain.logits).abs().max() > 1e-4

    # beta sharpens attention: lower entropy in every layer
    def entropy(p):
        return -(p * p.clamp_min(1e-12).log()).sum(-1).mean()

    for cold_p, hot_p in zip(plain.attentions, hot.attentions, strict=True):
        assert entropy(hot_p) < entropy(cold_p)


def test_rope_scaling_applied_after_training_equals_a_model_built_with_it(make_model):
    trained = make_model(plan="repo", n_kv_heads=2)
    for scaling in ("pi", "ntk", "yarn"):
        rope = scaled_rope(trained, scaling, 4.0)
        assert getattr(rope.scaling, "original_length", 32) == trained.config.max_seq_len
        built = LongposLM(dataclasses.replace(trained.config, rope=rope)).eval()
        built.load_state_dict(trained.state_dict())
        scaled = set_rope(make_model(plan="repo", n_kv_heads=2), rope)
        x = torch.randint(0, 61, (1, 40))
        assert scaled(x).logits.equal(built(x).logits)
        assert (scaled(x).logits - trained(x).logits).abs().max() > 1e-4
