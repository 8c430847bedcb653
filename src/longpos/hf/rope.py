"""A converted model's RoPE as a :class:`~longpos.positions.scaling.RopeConfig`, and back.

transformers 5.x keeps a model's rotary base and scaling in ``config.rope_parameters`` (and
Phi-3-style models their ``partial_rotary_factor`` on the config itself); the position
techniques of :mod:`longpos.positions` read the same values through :func:`model_rope`, so a
RePo layer and the family's own integer-RoPE layers use one set of frequencies.
"""

from __future__ import annotations

from typing import Any

from longpos.positions.scaling import RopeConfig


def model_rope(config: Any) -> RopeConfig:
    """The RoPE of a transformers config (``ValueError`` for what longpos cannot express)."""
    params = getattr(config, "rope_parameters", None)
    if not isinstance(params, dict) or "rope_type" not in params:
        raise ValueError(
            "longpos needs a flat rope_parameters dict with a rope_type (per-layer-type rope "
            f"parameters are not supported yet); got {params!r}"
        )
    partial = getattr(config, "partial_rotary_factor", None)
    return RopeConfig.from_hf(
        dict(params), int(config.max_position_embeddings), partial_rotary_factor=partial
    )


def training_length(config: Any) -> int:
    """The context length the model was trained at: the original length of its RoPE scaling,
    or ``max_position_embeddings``."""
    rope = model_rope(config)
    original = getattr(rope.scaling, "original_length", None)
    return int(original) if original else int(config.max_position_embeddings)
