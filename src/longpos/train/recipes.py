"""Named training recipes: model and training defaults of a known-good run.

``longpos train --recipe demo --model.plan repo --out runs/repo`` trains the demo's model
(3 layers, width 64, 4 heads, L = 64) on the demo's task (token-level ``mqar`` with 64
symbols and 8 key-value pairs) with the demo's schedule (2,000 steps of 32 sequences, lr
3e-3): the same initialisation, data and updates as ``longpos demo``'s ``runs/repo-s0``.
Every ``--model.*`` and ``--train.*`` option still overrides the recipe
(``--train.steps 1000`` for a shorter run). It trains on one CPU thread
(``--train.threads``), as the demo's workers do: matrices this small run faster on one.
"""

from __future__ import annotations

import dataclasses

from longpos.config import ModelConfig
from longpos.train.config import TrainConfig

RECIPES: tuple[str, ...] = ("demo",)


def recipe(name: str) -> tuple[ModelConfig, TrainConfig]:
    """(model config, training config) of recipe ``name``."""
    if name not in RECIPES:
        raise ValueError(f"recipe={name!r} is unknown; allowed: {', '.join(RECIPES)}")
    from longpos.demo import DemoPlan, model_config, train_config, vocab_size

    plan = DemoPlan()
    model = model_config(plan, "rope", vocab_size(plan))
    train = dataclasses.replace(
        train_config(plan, 0, plan.steps), progress=True, device="auto", threads=1
    )
    return model, train
