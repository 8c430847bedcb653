"""Context extension at inference time: switch a trained model's RoPE to a scaled one.

PI, NTK and YaRN (``longpos.positions.scaling``) are applied to every rotating layer of a
trained longpos model without retraining, the way the DroPE paper's baselines are built;
RePo layers follow the model's ``repo.apply_rope_scaling`` flag (on by default, as in
RePo's evaluation code). NoPE layers are untouched.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import cast

from longpos.model import Block, LongposLM
from longpos.positions.rope import RotaryEncoding
from longpos.positions.scaling import RopeConfig


def scaled_rope(model: LongposLM, scaling: str, factor: float) -> RopeConfig:
    """The model's RoPE with ``scaling`` by ``factor`` over its training length."""
    base = model.config.rope
    return dataclasses.replace(
        base, scaling=scaling, factor=factor,
        original_length=base.original_length or model.config.max_seq_len,
    )  # fmt: skip


def apply_rope_scaling(model: LongposLM, rope: RopeConfig) -> LongposLM:
    """Use ``rope`` in every rotating layer (in place); returns the model."""
    unscaled = RopeConfig(theta=rope.theta)
    for block in cast("Iterable[Block]", model.blocks):
        encoding = block.attn.encoding
        if not isinstance(encoding, RotaryEncoding):
            continue
        follows = block.technique == "rope" or model.config.repo.apply_rope_scaling
        encoding.set_rope(rope if follows else unscaled)
    model.config = dataclasses.replace(model.config, rope=rope)
    return model
