"""Conversion maths: parity with the stock transformers model and its own rope_parameters."""

from __future__ import annotations

import pytest
import torch
from hf_helpers import (
    FAMILY_NAMES,
    HEAD_DIM,
    N_HEADS,
    N_KV,
    IdentityRotary,
    clone_model,
    force_integer_positions,
    logits,
    nope_layers_by_hook,
    spread_repo,
    tiny_model,
    token_ids,
    with_stock_nope,
)

from longpos.config import RePoConfig
from longpos.hf import (
    MODEL_CLASSES,
    apply_longpos,
    drop_positions,
    layer_plan,
    position_parameters,
    set_rope,
)
from longpos.positions.repo import RePoAssigner
from longpos.positions.scaling import RopeConfig


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_rope_plan_leaves_logits_unchanged(family):
    model = tiny_model(family)
    ids = token_ids()
    before = logits(model, ids)
    apply_longpos(model, "rope")
    assert type(model) is MODEL_CLASSES[family]
    assert model.config.model_type == f"{family}_longpos"
    assert torch.equal(logits(model, ids), before)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_repo_forced_to_integers_equals_original(family):
    model = tiny_model(family)
    ids = token_ids()
    before = logits(model, ids)
    apply_longpos(model, "repo", repo_start=0)
    assert layer_plan(model) == with_stock_nope(family, ["repo"] * 3)
    spread_repo(model)
    assert (logits(model, ids) - before).abs().max() > 1e-3  # learned positions matter
    force_integer_positions(model)
    torch.testing.assert_close(logits(model, ids), before, atol=1e-6, rtol=0)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_nope_plan_equals_drope_and_identity_rotary(family):
    model = tiny_model(family)
    ids = token_ids()
    reference = clone_model(model, family)
    reference.model.rotary_emb = IdentityRotary(reference.model.rotary_emb)
    expected = logits(reference, ids)
    nope = apply_longpos(clone_model(model, family), "nope")
    drope = drop_positions(model)
    assert layer_plan(drope) == ["nope"] * 3
    torch.testing.assert_close(logits(nope, ids), expected, atol=1e-6, rtol=0)
    assert torch.equal(logits(drope, ids), logits(nope, ids))


@pytest.mark.parametrize("family", ["llama", "qwen3", "olmo2"])
@pytest.mark.parametrize("plan,nope_layers", [("r2n1", [2]), ("n2r1", [0, 1])])
def test_hybrids_equal_stock_with_nope_hooks(family, plan, nope_layers):
    model = tiny_model(family)
    ids = token_ids()
    reference = clone_model(model, family)
    nope_layers_by_hook(reference, nope_layers)
    apply_longpos(model, plan)
    torch.testing.assert_close(logits(model, ids), logits(reference, ids), atol=1e-6, rtol=0)


def test_nope_is_position_shift_invariant():
    model = drop_positions(tiny_model("llama"))
    ids = token_ids(batch=1, length=10)
    mask = torch.ones_like(ids)
    a = logits(model, ids, attention_mask=mask, position_ids=torch.arange(10)[None])
    b = logits(model, ids, attention_mask=mask, position_ids=torch.arange(10)[None] + 37)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


SCALINGS = [
    RopeConfig.scaled("pi", factor=4.0),
    RopeConfig.scaled("yarn", factor=4.0, original_length=16),
    RopeConfig.scaled("ntk", factor=4.0),
    RopeConfig.scaled("llama3", factor=4.0, original_length=16),
]


@pytest.mark.parametrize("family", ["llama", "qwen2", "olmo2"])
@pytest.mark.parametrize("rope", SCALINGS, ids=lambda r: r.scaling.name)
def test_scaled_rope_equals_transformers_rope_parameters(family, rope):
    model = tiny_model(family)
    ids = token_ids(length=40)  # beyond the original length 16
    params = rope.to_hf(HEAD_DIM)
    extra = {}
    if "original_max_position_embeddings" in params:
        extra["max_position_embeddings"] = 64
    reference = clone_model(model, family, rope_parameters=params, **extra)
    before = logits(model, ids)
    apply_longpos(model, "rope", rope=rope)
    assert model.config.rope_parameters["rope_type"] == params["rope_type"]
    after = logits(model, ids)
    torch.testing.assert_close(after, logits(reference, ids), atol=1e-6, rtol=0)
    assert (after - before).abs().max() > 1e-4


def test_repo_layers_follow_yarn_scaling_unless_disabled():
    rope = SCALINGS[1]
    model = tiny_model("llama")
    ids = token_ids(length=40)
    reference = clone_model(
        model, "llama", rope_parameters=rope.to_hf(HEAD_DIM), max_position_embeddings=64
    )
    apply_longpos(model, "repo", repo_start=0, rope=rope)
    force_integer_positions(model)
    torch.testing.assert_close(logits(model, ids), logits(reference, ids), atol=1e-6, rtol=0)
    apply_longpos(model, "repo", repo_start=0, repo=RePoConfig(apply_rope_scaling=False))
    force_integer_positions(model)
    plain = clone_model(model, "llama")  # default rope, same weights
    assert (logits(model, ids) - logits(reference, ids)).abs().max() > 1e-4
    torch.testing.assert_close(logits(model, ids), logits(plain, ids), atol=1e-6, rtol=0)


def test_set_rope_on_converted_model_refreshes_repo_frequencies():
    model = apply_longpos(tiny_model("llama"), "repo", repo_start=0)
    force_integer_positions(model)
    ids = token_ids(length=40)
    rope = SCALINGS[0]
    set_rope(model, rope)
    reference = clone_model(model, "llama", rope_parameters=rope.to_hf(HEAD_DIM))
    torch.testing.assert_close(logits(model, ids), logits(reference, ids), atol=1e-6, rtol=0)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_gqa_shapes_and_parameter_names(family):
    model = apply_longpos(tiny_model(family), ["rope", "repo", "repo"])  # a list: as it is
    assert layer_plan(model) == ["rope", "repo", "repo"]
    assert model.model.layers[0].self_attn.assigner.returns_index  # a RoPE layer
    for i in (1, 2):
        assigner = model.model.layers[i].self_attn.assigner
        assert isinstance(assigner, RePoAssigner)
        assert assigner.assign.out_features == N_KV  # one position per key-value head
        assert assigner.gate.in_features == 32 and assigner.gate.out_features == 32 // 8
    names = [n for n, _ in position_parameters(model)]
    assert names == [
        f"model.layers.{i}.self_attn.assigner.{p}.weight"
        for i in (1, 2)
        for p in ("gate", "content", "assign")
    ]
    from longpos.hf import assigned_positions

    ids = token_ids(batch=2, length=7)
    positions, learned = assigned_positions(model, ids)
    assert positions.shape == (3, 2, N_KV, 7)
    assert learned == [False, True, True]
    assert torch.equal(positions[0], torch.arange(7.0).expand(2, N_KV, 7))
    assert N_HEADS % N_KV == 0


@pytest.mark.parametrize("family", ["llama", "olmo2", "qwen3"])
def test_gradients_reach_repo_and_not_rotary_tables(family):
    model = apply_longpos(tiny_model(family), "repo").train()
    spread_repo(model, std=0.2)
    for name, param in model.named_parameters():
        param.requires_grad_(".assigner." in name)
    ids = token_ids(batch=2, length=12)
    loss = model(input_ids=ids, labels=ids, use_cache=False).loss
    loss.backward()
    grads = {n: p.grad for n, p in position_parameters(model)}
    assert len(grads) == 6
    assert all(g is not None and g.abs().sum() > 0 for g in grads.values())
    rotary = model.model.rotary_emb
    for buf in (rotary.inv_freq, rotary.original_inv_freq):
        assert not buf.requires_grad and buf.grad is None
    for layer in model.model.layers:
        for table in layer.self_attn.encoding._inv_freq.values():
            assert not table.requires_grad
    frozen = [p for n, p in model.named_parameters() if ".assigner." not in n]
    assert all(p.grad is None for p in frozen)


@pytest.mark.parametrize("family", ["llama", "qwen3", "olmo2", "mistral"])
@pytest.mark.parametrize("plan", ["repo", "r2n1", "nope"])
def test_eager_and_sdpa_agree(family, plan):
    eager = apply_longpos(tiny_model(family, attn="eager"), plan)
    spread_repo(eager)
    sdpa = apply_longpos(clone_model(eager, family, attn="sdpa"), plan)
    sdpa.load_state_dict(eager.state_dict())
    assert sdpa.config._attn_implementation == "sdpa"
    ids = token_ids()
    torch.testing.assert_close(logits(sdpa, ids), logits(eager, ids), atol=1e-4, rtol=1e-4)


def test_reconversion_keeps_or_removes_repo_weights():
    model = apply_longpos(tiny_model("llama"), "repo", repo_start=0)
    spread_repo(model)
    kept = model.model.layers[2].self_attn.assigner.assign.weight.clone()
    apply_longpos(model, "rope,nope,repo")
    assert torch.equal(model.model.layers[2].self_attn.assigner.assign.weight, kept)
    assert model.model.layers[0].self_attn.assigner.returns_index  # a RoPE layer
    drop_positions(model)
    assert list(position_parameters(model)) == []


def test_conversion_keeps_every_pretrained_tensor_object():
    model = tiny_model("qwen2")
    before = {n: p for n, p in model.named_parameters()}
    apply_longpos(model, "repo")
    after = dict(model.named_parameters())
    for name, param in before.items():
        assert after[name] is param


def test_bf16_repo_runs_and_keeps_dtypes():
    model = apply_longpos(tiny_model("llama").to(torch.bfloat16), "repo")
    ids = token_ids(batch=1, length=9)
    out = logits(model, ids)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    assigner = model.model.layers[2].self_attn.assigner
    assert assigner.assign.weight.dtype == torch.bfloat16
    from longpos.hf import record_positions

    with record_positions(model) as rec:
        logits(model, ids)
    assert rec.by_layer[2].dtype == torch.float32


def test_gradient_checkpointing_gives_the_same_repo_gradients():
    ids = token_ids(batch=2, length=12)
    grads = []
    for checkpointing in (False, True):
        model = apply_longpos(tiny_model("qwen3"), "repo").train()
        spread_repo(model, std=0.2)
        if checkpointing:
            model.activation_checkpointing_enable()
        model(input_ids=ids, labels=ids, use_cache=False).loss.backward()
        grads.append({n: p.grad.clone() for n, p in position_parameters(model)})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-6, rtol=1e-5)
