"""Every position technique is one implementation: the native model and its Hugging Face twin
(a converted Llama holding the same weights) agree on logits, cached decoding, DroPE,
temperature, RoPE scaling, optimiser groups and command-line options."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import tyro
from transformers import LlamaForCausalLM

from longpos import surgery
from longpos.cli import model_defaults
from longpos.hf import apply_longpos, position_plan
from longpos.hf import layer_plan as hf_layer_plan
from longpos.positions.repo import RePoAssigner, RePoConfig
from longpos.positions.scaling import RopeConfig
from longpos.positions.techniques import TECHNIQUE_NAMES, TECHNIQUES
from longpos.positions.temperature import TemperatureConfig
from longpos.train.command import TrainArgs, build_model
from longpos.train.config import OptimConfig
from longpos.train.optim import param_groups
from model_builders import (
    N_LAYERS,
    attention_layers,
    cached_logits,
    copy_weights,
    full_logits,
    hf_twin,
    layer_techniques,
    llama_config,
    native_config,
    native_model,
    stock_llama,
    token_ids,
    twins,
)

# The native model rotates in float32 (``positions/rope.py``) and transformers computes its
# cos/sin tables in float32, so rotating float64 twins agree to ~1e-6; NoPE-only ones exactly.
ROT_TOL = dict(atol=3e-5, rtol=3e-5)
EXACT_TOL = dict(atol=1e-10, rtol=1e-10)
CACHE_TOL = dict(atol=1e-10, rtol=1e-10)

# (plan, repo_start): each registered technique in every layer, and the named presets.
PLANS: list[tuple[str, int | None]] = [
    *(
        (",".join([name] * N_LAYERS), None)
        for name, t in TECHNIQUES.items()
        if t.converts_pretrained
    ),
    ("rope", None),
    ("nope", None),
    ("r2n1", None),
    ("n2r1", None),
    ("repo", None),
    ("repo", 0),
    ("rope,nope,repo", None),
]
PLAN_IDS = [f"{plan}@{start}" if start is not None else plan for plan, start in PLANS]


def tol(model) -> dict:
    """Exact for models with no rotating layer, float32-RoPE rounding otherwise."""
    rotating = any(t != "nope" for t in layer_techniques(model))
    return ROT_TOL if rotating else EXACT_TOL


def assert_parity(native, hf, ids) -> torch.Tensor:
    expected = full_logits(native, ids)
    torch.testing.assert_close(full_logits(hf, ids), expected, **tol(native))
    return expected


def assert_cache_parity(model, ids, splits=(5, 9)) -> None:
    torch.testing.assert_close(
        cached_logits(model, ids, splits), full_logits(model, ids), **CACHE_TOL
    )


# ------------------------------------------------------------------ (a) (b) logits, cache
def test_plans_cover_every_technique():
    covered = {
        t for plan, start in PLANS for t in native_config(plan, repo_start=start).layer_plan()
    }
    assert covered == {n for n in TECHNIQUE_NAMES if TECHNIQUES[n].converts_pretrained}


def test_positions_change_the_logits():
    """The twins' weights are large enough that a parity failure cannot hide."""
    ids = token_ids()
    rope, nope = native_model("rope"), native_model("nope")
    repo = native_model("repo", repo_start=0)
    assert (full_logits(rope, ids) - full_logits(nope, ids)).abs().max() > 0.1
    assert (full_logits(repo, ids) - full_logits(nope, ids)).abs().max() > 0.1
    assert (full_logits(repo, ids) - full_logits(rope, ids)).abs().max() > 0.1


@pytest.mark.parametrize(("plan", "start"), PLANS, ids=PLAN_IDS)
def test_logits_agree(plan, start):
    native, hf = twins(plan, repo_start=start)
    assert layer_techniques(hf) == layer_techniques(native) == native.config.layer_plan()
    for a, b in zip(attention_layers(native), attention_layers(hf), strict=True):
        assert type(a.assigner) is type(b.assigner)
        assert type(a.encoding) is type(b.encoding)
    assert_parity(native, hf, token_ids())


@pytest.mark.parametrize(("plan", "start"), [("rope", None), ("repo", 0)], ids=["rope", "repo@0"])
def test_logits_agree_eager_attention(plan, start):
    """transformers' eager attention takes the softmax in float32: agreement to ~1e-6."""
    native, hf = twins(plan, attn="eager", repo_start=start)
    torch.testing.assert_close(
        full_logits(hf, token_ids()), full_logits(native, token_ids()), **ROT_TOL
    )


@pytest.mark.parametrize("n_kv_heads", [1, 4])
def test_logits_agree_mqa_and_mha(n_kv_heads):
    native, hf = twins("rope,nope,repo", n_kv_heads=n_kv_heads)
    assert_parity(native, hf, token_ids())


def test_logits_agree_tied_embeddings():
    native, hf = twins("rope,nope,repo", tie_embeddings=True)
    assert hf.lm_head.weight is hf.model.embed_tokens.weight
    assert_parity(native, hf, token_ids())


@pytest.mark.parametrize("plan", ["rope", "rope,repo,repo"])
def test_twin_of_a_scaled_native_model(plan):
    """A native model built with YaRN and its twin (whose rope_parameters say YaRN) agree."""
    native = native_model(plan, rope=RopeConfig.scaled("yarn", factor=4.0, original_length=16))
    hf = hf_twin(native)
    assert surgery.model_rope(hf) == native.config.rope
    assert_parity(native, hf, token_ids(length=20))


def test_twin_of_a_native_model_with_temperature():
    """A plan with a temperature converts with it; train_length = the training length (16)."""
    native = native_model("nope", temperature=dict(c=0.412, mode="dynamic"))
    hf = hf_twin(native)
    assert position_plan(hf).temperature.train_length == 16
    got = assert_parity(native, hf, token_ids(length=24))
    assert (got - full_logits(native_model("nope"), token_ids(length=24))).abs().max() > 1e-2


@pytest.mark.parametrize(("plan", "start"), PLANS, ids=PLAN_IDS)
def test_cached_decoding_equals_full_forward(plan, start):
    native, hf = twins(plan, repo_start=start)
    ids = token_ids(length=14)
    assert_cache_parity(native, ids)
    assert_cache_parity(hf, ids)
    torch.testing.assert_close(cached_logits(hf, ids), cached_logits(native, ids), **tol(native))


# ------------------------------------------------------------------ (c) DroPE
@pytest.mark.parametrize("qk_norm", ["none", "q", "k", "qk"])
@pytest.mark.parametrize(("plan", "start"), [("rope", None), ("repo", None), ("r2n1", None)])
def test_drop_positions_agree(plan, start, qk_norm):
    native, hf = twins(plan, repo_start=start)
    ids = token_ids()
    before = full_logits(native, ids)
    for model in (native, hf):
        assert surgery.drop_positions(model, qk_norm=qk_norm) is model
        assert layer_techniques(model) == ["nope"] * N_LAYERS
        assert not any(".assigner." in name for name, _ in model.named_parameters())
        norms = {
            name.rsplit(".", 2)[-2] for name, _ in model.named_parameters() if "_norm." in name
        }
        expected = {f"{c}_norm" for c in qk_norm if qk_norm != "none"}
        assert norms & {"q_norm", "k_norm"} == expected
    after = assert_parity(native, hf, ids)
    assert (after - before).abs().max() > 0.1
    assert_cache_parity(native, ids)
    assert_cache_parity(hf, ids)


def test_drop_positions_keeps_the_temperature():
    native, hf = twins("repo")
    ids = token_ids(length=20)
    for model in (native, hf):
        surgery.set_temperature(model, DYNAMIC)
        surgery.drop_positions(model, qk_norm="qk")
    got = assert_parity(native, hf, ids)
    assert position_plan(hf).temperature == native.config.temperature == DYNAMIC
    for model in (native, hf):
        surgery.set_temperature(model, None)
    assert (assert_parity(native, hf, ids) - got)[:, 8:].abs().max() > 1e-2
    assert_cache_parity(hf, ids)


@pytest.mark.parametrize("qk_norm", ["none", "qk"])
def test_drop_positions_param_groups_agree(qk_norm):
    native, hf = twins("repo", repo_start=0, repo=RePoConfig(lr_multiplier=10.0))
    for model in (native, hf):
        surgery.drop_positions(model, qk_norm=qk_norm)
    assert group_summary(native) == group_summary(hf)
    assert "repo" not in group_summary(native)


@pytest.mark.parametrize("qk_norm", ["q", "k", "qk"])
def test_drope_norm_gains_are_shared(qk_norm):
    """Trained DroPE norm gains copied into the twin keep the two in step."""
    native, hf = twins("rope")
    for model in (native, hf):
        surgery.drop_positions(model, qk_norm=qk_norm)
    with torch.no_grad():
        g = torch.Generator().manual_seed(5)
        for name, param in native.named_parameters():
            if name.endswith(("q_norm.weight", "k_norm.weight")):
                param.copy_(torch.rand(param.shape, generator=g) + 0.5)
    copy_weights(native, hf)
    assert_parity(native, hf, token_ids())


# ------------------------------------------------------------------ (d) temperature
DYNAMIC = TemperatureConfig(c=0.412, mode="dynamic", train_length=8)
STATIC = TemperatureConfig(c=0.412, mode="static", target_length=32, train_length=8)


@pytest.mark.parametrize(("plan", "start"), [("nope", None), ("rope", None), ("repo", 0)])
def test_dynamic_temperature_agrees_and_caches(plan, start):
    native, hf = twins(plan, repo_start=start)
    ids = token_ids(length=20)
    plain = full_logits(native, ids)
    for model in (native, hf):
        assert surgery.set_temperature(model, DYNAMIC) is model
    got = assert_parity(native, hf, ids)
    # beta = 1 up to position 7 (length 8), > 1 from position 8 on
    torch.testing.assert_close(got[:, :8], plain[:, :8], **CACHE_TOL)
    assert (got[:, 8:] - plain[:, 8:]).abs().amax(dim=-1).min() > 1e-6
    assert (got[:, 8:] - plain[:, 8:]).abs().max() > 1e-2
    assert_cache_parity(native, ids, splits=(5, 9, 12))
    assert_cache_parity(hf, ids, splits=(5, 9, 12))
    # off again on both
    for model in (native, hf):
        surgery.set_temperature(model, None)
    torch.testing.assert_close(assert_parity(native, hf, ids), plain, **CACHE_TOL)


@pytest.mark.parametrize(("plan", "start"), [("nope", None), ("repo", None)])
def test_static_temperature_agrees(plan, start):
    native, hf = twins(plan, repo_start=start)
    ids = token_ids(length=12)
    plain = full_logits(native, ids)
    for model in (native, hf):
        surgery.set_temperature(model, STATIC)
    got = assert_parity(native, hf, ids)
    assert (got - plain).abs().max() > 1e-2  # one beta for every query, even the first
    assert_cache_parity(native, ids)
    assert_cache_parity(hf, ids)


def test_temperature_train_length_defaults_to_training_length():
    """Without ``train_length`` both back ends use the model's training length (16)."""
    native, hf = twins("nope")
    assert surgery.training_length(native) == surgery.training_length(hf) == 16
    for model in (native, hf):
        surgery.set_temperature(model, TemperatureConfig(c=0.412, mode="dynamic"))
    ids = token_ids(length=24)
    got = assert_parity(native, hf, ids)
    for model in (native, hf):
        surgery.set_temperature(model, dataclasses.replace(DYNAMIC, train_length=16))
    torch.testing.assert_close(full_logits(native, ids), got, **CACHE_TOL)


def test_temperature_is_stored_in_both_plans():
    native, hf = twins("nope")
    for model in (native, hf):
        surgery.set_temperature(model, DYNAMIC)
    assert native.config.position_plan().temperature == DYNAMIC
    assert position_plan(hf).temperature == DYNAMIC


# ------------------------------------------------------------------ (e) RoPE scaling
SCALINGS = {
    "yarn": RopeConfig.scaled("yarn", factor=4.0, original_length=16),
    "pi": RopeConfig.scaled("pi", factor=4.0),
}
MORE_SCALINGS = {
    "ntk": RopeConfig.scaled("ntk", factor=4.0),
    "llama3": RopeConfig.scaled("llama3", factor=4.0, original_length=16),
}


@pytest.mark.parametrize("scaling", list(SCALINGS))
@pytest.mark.parametrize(("plan", "start"), [("rope", None), ("repo", None), ("r2n1", None)])
def test_set_rope_agrees(plan, start, scaling):
    native, hf = twins(plan, repo_start=start)
    ids = token_ids(length=20)
    plain = full_logits(native, ids)
    for model in (native, hf):
        assert surgery.set_rope(model, SCALINGS[scaling]) is model
        assert surgery.model_rope(model) == SCALINGS[scaling]
    got = assert_parity(native, hf, ids)
    assert (got - plain).abs().max() > 1e-2
    assert_cache_parity(native, ids)
    assert_cache_parity(hf, ids)


@pytest.mark.parametrize("scaling", list(MORE_SCALINGS))
def test_set_rope_agrees_ntk_llama3(scaling):
    native, hf = twins("rope,nope,repo")
    ids = token_ids(length=40)
    for model in (native, hf):
        surgery.set_rope(model, MORE_SCALINGS[scaling])
    assert_parity(native, hf, ids)
    assert_cache_parity(native, ids)
    assert_cache_parity(hf, ids)


def test_set_rope_dynamic_ntk_agrees():
    """Dynamic NTK's frequencies follow the current length, so cached decoding differs from
    the full forward (as in transformers); both back ends differ in the same way."""
    native, hf = twins("rope,nope,repo")
    ids = token_ids(length=40)
    rope = RopeConfig.scaled("dynamic_ntk", factor=4.0, original_length=16)
    for model in (native, hf):
        surgery.set_rope(model, rope)
    assert_parity(native, hf, ids)
    torch.testing.assert_close(cached_logits(hf, ids), cached_logits(native, ids), **ROT_TOL)


def test_scaled_rope_is_the_same_on_both():
    native, hf = twins("rope")
    assert surgery.scaled_rope(native, "yarn", 4.0) == surgery.scaled_rope(hf, "yarn", 4.0)
    assert surgery.scaled_rope(native, "yarn", 4.0) == SCALINGS["yarn"]
    for model in (native, hf):
        surgery.set_rope(model, surgery.scaled_rope(model, "yarn", 4.0))
    assert_parity(native, hf, token_ids())


@pytest.mark.parametrize("scaling", list(SCALINGS))
def test_repo_without_rope_scaling_ignores_it(scaling):
    repo = RePoConfig(apply_rope_scaling=False)
    native, hf = twins("repo", repo_start=0, repo=repo)
    ids = token_ids(length=20)
    plain = full_logits(native, ids)
    for model in (native, hf):
        surgery.set_rope(model, SCALINGS[scaling])
        for attn in attention_layers(model):
            assert attn.encoding.rope == RopeConfig()  # the base frequencies kept
    torch.testing.assert_close(assert_parity(native, hf, ids), plain, **CACHE_TOL)
    # the mixed plan: the RoPE layers follow the scaling, the RePo layers do not
    native, hf = twins("rope,repo,repo", repo=repo)
    plain = full_logits(native, ids)
    for model in (native, hf):
        surgery.set_rope(model, SCALINGS[scaling])
    got = assert_parity(native, hf, ids)
    assert (got - plain).abs().max() > 1e-3


# ------------------------------------------------------------------ (f) optimiser groups
def group_summary(model) -> dict[str, tuple[float, int, int]]:
    """name -> (lr multiplier, number of tensors, number of scalars)."""
    groups = param_groups(model, OptimConfig(lr=1e-3))
    return {
        g["name"]: (g["lr_mult"], len(g["params"]), sum(p.numel() for p in g["params"]))
        for g in groups
    }


@pytest.mark.parametrize(("plan", "start"), [("rope", None), ("repo", None), ("repo", 0)])
@pytest.mark.parametrize("variant", ["swiglu", "linear"])
def test_param_groups_agree(plan, start, variant):
    native, hf = twins(plan, repo_start=start, repo=RePoConfig(lr_multiplier=10.0, variant=variant))
    got_native, got_hf = group_summary(native), group_summary(hf)
    assert got_native == got_hf
    n_repo = native.config.layer_plan().count("repo")
    if n_repo:
        per_layer = 3 if variant == "swiglu" else 1
        assert got_native["repo"][:2] == (10.0, per_layer * n_repo)
        for model in (native, hf):
            for attn in attention_layers(model):
                if isinstance(attn.assigner, RePoAssigner):
                    assert attn.assigner.optim_group == "repo"
                    assert attn.assigner.lr_multiplier == 10.0
    else:
        assert "repo" not in got_native
    lrs = {g["name"]: g["lr"] for g in param_groups(hf, OptimConfig(lr=1e-3))}
    assert lrs == {g["name"]: g["lr"] for g in param_groups(native, OptimConfig(lr=1e-3))}


def test_repo_parameter_names():
    native, hf = twins("repo", repo_start=1)
    native_names = {n for n, _ in native.named_parameters() if ".assigner." in n}
    hf_names = {n for n, _ in hf.named_parameters() if ".assigner." in n}
    assert native_names == {f"blocks.{i}.attn.assigner.{w}.weight"
                            for i in (1, 2) for w in ("gate", "content", "assign")}  # fmt: skip
    assert hf_names == {f"model.layers.{i}.self_attn.assigner.{w}.weight"
                        for i in (1, 2) for w in ("gate", "content", "assign")}  # fmt: skip


# ------------------------------------------------------------------ (g) command line
def parse_train(argv: list[str]) -> TrainArgs:
    return tyro.cli(TrainArgs, args=argv, default=model_defaults(TrainArgs, argv))


def repo_group(model) -> dict:
    return next(g for g in param_groups(model, OptimConfig()) if g["name"] == "repo")


def test_cli_options_reach_the_native_model():
    args = parse_train([
        "--preset", "tiny", "--model.plan", "repo", "--model.repo.lr-multiplier", "10",
        "--model.repo.variant", "linear", "--model.repo-start", "2",
    ])  # fmt: skip
    model, fresh = build_model(args)
    assert fresh == []
    assert layer_techniques(model) == ["rope", "rope", "repo", "repo"]
    for attn in attention_layers(model)[2:]:
        assert isinstance(attn.assigner, RePoAssigner)
        assert attn.assigner.variant == "linear"
        assert not hasattr(attn.assigner, "gate")
    assert repo_group(model)["lr_mult"] == 10.0
    assert len(repo_group(model)["params"]) == 2


@pytest.fixture
def llama_folder(tmp_path):
    cfg = native_config("rope", n_layers=3)
    model = LlamaForCausalLM(llama_config(cfg))
    model.save_pretrained(tmp_path / "llama")
    return str(tmp_path / "llama")


def test_cli_options_reach_the_hf_model(llama_folder):
    args = parse_train([
        "--hf-model", llama_folder, "--model.plan", "repo", "--model.repo.lr-multiplier", "10",
        "--model.repo-start", "1",
    ])  # fmt: skip
    model, fresh = build_model(args)
    assert layer_techniques(model) == ["rope", "repo", "repo"]
    for attn in attention_layers(model)[1:]:
        assert isinstance(attn.assigner, RePoAssigner)
        assert attn.assigner.variant == "swiglu"
        assert attn.assigner.lr_multiplier == 10.0
    assert repo_group(model)["lr_mult"] == 10.0
    assert len(repo_group(model)["params"]) == 6
    assert sorted(fresh) == sorted(
        f"model.layers.{i}.self_attn.assigner.{w}.weight"
        for i in (1, 2) for w in ("gate", "content", "assign")
    )  # fmt: skip


def test_cli_hf_model_defaults_are_the_folders_own(llama_folder):
    args = parse_train(["--hf-model", llama_folder])
    assert args.model.d_model == 32 and args.model.n_kv_heads == 2 and args.model.n_layers == 3
    model, fresh = build_model(args)
    assert hf_layer_plan(model) == ["rope"] * 3 and fresh == []


def test_cli_hf_model_refuses_architecture_options(llama_folder):
    args = parse_train(["--hf-model", llama_folder, "--model.d-model", "64"])
    with pytest.raises(ValueError, match="d_model"):
        build_model(args)


CLI_OPTIONS = {
    "temperature": ["--model.temperature.c", "0.412", "--model.temperature.mode", "dynamic"],
    "yarn": [
        "model.rope.scaling:yarn", "--model.rope.scaling.factor", "4",
        "--model.rope.scaling.original-length", "16",
    ],
    "theta": ["--model.rope.theta", "500000"],
}  # fmt: skip


@pytest.mark.parametrize("backend", ["native", "hf"])
@pytest.mark.parametrize("option", list(CLI_OPTIONS))
def test_cli_temperature_and_rope_reach_both(llama_folder, backend, option):
    base = ["--preset", "tiny"] if backend == "native" else ["--hf-model", llama_folder]
    model, _ = build_model(parse_train([*base, *CLI_OPTIONS[option]]))
    rope = surgery.model_rope(model)
    attn = attention_layers(model)[0]
    if option == "temperature":
        assert attn.temperature.c == 0.412 and attn.temperature.mode == "dynamic"
        assert attn.train_length == surgery.training_length(model)  # 256 native, 16 hf
    else:
        assert attn.temperature.c == 0.0
    if option == "yarn":
        assert rope == RopeConfig.scaled("yarn", factor=4.0, original_length=16)
    if option == "theta":
        assert rope == RopeConfig(theta=500_000.0)


def test_cli_drope_reaches_the_hf_model(llama_folder):
    args = parse_train(["--hf-model", llama_folder, "--drope", "--drope-qk-norm", "qk"])
    model, _ = build_model(args)
    assert layer_techniques(model) == ["nope"] * 3
    names = {n for n, _ in model.named_parameters()}
    assert {f"model.layers.{i}.self_attn.{c}_norm.weight" for i in range(3) for c in "qk"} <= names


@pytest.mark.parametrize(
    "options",
    [["--drope", "--drope-qk-norm", "qk"], ["--model.plan", "nope", "--model.qk-norm", "qk"]],
)
def test_cli_hf_reports_added_norms_as_fresh(llama_folder, options):
    _, fresh = build_model(parse_train(["--hf-model", llama_folder, *options]))
    assert {f"model.layers.{i}.self_attn.{c}_norm.weight" for i in range(3) for c in "qk"} <= set(
        fresh
    )


# ------------------------------------------------------------------ peers: native only
@pytest.mark.parametrize("name", [n for n, t in TECHNIQUES.items() if not t.converts_pretrained])
def test_converting_a_pretrained_model_to_a_native_only_peer_is_refused(name):
    """Peers whose papers train from scratch (ALiBi, FIRE, PoPE, CoPE, FoX, stick-breaking,
    the NoPE query temperature) are refused by the HF conversion, in any layer."""
    stock = stock_llama(native_config())
    with pytest.raises(ValueError, match=rf"\['{name}'\] cannot be put into a pretrained model"):
        apply_longpos(stock, f"rope,{name},rope")
