"""Supported transformers model families and how their attention differs.

Context: RePo (Li et al., arXiv 2512.14391) and DroPE (Gelberg et al., arXiv
2512.12167) both change only the rotation inside attention, so the integration needs
to know, per family, where the stock forward normalises q/k and which extra keyword
(``sliding_window``) it hands to the attention interface. Everything else (weights,
decoder layers, cache, masks) is shared by Llama, Mistral, Qwen2, Qwen3 and OLMo2 in
transformers 5.23 (``spec/hf-integration.md`` §2).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Olmo2Config,
    Olmo2ForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)
from transformers.models.llama.modeling_llama import LlamaAttention
from transformers.models.mistral.modeling_mistral import MistralAttention
from transformers.models.olmo2.modeling_olmo2 import Olmo2Attention
from transformers.models.qwen2.modeling_qwen2 import Qwen2Attention
from transformers.models.qwen3.modeling_qwen3 import Qwen3Attention

QKNormLayout = Literal["none", "head", "full"]
SlidingWindow = Literal["none", "attribute", "config"]

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
        query, key, value = attn.q_proj(hidden), attn.k_proj(hidden), attn.v_proj(hidden)
        if self.qk_norm != "head":  # full-width norms (OLMo2, or DroPE's added ones)
            query = q_norm(query) if q_norm is not None else query
            key = k_norm(key) if k_norm is not None else key
        query, key = query.view(shape), key.view(shape)  # (B, T, H | H_kv, D)
        if self.qk_norm == "head":  # Qwen3: per-head norms before the rotation
            query, key = q_norm(query), k_norm(key)
        value = value.view(shape).transpose(1, 2)  # (B, H_kv, T, D)
        return query.transpose(1, 2), key.transpose(1, 2), value

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
