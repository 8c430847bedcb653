"""Supported transformers model families and how their attention differs.

Context: RePo (Li et al., arXiv 2512.14391) and DroPE (Gelberg et al., arXiv
2512.12167) both change only the rotation inside attention, so the integration needs
to know, per family, how the stock forward projects and normalises q/k (separate or fused
projections; no norms, per-head norms or full-width norms), which extra keyword
(``sliding_window``) it hands to the attention interface, and which layers the stock model
leaves without RoPE (SmolLM3). Everything else (weights, decoder layers, cache, masks, the
families' own scalings of attention and residuals, per-layer-type RoPE tables) is the stock
model's (``spec/hf-integration.md`` §2). Adding a family: one ``Family(...)`` line below.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

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
from transformers.models.gemma3.modeling_gemma3 import Gemma3Attention
from transformers.models.granite.modeling_granite import GraniteAttention
from transformers.models.llama.modeling_llama import LlamaAttention
from transformers.models.mistral.modeling_mistral import MistralAttention
from transformers.models.olmo2.modeling_olmo2 import Olmo2Attention
from transformers.models.olmo3.modeling_olmo3 import Olmo3Attention
from transformers.models.phi3.modeling_phi3 import Phi3Attention
from transformers.models.qwen2.modeling_qwen2 import Qwen2Attention
from transformers.models.qwen3.modeling_qwen3 import Qwen3Attention
from transformers.models.qwen3_moe.modeling_qwen3_moe import Qwen3MoeAttention
from transformers.models.smollm3.modeling_smollm3 import SmolLM3Attention

QKNormLayout = Literal["none", "head", "full"]
SlidingWindow = Literal["none", "attribute", "config"]
Projection = Literal["separate", "fused"]


def no_stock_nope(config: Any) -> frozenset[int]:
    return frozenset()


def smollm3_nope_layers(config: Any) -> frozenset[int]:
    """SmolLM3 leaves RoPE out of the layers whose ``no_rope_layers`` entry is 0."""
    return frozenset(i for i, use_rope in enumerate(config.no_rope_layers) if not use_rope)


LONGPOS_SUFFIX = "_longpos"


@dataclass(frozen=True)
class Family:
    """One supported architecture."""

    name: str
    """transformers ``model_type`` of the stock family (``llama``)."""
    config_class: type
    causal_lm_class: type
    attention_class: type[nn.Module]
    qk_norm: QKNormLayout
    """Native q/k norms: none; per head after the reshape (Qwen3); full width before
    the reshape (OLMo2)."""
    sliding_window: SlidingWindow
    """How the stock forward passes ``sliding_window=``: not at all (Llama, OLMo2), from
    the module attribute (Qwen2, Qwen3) or from the config (Mistral)."""
    projection: Projection = "separate"
    """q, k, v from three Linears, or one fused ``qkv_proj`` (Phi-3)."""
    stock_nope: Callable[[Any], frozenset[int]] = no_stock_nope
    """Layers the stock model leaves without RoPE (SmolLM3): a converted model keeps them NoPE
    where a named plan would put RoPE."""

    @property
    def longpos_type(self) -> str:
        return self.name + LONGPOS_SUFFIX

    def project_qkv(
        self, attn: Any, hidden: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q (B, H, T, D), k and v (B, H_kv, T, D) of ``attn`` for ``hidden (B, T, C)``, with
        the family's q/k norms (and DroPE's added full-width ones) where the stock forward
        applies them."""
        shape = (*hidden.shape[:-1], -1, attn.head_dim)  # (B, T, heads, D)
        q_norm: Any = getattr(attn, "q_norm", None)
        k_norm: Any = getattr(attn, "k_norm", None)
        if self.projection == "fused":  # (B, T, (H + 2 H_kv) * D), queries first
            q_width, kv_width = self.projection_widths(attn.config)
            qkv = attn.qkv_proj(hidden)
            query, key = qkv[..., :q_width], qkv[..., q_width : q_width + kv_width]
            value = qkv[..., q_width + kv_width :]
        else:
            query, key, value = attn.q_proj(hidden), attn.k_proj(hidden), attn.v_proj(hidden)
        if self.qk_norm != "head":  # full-width norms (OLMo2, or DroPE's added ones)
            query = q_norm(query) if q_norm is not None else query
            key = k_norm(key) if k_norm is not None else key
        query, key = query.view(shape), key.view(shape)  # (B, T, H | H_kv, D)
        if self.qk_norm == "head":  # Qwen3: per-head norms before the rotation
            query, key = q_norm(query), k_norm(key)
        value = value.view(shape).transpose(1, 2)  # (B, H_kv, T, D)
        return query.transpose(1, 2), key.transpose(1, 2), value

    @staticmethod
    def projection_widths(config: Any) -> tuple[int, int]:
        """Widths of the query and of the key (= value) projections: (H * D, H_kv * D)."""
        heads = int(config.num_attention_heads)
        head_dim = getattr(config, "head_dim", None) or int(config.hidden_size) // heads
        kv = int(getattr(config, "num_key_value_heads", None) or heads)
        return heads * int(head_dim), kv * int(head_dim)

    def attention_kwargs(self, attn: Any) -> dict[str, Any]:
        """Extra keywords the stock forward hands its attention function."""
        if self.sliding_window == "attribute":
            return {"sliding_window": getattr(attn, "sliding_window", None)}
        if self.sliding_window == "config":
            return {"sliding_window": getattr(attn.config, "sliding_window", None)}
        return {}

    @property
    def apply_rotary_pos_emb(self) -> Callable[..., Any]:
        """The family's own ``apply_rotary_pos_emb`` (used for integer-RoPE layers, so
        they stay bit-identical to the stock model)."""
        return sys.modules[self.attention_class.__module__].apply_rotary_pos_emb  # type: ignore[no-any-return]


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("llama", LlamaConfig, LlamaForCausalLM, LlamaAttention, "none", "none"),
        Family("mistral", MistralConfig, MistralForCausalLM, MistralAttention, "none", "config"),
        Family("qwen2", Qwen2Config, Qwen2ForCausalLM, Qwen2Attention, "none", "attribute"),
        Family("qwen3", Qwen3Config, Qwen3ForCausalLM, Qwen3Attention, "head", "attribute"),
        Family("olmo2", Olmo2Config, Olmo2ForCausalLM, Olmo2Attention, "full", "none"),
        Family("olmo3", Olmo3Config, Olmo3ForCausalLM, Olmo3Attention, "full", "attribute"),
        Family(
            "gemma3_text",
            Gemma3TextConfig,
            Gemma3ForCausalLM,
            Gemma3Attention,
            "head",
            "attribute",
        ),  # fmt: skip
        Family("phi3", Phi3Config, Phi3ForCausalLM, Phi3Attention, "none", "config", "fused"),
        Family(
            "smollm3",
            SmolLM3Config,
            SmolLM3ForCausalLM,
            SmolLM3Attention,
            "none",
            "attribute",
            stock_nope=smollm3_nope_layers,
        ),  # fmt: skip
        Family(
            "qwen3_moe",
            Qwen3MoeConfig,
            Qwen3MoeForCausalLM,
            Qwen3MoeAttention,
            "head",
            "attribute",
        ),  # fmt: skip
        Family("granite", GraniteConfig, GraniteForCausalLM, GraniteAttention, "none", "none"),
    )
}
SUPPORTED_FAMILIES: tuple[str, ...] = tuple(FAMILIES)


def unsupported_message(what: str) -> str:
    return (
        f"{what} is not supported by longpos.hf; supported causal-LM families: "
        f"{', '.join(SUPPORTED_FAMILIES)} (transformers model_type, or their "
        f"'<family>{LONGPOS_SUFFIX}' converted types)"
    )


def family_of(model: nn.Module) -> Family:
    """The family of a causal LM (stock or already converted); ``ValueError`` otherwise."""
    config = getattr(model, "config", None)
    model_type = str(getattr(config, "model_type", type(model).__name__))
    name = model_type.removesuffix(LONGPOS_SUFFIX)
    family = FAMILIES.get(name)
    if family is None:
        raise ValueError(unsupported_message(f"model_type={model_type!r}"))
    inner = getattr(model, "model", None)
    if not isinstance(model, family.causal_lm_class) or not hasattr(inner, "layers"):
        raise ValueError(
            f"expected a {family.causal_lm_class.__name__} (a causal LM with .model.layers), "
            f"got {type(model).__name__}; load it with AutoModelForCausalLM"
        )
    return family


def decoder_layers(model: Any) -> list[Any]:
    """The decoder layers of a supported causal LM (``model.model.layers``)."""
    return list(model.model.layers)
