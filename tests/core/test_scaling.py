"""Frequency tables and attention factors equal those of the installed transformers."""

import math

import pytest
import torch

from longpos.positions.rope import apply_rotary, rope_cos_sin
from longpos.positions.scaling import RopeConfig, default_inv_freq

transformers = pytest.importorskip("transformers")
from transformers import LlamaConfig  # noqa: E402
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS  # noqa: E402
from transformers.models.llama.modeling_llama import (  # noqa: E402
    LlamaRotaryEmbedding,
    apply_rotary_pos_emb,
)

HEAD_DIMS = [16, 64, 128]
THETAS = [10_000.0, 500_000.0]
FACTORS = [2.0, 4.0, 8.0]


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
    torch.testing.assert_close(ours[0], theirs[0].to(torch.float32), rtol=1e-6, atol=0)
    assert ours[1] == pytest.approx(theirs[1], rel=1e-12)


@pytest.mark.parametrize("dim", HEAD_DIMS)
@pytest.mark.parametrize("theta", THETAS)
def test_default_matches_transformers(dim, theta):
    ours = RopeConfig(theta=theta)
    assert_same(ours.frequencies(dim), hf_frequencies(hf_config(dim, ours.to_hf(), 4096)))


@pytest.mark.parametrize("dim", HEAD_DIMS)
@pytest.mark.parametrize("theta", THETAS)
@pytest.mark.parametrize("factor", FACTORS)
@pytest.mark.parametrize("scaling", ["pi", "ntk", "yarn", "llama3"])
def test_static_scalings_match_transformers(dim, theta, factor, scaling):
    original = 2048
    ours = RopeConfig(theta=theta, scaling=scaling, factor=factor, original_length=original)
    cfg = hf_config(dim, ours.to_hf(head_dim=dim), int(original * factor))
    assert_same(ours.frequencies(dim), hf_frequencies(cfg))


@pytest.mark.parametrize("dim", HEAD_DIMS)
@pytest.mark.parametrize("factor", FACTORS)
@pytest.mark.parametrize("seq_len", [100, 1024, 3000, 9000])
def test_dynamic_ntk_matches_transformers(dim, factor, seq_len):
    original = 1024
    ours = RopeConfig(scaling="dynamic_ntk", factor=factor, original_length=original)
    cfg = hf_config(dim, ours.to_hf(), original)  # HF's L is max_position_embeddings
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
    ours = RopeConfig(theta=10_000.0, scaling="yarn", factor=4.0, original_length=4096, **extra)
    cfg = hf_config(64, ours.to_hf(), 16384)
    assert_same(ours.frequencies(64), hf_frequencies(cfg))


def test_yarn_worked_example_of_the_spec():
    ours = RopeConfig(theta=10_000.0, scaling="yarn", factor=4.0, original_length=4096)
    assert ours.yarn_correction_range(128) == (20, 46)
    assert ours.frequencies(128)[1] == pytest.approx(1.138629, abs=1e-6)
    assert ours.frequencies(128)[1] == pytest.approx(0.1 * math.log(4) + 1)


def test_property_relations_without_transformers():
    dim, s = 64, 4.0
    base = default_inv_freq(dim, 10_000.0)
    pi = RopeConfig(scaling="pi", factor=s).frequencies(dim)[0]
    torch.testing.assert_close(pi, base / s)
    ntk = RopeConfig(scaling="ntk", factor=s).frequencies(dim)[0]
    torch.testing.assert_close(ntk[0], base[0])
    torch.testing.assert_close(ntk[-1], base[-1] / s, rtol=1e-5, atol=0)
    yarn = RopeConfig(scaling="yarn", factor=s, original_length=2048).frequencies(dim)[0]
    assert bool(((base / s) <= yarn * (1 + 1e-6)).all() and (yarn <= base * (1 + 1e-6)).all())
    llama = RopeConfig(
        theta=500_000.0, scaling="llama3", factor=8.0, original_length=8192
    ).frequencies(128)[0]
    assert int((llama == default_inv_freq(128, 500_000.0)).sum()) == 29


@pytest.mark.parametrize("scaling", ["none", "pi", "yarn", "llama3", "dynamic_ntk"])
def test_hf_round_trip(scaling):
    ours = RopeConfig(
        theta=50_000.0,
        scaling=scaling,
        factor=1.0 if scaling == "none" else 4.0,
        original_length=None if scaling in ("none", "pi") else 1024,
    )
    back = RopeConfig.from_hf(ours.to_hf(), max_position_embeddings=ours.original_length)
    assert back.frequencies(32, seq_len=5000)[0].equal(ours.frequencies(32, seq_len=5000)[0])
    assert back.frequencies(32)[1] == ours.frequencies(32)[1]


@pytest.mark.parametrize("scaling", ["none", "pi", "yarn", "llama3"])
def test_rotation_tables_and_rotated_qk_match_hf(scaling):
    dim = 32
    ours = RopeConfig(
        theta=10_000.0,
        scaling=scaling,
        factor=1.0 if scaling == "none" else 4.0,
        original_length=None if scaling in ("none", "pi") else 64,
    )
    cfg = hf_config(dim, ours.to_hf(), 256)
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


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"scaling": "magic"}, "rope.scaling"),
        ({"scaling": "pi", "factor": -2.0}, "rope.factor"),
        ({"scaling": "yarn", "factor": 2.0}, "rope.original_length"),
        ({"theta": 0.5}, "rope.theta"),
    ],
)
def test_bad_scaling_values_are_rejected(kwargs, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        RopeConfig(**kwargs)
