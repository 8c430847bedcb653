"""Learning-rate schedules: a multiplier on each group's peak rate, after linear warmup.

- cosine: half-cosine from 1 to ``min_lr_ratio``;
- linear: straight line from 1 to ``min_lr_ratio``;
- wsd (warmup-stable-decay): 1 until the last ``decay_fraction`` of steps, then linear
  to ``min_lr_ratio``;
- constant: 1.
"""

from __future__ import annotations

import math

from longpos.train.config import OptimConfig


def lr_multiplier(step: int, total_steps: int, cfg: OptimConfig) -> float:
    """Multiplier for the update made at ``step`` (0-based) of ``total_steps``."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return 1.0
    floor = cfg.min_lr_ratio
    if cfg.schedule == "wsd":
        decay_steps = max(1, round(cfg.decay_fraction * total_steps))
        decay_start = max(cfg.warmup_steps, total_steps - decay_steps)
        if step < decay_start:
            return 1.0
        progress = (step - decay_start) / max(1, total_steps - 1 - decay_start)
        return 1.0 - (1.0 - floor) * min(1.0, progress)
    progress = (step - cfg.warmup_steps) / max(1, total_steps - 1 - cfg.warmup_steps)
    progress = min(1.0, max(0.0, progress))
    if cfg.schedule == "linear":
        return 1.0 - (1.0 - floor) * progress
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
