"""The technique registry: one entry per position technique a layer plan may name.

A technique is what one attention layer does with positions: an *assigner* (integer index, or
learned positions) and an *encoding* (a rotation, or none). Its registry entry owns how both
are built for a layer shape, and where its options live in the
:class:`~longpos.plan.PositionPlan` (``options_field``). Everything else is on the modules it
builds, so both back ends (the native decoder and converted Hugging Face models) treat every
technique alike:

- weight init: ``assigner.init_weights(generator)`` / ``encoding.init_weights(generator)``;
- optimiser group: ``assigner.optim_group`` at ``assigner.lr_multiplier``;
- the forward step: :func:`apply_positions`, called by both attention forwards.

Adding a technique: one module in ``positions/`` (its maths and modules), one entry in
``TECHNIQUE_LIST`` below, one test file (README, "Adding a technique").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from longpos.positions.alibi import ALiBiEncoding
from longpos.positions.cope import COPE_MAX_POSITIONS, CoPEAttention
from longpos.positions.fire import FIREEncoding
from longpos.positions.fox import FoXAttention, FoXGate
from longpos.positions.pope import PoPEEncoding
from longpos.positions.query_temperature import QueryTemperatureNoPE
from longpos.positions.repo import RePoAssigner, RePoConfig
from longpos.positions.rope import (
    IndexAssigner,
    NoPE,
    PositionAssigner,
    PositionEncoding,
    RotaryEncoding,
)
from longpos.positions.scaling import RopeConfig
from longpos.positions.stick_breaking import StickBreakingAttention
from longpos.positions.xpos import XPosEncoding

IndexRotation = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""``(q, k) -> (q, k)`` rotated by the model's integer RoPE with tables the back end computed
once per forward (the native model's shared tables, a Hugging Face family's own)."""


@dataclass(frozen=True)
class LayerShape:
    """What a technique needs to know about the attention layer it is built for."""

    d_model: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    rope: RopeConfig
    """The model's RoPE base and scaling."""
    train_length: int | None = None
    """The context length the model trains at (None where unknown)."""


Builder = Callable[[LayerShape, Any], tuple[PositionAssigner, PositionEncoding]]


@dataclass(frozen=True)
class Technique:
    """One registry entry."""

    name: str
    summary: str
    build: Builder
    """(layer shape, its options or None) -> (assigner, encoding)."""
    options_field: str | None = None
    """The :class:`~longpos.plan.PositionPlan` field holding this technique's options."""
    options_type: type | None = None
    """That field's dataclass (for documentation and checks)."""
    converts_pretrained: bool = True
    """Whether a pretrained RoPE layer of a Hugging Face model may be converted to it."""


def _rope(shape: LayerShape, options: None) -> tuple[PositionAssigner, PositionEncoding]:
    return IndexAssigner(), RotaryEncoding(shape.head_dim, shape.rope, uses_model_rope=True)


def _nope(shape: LayerShape, options: None) -> tuple[PositionAssigner, PositionEncoding]:
    return IndexAssigner(), NoPE()


def _repo(shape: LayerShape, options: RePoConfig) -> tuple[PositionAssigner, PositionEncoding]:
    assigner = RePoAssigner(shape.d_model, shape.n_kv_heads, options)
    encoding = RotaryEncoding(
        shape.head_dim, shape.rope, follows_scaling=options.apply_rope_scaling
    )
    return assigner, encoding


def _xpos(shape: LayerShape, options: None) -> tuple[PositionAssigner, PositionEncoding]:
    return IndexAssigner(), XPosEncoding(shape.head_dim, shape.rope)


TECHNIQUE_LIST: tuple[Technique, ...] = (
    Technique("rope", "integer index + RoPE (optionally PI / NTK / YaRN / Llama-3 scaled)", _rope),
    Technique("nope", "integer index + no positional encoding", _nope),
    Technique("repo", "RePo: learned real position per KV head + RoPE", _repo, "repo", RePoConfig),
    Technique("xpos", "integer index + xPos (RoPE with a decay over distance)", _xpos),
    Technique(
        "nope_temp",
        "integer index + NoPE, queries scaled by Llama 4's log-length temperature",
        lambda shape, options: (IndexAssigner(), QueryTemperatureNoPE()),
        converts_pretrained=False,  # Llama 4 trains it from scratch; no conversion described
    ),  # fmt: skip
    Technique(
        "alibi",
        "integer index + ALiBi (a linear distance penalty per head on the logits)",
        lambda shape, options: (IndexAssigner(), ALiBiEncoding(shape.n_heads)),
        converts_pretrained=False,  # trained from scratch in its paper
    ),  # fmt: skip
    Technique(
        "fire",
        "integer index + FIRE (a learned bias of the interpolated distance per head)",
        lambda shape, options: (
            IndexAssigner(),
            FIREEncoding(shape.n_heads, shape.train_length or 512),
        ),
        converts_pretrained=False,  # trained from scratch in its paper
    ),  # fmt: skip
    Technique(
        "pope",
        "integer index + PoPE (content in magnitudes, position in phases)",
        lambda shape, options: (
            IndexAssigner(),
            PoPEEncoding(shape.head_dim, shape.n_kv_heads, shape.rope.theta),
        ),
        converts_pretrained=False,  # trained from scratch in its paper
    ),  # fmt: skip
    Technique(
        "stickbreaking",
        "integer index + stick-breaking attention (no softmax, no encoding)",
        lambda shape, options: (IndexAssigner(), StickBreakingAttention()),
        converts_pretrained=False,  # trained from scratch in its paper
    ),  # fmt: skip
    Technique(
        "cope",
        "integer index + CoPE (positions counted by context gates, interpolated)",
        lambda shape, options: (
            IndexAssigner(),
            CoPEAttention(shape.head_dim, min(shape.train_length or 64, COPE_MAX_POSITIONS)),
        ),
        converts_pretrained=False,  # trained from scratch in its paper
    ),  # fmt: skip
    Technique(
        "fox",
        "FoX: a learned forget gate per token, its log sum as a logit bias (no encoding)",
        lambda shape, options: (FoXGate(shape.d_model, shape.n_kv_heads), FoXAttention()),
        converts_pretrained=False,  # trained from scratch in its paper
    ),  # fmt: skip
)
TECHNIQUES: dict[str, Technique] = {t.name: t for t in TECHNIQUE_LIST}
TECHNIQUE_NAMES: tuple[str, ...] = tuple(TECHNIQUES)


def technique(name: str) -> Technique:
    """The registry entry of ``name`` (``ValueError`` listing the known ones otherwise)."""
    if name not in TECHNIQUES:
        raise ValueError(f"technique={name!r} is unknown; allowed: {', '.join(TECHNIQUE_NAMES)}")
    return TECHNIQUES[name]


def build_positions(
    name: str, shape: LayerShape, plan: Any
) -> tuple[PositionAssigner, PositionEncoding]:
    """The (assigner, encoding) pair of one layer; ``plan`` holds the techniques' options."""
    entry = technique(name)
    options = getattr(plan, entry.options_field) if entry.options_field else None
    return entry.build(shape, options)


def apply_positions(
    assigner: PositionAssigner,
    encoding: PositionEncoding,
    x: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    index: torch.Tensor,
    index_rotation: IndexRotation | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One attention layer's position step, the same for every back end.

    x: (B, T, C) the input of the q/k/v projections; q: (B, H, T, D); k: (B, H_kv, T, D);
    index: (B, T) integer positions. Returns rotated ``(q, k)`` and the positions assigned,
    (B, T) or (B, H_kv, T). Layers whose positions are the index and whose encoding is the
    model's RoPE use ``index_rotation`` when the back end supplies one (tables computed once).
    A dynamic scaling (dynamic NTK, LongRoPE) follows the context length, the largest integer
    position + 1, whatever positions the assigner gave (as transformers' own dynamic tables).
    """
    positions = assigner(x, index)
    if index_rotation is not None and assigner.returns_index and encoding.uses_model_rope:
        q, k = index_rotation(q, k)
    elif getattr(encoding, "is_dynamic", False):  # the context length, not the learned positions
        q, k = encoding(q, k, positions, seq_len=int(index.detach().max().item()) + 1)
    else:
        q, k = encoding(q, k, positions)
    return q, k, positions
