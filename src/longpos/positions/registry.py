"""The technique registry: one entry per position technique of a layer plan.

Each entry builds a layer's (assigner, encoding) pair from the model config. Adding a
technique means one module in ``positions/``, one entry here, one test file.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from longpos.positions.repo import RePoAssigner
from longpos.positions.rope import (
    IndexAssigner,
    NoPE,
    PositionAssigner,
    PositionEncoding,
    RotaryEncoding,
)
from longpos.positions.scaling import RopeConfig

if TYPE_CHECKING:
    from longpos.config import ModelConfig

Builder = Callable[["ModelConfig"], tuple[PositionAssigner, PositionEncoding]]


def _rope(cfg: ModelConfig) -> tuple[PositionAssigner, PositionEncoding]:
    return IndexAssigner(), RotaryEncoding(cfg.resolved_head_dim, cfg.rope)


def _nope(cfg: ModelConfig) -> tuple[PositionAssigner, PositionEncoding]:
    return IndexAssigner(), NoPE()


def _repo(cfg: ModelConfig) -> tuple[PositionAssigner, PositionEncoding]:
    rope = cfg.rope if cfg.repo.apply_rope_scaling else RopeConfig(theta=cfg.rope.theta)
    assigner = RePoAssigner(
        cfg.d_model,
        cfg.resolved_kv_heads,
        hidden_ratio=cfg.repo.hidden_ratio,
        variant=cfg.repo.variant,
        init=cfg.repo.init,
        index_blend=cfg.repo.index_blend,
    )
    return assigner, RotaryEncoding(cfg.resolved_head_dim, rope)


TECHNIQUE_BUILDERS: dict[str, Builder] = {"rope": _rope, "nope": _nope, "repo": _repo}
TECHNIQUES: tuple[str, ...] = tuple(TECHNIQUE_BUILDERS)


def build_position_modules(
    cfg: ModelConfig, technique: str
) -> tuple[PositionAssigner, PositionEncoding]:
    """The (assigner, encoding) pair of one layer."""
    if technique not in TECHNIQUE_BUILDERS:
        raise ValueError(f"technique={technique!r} is unknown; allowed: {', '.join(TECHNIQUES)}")
    return TECHNIQUE_BUILDERS[technique](cfg)
