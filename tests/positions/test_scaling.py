"""RoPE scaling variants: tables and attention factors equal those of the installed
transformers; transformers / JSON / CLI conversions; validation messages."""

import json
import math

import pytest
import torch

from longpos.positions.rope import apply_rotary, rope_cos_sin
from longpos.positions.scaling import (
    SCALING_NAMES,
    SCALINGS,
    DynamicNTKScaling,
    Llama3Scaling,
    NoScaling,
    NTKScaling,
    PIScaling,
    RopeConfig,
    YarnScaling,
    default_inv_freq,
)

transformers = pytest.importorskip("transformers")
from transformers import GPTNeoXConfig, LlamaConfig  # noqa: E402
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS  # noqa: E402
from transformers.models.gpt_neox.modeling_gpt_neox import GPTNeoXRotaryEmbedding  # noqa: E402
from transformers.models.llama.modeling_llama import (  # noqa: E402
    LlamaRotaryEmbedding,
    apply_rotary_pos_emb,
)

HEAD_DIMS = [16, 64, 128]
THETAS = [10_000.0, 500_000.0]
FACTORS = [2.0, 4.0, 8.0]


def rope(name: str, theta: float = 10_000.0, factor: float = 4.0, original=None, **options):
    """A RopeConfig of scaling ``name`` (factor 1 for none)."""
    return RopeConfig.scaled(
        name,
        theta=theta,
        factor=1.0 if name == "none" else factor,
        original_length=original,
        **options,
    )


def hf_config(head_dim: int, params: dict, max_pos: int) -> LlamaConfig:
    return LlamaConfig(
        hidden_size=head_dim * 2,
        num_attention_heads=2,
        head_dim=head_dim,
        max_position_embeddings=max_pos,
        rope_parameters=params,
    )


def hf_frequencies(cfg: LlamaConfig, seq_len=None) -> tuple[torch.Tensor, float]:
    kind = cfg.rope_parameters["rope_type"]
    if kind == "default":
        return LlamaRotaryEmbedding.compute_default_rope_parameters(cfg)
    return ROPE_INIT_FUNCTIONS[kind](cfg, "cpu", seq_len=seq_len)


def assert_same(ours: tuple[torch.Tensor, float], theirs: tuple[torch.Tensor, float]) -> None:
    assert ours[0].dtype == torch.float32
    torch.testing.assert_close(ours[0], theirs[0].to(torch.float32), rtol=1e-6, atol=0)
    assert ours[1] == pytest.approx(theirs[1], rel=1e-12)


# ------------------------------------------------------- parity with transformers
@pytest.mark.parametrize("dim", HEAD_DIMS)
@pytest.mark.parametrize("theta", THETAS)
def test_default_matches_transformers(dim, theta):
    ours = RopeConfig(theta=theta)
    assert_same(ours.frequencies(dim), hf_frequencies(hf_config(dim, ours.to_hf(dim), 4096)))


@pytest.mark.parametrize("dim", HEAD_DIMS)
@pytest.mark.parametrize("theta", THETAS)
@pytest.mark.parametrize("factor", FACTORS)
@pytest.mark.parametrize("scaling", ["pi", "ntk", "yarn", "llama3"])
def test_static_scalings_match_transformers(dim, theta, factor, scaling):
    original = 2048
    ours = rope(scaling, theta, factor, original)
    cfg = hf_config(dim, ours.to_hf(head_dim=dim), int(original * factor))
    assert_same(ours.frequencies(dim), hf_frequencies(cfg))


@pytest.mark.parametrize("dim", HEAD_DIMS)
@pytest.mark.parametrize("factor", FACTORS)
@pytest.mark.parametrize("seq_len", [100, 1024, 3000, 9000])
def test_dynamic_ntk_matches_transformers(dim, factor, seq_len):
    original = 1024
    ours = rope("dynamic_ntk", factor=factor, original=original)
    assert ours.is_dynamic and ours.scaling.is_dynamic
    cfg = hf_config(dim, ours.to_hf(dim), original)  # HF's L is max_position_embeddings
    assert_same(ours.frequencies(dim, seq_len=seq_len), hf_frequencies(cfg, seq_len=seq_len))


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"beta_fast": 16.0, "beta_slow": 2.0},
        {"truncate": False},
        {"mscale": 0.707, "mscale_all_dim": 1.0},
        {"attention_factor": 1.3},
    ],
)
def test_yarn_options_match_transformers(extra):
    ours = rope("yarn", factor=4.0, original=4096, **extra)
    cfg = hf_config(64, ours.to_hf(64), 16384)
    assert_same(ours.frequencies(64), hf_frequencies(cfg))


@pytest.mark.parametrize("dim", [64, 128])
def test_partial_rotary_default_matches_transformers(dim):
    ours = RopeConfig(theta=10_000.0, partial_rotary_factor=0.5)
    assert ours.rotary_dim(dim) == dim // 2
    params = ours.to_hf(dim)
    assert params["partial_rotary_factor"] == 0.5
    cfg = GPTNeoXConfig(
        hidden_size=dim * 2, num_attention_heads=2, max_position_embeddings=4096,
        rope_parameters=params,
    )  # fmt: skip
    theirs = GPTNeoXRotaryEmbedding.compute_default_rope_parameters(cfg)
    ours_freq = ours.frequencies(dim)
    assert ours_freq[0].shape == (dim // 4,)
    assert_same(ours_freq, theirs)
    # from_hf keeps the factor, so the table stays half-size
    assert RopeConfig.from_hf(params).frequencies(dim)[0].shape == (dim // 4,)


@pytest.mark.parametrize("extra", [{}, {"mscale": 0.707, "mscale_all_dim": 1.0}])
def test_partial_rotary_yarn_matches_transformers(extra):
    dim = 64
    ours = RopeConfig(
        theta=10_000.0,
        scaling=YarnScaling(factor=4.0, original_length=4096, **extra),
        partial_rotary_factor=0.5,
    )
    params = ours.to_hf(dim)
    cfg = hf_config(dim, params, 16384)
    assert cfg.rope_parameters["partial_rotary_factor"] == 0.5
    ours_freq = ours.frequencies(dim)
    assert ours_freq[0].shape == (dim // 4,)
    assert_same(ours_freq, hf_frequencies(cfg))
    back = RopeConfig.from_hf(params, 16384)
    assert back == ours


def test_partial_rotary_factor_from_the_config_attribute():
    params = {"rope_type": "default", "rope_theta": 10_000.0}
    assert RopeConfig.from_hf(params, partial_rotary_factor=0.25).partial_rotary_factor == 0.25
    inside = {**params, "partial_rotary_factor": 0.5}
    assert RopeConfig.from_hf(inside, partial_rotary_factor=0.25).partial_rotary_factor == 0.5
    assert RopeConfig.from_hf(params).partial_rotary_factor == 1.0
    assert "partial_rotary_factor" not in RopeConfig().to_hf(64)


def test_yarn_worked_example_of_the_spec():
    ours = rope("yarn", factor=4.0, original=4096)
    assert ours.scaling.yarn_correction_range(128, ours.theta) == (20, 46)
    assert ours.frequencies(128)[1] == pytest.approx(1.138629, abs=1e-6)
    assert ours.frequencies(128)[1] == pytest.approx(0.1 * math.log(4) + 1)


def test_property_relations_without_transformers():
    dim, s = 64, 4.0
    base = default_inv_freq(dim, 10_000.0)
    pi = rope("pi", factor=s).frequencies(dim)[0]
    torch.testing.assert_close(pi, base / s)
    ntk = rope("ntk", factor=s).frequencies(dim)[0]
    torch.testing.assert_close(ntk[0], base[0])
    torch.testing.assert_close(ntk[-1], base[-1] / s, rtol=1e-5, atol=0)
    yarn = rope("yarn", factor=s, original=2048).frequencies(dim)[0]
    assert bool(((base / s) <= yarn * (1 + 1e-6)).all() and (yarn <= base * (1 + 1e-6)).all())
    llama = rope("llama3", theta=500_000.0, factor=8.0, original=8192).frequencies(128)[0]
    assert int((llama == default_inv_freq(128, 500_000.0)).sum()) == 29
    for name in SCALING_NAMES:
        cfg = rope(name, original=2048)
        expected = 0.1 * math.log(s) + 1 if name == "yarn" else 1.0
        assert cfg.frequencies(dim)[1] == pytest.approx(expected)
        assert cfg.is_dynamic == (name == "dynamic_ntk")


@pytest.mark.parametrize("scaling", ["none", "pi", "yarn", "llama3", "dynamic_ntk"])
def test_hf_round_trip(scaling):
    ours = rope(scaling, theta=50_000.0, original=1024)
    back = RopeConfig.from_hf(ours.to_hf(32), max_position_embeddings=1024)
    assert back == ours
    assert back.frequencies(32, seq_len=5000)[0].equal(ours.frequencies(32, seq_len=5000)[0])
    assert back.frequencies(32)[1] == ours.frequencies(32)[1]


def test_ntk_round_trips_as_default_with_a_larger_theta():
    ours = rope("ntk", factor=4.0)
    params = ours.to_hf(32)
    assert params == {"rope_type": "default", "rope_theta": 10_000.0 * 4.0 ** (32 / 30)}
    back = RopeConfig.from_hf(params)
    assert back.scaling == NoScaling()
    assert back.frequencies(32)[0].equal(ours.frequencies(32)[0])
    assert back.to_hf(32) == params


@pytest.mark.parametrize(
    "params, max_pos",
    [
        ({"rope_type": "default", "rope_theta": 500_000.0}, None),
        ({"rope_type": "linear", "rope_theta": 10_000.0, "factor": 4.0}, None),
        ({"rope_type": "dynamic", "rope_theta": 10_000.0, "factor": 2.0}, 2048),
        (
            {
                "rope_type": "yarn", "rope_theta": 10_000.0, "factor": 4.0,
                "original_max_position_embeddings": 4096, "beta_fast": 32.0,
                "beta_slow": 1.0, "truncate": False, "attention_factor": 1.2,
                "mscale": 1.0, "mscale_all_dim": 0.5,
            },
            None,
        ),
        (
            {
                "rope_type": "llama3", "rope_theta": 500_000.0, "factor": 8.0,
                "original_max_position_embeddings": 8192, "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
            },
            None,
        ),
        ({"rope_type": "default", "rope_theta": 10_000.0, "partial_rotary_factor": 0.5}, None),
    ],
    ids=["default", "linear", "dynamic", "yarn", "llama3", "partial"],
)  # fmt: skip
def test_from_hf_to_hf_round_trip(params, max_pos):
    assert RopeConfig.from_hf(params, max_pos).to_hf(64) == params


def test_from_hf_legacy_and_deepseek_forms():
    legacy = {"type": "linear", "factor": 2.0}  # old configs; theta defaults to 1e4
    assert RopeConfig.from_hf(legacy) == RopeConfig(scaling=PIScaling(factor=2.0))
    # yarn without original_max_position_embeddings: L = max_position_embeddings;
    # without factor: factor = max_position_embeddings / L (DeepSeek)
    got = RopeConfig.from_hf({"rope_type": "yarn", "factor": 4.0}, 1024).scaling
    assert got == YarnScaling(factor=4.0, original_length=1024)
    deep = {"rope_type": "yarn", "original_max_position_embeddings": 1024}
    assert RopeConfig.from_hf(deep, 4096).scaling.factor == 4.0
    dyn = RopeConfig.from_hf({"rope_type": "dynamic", "factor": 2.0}, 512).scaling
    assert dyn == DynamicNTKScaling(factor=2.0, original_length=512)


@pytest.mark.parametrize(
    "params, max_pos, words",
    [
        ({"rope_type": "linear", "factor": 2.0, "foo": 1}, None, ["'foo'", "allowed", "factor"]),
        ({"rope_type": "linear", "factr": 2.0}, None, ["'factr'", "allowed: factor"]),
        (
            {"rope_type": "default", "factor": 2.0},
            None,
            ["'factor'", "'default'", "rope_theta"],
        ),
        ({"rope_type": "linear"}, None, ["missing", "'factor'"]),
        ({"rope_type": "dynamic"}, 1024, ["missing", "'factor'"]),
        ({"rope_type": "yarn", "factor": 2.0}, None, ["'original_max_position_embeddings'"]),
        ({"rope_type": "yarn", "original_max_position_embeddings": 64}, None, ["'factor'"]),
        (
            {"rope_type": "llama3", "factor": 8.0, "original_max_position_embeddings": 64},
            None,
            ["missing", "'low_freq_factor'"],
        ),
        ({"rope_type": "dynamic", "factor": 2.0}, None, ["max_position_embeddings"]),
        (
            {"rope_type": "longrope", "short_factor": [1.0], "long_factor": [1.0]},
            None,
            ["'longrope'", "missing", "'original_max_position_embeddings'"],
        ),
        ({"rope_type": "su"}, None, ["'su'", "not supported"]),
        ({"rope_type": "proportional", "rope_theta": 1e4}, None, ["'proportional'"]),
        ({"rope_type": "linear", "factor": 0.5}, None, ["rope.scaling.factor=0.5", ">= 1"]),
    ],
)
def test_bad_hf_parameters_are_value_errors_naming_the_key(params, max_pos, words):
    with pytest.raises(ValueError) as info:
        RopeConfig.from_hf(params, max_pos)
    for word in words:
        assert word in str(info.value)


def test_rotation_tables_and_rotated_qk_match_hf_for_every_variant():
    dim = 32
    for name in ["none", "pi", "yarn", "llama3"]:
        ours = rope(name, original=64)
        cfg = hf_config(dim, ours.to_hf(dim), 256)
        rotary = LlamaRotaryEmbedding(cfg)
        positions = torch.tensor([[0, 1, 5, 63, 64, 200, 255]])  # inside and beyond L
        x = torch.randn(1, 7, dim)
        hf_cos, hf_sin = rotary(x, positions)
        inv_freq, factor = ours.frequencies(dim)
        cos, sin = rope_cos_sin(positions, inv_freq, factor)
        torch.testing.assert_close(cos, hf_cos, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(sin, hf_sin, rtol=1e-6, atol=1e-6)
        q, k = torch.randn(1, 2, 7, dim), torch.randn(1, 2, 7, dim)
        hf_q, hf_k = apply_rotary_pos_emb(q, k, hf_cos, hf_sin)
        torch.testing.assert_close(apply_rotary(q, cos[:, None], sin[:, None]), hf_q)
        torch.testing.assert_close(apply_rotary(k, cos[:, None], sin[:, None]), hf_k)


# ------------------------------------------------------------- the variants
def test_registry_and_variant_classes():
    assert SCALING_NAMES == ("none", "pi", "ntk", "dynamic_ntk", "yarn", "llama3")
    assert tuple(SCALINGS) == SCALING_NAMES
    classes = (NoScaling, PIScaling, NTKScaling, DynamicNTKScaling, YarnScaling, Llama3Scaling)
    assert tuple(SCALINGS.values()) == classes
    assert [c.name for c in classes] == list(SCALING_NAMES)
    scaling = YarnScaling(factor=4, original_length=64)
    assert isinstance(scaling.factor, float) and scaling.factor == 4.0
    with pytest.raises(AttributeError):
        scaling.factor = 2.0  # type: ignore[misc]
    cfg = RopeConfig()
    with pytest.raises(AttributeError):
        cfg.theta = 2.0  # type: ignore[misc]
    assert cfg.scaling == NoScaling() and hash(cfg) == hash(RopeConfig())


def test_scaled_and_with_scaling():
    cfg = RopeConfig.scaled("yarn", factor=4, original_length=4096, beta_fast=16)
    assert cfg == RopeConfig(scaling=YarnScaling(factor=4.0, original_length=4096, beta_fast=16))
    base = RopeConfig(theta=5e5, partial_rotary_factor=0.5)
    pi = base.with_scaling("pi", 2.0, 1024)  # L is not a PI field: ignored
    assert pi == RopeConfig(theta=5e5, scaling=PIScaling(2.0), partial_rotary_factor=0.5)
    llama = base.with_scaling("llama3", 8.0, 8192, high_freq_factor=8.0)
    assert llama.scaling == Llama3Scaling(8.0, 8192, 1.0, 8.0) and llama.theta == 5e5
    assert RopeConfig.scaled("none", factor=1.0) == RopeConfig()
    with pytest.raises(ValueError, match=r"'beta_fast'.*its options: low_freq_factor"):
        base.with_scaling("llama3", 8.0, 8192, beta_fast=3)
    with pytest.raises(ValueError, match=r"rope\.scaling='warp' is unknown; allowed: none"):
        RopeConfig.scaled("warp", factor=2.0)
    with pytest.raises(ValueError, match=r"rope\.scaling\.factor=2\.0 must be 1"):
        RopeConfig.scaled("none", factor=2.0)


@pytest.mark.parametrize(
    "build, field",
    [
        (lambda: PIScaling(factor=-2.0), "rope.scaling.factor=-2.0"),
        (lambda: PIScaling(factor=0.5), "rope.scaling.factor=0.5 must be >= 1"),
        (lambda: NTKScaling(factor="2"), "rope.scaling.factor='2'"),
        (lambda: YarnScaling(factor=2.0, original_length=None), "rope.scaling.original_length"),
        (lambda: YarnScaling(factor=2.0, original_length=0), "rope.scaling.original_length=0"),
        (lambda: DynamicNTKScaling(2.0, 10.5), "rope.scaling.original_length=10.5"),
        (lambda: YarnScaling(2.0, 64, beta_fast=0.0), "rope.scaling.beta_fast=0.0"),
        (lambda: YarnScaling(2.0, 64, attention_factor=-1), "rope.scaling.attention_factor"),
        (lambda: Llama3Scaling(2.0, 64, 4.0, 2.0), "rope.scaling.high_freq_factor=2.0"),
        (lambda: RopeConfig(theta=0.5), "rope.theta=0.5"),
        (lambda: RopeConfig(partial_rotary_factor=0.0), "rope.partial_rotary_factor=0.0"),
        (lambda: RopeConfig(partial_rotary_factor=1.5), "rope.partial_rotary_factor=1.5"),
        (lambda: RopeConfig(scaling="yarn"), "rope.scaling='yarn' must be one of"),
        (lambda: RopeConfig(partial_rotary_factor=0.3).rotary_dim(10), "rotary dim=3"),
        (lambda: RopeConfig().frequencies(7), "rotary dim=7"),
        (lambda: NTKScaling.from_hf({"rope_type": "default"}, None), "static NTK"),
    ],
)
def test_bad_values_are_rejected_naming_the_field(build, field):
    with pytest.raises(ValueError) as info:
        build()
    assert field in str(info.value)


# ------------------------------------------------------------------- JSON
@pytest.mark.parametrize("name", SCALING_NAMES)
def test_json_round_trip(name):
    cfg = rope(name, theta=5e5, original=128)
    cfg = RopeConfig(theta=cfg.theta, scaling=cfg.scaling, partial_rotary_factor=0.5)
    data = json.loads(json.dumps(cfg.to_dict()))
    assert data["scaling"]["name"] == name and data["theta"] == 5e5
    assert RopeConfig.from_dict(data) == cfg


def test_to_dict_layout():
    cfg = RopeConfig.scaled("yarn", factor=4, original_length=64)
    assert cfg.to_dict() == {
        "theta": 10_000.0,
        "scaling": {
            "name": "yarn", "factor": 4.0, "original_length": 64, "beta_fast": 32.0,
            "beta_slow": 1.0, "attention_factor": None, "mscale": None,
            "mscale_all_dim": None, "truncate": True,
        },
        "partial_rotary_factor": 1.0,
    }  # fmt: skip
    assert RopeConfig().to_dict()["scaling"] == {"name": "none"}
    assert RopeConfig.from_dict({}) == RopeConfig()
    assert RopeConfig.from_dict({"theta": 5e5}) == RopeConfig(theta=5e5)


OLD_DEFAULTS = {
    "factor": 1.0, "original_length": None, "beta_fast": 32.0, "beta_slow": 1.0,
    "attention_factor": None, "mscale": None, "mscale_all_dim": None, "truncate": True,
    "low_freq_factor": 1.0, "high_freq_factor": 4.0,
}  # fmt: skip


@pytest.mark.parametrize(
    "old, expected",
    [
        ({"scaling": "none"}, NoScaling()),
        ({"scaling": "pi", "factor": 4.0}, PIScaling(4.0)),
        ({"scaling": "pi", "factor": 4.0, "original_length": 256}, PIScaling(4.0)),
        ({"scaling": "ntk", "factor": 2.0, "original_length": 256}, NTKScaling(2.0)),
        (
            {"scaling": "dynamic_ntk", "factor": 2.0, "original_length": 64},
            DynamicNTKScaling(2, 64),
        ),
        (
            {"scaling": "yarn", "factor": 4.0, "original_length": 64, "beta_fast": 16.0},
            YarnScaling(4.0, 64, beta_fast=16.0),
        ),
        (
            {"scaling": "llama3", "factor": 8.0, "original_length": 64, "low_freq_factor": 2.0},
            Llama3Scaling(8.0, 64, low_freq_factor=2.0),
        ),
    ],
)
def test_old_flat_json_layout(old, expected):
    # old checkpoints wrote every field (asdict of the 12-field RopeConfig)
    full = {"theta": 5e5, **OLD_DEFAULTS, **old}
    assert RopeConfig.from_dict(full) == RopeConfig(theta=5e5, scaling=expected)
    partial = {"theta": 5e5, **old}  # and hand-written ones only some
    assert RopeConfig.from_dict(partial) == RopeConfig(theta=5e5, scaling=expected)


@pytest.mark.parametrize(
    "data, words",
    [
        ({"theta": 1e4, "factr": 2.0}, ["'factr'", "known:", "theta"]),
        ({"scaling": {"name": "pi", "factr": 2.0}}, ["'factr'", "known: name, factor"]),
        ({"scaling": {"factor": 2.0}}, ["'name'"]),
        ({"scaling": {"name": "warp"}}, ["'warp'", "allowed: none"]),
        ({"scaling": "warp"}, ["'warp'", "allowed: none"]),
        ({"scaling": "none", "factor": 2.0}, ["factor=2.0", "'none'"]),
        ({"scaling": "pi", "factor": 2.0, "beta_fast": 8.0}, ["beta_fast=8.0", "'pi'"]),
        (
            {"scaling": "llama3", "factor": 2.0, "original_length": 64, "truncate": False},
            ["truncate=False"],
        ),
        ({"scaling": "yarn", "factor": 2.0}, ["rope.scaling.original_length"]),
        ({"scaling": {"name": "yarn", "factor": 2.0}, "factor": 2.0}, ["flat", "factor"]),
    ],
)
def test_bad_json_is_rejected_naming_the_key(data, words):
    with pytest.raises(ValueError) as info:
        RopeConfig.from_dict(data)
    for word in words:
        assert word in str(info.value)


# -------------------------------------------------------------------- CLI
def test_tyro_parses_a_variant():
    tyro = pytest.importorskip("tyro")
    assert tyro.cli(RopeConfig, args=[]) == RopeConfig()
    args = ["--theta", "5e5", "scaling:yarn", "--scaling.factor", "4"]
    got = tyro.cli(RopeConfig, args=[*args, "--scaling.original-length", "64"])
    assert got == RopeConfig(theta=5e5, scaling=YarnScaling(factor=4.0, original_length=64))
    got = tyro.cli(
        RopeConfig,
        args=[
            "--partial-rotary-factor", "0.5", "scaling:llama3", "--scaling.factor", "8",
            "--scaling.original-length", "64", "--scaling.high-freq-factor", "8",
        ],
    )  # fmt: skip
    assert got == RopeConfig(scaling=Llama3Scaling(8.0, 64, 1.0, 8.0), partial_rotary_factor=0.5)
    got = tyro.cli(RopeConfig, args=["scaling:dynamic-ntk", "--scaling.factor", "2",
                                      "--scaling.original-length", "32"])  # fmt: skip
    assert got.scaling == DynamicNTKScaling(2.0, 32)
    got = tyro.cli(RopeConfig, args=["scaling:yarn", "--scaling.factor", "2",
                                      "--scaling.original-length", "32", "--scaling.no-truncate",
                                      "--scaling.attention-factor", "1.5"])  # fmt: skip
    assert got.scaling == YarnScaling(2.0, 32, truncate=False, attention_factor=1.5)
    with pytest.raises(SystemExit):
        tyro.cli(RopeConfig, args=["scaling:yarn", "--scaling.factor", "4"])  # no L


def test_tyro_nested_prefix():
    tyro = pytest.importorskip("tyro")
    from dataclasses import dataclass, field

    @dataclass
    class Model:
        rope: RopeConfig = field(default_factory=RopeConfig)

    @dataclass
    class Top:
        model: Model = field(default_factory=Model)

    args = [
        "--model.rope.theta", "1e4", "model.rope.scaling:yarn",
        "--model.rope.scaling.factor", "4", "--model.rope.scaling.original-length", "64",
    ]  # fmt: skip
    got = tyro.cli(Top, args=args)
    assert got.model.rope == RopeConfig.scaled("yarn", factor=4, original_length=64)
