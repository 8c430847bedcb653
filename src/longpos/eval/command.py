"""``longpos eval``: score a checkpoint on tasks of the suite at chosen lengths.

Greedy decoding through the KV cache; writes ``samples.jsonl``, ``results.json`` and
``summary.md`` (see :mod:`longpos.eval.runner`). Context-extension baselines are applied
on the fly: ``--scaling pi|ntk|yarn --factor s`` rescales RoPE over the model's training
length, ``--temperature c`` applies DroPE's logit temperature, per query: 1 + c ln((p + 1) / L)
for the query at position p (so cached decoding equals a full forward); both work on native and
Hugging Face models (:mod:`longpos.surgery`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass
class EvalArgs:
    """Evaluate a model on tasks of the suite at several lengths."""

    model: str
    """A longpos checkpoint folder (or a Hugging Face model folder, with longpos[hf])."""
    tasks: tuple[str, ...] = ("niah_single_1",)
    """Task names (space- or comma-separated); see longpos.tasks.list_tasks()."""
    lengths: tuple[str, ...] = ("256",)
    """Target lengths in tokens (space- or comma-separated)."""
    samples: int = 10
    """Samples per task and length (>= 1)."""
    out: str = "longpos-eval"
    """Output folder."""
    seed: int = 0
    """Seed of the samples."""
    tokenizer: str | None = None
    """Text-level tasks with this tokenizer (byte, or a mistral-common model name); default:
    token level for models trained on the symbolic task vocabulary."""
    options: str = "{}"
    """JSON task options applied to every task that has them, e.g. '{"num_keys": 4}'."""
    scaling: str = "none"
    """RoPE scaling applied at evaluation: none | pi | ntk | yarn | dynamic_ntk | llama3."""
    factor: float = 1.0
    """Scaling factor s for --scaling."""
    temperature: float = 0.0
    """DroPE temperature slope c (0 = off), per query: beta = 1 + c ln((position + 1) / L)."""
    device: str = "cpu"


def split_list(values: tuple[str, ...]) -> list[str]:
    return [v for item in values for v in item.split(",") if v.strip()]


def run(args: EvalArgs) -> None:
    from longpos.eval.adapter import load_eval_model
    from longpos.eval.runner import run_eval

    tasks = split_list(args.tasks)
    try:
        lengths = [int(v) for v in split_list(args.lengths)]
    except ValueError as exc:
        raise ValueError(f"--lengths must be integers: {exc}") from exc
    try:
        options = json.loads(args.options)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--options is not valid JSON: {exc}") from exc
    model = load_eval_model(args.model, device=args.device, tokenizer=args.tokenizer)
    if args.scaling != "none" or args.temperature:
        from longpos import surgery
        from longpos.positions.temperature import temperature

        inner = model.model  # the native or Hugging Face model behind the eval adapter
        if args.scaling != "none":
            surgery.set_rope(inner, surgery.scaled_rope(inner, args.scaling, args.factor))
        if args.temperature:
            length = surgery.training_length(inner)
            temp = temperature(args.temperature, mode="dynamic", train_length=length)
            surgery.set_temperature(inner, temp)
    result = run_eval(
        model, tasks, lengths, args.samples, args.out, seed=args.seed, options=options,
        model_name=args.model,
        metadata={"scaling": args.scaling, "factor": args.factor, "temperature": args.temperature},
    )  # fmt: skip
    print(f"wrote {args.out}/samples.jsonl, results.json, summary.md")
    del result
