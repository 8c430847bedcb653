"""Position techniques behind one contract (maths only; nothing here imports a model).

A layer's *assigner* maps its input and the integer index to positions, and its *encoding*
rotates q and k by them; :mod:`longpos.positions.techniques` is the registry that builds both
for each technique of a plan:

- ``rope``: :class:`IndexAssigner` + :class:`RotaryEncoding` (optionally scaled);
- ``nope``: :class:`IndexAssigner` + :class:`NoPE`;
- ``repo``: :class:`RePoAssigner` + :class:`RotaryEncoding`.

DroPE's temperature is :mod:`longpos.positions.temperature`; operations on trained models
(dropping positions, changing RoPE) are :mod:`longpos.surgery`.
"""

from longpos.positions.repo import RePoAssigner, RePoConfig
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
from longpos.positions.techniques import (
    TECHNIQUE_NAMES,
    TECHNIQUES,
    LayerShape,
    Technique,
    apply_positions,
    build_positions,
)
from longpos.positions.temperature import TemperatureConfig, temperature

__all__ = [
    "TECHNIQUES",
    "TECHNIQUE_NAMES",
    "IndexAssigner",
    "LayerShape",
    "NoPE",
    "PositionAssigner",
    "PositionEncoding",
    "RePoAssigner",
    "RePoConfig",
    "RopeConfig",
    "RotaryEncoding",
    "Technique",
    "TemperatureConfig",
    "apply_positions",
    "apply_rotary",
    "build_positions",
    "rope_cos_sin",
    "rotate_half",
    "temperature",
]
