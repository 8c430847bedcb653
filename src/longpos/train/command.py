"""``longpos train``: train from scratch, continue pretraining, or recalibrate after DroPE.

- From scratch: ``longpos train --preset tiny --model.plan repo --out runs/repo``.
- Continued pretraining with new modules: ``--init-from runs/rope/model --model.plan repo``
  loads every saved weight; weights of new modules (RePo predictors, QK-norm gains) keep
  their fresh initialisation and are reported; unexpected or mis-shaped tensors are an
  error.
- DroPE recalibration: ``--init-from runs/rope/model --drope`` drops positional encoding
  from every layer, then trains at the original length.

A rerun with the same ``--out`` resumes from ``out/checkpoint`` exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from longpos.config import ModelConfig
from longpos.train.config import TrainConfig


@dataclass
class TrainArgs:
    """Train a longpos model."""

    out: Path = Path("runs/train")
    """Output folder (config.json, metrics.jsonl, checkpoint/, model/)."""
    preset: str | None = None
    """Model preset (tiny, small, 1b) whose values become the --model.* defaults."""
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    init_from: str | None = None
    """Checkpoint folder to start from (continued pretraining / recalibration)."""
    drope: bool = False
    """Drop positional encoding from every layer of --init-from before training (DroPE)."""
    drope_qk_norm: str = "none"
    """DroPE QK-norm variant: none | q | k | qk."""
    parallel: str = "ddp"
    """Under torchrun: ddp | fsdp."""
    resume: bool = True
    """Resume from out/checkpoint when it exists."""


def build_model(args: TrainArgs) -> tuple[torch.nn.Module, list[str]]:
    """The model to train and the names of weights that were freshly initialised."""
    from longpos.checkpoint import load_model
    from longpos.model import LongposLM
    from longpos.positions.drope import drop_positions

    gen = torch.Generator().manual_seed(args.train.seed)
    if args.init_from is None:
        if args.drope:
            raise ValueError("--drope needs --init-from: the RoPE checkpoint to drop from")
        return LongposLM(args.model, gen), []
    if args.drope:
        # The architecture comes from the saved model; only its positions change.
        model = load_model(args.init_from)
        drop_positions(model, args.drope_qk_norm)
        new = [n for n, _ in model.named_parameters() if ".q_norm." in n or ".k_norm." in n]
        return model, new if args.drope_qk_norm != "none" else []
    model = load_model(args.init_from, config=args.model, allow_missing=True)
    return model, list(model.missing_weights)


def run(args: TrainArgs) -> dict:
    from longpos.train.loop import Trainer

    model, fresh = build_model(args)
    if fresh:
        print(f"initialised {len(fresh)} new weight tensors: {', '.join(fresh[:6])}"
              + (" ..." if len(fresh) > 6 else ""))  # fmt: skip
    trainer = Trainer(model, args.train, args.out, parallel=args.parallel)
    result = trainer.fit(resume=args.resume)
    if trainer.ctx.is_main:
        print(json.dumps(result["eval"], indent=2))
        print(f"model written to {Path(args.out) / 'model'}")
    return result
