"""Reports: evaluation results of several models as Markdown tables and PNG plots.

:func:`write_report` reads each run folder written by the evaluation runner and writes into
``out_dir``:

- ``report.md``: the runs, the task-averaged score per length (with the effective length,
  the largest length whose average exceeds 85.6, RULER's threshold), one table and plot
  per task family, and one task x length table and heatmap per model;
- ``accuracy_vs_length_all.png`` and ``accuracy_vs_length_<family>.png``;
- ``heatmap_<model>.png``;
- ``report.json``: the same numbers, machine-readable.

Reading a run folder (:func:`load_run`), as written by :func:`longpos.eval.runner.run_eval`:
``results.json`` holds ``scores[task][length]`` in percent (mean score x 100; ``null`` for a
cell skipped because the length could not hold the task) and ``metadata`` (``model`` is
the model's name, ``samples`` the samples per cell, ``skipped`` the skipped cells). Also
accepted: a value that is an object with ``score`` / ``mean`` / ``accuracy``, records
``{task, length, score}`` under ``rows``, ``metadata.score_scale = "fraction"`` for scores in
[0, 1], and, without ``results.json``, the per-sample ``samples.jsonl`` (``task``,
``length``, ``score`` in [0, 1] per line), which is averaged. Without a model name the
folder name is used.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from longpos.io import atomic_write_json, atomic_write_text
from longpos.viz.markdown import markdown_table
from longpos.viz.plots import plot_accuracy_vs_length, plot_heatmap

__all__ = [
    "RunResults",
    "load_run",
    "task_family",
    "average_by_length",
    "effective_length",
    "write_report",
    "EFFECTIVE_THRESHOLD",
]

EFFECTIVE_THRESHOLD = 85.6
"""RULER's effective-length threshold (Llama-2-7B's score at 4K), in percent."""

_VALUE_KEYS = ("score", "mean", "accuracy", "acc", "value")


@dataclass
class RunResults:
    """One evaluated model: ``scores[task][length]`` in percent."""

    name: str
    path: Path
    scores: dict[str, dict[int, float]]
    counts: dict[str, dict[int, int]] = field(default_factory=dict)
    """Samples per (task, length), when known."""
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def tasks(self) -> list[str]:
        return sorted(self.scores)

    @property
    def lengths(self) -> list[int]:
        return sorted({n for row in self.scores.values() for n in row})


def _value(v: Any) -> float | None:
    if isinstance(v, Mapping):
        for key in _VALUE_KEYS:
            if key in v:
                return _value(v[key])
        return None
    if isinstance(v, bool) or v is None:
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def _count(v: Any) -> int | None:
    if isinstance(v, Mapping):
        for key in ("n", "count", "n_samples", "samples"):
            if isinstance(v.get(key), int):
                return int(v[key])
    return None


def _parse_scores(data: Mapping[str, Any]) -> tuple[dict, dict]:
    scores: dict[str, dict[int, float]] = {}
    counts: dict[str, dict[int, int]] = {}
    table = data.get("scores", data.get("results"))
    if isinstance(table, Mapping):
        for task, row in table.items():
            if not isinstance(row, Mapping):
                continue
            for length, v in row.items():
                try:
                    n = int(length)
                except (TypeError, ValueError):
                    continue  # e.g. an "average" column
                x = _value(v)
                if x is not None:
                    scores.setdefault(str(task), {})[n] = x
                    c = _count(v)
                    if c is not None:
                        counts.setdefault(str(task), {})[n] = c
    records = data.get("rows", data.get("records"))
    if isinstance(records, list):
        for rec in records:
            if not isinstance(rec, Mapping) or "task" not in rec or "length" not in rec:
                continue
            x = _value(rec)
            if x is not None:
                scores.setdefault(str(rec["task"]), {})[int(rec["length"])] = x
                c = _count(rec)
                if c is not None:
                    counts.setdefault(str(rec["task"]), {})[int(rec["length"])] = c
    return scores, counts


def _from_samples(path: Path) -> tuple[dict, dict]:
    sums: dict[tuple[str, int], list[float]] = {}
    with open(path, encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                key = (str(rec["task"]), int(rec["length"]))
                score = float(rec["score"])
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{lineno}: not a sample record ({exc})") from exc
            sums.setdefault(key, []).append(score)
    scores: dict[str, dict[int, float]] = {}
    counts: dict[str, dict[int, int]] = {}
    for (task, n), vals in sums.items():
        scores.setdefault(task, {})[n] = 100.0 * sum(vals) / len(vals)
        counts.setdefault(task, {})[n] = len(vals)
    return scores, counts


def _model_name(data: Mapping[str, Any], meta: Mapping[str, Any], folder: Path) -> str:
    for source in (data.get("model"), meta.get("model"), data.get("name"), meta.get("name")):
        if isinstance(source, str) and source.strip():
            return source.strip()
        if isinstance(source, Mapping):
            for key in ("name", "label", "path"):
                if isinstance(source.get(key), str) and source[key].strip():
                    return Path(source[key].strip()).name if key == "path" else source[key].strip()
    return folder.resolve().name


def load_run(run_dir: str | Path) -> RunResults:
    """Read one evaluation run folder (formats in the module doc)."""
    folder = Path(run_dir)
    if not folder.is_dir():
        raise ValueError(f"run folder {folder} does not exist")
    results_path, samples_path = folder / "results.json", folder / "samples.jsonl"
    data: dict[str, Any] = {}
    if results_path.is_file():
        try:
            loaded = json.loads(results_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"{results_path} is not valid JSON ({exc})") from exc
        if not isinstance(loaded, dict):
            raise ValueError(f"{results_path} must hold a JSON object")
        data = loaded
    elif not samples_path.is_file():
        raise ValueError(f"{folder} has neither results.json nor samples.jsonl: not an eval run")
    meta = data.get("metadata", data.get("meta")) or {}
    meta = dict(meta) if isinstance(meta, Mapping) else {}
    scores, counts = _parse_scores(data)
    if scores:
        if meta.get("score_scale", data.get("score_scale")) == "fraction":
            scores = {t: {n: 100.0 * v for n, v in row.items()} for t, row in scores.items()}
        per_cell = meta.get("samples")
        if not counts and isinstance(per_cell, int) and not isinstance(per_cell, bool):
            counts = {t: {n: per_cell for n in row} for t, row in scores.items()}
    elif samples_path.is_file():
        scores, counts = _from_samples(samples_path)
    if not scores:
        raise ValueError(f"{folder}: no task x length scores in results.json or samples.jsonl")
    name = _model_name(data, meta, folder)
    return RunResults(name, folder, scores, counts, meta)


def task_family(task: str, metadata: Mapping[str, Any] | None = None) -> str:
    """The task's family: from the task registry, the run's metadata
    (``families: {task: family}``) or the name's prefix (``niah_single_1`` -> ``niah``)."""
    fams = (metadata or {}).get("families")
    if isinstance(fams, Mapping) and isinstance(fams.get(task), str):
        return fams[task]
    try:
        from longpos.tasks.base import get_task

        return get_task(task).family
    except Exception:  # noqa: BLE001 - unknown task or a task package that does not import
        return task.split("_", 1)[0]


def average_by_length(
    scores: Mapping[str, Mapping[int, float]], tasks: Sequence[str] | None = None
) -> dict[int, float]:
    """Mean over ``tasks`` (default: all) of the scores at each length (tasks missing at a
    length are left out of that length's mean)."""
    chosen = list(scores) if tasks is None else [t for t in tasks if t in scores]
    by_length: dict[int, list[float]] = {}
    for task in chosen:
        for n, v in scores[task].items():
            by_length.setdefault(int(n), []).append(float(v))
    return {n: sum(vals) / len(vals) for n, vals in sorted(by_length.items())}


def effective_length(
    averages: Mapping[int, float], threshold: float = EFFECTIVE_THRESHOLD
) -> int | None:
    """The largest length whose average exceeds ``threshold`` (RULER); None if none does."""
    above = [n for n, v in averages.items() if v > threshold]
    return max(above) if above else None


def _slug(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")
    return slug or "model"


def _unique_names(runs: list[RunResults]) -> None:
    seen: dict[str, int] = {}
    for run in runs:
        seen[run.name] = seen.get(run.name, 0) + 1
    for run in runs:
        if seen[run.name] > 1:
            run.name = f"{run.name} ({run.path.name})"
    names = [r.name for r in runs]
    for i, run in enumerate(runs):  # still equal (same folder name twice): number them
        if names.count(run.name) > 1:
            run.name = f"{run.name} #{i + 1}"


def _score_table(
    curves: Mapping[str, Mapping[int, float]], lengths: list[int], first: str = "model"
) -> str:
    rows = []
    for name, curve in curves.items():
        vals = [curve.get(n) for n in lengths]
        present = [v for v in vals if v is not None]
        rows.append([name, *vals, sum(present) / len(present) if present else None])
    return markdown_table([first, *[str(n) for n in lengths], "mean"], rows)


def write_report(
    run_dirs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    title: str = "longpos evaluation report",
    train_length: int | None = None,
) -> Path:
    """Write ``report.md``, the PNG plots and ``report.json`` for the given eval runs into
    ``out_dir`` (file list in the module doc). Returns the path of ``report.md``."""
    if not run_dirs:
        raise ValueError("no run folders given")
    runs = [load_run(d) for d in run_dirs]
    _unique_names(runs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if train_length is None:
        found = {r.metadata.get("train_length") for r in runs}
        found.discard(None)
        train_length = int(found.pop()) if len(found) == 1 else None  # type: ignore[arg-type]
    lengths = sorted({n for r in runs for n in r.lengths})
    families: dict[str, list[str]] = {}
    for run in runs:
        for task in run.tasks:
            fam = task_family(task, run.metadata)
            if task not in families.setdefault(fam, []):
                families[fam].append(task)

    lines = [f"# {title}", ""]
    lines += ["## Runs", ""]
    run_rows = []
    for run in runs:
        samples = sum(c for row in run.counts.values() for c in row.values()) or None
        skipped = run.metadata.get("skipped")
        run_rows.append([run.name, f"`{run.path}`", len(run.tasks),
                         ", ".join(str(n) for n in run.lengths), samples,
                         len(skipped) if isinstance(skipped, list) else 0])  # fmt: skip
    head = ["model", "run", "tasks", "lengths", "samples", "skipped cells"]
    lines += [markdown_table(head, run_rows, align="llrrrr"), ""]
    lines += ["Scores are in percent (per-sample scores in [0, 1], times 100); a cell whose "
              "length cannot hold the task's smallest prompt is skipped (`-`)."]  # fmt: skip
    if train_length is not None:
        lines += [f"Training length: {train_length} tokens."]
    lines.append("")

    overall = {run.name: average_by_length(run.scores) for run in runs}
    png = plot_accuracy_vs_length(overall, out / "accuracy_vs_length_all.png",
                                  "Average over all tasks", train_length=train_length)  # fmt: skip
    lines += ["## Average over tasks", "", _score_table(overall, lengths), ""]
    eff_rows = [[name, effective_length(curve)] for name, curve in overall.items()]
    lines += [markdown_table(["model", f"effective length (> {EFFECTIVE_THRESHOLD})"],
                             [[n, "-" if e is None else e] for n, e in eff_rows]), ""]  # fmt: skip
    lines += [f"![average over tasks]({png.name})", ""]

    report: dict[str, Any] = {
        "title": title,
        "train_length": train_length,
        "lengths": lengths,
        "runs": [
            {
                "name": r.name,
                "path": str(r.path),
                "scores": r.scores,
                "counts": r.counts,
                "metadata": r.metadata,
            }  # fmt: skip
            for r in runs
        ],
        "average": overall,
        "effective_length": {str(name): eff for name, eff in eff_rows},
        "families": {},
        "files": [png.name],
    }

    lines += ["## By task family", ""]
    for fam in sorted(families):
        tasks = families[fam]
        curves = {run.name: average_by_length(run.scores, tasks) for run in runs}
        curves = {k: v for k, v in curves.items() if v}
        png = plot_accuracy_vs_length(curves, out / f"accuracy_vs_length_{_slug(fam)}.png",
                                      f"{fam} ({len(tasks)} task(s))",
                                      train_length=train_length)  # fmt: skip
        lines += [f"### {fam}", "", "Tasks: " + ", ".join(f"`{t}`" for t in tasks) + ".", ""]
        lines += [_score_table(curves, lengths), "", f"![{fam}]({png.name})", ""]
        report["families"][fam] = {"tasks": tasks, "curves": curves}
        report["files"].append(png.name)

    lines += ["## Per model: task x length", ""]
    for run in runs:
        png = plot_heatmap({t: run.scores[t] for t in run.tasks},
                           out / f"heatmap_{_slug(run.name)}.png", run.name)  # fmt: skip
        lines += [f"### {run.name}", ""]
        lines += [_score_table({t: run.scores[t] for t in run.tasks}, run.lengths, "task"), ""]
        lines += [f"![{run.name}]({png.name})", ""]
        report["files"].append(png.name)

    report["files"].append("report.md")
    atomic_write_json(out / "report.json", _jsonable(report))
    return atomic_write_text(out / "report.md", "\n".join(lines).rstrip() + "\n")


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj
