"""``longpos train``: train from scratch, continue pretraining, or recalibrate after DroPE.

- From scratch: ``longpos train --preset tiny --model.plan repo --out runs/repo``.
- Continued pretraining with new modules: ``--init-from runs/rope/model --model.plan repo``
  loads every saved weight; weights of new modules (RePo predictors, QK-norm gains) keep
  their fresh initialisation and are reported; unexpected or mis-shaped tensors are an
  error.
- DroPE recalibration: ``--init-from runs/rope/model --drope`` drops positional encoding
  from every layer, then trains at the original length.
- A Hugging Face model folder: ``--hf-model PATH --model.plan repo`` converts it with
  ``longpos.hf`` (``--drope`` drops its positions instead) and continues pretraining it on
  text tokenised with its own tokenizer (``--train.data.kind text``); the result is saved
  with ``save_pretrained`` (tokenizer files copied). The ``--model.*`` options mean what they
  mean for a native model: their defaults are the folder's own (plan, RePo options, RoPE,
  memory, ...), and ``--model.memory.kind fwpkm --model.memory.layers 2,10`` adds FwPKM /
  static PKM layers. Options that would change its architecture (``--model.d_model``, ...)
  are refused with a message naming them.

- A recipe: ``--recipe demo`` makes the demo's model and schedule the defaults
  (:mod:`longpos.train.recipes`).

The vocabulary follows the data unless ``--model.vocab_size`` is given (from scratch). A
rerun with the same ``--out`` and options resumes from ``out/checkpoint`` exactly and says
so; other options on an existing run are refused, naming the option that differs.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, cast

import torch
import tyro

from longpos.config import ModelConfig
from longpos.train.config import TrainConfig


@dataclass
class TrainArgs:
    """Train a longpos model."""

    out: Path = Path("runs/train")
    """Output folder (config.json, metrics.jsonl, checkpoint/, model/)."""
    preset: str | None = None
    """Model preset (tiny, small, 1b) whose values become the --model.* defaults."""
    recipe: str | None = None
    """A known-good run whose model and training options become the defaults: demo (the
    demo's model and schedule on its mqar task; learns in minutes on a CPU)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    init_from: str | None = None
    """Checkpoint folder to start from (continued pretraining / recalibration)."""
    drope: bool = False
    """Drop positional encoding from every layer of --init-from before training (DroPE)."""
    drope_qk_norm: str = "none"
    """DroPE QK-norm variant: none | q | k | qk."""
    hf_model: str | None = None
    """A local Hugging Face model folder to train instead of a native model (longpos[hf]);
    the --model.* defaults are then the folder's own."""
    parallel: str = "ddp"
    """Under torchrun: ddp | fsdp."""
    resume: bool = True
    """Resume from out/checkpoint when it exists (with the same options); --no-resume starts
    over in --out."""
    vocab_size_given: Annotated[bool, tyro.conf.Suppress] = False
    """Set by the command line when --model.vocab_size was given (else it follows the data)."""


def build_model(args: TrainArgs) -> tuple[torch.nn.Module, list[str]]:
    """The model to train and the names of weights that were freshly initialised."""
    from longpos.checkpoint import load_model
    from longpos.model import LongposLM
    from longpos.surgery import drop_positions

    gen = torch.Generator().manual_seed(args.train.seed)
    if args.hf_model is not None:
        return build_hf_model(args)
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
    return model, list(cast("list[str]", model.missing_weights))


def build_hf_model(args: TrainArgs) -> tuple[torch.nn.Module, list[str]]:
    from longpos import hf
    from longpos.config import ModelConfig
    from longpos.hf.loading import apply_model_config
    from longpos.surgery import drop_positions

    if args.init_from is not None:
        raise ValueError("--hf-model and --init-from are exclusive: the HF folder is the start")
    assert args.hf_model is not None  # build_model calls this only with --hf-model set
    model = hf.load_hf_model(args.hf_model)
    had = {id(p) for p in model.parameters()}  # trained weights already there
    if args.model != ModelConfig():  # --model.* options (defaults: the folder's own)
        if args.drope and args.model.plan != hf.position_plan(model).plan:
            raise ValueError("--drope already sets every layer to NoPE: drop --model.plan")
        apply_model_config(model, args.model)
    if args.drope:
        drop_positions(model, args.drope_qk_norm)
    fresh = [n for n, p in model.named_parameters() if id(p) not in had]
    return model, fresh


def hf_text_source(args: TrainArgs):
    """Packed offline text in the HF model's own tokenizer."""
    from pathlib import Path

    from longpos.hf import local_tokenizer
    from longpos.train.data import TextSource

    if args.train.data.kind != "text":
        raise ValueError(
            "a Hugging Face model trains on text: pass --train.data.kind text (token-level "
            "tasks use the symbolic vocabulary of from-scratch models)"
        )
    assert args.hf_model is not None  # run calls this only with --hf-model set
    tokenizer = local_tokenizer(Path(args.hf_model))
    if tokenizer is None:
        raise ValueError(f"{args.hf_model} has no tokenizer files: save the tokenizer there")
    return TextSource(tokenizer, args.train.seed)


def run(args: TrainArgs) -> dict:
    from longpos.train.data import build_source
    from longpos.train.loop import Trainer

    source = None
    if args.hf_model is not None:
        source = hf_text_source(args)
    else:
        source = build_source(args.train.data, args.train.seed)
        if args.init_from is None and not args.vocab_size_given:
            # From scratch the vocabulary follows the data unless --model.vocab_size is given.
            if args.model.vocab_size != source.vocab_size:
                print(f"model.vocab_size = {source.vocab_size} (the data's token ids; "
                      "--model.vocab_size sets it)")  # fmt: skip
            args.model = dataclasses.replace(args.model, vocab_size=source.vocab_size)
    model, fresh = build_model(args)
    if fresh:
        print(f"initialised {len(fresh)} new weight tensors: {', '.join(fresh[:6])}"
              + (" ..." if len(fresh) > 6 else ""))  # fmt: skip
    trainer = Trainer(
        model, args.train, args.out, source=source, parallel=args.parallel,
        source_folder=args.hf_model,
    )  # fmt: skip
    result = trainer.fit(resume=args.resume, verbose=True)
    if trainer.ctx.is_main and not result.get("already_done"):
        print(json.dumps(result["eval"], indent=2))
        print(f"model written to {Path(args.out) / 'model'}")
    return result
