"""Evaluation runner: tasks x lengths x samples on any :class:`~longpos.eval.protocol.EvalModel`.

For every task and length it generates ``samples`` seeded samples (text level with the
model's tokenizer, or token level when the model has none), lets the model continue each
prompt greedily, scores the continuation with the task's metric, and writes three files,
each atomically (temporary file, then rename):

- ``samples.jsonl``: one JSON object per sample (task, length, index, seed, depth,
  prediction, answers, score, prompt length, needle token spans, ...);
- ``results.json``: scores (x100) per task and length, per-length averages, RULER's
  effective length (largest length whose average exceeds 85.6) and weighted averages
  wAvg(inc) / wAvg(dec), plus metadata;
- ``summary.md``: the task x length table in Markdown.

Sample seeds are ``derive_seed(seed, task, length, index)``, so a run is reproducible and
independent of the order of tasks and lengths. A length that cannot hold a task's smallest
prompt is reported as skipped (``n/a``), not as a failure.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tqdm.auto import tqdm

from longpos.eval.batching import predict_all
from longpos.eval.protocol import EvalModel
from longpos.io import atomic_write_text
from longpos.tasks.base import Sample, derive_seed, generate_sample, get_task
from longpos.tasks.fitting import TooShortError
from longpos.tasks.metrics import score_sample
from longpos.tasks.symbolic import EOS as SYMBOLIC_EOS

__all__ = ["run_eval", "EvalResult", "RULER_THRESHOLD", "aggregate"]

RULER_THRESHOLD = 85.6
"""Llama-2-7B's RULER average at 4K: the bar for the effective length."""


@dataclass
class EvalResult:
    """What :func:`run_eval` computed and where it wrote it."""

    scores: dict[str, dict[int, float | None]]
    """``scores[task][length]``: mean score x 100 (``None`` when skipped)."""
    average: dict[int, float | None]
    effective_length: int | None
    out_dir: Path
    records: list[dict[str, Any]] = field(default_factory=list)


def _options_for(
    task: str, common: dict[str, Any], per_task: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    spec = get_task(task)
    names = {f.name for f in dataclasses.fields(spec.config_cls)}
    opts = {k: v for k, v in common.items() if k in names}
    opts.update(per_task.get(task, {}))
    return opts


def _eos_ids(model: EvalModel) -> set[int]:
    tok = model.tokenizer
    if tok is None:
        return {SYMBOLIC_EOS}
    eos = getattr(tok, "eos_id", None)
    return set() if eos is None else {int(eos)}


def _predict_cell(
    model: EvalModel, cell: list[Sample], batch_size: int, done: Any = None
) -> list[list[int]]:
    """The generated ids of every sample of one (task, length) cell, in order."""
    out: list[list[int]] = [[] for _ in cell]
    for budget in sorted({s.tokens_to_generate for s in cell}):
        idx = [i for i, s in enumerate(cell) if s.tokens_to_generate == budget]
        prompts = [[int(t) for t in cell[i].prompt_ids] for i in idx]
        predicted = predict_all(model, prompts, budget, batch_size, done)
        for i, ids in zip(idx, predicted, strict=True):
            out[i] = [int(t) for t in ids]
    return out


def _finish(model: EvalModel, s: Sample, ids: list[int], stop: set[int]) -> tuple[list[int], Any]:
    ids = ids[: s.tokens_to_generate]
    for k, i in enumerate(ids):
        if i in stop:
            ids = ids[:k]
            break
    if s.level == "token":
        return ids, ids
    assert model.tokenizer is not None
    return ids, model.tokenizer.decode(ids)


def aggregate(
    scores: dict[str, dict[int, float | None]], lengths: Sequence[int]
) -> tuple[dict[int, float | None], int | None, float | None, float | None]:
    """Per-length averages over tasks, effective length, wAvg(inc), wAvg(dec)."""
    avg: dict[int, float | None] = {}
    for L in lengths:
        vals = [s[L] for s in scores.values() if s.get(L) is not None]
        avg[L] = round(sum(vals) / len(vals), 2) if vals else None  # type: ignore[arg-type]
    eff = None
    for L in sorted(lengths):
        a = avg[L]
        if a is not None and a > RULER_THRESHOLD:
            eff = L
    done = [(L, a) for L in sorted(lengths) if (a := avg[L]) is not None]

    def wavg(weights: list[float]) -> float | None:
        if not done:
            return None
        total = sum(w * a for w, (_, a) in zip(weights, done, strict=True))
        return round(total / sum(weights), 2)

    inc = [float(i + 1) for i in range(len(done))]
    return avg, eff, wavg(inc), wavg(inc[::-1])


def _markdown(
    tasks: Sequence[str], lengths: Sequence[int], scores: dict[str, dict[int, float | None]],
    avg: dict[int, float | None], eff: int | None, meta: dict[str, Any],
) -> str:  # fmt: skip
    def cell(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.1f}"

    lines = [
        f"# Evaluation: {meta.get('model', 'model')}",
        "",
        f"Scores x100; {meta['samples']} samples per cell; seed {meta['seed']}; "
        f"tokenizer {meta['tokenizer']}.",
        "",
        "| task | " + " | ".join(str(L) for L in lengths) + " |",
        "|---|" + "---:|" * len(lengths),
    ]
    for t in tasks:
        lines.append(f"| {t} | " + " | ".join(cell(scores[t][L]) for L in lengths) + " |")
    lines.append("| **average** | " + " | ".join(cell(avg[L]) for L in lengths) + " |")
    lines += [
        "",
        f"Effective length (average > {RULER_THRESHOLD}): {eff if eff is not None else 'none'}.",
    ]
    if meta.get("skipped"):
        lines += ["", "Skipped (length too small for the task's smallest prompt):"]
        lines += [f"- {k}" for k in meta["skipped"]]
    return "\n".join(lines) + "\n"


def run_eval(
    model: EvalModel,
    tasks: Sequence[str],
    lengths: Sequence[int],
    samples: int,
    out_dir: str | Path,
    seed: int = 0,
    *,
    depths: Sequence[float] | None = None,
    tokens_to_generate: int | None = None,
    options: dict[str, Any] | None = None,
    task_options: dict[str, dict[str, Any]] | None = None,
    save_prompts: bool = False,
    progress: bool = True,
    model_name: str | None = None,
    metadata: dict[str, Any] | None = None,
    batch_size: int = 1,
) -> EvalResult:
    """Evaluate ``model`` on ``tasks`` x ``lengths`` with ``samples`` samples each.

    Args:
        model: an :class:`EvalModel` (``tokenizer=None`` selects the token level).
        tasks: registered task names (see :func:`longpos.tasks.list_tasks`).
        lengths: target lengths in tokens (prompt + generation budget).
        samples: samples per (task, length).
        out_dir: folder for ``samples.jsonl``, ``results.json``, ``summary.md``.
        seed: run seed; each sample's seed is derived from it, the task, length and index.
        depths: needle depths to cycle through (sample i gets ``depths[i % len(depths)]``);
            ``None`` lets each task draw one.
        tokens_to_generate: generation budget for text tasks (default per task family).
        options: options applied to every task whose config has them (e.g. ``num_symbols``).
        task_options: per-task options, e.g. ``{"qa_1": {"data_path": "dev-v2.0.json"}}``.
        save_prompts: also store each prompt (text, or ids at token level) in samples.jsonl.
        progress: show a tqdm progress bar.
        model_name, metadata: recorded in results.json.
        batch_size: prompts decoded at once (> 1 needs a model with ``generate_batch``; the
            predictions equal one-by-one decoding).
    """
    tasks, lengths = list(tasks), [int(L) for L in lengths]
    if not tasks:
        raise ValueError("tasks must not be empty")
    if not lengths or any(L <= 0 for L in lengths):
        raise ValueError(f"lengths must be positive integers, got {lengths}")
    if not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be an integer >= 1, got {samples!r}")
    if depths is not None and any(not 0.0 <= d <= 1.0 for d in depths):
        raise ValueError(f"depths must lie in [0, 1], got {list(depths)}")
    for t in tasks:
        get_task(t)  # unknown names fail here, listing the known ones
    max_len = getattr(model, "max_length", None)
    if max_len is not None and max(lengths) > max_len:
        raise ValueError(
            f"length {max(lengths)} exceeds the model's max_length {max_len}; "
            "drop the longer lengths or extend the model's context (e.g. RoPE scaling)"
        )
    tok = model.tokenizer
    level: Literal["text", "token"] = "token" if tok is None else "text"
    common = dict(options or {})
    per_task = dict(task_options or {})
    unknown = sorted(set(per_task) - set(tasks))
    if unknown:
        raise ValueError(f"task_options given for tasks not being run: {unknown}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stop = _eos_ids(model)

    scores: dict[str, dict[int, float | None]] = {t: {} for t in tasks}
    skipped: list[str] = []
    records: list[dict[str, Any]] = []
    jsonl = out / "samples.jsonl"
    fd, tmp = tempfile.mkstemp(dir=out, prefix=".samples.jsonl.", suffix=".tmp")
    bar = tqdm(total=len(tasks) * len(lengths) * samples, disable=not progress, desc="eval")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for t in tasks:
                opts = _options_for(t, common, per_task)
                for L in lengths:
                    cell: list[float] = []
                    drawn: list[tuple[int, int, Sample]] = []  # (index, seed, sample)
                    for i in range(samples):
                        d = None if depths is None else float(depths[i % len(depths)])
                        s_seed = derive_seed(seed, t, L, i)
                        try:
                            s = generate_sample(
                                t, L, tokenizer=tok, seed=s_seed, depth=d, level=level,
                                tokens_to_generate=tokens_to_generate, **opts,
                            )  # fmt: skip
                        except TooShortError as e:
                            skipped.append(f"{t} @ {L}: {e}")
                            bar.update(samples - i)
                            break
                        drawn.append((i, s_seed, s))
                    predicted = _predict_cell(
                        model, [s for _, _, s in drawn], batch_size, bar.update
                    )
                    for (i, s_seed, s), generated in zip(drawn, predicted, strict=True):
                        ids, pred = _finish(model, s, generated, stop)
                        sc = float(score_sample(s, pred))
                        cell.append(sc)
                        rec = {
                            "task": t, "length": L, "index": i, "seed": s_seed, "level": s.level,
                            "depth": s.depth, "metric": s.metric, "score": sc,
                            "prediction": pred, "prediction_ids": ids, "answers": s.answers,
                            "answer_ids": s.answer_ids, "prompt_tokens": len(s.prompt_ids),
                            "tokens_to_generate": s.tokens_to_generate, "sample_length": s.length,
                            "needles": [
                                {"role": n.role, "token_start": n.token_start, "token_end": n.token_end}
                                for n in s.needles
                            ],
                        }  # fmt: skip
                        if save_prompts:
                            rec["prompt"] = s.prompt if s.level == "text" else s.prompt_ids
                        f.write(json.dumps(rec) + "\n")
                        records.append(rec)
                    scores[t][L] = round(100 * sum(cell) / len(cell), 2) if cell else None
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, jsonl)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        bar.close()

    avg, eff, w_inc, w_dec = aggregate(scores, lengths)
    from longpos import __version__
    from longpos.data.corpus import corpus_fingerprint

    meta = {
        "model": model_name or type(model).__name__,
        "level": level,
        "tokenizer": "symbolic" if tok is None else getattr(tok, "name", type(tok).__name__),
        "tasks": tasks,
        "lengths": lengths,
        "samples": samples,
        "seed": seed,
        "depths": None if depths is None else list(depths),
        "tokens_to_generate": tokens_to_generate,
        "options": common,
        "task_options": per_task,
        "skipped": skipped,
        "longpos_version": __version__,
        "python": platform.python_version(),
        "corpus_fingerprint": corpus_fingerprint(),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        **(metadata or {}),
    }
    results = {
        "scores": {t: {str(L): v for L, v in row.items()} for t, row in scores.items()},
        "average": {str(L): v for L, v in avg.items()},
        "effective_length": eff,
        "effective_length_threshold": RULER_THRESHOLD,
        "wavg_inc": w_inc,
        "wavg_dec": w_dec,
        "metadata": meta,
    }
    atomic_write_text(out / "results.json", json.dumps(results, indent=2, default=str) + "\n")
    atomic_write_text(out / "summary.md", _markdown(tasks, lengths, scores, avg, eff, meta))
    return EvalResult(
        scores=scores, average=avg, effective_length=eff, out_dir=out, records=records
    )
