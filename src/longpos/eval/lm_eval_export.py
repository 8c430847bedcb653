"""``longpos export-lm-eval``: the offline task suite as an lm-evaluation-harness task folder.

lm-evaluation-harness (the ``lm-eval`` package) users run our tasks with their own tooling::

    longpos export-lm-eval --tokenizer MODEL_FOLDER --tasks niah_single_1 --lengths 4096 \\
        --samples 100 --out lm-eval-tasks
    lm_eval --model hf --model_args pretrained=MODEL_FOLDER,trust_remote_code=True,\\
add_bos_token=False,max_length=4096 --include_path lm-eval-tasks --tasks longpos \\
        --batch_size 1

What is written in ``out`` (a folder for ``--include_path``):

- per (task, length) ``longpos_<task>_<length>.jsonl``: one row per sample, exactly the samples
  ``longpos eval`` makes with the same tasks, lengths, samples, seed, options and tokenizer
  (seeds ``derive_seed(seed, task, length, index)``): the prompt text fitted to the length in
  that tokenizer, the gold answers, and the sample itself (``sample``, JSON) for scoring;
- beside it ``longpos_<task>_<length>.yaml``: a ``generate_until`` task reading that file by
  its absolute path (``dataset_path: json``), greedy decoding (``do_sample: false``), no stop
  string but the model's EOS (``until: []``; lm-eval always adds the EOS), ``max_gen_toks`` =
  the sample's generation budget (``Sample.tokens_to_generate``, what the runner decodes), and
  the metric ``score``: ``utils.process_results`` scores each generation with
  :func:`longpos.tasks.metrics.score_sample`, so per-sample scores and their mean (x100) are
  the numbers ``longpos eval`` reports;
- ``utils.py`` (the scoring; it imports longpos) and ``longpos.yaml``, the group of all tasks.

The prompt is the whole context (zero-shot, no description, no delimiter, no chat template),
so lm-eval feeds the model the same text. To feed the same *tokens*, run lm-eval with
``add_bos_token=False`` (our prompts are encoded without special tokens; lm-eval's default
lets a Llama-style tokenizer prepend BOS) and ``max_length`` >= the longest exported length
(lm-eval's default is the config's ``max_position_embeddings``, and it silently left-truncates
longer prompts, so a model evaluated past its training length would not see the needle), and
``batch_size=1`` for bit-identical decoding (FwPKM models refuse left padding).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from longpos.fields import parse_json_object
from longpos.io import atomic_write_text

__all__ = [
    "ExportLMEvalArgs",
    "GROUP",
    "export_lm_eval_tasks",
    "lm_eval_command",
    "run",
    "task_name",
    "text_tasks",
]

GROUP = "longpos"
"""Name of the group YAML that runs every exported task."""

UTILS_PY = '''"""Scoring of the longpos tasks exported by ``longpos export-lm-eval`` (lm-eval hook).

Each document carries its longpos sample (``sample``: JSON without the prompt); a generation
is scored with longpos's own metric, :func:`longpos.tasks.metrics.score_sample`, so the
scores are those ``longpos eval`` reports (in [0, 1]; longpos prints them x100).
"""

import json

from longpos.tasks.base import Sample
from longpos.tasks.metrics import score_sample


def process_results(doc, results):
    sample = Sample.from_dict(json.loads(doc["sample"]))
    return {"score": float(score_sample(sample, results[0]))}
'''


def task_name(task: str, length: int) -> str:
    """The lm-eval name of ``task`` at ``length`` (prefixed: lm-eval has its own RULER tasks)."""
    return f"{GROUP}_{task}_{int(length)}"


def text_tasks() -> list[str]:
    """The tasks of the suite that render as text (the ones that can be exported)."""
    from longpos.tasks import get_task, list_tasks

    return [t for t in list_tasks() if get_task(t).text_fn is not None]


def _load_tokenizer(tokenizer: Any) -> Any:
    """A tokenizer name :func:`~longpos.data.tokenizers.load_tokenizer` knows, a local folder
    with Hugging Face tokenizer files (the model folder), or a tokenizer object."""
    from longpos.data.tokenizers import load_tokenizer

    if isinstance(tokenizer, str | os.PathLike) and Path(tokenizer).is_dir():
        from longpos.hf.loading import local_tokenizer

        tok = local_tokenizer(tokenizer)
        if tok is None:
            raise ValueError(
                f"{tokenizer} has no tokenizer files (tokenizer.json, tokenizer_config.json, "
                "...): pass the model folder that has them, or a tokenizer name (byte, "
                "mistral-v3, ...)"
            )
        return load_tokenizer(tok)
    return load_tokenizer(tokenizer)


def _yaml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid double-quoted YAML scalar


def _task_yaml(name: str, data: Path, max_gen_toks: int, meta: dict[str, Any]) -> str:
    meta_lines = "".join(f"  {k}: {json.dumps(v)}\n" for k, v in meta.items())
    return (
        f"# Written by `longpos export-lm-eval`; scored by longpos (utils.py).\n"
        f"task: {name}\n"
        f"tag: {GROUP}_tasks\n"
        f"dataset_path: json\n"
        f"dataset_kwargs:\n"
        f"  data_files:\n"
        f"    test: {_yaml_str(str(data))}\n"
        f"test_split: test\n"
        f"output_type: generate_until\n"
        f"num_fewshot: 0\n"
        f"doc_to_text: prompt\n"
        f"doc_to_target: target\n"
        f'target_delimiter: ""\n'
        f"generation_kwargs:\n"
        f"  do_sample: false\n"
        f"  until: []\n"
        f"  max_gen_toks: {int(max_gen_toks)}\n"
        f"process_results: !function utils.process_results\n"
        f"metric_list:\n"
        f"  - metric: score\n"
        f"    aggregation: mean\n"
        f"    higher_is_better: true\n"
        f"metadata:\n"
        f"  version: 1.0\n"
        f"{meta_lines}"
    )


def _group_yaml(names: Sequence[str]) -> str:
    tasks = "".join(f"  - {n}\n" for n in names)
    return (
        f"# Written by `longpos export-lm-eval`: every exported task.\n"
        f"group: {GROUP}\n"
        f"task:\n{tasks}"
        f"aggregate_metric_list:\n"
        f"  - metric: score\n"
        f"    aggregation: mean\n"
        f"    weight_by_size: false\n"
        f"metadata:\n"
        f"  version: 1.0\n"
    )


def export_lm_eval_tasks(
    tasks: Sequence[str],
    lengths: Sequence[int],
    samples: int,
    seed: int,
    tokenizer: Any,
    out: str | os.PathLike[str],
    options: dict[str, Any] | None = None,
) -> list[str]:
    """Write ``tasks`` x ``lengths`` (``samples`` each) as an lm-eval task folder ``out``.

    Args:
        tasks: text-level task names (see :func:`text_tasks`).
        lengths: target lengths in tokens (prompt + generation budget), as ``longpos eval``.
        samples: samples per (task, length) (>= 1).
        seed: run seed; sample ``i`` of (task, length) has seed
            ``derive_seed(seed, task, length, i)``, as in ``longpos eval``.
        tokenizer: the evaluated model's tokenizer: a name ``load_tokenizer`` understands
            (``byte``, ``mistral-v3``, a ``.model`` path), a local Hugging Face folder with
            tokenizer files (the model folder), or a tokenizer object. Prompts are fitted to
            each length in it.
        out: the folder to write (for lm-eval's ``--include_path``).
        options: task options applied to every task whose config has them (``--options``).

    Returns:
        The lm-eval task names written (``longpos_<task>_<length>``), in order; a length too
        small for a task's smallest prompt is skipped (``longpos eval`` reports it ``n/a``).
        The group ``longpos`` (:data:`GROUP`) runs them all.
    """
    from longpos.eval.runner import _options_for
    from longpos.tasks.base import derive_seed, generate_sample, get_task
    from longpos.tasks.fitting import TooShortError

    tasks, lengths = list(tasks), [int(L) for L in lengths]
    if not tasks:
        raise ValueError("tasks must not be empty")
    if not lengths or any(L <= 0 for L in lengths):
        raise ValueError(f"lengths must be positive integers, got {lengths}")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be an integer >= 1, got {samples!r}")
    for t in tasks:
        if get_task(t).text_fn is None:  # unknown names fail here, listing the known ones
            raise ValueError(
                f"task {t!r} exists only at token level (symbolic ids, no text), so lm-eval "
                f"cannot run it; text-level tasks: {', '.join(text_tasks())}"
            )
    tok = _load_tokenizer(tokenizer)
    common = dict(options or {})
    folder = Path(out).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    tok_name = getattr(tok, "name", type(tok).__name__)
    written: list[str] = []
    for t in tasks:
        opts = _options_for(t, common, {})
        for L in lengths:
            rows: list[str] = []
            budgets: set[int] = set()
            try:
                for i in range(samples):
                    s_seed = derive_seed(seed, t, L, i)
                    s = generate_sample(t, L, tokenizer=tok, seed=s_seed, level="text", **opts)
                    budgets.add(s.tokens_to_generate)
                    kept = dataclasses.replace(s, prompt=None, prompt_ids=[])
                    row = {
                        "task": t, "length": L, "index": i, "seed": s_seed, "depth": s.depth,
                        "metric": s.metric, "prompt": s.prompt, "answers": list(s.answers),
                        "target": " | ".join(s.answers), "prompt_tokens": len(s.prompt_ids),
                        "tokens_to_generate": s.tokens_to_generate,
                        "sample": json.dumps(kept.to_dict()),
                    }  # fmt: skip
                    rows.append(json.dumps(row) + "\n")
            except TooShortError:
                continue
            if len(budgets) != 1:  # one generation budget per lm-eval task
                raise ValueError(
                    f"task {t!r} at {L} tokens gives samples with different generation budgets "
                    f"{sorted(budgets)}; lm-eval has one max_gen_toks per task"
                )
            name = task_name(t, L)
            data = folder / f"{name}.jsonl"
            atomic_write_text(data, "".join(rows))
            meta = {"longpos_task": t, "length": L, "samples": samples, "seed": seed,
                    "tokenizer": tok_name, "options": opts}  # fmt: skip
            atomic_write_text(folder / f"{name}.yaml", _task_yaml(name, data, budgets.pop(), meta))
            written.append(name)
    if not written:
        raise ValueError(
            f"no task could be made at lengths {lengths} (each too small for the task's "
            "smallest prompt): export longer lengths"
        )
    atomic_write_text(folder / "utils.py", UTILS_PY)
    atomic_write_text(folder / f"{GROUP}.yaml", _group_yaml(written))
    return written


def lm_eval_command(model: str, out: str | os.PathLike[str], max_length: int) -> str:
    """The ``lm_eval`` command line that scores ``model`` on the exported folder ``out`` as
    ``longpos eval`` does (same tokens in, greedy, no truncation)."""
    args = f"pretrained={model},trust_remote_code=True,add_bos_token=False,max_length={max_length}"
    return (
        f"lm_eval --model hf --model_args {args} --include_path {out} --tasks {GROUP} "
        "--batch_size 1"
    )


@dataclass
class ExportLMEvalArgs:
    """Export tasks of the suite as an lm-evaluation-harness task folder (--include_path)."""

    tasks: tuple[str, ...]
    """Text-level task names (space- or comma-separated); see longpos.tasks.list_tasks()."""
    lengths: tuple[str, ...]
    """Target lengths in tokens (space- or comma-separated)."""
    tokenizer: str
    """The evaluated model's tokenizer (prompts are fitted in it): its Hugging Face model
    folder, or byte, a mistral-common model name (mistral-v3), a SentencePiece .model path."""
    samples: int = 10
    """Samples per task and length (>= 1)."""
    out: str = "longpos-lm-eval"
    """Output folder (pass it to lm_eval --include_path)."""
    seed: int = 0
    """Seed of the samples (the same seed as longpos eval gives the same samples)."""
    options: str = "{}"
    """JSON task options applied to every task that has them, e.g. '{"num_keys": 4}'."""


def run(args: ExportLMEvalArgs) -> list[str]:
    from longpos.eval.command import split_list

    tasks = split_list(args.tasks)
    try:
        lengths = [int(v) for v in split_list(args.lengths)]
    except ValueError as exc:
        raise ValueError(f"--lengths must be integers: {exc}") from exc
    if not tasks:
        raise ValueError("--tasks is empty: name at least one text-level task")
    if not lengths or any(L <= 0 for L in lengths):
        raise ValueError(f"--lengths must be positive, got {lengths}")
    if args.samples < 1:
        raise ValueError(f"--samples must be >= 1, got {args.samples}")
    options = parse_json_object(args.options, "--options", '{"num_keys": 4}')
    names = export_lm_eval_tasks(
        tasks, lengths, args.samples, args.seed, args.tokenizer, args.out, options=options
    )
    done = set(names)
    skipped = [task_name(t, L) for t in tasks for L in lengths if task_name(t, L) not in done]
    print(f"wrote {len(names)} lm-eval tasks to {args.out} (group {GROUP}): {', '.join(names)}")
    if skipped:
        print(f"skipped (length too small for the task's smallest prompt): {', '.join(skipped)}")
    model = args.tokenizer if Path(args.tokenizer).is_dir() else "MODEL_FOLDER"
    print("score a model on them (the same samples and scores as longpos eval):")
    print("  " + lm_eval_command(model, args.out, max(lengths)))
    return names
