"""Position techniques behind one contract: a layer's *assigner* maps its input and the
integer index to positions, and its *encoding* rotates q and k by them.

- ``rope``: :class:`IndexAssigner` + :class:`RotaryEncoding` (optionally scaled);
- ``nope``: :class:`IndexAssigner` + :class:`NoPE`;
- ``repo``: :class:`RePoAssigner` + :class:`RotaryEncoding`.
"""

from longpos.positions.registry import TECHNIQUES, build_position_modules
from longpos.positions.repo import RePoAssigner
from longpos.positions.rope import (
    IndexAssigner,
    NoPE,
    PositionAssigner,
    PositionEncoding,
    RotaryEncoding,
    apply_rotary,
    rope_cos_sin,
    rotate_half,
)
from longpos.positions.scaling import RopeConfig

__all__ = [
    "TECHNIQUES",
    "IndexAssigner",
    "NoPE",
    "PositionAssigner",
    "PositionEncoding",
    "RePoAssigner",
    "RopeConfig",
    "RotaryEncoding",
    "apply_rotary",
    "build_position_modules",
    "rope_cos_sin",
    "rotate_half",
]
