"""A converted model's RoPE as a :class:`~longpos.positions.scaling.RopeConfig`, and back.

transformers 5.x keeps a model's rotary base and scaling in ``config.rope_parameters`` (and
Phi-3-style models their ``partial_rotary_factor`` on the config itself); the position
techniques of :mod:`longpos.positions` read the same values through :func:`model_rope`, so a
RePo layer and the family's own integer-RoPE layers use one set of frequencies.
"""

from __future__ import annotations

from typing import Any

from longpos.positions.scaling import RopeConfig


def per_layer_type(config: Any) -> bool:
    """Whether ``rope_parameters`` is nested by layer type (Gemma 3, OLMo 3: local and global
    layers with different bases)."""
    params = getattr(config, "rope_parameters", None)
    return isinstance(params, dict) and "rope_type" not in params and bool(params)


def model_rope(config: Any, layer_type: str | None = None) -> RopeConfig:
    """The RoPE of a transformers config, of one layer type when its ``rope_parameters`` are
    nested by layer type (default: ``full_attention``); ``ValueError`` for what longpos cannot
    express."""
    params: Any = getattr(config, "rope_parameters", None)
    if per_layer_type(config):
        kind = layer_type or "full_attention"
        if kind not in params:
            raise ValueError(
                f"rope_parameters has no entry for layer type {kind!r}; it has {sorted(params)}"
            )
        params = params[kind]
    if not isinstance(params, dict) or "rope_type" not in params:
        raise ValueError(f"longpos needs rope_parameters with a rope_type; got {params!r}")
    partial = getattr(config, "partial_rotary_factor", None)
    return RopeConfig.from_hf(
        dict(params), int(config.max_position_embeddings), partial_rotary_factor=partial
    )


def layer_rope(config: Any, layer_idx: int) -> RopeConfig:
    """The RoPE that decoder layer ``layer_idx`` uses (its layer type's, where they differ)."""
    types = getattr(config, "layer_types", None)
    if per_layer_type(config) and types is not None:
        return model_rope(config, types[layer_idx])
    return model_rope(config)


def rope_parameters(config: Any, rope: RopeConfig, head_dim: int) -> dict[str, Any]:
    """``rope_parameters`` with ``rope`` for every layer (every layer type where nested)."""
    params = rope.to_hf(head_dim)
    if per_layer_type(config):
        return {kind: dict(params) for kind in config.rope_parameters}
    return params


def training_length(config: Any) -> int:
    """The context length the model was trained at: the original length of its RoPE scaling,
    or ``max_position_embeddings``."""
    rope = model_rope(config)
    original = getattr(rope.scaling, "original_length", None)
    return int(original) if original else int(config.max_position_embeddings)
