"""Tiny random models of every supported family, built in code (nothing downloaded)."""

from __future__ import annotations

import types

import torch
from torch import nn
from transformers import (
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    GraniteConfig,
    GraniteForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Olmo2Config,
    Olmo2ForCausalLM,
    Olmo3Config,
    Olmo3ForCausalLM,
    Phi3Config,
    Phi3ForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
    Qwen3MoeConfig,
    Qwen3MoeForCausalLM,
    SmolLM3Config,
    SmolLM3ForCausalLM,
)

import longpos.hf  # noqa: F401  (registers the converted types)

FAMILY_CLASSES = {
    "llama": (LlamaConfig, LlamaForCausalLM),
    "mistral": (MistralConfig, MistralForCausalLM),
    "qwen2": (Qwen2Config, Qwen2ForCausalLM),
    "qwen3": (Qwen3Config, Qwen3ForCausalLM),
    "olmo2": (Olmo2Config, Olmo2ForCausalLM),
    "olmo3": (Olmo3Config, Olmo3ForCausalLM),
    "gemma3_text": (Gemma3TextConfig, Gemma3ForCausalLM),
    "phi3": (Phi3Config, Phi3ForCausalLM),
    "smollm3": (SmolLM3Config, SmolLM3ForCausalLM),
    "qwen3_moe": (Qwen3MoeConfig, Qwen3MoeForCausalLM),
    "granite": (GraniteConfig, GraniteForCausalLM),
}
# What each family needs beyond the shared tiny shape, chosen so its own features act in a
# 3-layer model: local (sliding, window 6) and global layers with different RoPE bases, a
# partial rotary factor, a stock NoPE layer, experts, Granite's multipliers.
LOCAL_GLOBAL = ["sliding_attention", "full_attention", "sliding_attention"]
FAMILY_EXTRAS = {
    "olmo3": dict(layer_types=LOCAL_GLOBAL, sliding_window=6),
    "gemma3_text": dict(
        layer_types=LOCAL_GLOBAL,
        sliding_window=6,
        query_pre_attn_scalar=16,
        rope_parameters={
            "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
            "full_attention": {"rope_type": "default", "rope_theta": 1_000_000.0},
        },
    ),
    "phi3": dict(partial_rotary_factor=0.5),
    "smollm3": dict(no_rope_layers=[1, 1, 0]),
    "qwen3_moe": dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=16),
    "granite": dict(
        attention_multiplier=0.3,
        residual_multiplier=0.5,
        embedding_multiplier=2.0,
        logits_scaling=1.5,
    ),
}
FAMILY_NAMES = tuple(FAMILY_CLASSES)
VOCAB = 101
N_LAYERS = 3
N_HEADS = 4
N_KV = 2
HEAD_DIM = 8


def tiny_config(family: str, attn: str = "sdpa", **overrides):
    config_class, _ = FAMILY_CLASSES[family]
    kwargs = dict(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=N_LAYERS,
        num_attention_heads=N_HEADS,
        num_key_value_heads=N_KV,
        head_dim=HEAD_DIM,
        max_position_embeddings=256,
        # Larger than the default 0.02 so positions visibly change the logits.
        initializer_range=0.25,
        eos_token_id=None,
        bos_token_id=None,
        pad_token_id=None,
    )
    if family == "phi3":  # no head_dim argument: hidden / heads = 8 already
        del kwargs["head_dim"]
    kwargs.update(FAMILY_EXTRAS.get(family, {}))
    kwargs.update(overrides)
    config = config_class(**kwargs)
    config._attn_implementation = attn
    if family == "qwen3_moe":  # the default grouped_mm experts refuse the float64 of the tests
        config._experts_implementation = "eager"
    return config


NO_ROPE_SCALING = {"phi3"}
"""Families whose config validation accepts only their own RoPE types (Phi-3: default and
longrope), so PI / NTK / YaRN / Llama-3 are refused with a ValueError."""


def with_stock_nope(family: str, techniques: list[str]) -> list[str]:
    """What a named plan gives in ``family``: its stock NoPE layers (SmolLM3) stay NoPE."""
    from longpos.hf.families import FAMILIES

    nope = FAMILIES[family].stock_nope(tiny_config(family))
    return ["nope" if i in nope else t for i, t in enumerate(techniques)]


def tiny_model(family: str, attn: str = "sdpa", seed: int = 0, **overrides) -> nn.Module:
    """A random ``<Family>ForCausalLM`` in eval mode; same seed -> same weights."""
    _, model_class = FAMILY_CLASSES[family]
    torch.manual_seed(seed)
    model = model_class(tiny_config(family, attn, **overrides)).eval()
    model.generation_config.pad_token_id = 0
    return model


def clone_model(model: nn.Module, family: str, attn: str = "sdpa", **overrides) -> nn.Module:
    """A stock model of the same family with copied weights (config overrides allowed)."""
    _, model_class = FAMILY_CLASSES[family]
    other = model_class(tiny_config(family, attn, **overrides)).eval()
    missing, unexpected = other.load_state_dict(model.state_dict(), strict=False)
    assert not missing, missing
    return other


def token_ids(batch: int = 2, length: int = 24, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, (batch, length), generator=g)


def spread_repo(model: nn.Module, std: float = 0.6, seed: int = 3) -> None:
    """Re-draw RePo predictor weights large enough that z spans many units."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".assigner." in name:
                param.copy_(torch.randn(param.shape, generator=g) * std)


def force_integer_positions(model: nn.Module) -> None:
    """Make every RePo predictor return the integer index, per KV head."""

    def forward(self, x, index):
        bsz, seq = x.shape[:2]
        return index.to(torch.float32)[:, None, :].expand(bsz, self.n_heads, seq)

    for layer in model.model.layers:
        assigner = getattr(layer.self_attn, "assigner", None)
        if assigner is not None and not assigner.returns_index:
            assigner.forward = types.MethodType(forward, assigner)


class IdentityRotary(nn.Module):
    """transformers-side NoPE: cos = 1, sin = 0 of the usual shape (spec §5)."""

    def __init__(self, rotary: nn.Module):
        super().__init__()
        self.rotary = rotary

    def forward(self, x, position_ids, *layer_type):  # Gemma 3 / OLMo 3 pass a layer type
        cos, sin = self.rotary(x, position_ids, *layer_type)
        return torch.ones_like(cos), torch.zeros_like(sin)


def nope_layers_by_hook(model: nn.Module, layers: list[int]) -> None:
    """Stock model, chosen layers NoPE via a forward pre-hook (spec §5, verified method)."""

    def hook(module, args, kwargs):
        cos, sin = kwargs["position_embeddings"]
        kwargs["position_embeddings"] = (torch.ones_like(cos), torch.zeros_like(sin))
        return args, kwargs

    for i in layers:
        model.model.layers[i].self_attn.register_forward_pre_hook(hook, with_kwargs=True)


def logits(model: nn.Module, ids: torch.Tensor, **kwargs) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids, use_cache=False, **kwargs).logits
