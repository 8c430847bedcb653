"""``longpos eval``: score a checkpoint on tasks of the suite at chosen lengths.

Greedy decoding through the KV cache; writes ``samples.jsonl``, ``results.json`` and
``summary.md`` (see :mod:`longpos.eval.runner`). Context-extension baselines are applied
on the fly: ``--scaling pi|ntk|yarn --factor s`` rescales RoPE over the model's training
length, ``--temperature c`` applies DroPE's logit temperature, per query: 1 + c ln((p + 1) / L)
for the query at position p (so cached decoding equals a full forward); both work on native and
Hugging Face models (:mod:`longpos.surgery`).

A model trained by ``longpos train`` / ``longpos demo`` carries what it was trained on: its
tasks' options (``num_symbols``, ``num_kv_pairs``, ...) and its tokenizer are the defaults, so
``longpos eval --model runs/repo/model --tasks mqar`` needs no ``--options``; ``--options``
overrides them. Lengths are checked against the memory available before any sample is made.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Literal

from longpos.fields import parse_json_object


@dataclass
class EvalArgs:
    """Evaluate a model on tasks of the suite at several lengths."""

    model: str
    """A longpos checkpoint folder (or a Hugging Face model folder, with longpos[hf])."""
    tasks: tuple[str, ...] = ()
    """Task names (space- or comma-separated); see longpos.tasks.list_tasks(). Default: the
    tasks the model was trained on (else niah_single_1)."""
    lengths: tuple[str, ...] = ()
    """Target lengths in tokens (space- or comma-separated). Default: 1x, 2x and 4x the
    model's training length (else 256)."""
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
    """JSON task options applied to every task that has them, e.g. '{"num_keys": 4}'; they
    override the options the model was trained with."""
    scaling: str = "none"
    """RoPE scaling applied at evaluation: none | pi | ntk | yarn | dynamic_ntk | llama3."""
    factor: float = 1.0
    """Scaling factor s for --scaling."""
    temperature: float = 0.0
    """DroPE temperature slope c (0 = off), per query: beta = 1 + c ln((position + 1) / L)."""
    batch_size: int = 1
    """Prompts decoded at once (>= 1): left-padded with masking and real-token positions, or
    in length buckets for FwPKM models; the predictions equal batch size 1."""
    device: str = "cpu"


def split_list(values: tuple[str, ...]) -> list[str]:
    return [v for item in values for v in item.split(",") if v.strip()]


def task_options_for(
    tasks: list[str], common: dict[str, Any], info: dict[str, Any] | None, vocab_size: int | None
) -> dict[str, dict[str, Any]]:
    """Each token-level task's options: what the model was trained with (its own task's
    options; ``num_symbols`` for the others), overridden by ``common`` (``--options``).
    Refuses options whose vocabulary the model does not have, naming what to pass."""
    from longpos.tasks import get_task
    from longpos.tasks.symbolic import NUM_MARKERS, vocab_for

    trained = dict((info or {}).get("task_options") or {})
    base = dict((info or {}).get("options") or {})
    per: dict[str, dict[str, Any]] = {}
    for t in tasks:
        spec = get_task(t)
        if spec.token_fn is None:
            raise ValueError(
                f"task {t!r} has no token-level form, and this model reads the symbolic task "
                "vocabulary: evaluate it on a token-level task (e.g. mqar, passkey)"
            )
        names = {f.name for f in dataclasses.fields(spec.config_cls)}
        if t in trained:
            opts = dict(trained[t])
        elif t in ((info or {}).get("tasks") or []):  # older metadata: one shared dict
            opts = {k: v for k, v in base.items() if k in names}
        else:  # another task: the same vocabulary
            opts = {k: v for k, v in base.items() if k == "num_symbols" and k in names}
        opts.update({k: v for k, v in common.items() if k in names})
        per[t] = opts
        if vocab_size is None or "num_symbols" not in names:
            continue
        needed = vocab_for(t, **opts).vocab_size
        if needed > vocab_size:
            fits = vocab_size - NUM_MARKERS
            source = "" if info else " (nothing records what this model was trained on)"
            raise ValueError(
                f"task {t!r} with options {json.dumps(opts)} uses {needed} token ids but the "
                f"model has vocab_size={vocab_size}{source}: pass --options "
                f"'{json.dumps({**common, 'num_symbols': fits})}' (or the options it was "
                "trained with)"
            )
    return per


def probe_tasks(
    tasks: list[str], length: int, tokenizer: Any, common: dict[str, Any],
    per_task: dict[str, dict[str, Any]],
) -> None:  # fmt: skip
    """Make one sample per task at the longest length before any decoding, so a task that
    cannot be made (missing data file, a length its options cannot fill) fails first."""
    from longpos.eval.runner import _options_for
    from longpos.tasks.base import generate_sample
    from longpos.tasks.fitting import TooShortError

    level: Literal["text", "token"] = "token" if tokenizer is None else "text"
    for t in tasks:
        opts = _options_for(t, common, per_task)
        try:
            generate_sample(t, length, tokenizer=tokenizer, seed=0, level=level, **opts)
        except TooShortError:
            pass  # reported as skipped by the runner
        except FileNotFoundError as exc:  # qa_1 / qa_2 without their data file
            raise FileNotFoundError(
                f'{exc}; on this command line: --options \'{{"data_path": "PATH.json"}}\''
            ) from None


def default_lengths(train_length: int | None) -> list[int]:
    return [256] if not train_length else [train_length * m for m in (1, 2, 4)]


def run(args: EvalArgs) -> None:
    from longpos.eval.adapter import load_eval_model
    from longpos.eval.runner import run_eval
    from longpos.tasks import get_task

    tasks = split_list(args.tasks)
    try:
        lengths = [int(v) for v in split_list(args.lengths)]
    except ValueError as exc:
        raise ValueError(f"--lengths must be integers: {exc}") from exc
    if any(L <= 0 for L in lengths):
        raise ValueError(f"--lengths must be positive, got {lengths}")
    if args.samples < 1:
        raise ValueError(f"--samples must be >= 1, got {args.samples}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    options = parse_json_object(args.options, "--options")
    for t in tasks:
        get_task(t)  # unknown names fail before the model loads
    model = load_eval_model(args.model, device=args.device, tokenizer=args.tokenizer)
    info: dict[str, Any] | None = getattr(model, "trained_on", None)
    config = getattr(model.model, "config", None)
    train_length = (info or {}).get("seq_len") or getattr(config, "max_seq_len", None)
    if not tasks:
        tasks = list((info or {}).get("tasks") or ["niah_single_1"])
    if not lengths:
        lengths = default_lengths(train_length)
    text = model.tokenizer is not None
    per_task: dict[str, dict[str, Any]] = {}
    if not text:
        vocab = getattr(config, "vocab_size", None)
        per_task = task_options_for(tasks, options, info, vocab)
        options = {}
    if config is not None:
        from longpos.train.limits import check_eval_memory

        weights = sum(p.numel() * p.element_size() for p in model.model.parameters())
        check_eval_memory(config, max(lengths), text, weights)
    probe_tasks(tasks, max(lengths), model.tokenizer, options, per_task)
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
        task_options=per_task, model_name=args.model, batch_size=args.batch_size,
        metadata={"scaling": args.scaling, "factor": args.factor, "temperature": args.temperature,
                  "train_length": train_length, "trained_on": info,
                  "batch_size": args.batch_size},
    )  # fmt: skip
    print(result_table(result, tasks, lengths))
    print(f"wrote {args.out}/samples.jsonl, results.json, summary.md")


def result_table(result: Any, tasks: list[str], lengths: list[int]) -> str:
    """The score table (x100) printed at the end of ``longpos eval``."""

    def cell(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.1f}"

    width = max(len("task"), *(len(t) for t in tasks))
    lines = [f"{'task':<{width}}  " + "  ".join(f"{L:>8}" for L in lengths)]
    for t in tasks:
        lines.append(f"{t:<{width}}  " + "  ".join(f"{cell(result.scores[t][L]):>8}"
                                                  for L in lengths))  # fmt: skip
    return "\n".join(lines)
