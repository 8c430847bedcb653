"""Small-scale reproduction: the demo's comparison with several seeds, more lengths and tasks.

Runs ``longpos demo``'s pipeline (same models and budget rules) with ``--seeds`` seeds per
method (at least 3) and evaluation at 1x, 2x, 4x and 8x the training length (FwPKM and its
base model also at 16x and 32x) on the token-level tasks: ``mqar`` (noisy multi-key
retrieval), ``table_tokens`` (a linearised table), ``graph_tokens`` (a linearised edge list)
and ``order_tokens`` (order necessary). One pool of worker processes trains every task's
runs, a second runs the analyses (noisy context, beyond 8L, RePo's learned positions); it
writes a Markdown table per task with the mean and the spread (min..max over seeds) per cell
and the papers' claims with a verdict each; each task's demo files go to ``OUT/<task>/``.
The committed run (``benchmarks/results/reproduce-cpu``, 87 minutes on 2 cores):

    python benchmarks/reproduce.py --out benchmarks/results/reproduce-cpu --seeds 3 \\
        --tasks mqar:1500 table_tokens:2000 graph_tokens:2000 order_tokens:4000 \\
        --methods rope,nope,r2n1,repo,repo_cpt,drope,fwpkm

``TASK:STEPS`` sets a task's training steps (default: the demo's 2,000 x 2). The text
versions of the graph and table tasks (``graph_*``, ``table_*``) are for converted Hugging
Face models (``longpos eval``); tiny symbolic models read the token-level ones.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

from longpos.analysis.claims import claims_report, spread
from longpos.analysis.patterns import analyze_patterns
from longpos.analysis.placement import ORDERS, placement_report
from longpos.checkpoint import load_model
from longpos.demo import (
    ALL_METHODS,
    DEMO_TASKS,
    EVAL_BATCH,
    MEMORY,
    METHODS,
    DemoArgs,
    DemoPlan,
    check_demo,
    finish_demo,
    plan_differences,
    prepare_demo,
    train_jobs,
    wall_time,
)
from longpos.eval.adapter import LongposEvalModel
from longpos.eval.runner import run_eval
from longpos.io import atomic_write_json, atomic_write_text
from longpos.tasks.base import generate_sample

NOISE_SHARE = 0.5
"""Noisy-context evaluation: the share of filler tokens that copy a record's symbol (0 in
training), at L and 4L (``distractor_noise``)."""
CHANCE_NOTES = {"order_blind": "order-blind", "row_only": "right row, random column"}
LEARNED_SAMPLES = 20
PATTERN_CHUNK = 16


def table(summary: dict) -> str:
    lengths = summary["lengths"]
    base = summary["train_length"]
    lines = [
        "| method | " + " | ".join(f"{n} ({n // base}L)" for n in lengths) + " |",
        "|---" * (len(lengths) + 1) + "|",
    ]
    acc = summary["accuracy"]
    for method in [m for m in ALL_METHODS if m in acc]:  # the demo's order (JSON sorts keys)
        row = acc[method]
        cells = [spread(row[str(n)]["per_seed"], digits=1) for n in lengths]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def evaluate_runs(
    task_dir: Path,
    task: str,
    summary: dict,
    methods: list[str],
    lengths: list[int],
    options: dict,
    folder: str,
    samples: int,
) -> dict[str, dict[str, list[float]]]:
    """Every seed's model of ``methods`` evaluated again at ``lengths`` with ``options``, into
    ``runs/<method>-s<seed>/<folder>``: per method, length -> per-seed accuracy (0..1)."""
    accuracy = {}
    for method in methods:
        per_length: dict[str, list[float]] = {str(n): [] for n in lengths}
        for seed in range(summary["setup"]["seeds"]):
            run = task_dir / "runs" / f"{method}-s{seed}"
            result = run_eval(
                LongposEvalModel(load_model(run / "model")), [task], lengths, samples,
                run / folder, seed=10_000 + seed, task_options={task: options},
                progress=False, batch_size=EVAL_BATCH,
            )  # fmt: skip
            for n in lengths:
                per_length[str(n)].append(result.scores[task][n] / 100)
        accuracy[method] = per_length
    return accuracy


def noisy_context(task_dir: Path, task: str, summary: dict, samples: int) -> dict:
    """Every model of the task evaluated at L and 4L with ``distractor_noise`` filler."""
    base = summary["train_length"]
    lengths = [base, 4 * base]
    options = {**summary["setup"]["task_options"], "distractor_noise": NOISE_SHARE}
    accuracy = evaluate_runs(task_dir, task, summary, list(summary["accuracy"]), lengths,
                             options, "eval-noise", samples)  # fmt: skip
    return {"distractor_noise": NOISE_SHARE, "lengths": lengths, "accuracy": accuracy}


MEMORY_MULTIPLIERS = (16, 32)
"""FwPKM is also evaluated at 16L and 32L (its paper's claim: train at 4K, retrieve at 128K)."""


MEMORY_BASE = "rope"
"""The model the FwPKM models add their memory to: evaluated beyond 8L beside them."""


def memory_lengths(task_dir: Path, task: str, summary: dict, samples: int) -> dict:
    """FwPKM models of the task and their base model evaluated beyond 8L (same samples' seeds
    as the main table); only the methods ``summary["memory_lengths"]`` lacks are evaluated."""
    lengths = [m * summary["train_length"] for m in MEMORY_MULTIPLIERS]
    done = dict((summary.get("memory_lengths") or {}).get("accuracy", {}))
    memory = [m for m in MEMORY if m in summary["accuracy"]]
    wanted = [*memory, MEMORY_BASE] if memory and MEMORY_BASE in summary["accuracy"] else memory
    missing = [m for m in wanted if m not in done]
    if missing:
        print(f"{task}: {', '.join(missing)} beyond 8L", flush=True)
    done.update(evaluate_runs(task_dir, task, summary, missing, lengths,
                              summary["setup"]["task_options"], "eval-long", samples))  # fmt: skip
    return {"lengths": lengths, "accuracy": done}


def repo_learned(task_dir: Path, task: str, summary: dict) -> list[dict]:
    """What each RePo run's positions look like at L and 4L (patterns, spans, placement)."""
    setup = summary["setup"]
    base = summary["train_length"]
    rows = []
    for method in [m for m in ALL_METHODS if m in summary["accuracy"] and m.startswith("repo")]:
        for seed in range(setup["seeds"]):
            model = load_model(task_dir / "runs" / f"{method}-s{seed}" / "model")
            for n in (base, 4 * base):
                samples = [
                    generate_sample(task, n, seed=20_000 + i, **setup["task_options"])
                    for i in range(LEARNED_SAMPLES)
                ]
                patterns = analyze_patterns(model, samples, chunk=PATTERN_CHUNK).shares
                place = placement_report(model, samples)
                rows.append({"run": f"{method}-s{seed}", "length": n, "patterns": patterns,
                             **{k: place[k] for k in ("span_ratio", "order_shares",
                                                      "filler_offset", "filler_std",
                                                      "record_std")}})  # fmt: skip
    return rows


def noisy_table(noisy: dict, summary: dict) -> list[str]:
    lengths = noisy["lengths"]
    base = summary["train_length"]
    head = " | ".join(f"{n // base}L clean | {n // base}L noisy" for n in lengths)
    lines = [f"| method | {head} |", "|---" * (2 * len(lengths) + 1) + "|"]
    for method in [m for m in ALL_METHODS if m in noisy["accuracy"]]:
        cells = []
        for n in lengths:
            clean = summary["accuracy"][method][str(n)]["per_seed"]
            cells += [spread(clean, digits=1), spread(noisy["accuracy"][method][str(n)], digits=1)]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


def learned_table(rows: list[dict], base: int) -> list[str]:
    lines = [
        "| run | length | constant / monotonic / hybrid / irregular (%) | z span / index span"
        " | records ordered / reversed / collapsed / mixed (%) | filler offset | filler sd"
        " / record sd |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        p = r["patterns"]
        pats = " / ".join(f"{100 * p[c]:.0f}" for c in ("constant", "monotonic", "hybrid",
                                                      "irregular"))  # fmt: skip
        orders = " / ".join(f"{100 * r['order_shares'][o]:.0f}" for o in ORDERS)
        lines.append(
            f"| {r['run']} | {r['length'] // base}L | {pats} | {r['span_ratio']:.3f} | {orders}"
            f" | {r['filler_offset']:+.2f} | {r['filler_std']:.2f} / {r['record_std']:.2f} |"
        )
    return lines


def claims_section(combined: dict) -> list[str]:
    lines, _ = claims_report(combined)
    if not lines:
        return []
    return [
        "## The papers' claims at this scale",
        "",
        "Per seed, a score is the mean accuracy over the claim's lengths. A method *beats* a"
        " comparator on a task (held) when all its seeds score above all the comparator's;"
        " not held when none scores above the comparator's worst seed; cannot tell when the"
        " seed ranges overlap, or when neither model learned the task at L (below the"
        " copy-some-record chance). *Matches*: held unless every seed scores below every"
        " seed of the comparator (`longpos.analysis.claims`; also in `claims.json`).",
        "",
        *lines,
        "FwPKM's second claim (a second reading pass lifts retrieval) is not tested by this"
        " reproduction, which decodes with one pass: see"
        " `benchmarks/results/fwpkm-investigation/` (one seed).",
        "",
    ]


def parse_task(text: str, default_steps: int) -> tuple[str, int]:
    name, _, steps = text.partition(":")
    if name not in DEMO_TASKS:
        raise argparse.ArgumentTypeError(f"unknown task {name!r}; allowed: {', '.join(DEMO_TASKS)}")
    if steps and (not steps.isdigit() or int(steps) < 1):
        raise argparse.ArgumentTypeError(f"steps in {text!r} must be a positive integer")
    return name, int(steps) if steps else default_steps


def separation(summary: dict) -> tuple[int, int]:
    """How much a task tells the methods apart: of all (pair of methods, length) comparisons,
    how many have disjoint seed ranges (every seed of one above every seed of the other)."""
    acc = summary["accuracy"]
    methods = sorted(acc)
    separated = total = 0
    for n in summary["lengths"]:
        seeds = {m: acc[m][str(n)]["per_seed"] for m in methods}
        for i, a in enumerate(methods):
            for b in methods[i + 1 :]:
                total += 1
                separated += min(seeds[a]) > max(seeds[b]) or min(seeds[b]) > max(seeds[a])
    return separated, total


def task_section(task: str, summary: dict) -> list[str]:
    setup = summary["setup"]
    plan = setup["plan"]
    steps = plan["steps"]
    chance = summary["chance"]
    lines = [
        f"## `{task}`",
        "",
        f"Options `{json.dumps(setup['task_options'], sort_keys=True)}`; {steps} steps x {plan['batch_size']}"
        f" x {plan['length']} tokens per method and seed; training and evaluation"
        f" {wall_time(setup)}, its jobs {sum(summary['job_seconds'].values()):.0f} s of worker"
        " time; the analyses below "
        + (
            f"{summary['analysis_seconds']} s of worker time"
            + (
                f" ({summary['analysis_wall_seconds']} s wall for the analyses of"
                f" {', '.join(summary['analysis_tasks'])})."
                if "analysis_wall_seconds" in summary
                else "."
            )
            if "analysis_seconds" in summary
            else "ran before their time was recorded."
        ),
        "",
        "Accuracy (%) of greedy answers, mean over seeds (min..max):",
        "",
        table(summary),
        "",
        "Methods told apart: {} of {} (pair of methods, length) comparisons have disjoint"
        " seed ranges.".format(*separation(summary)),
        "",
        f"Chance: {100 * chance['uniform_value']:.1f}% (random value), "
        f"{100 * chance['copy_any_needle']:.1f}% (copy some record's value)"
        + "".join(
            f", {100 * chance[k]:.0f}% ({text})" for k, text in CHANCE_NOTES.items() if k in chance
        )
        + ".",
        "",
    ]
    noisy = summary.get("noisy_context")
    if noisy:
        lines += [
            f"Noisy context: the same models with {100 * noisy['distractor_noise']:.0f}% of the"
            " filler tokens replaced by copies of the records' symbols (training: none), beside"
            " the clean samples; accuracy %, mean over seeds (min..max):",
            "",
            *noisy_table(noisy, summary),
            "",
        ]
    long = summary.get("memory_lengths")
    if long and long["accuracy"]:
        base = summary["train_length"]
        lines += [
            "Beyond 8L: the FwPKM models and their base model (RoPE, no memory); accuracy %,"
            " mean over seeds (min..max):",
            "",
            "| method | " + " | ".join(f"{n // base}L" for n in long["lengths"]) + " |",
            "|---" * (len(long["lengths"]) + 1) + "|",
            *(f"| {m} | " + " | ".join(spread(row[str(n)], digits=1)
                                       for n in long["lengths"]) + " |"
              for m, row in long["accuracy"].items()),
            "",
        ]  # fmt: skip
    learned = summary.get("repo_learned")
    if learned:
        lines += [
            f"What RePo learned ({LEARNED_SAMPLES} samples per run and length; patterns in"
            f" chunks of {PATTERN_CHUNK} tokens, `longpos.analysis.patterns`; placement,"
            " `longpos.analysis.placement`: record order by each record's mean z, filler"
            " offset = (mean z of filler - mean z of records) / span, z spans averaged over"
            " learned heads):",
            "",
            *learned_table(learned, summary["train_length"]),
            "",
        ]
    return lines


def pool_seconds(combined: dict) -> dict[tuple[str, ...], float]:
    """The training pools' wall seconds, each pool once: tasks trained together by one
    invocation share a pool (``setup["pool_tasks"]``); a task run alone had its own."""
    pools: dict[tuple[str, ...], float] = {}
    for task, summary in combined.items():
        setup = summary["setup"]
        pools[tuple(setup.get("pool_tasks") or [task])] = setup["wall_seconds"]
    return pools


ANALYSES = {
    "noisy_context": noisy_context,
    "memory_lengths": memory_lengths,
    "repo_learned": lambda task_dir, task, summary, _samples: repo_learned(task_dir, task, summary),
}
"""Each task's analyses after training, by the key they fill in its ``results.json``; each
takes ``(task_dir, task, summary, samples)`` (RePo's positions use ``LEARNED_SAMPLES``)."""


def run_analysis(job: tuple[str, Path, str, dict, int]) -> tuple[str, str, Any, float]:
    """One analysis of one task (a worker process, one thread like the training workers)."""
    torch.set_num_threads(1)
    name, task_dir, task, summary, samples = job
    start = time.perf_counter()
    result = ANALYSES[name](task_dir, task, summary, samples)
    return task, name, result, time.perf_counter() - start


def analyse_tasks(summaries: dict[str, dict], out: Path, samples: int, workers: int) -> None:
    """Every analysis of every task in ``summaries``, in one pool of ``workers`` processes
    (longest first); each summary gets the results, its analyses' worker seconds
    (``analysis_seconds``) and the pool's wall seconds (``analysis_wall_seconds``, shared by
    the tasks named in ``analysis_tasks``)."""
    jobs = [(name, out / task, task, summary, samples)
            for task, summary in summaries.items() for name in ANALYSES]  # fmt: skip
    jobs.sort(key=lambda job: job[0] != "memory_lengths")  # the long evaluations first
    seconds = dict.fromkeys(summaries, 0.0)
    start = time.perf_counter()
    with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=mp.get_context("spawn")) as pool:
        for task, name, result, took in pool.map(run_analysis, jobs):
            summaries[task][name] = result
            seconds[task] += took
    wall = round(time.perf_counter() - start, 1)
    for task, summary in summaries.items():
        summary["analysis_seconds"] = round(seconds[task], 1)
        summary["analysis_wall_seconds"] = wall
        summary["analysis_tasks"] = list(summaries)


def analysis_seconds(combined: dict) -> dict[tuple[str, ...], float]:
    """The analyses' wall seconds, each analysis pool once (like :func:`pool_seconds`); a task
    analysed before the pool existed counts its own ``analysis_seconds``."""
    pools: dict[tuple[str, ...], float] = {}
    for task, summary in combined.items():
        key = tuple(summary.get("analysis_tasks") or [task])
        pools[key] = summary.get("analysis_wall_seconds", summary.get("analysis_seconds", 0))
    return pools


def finished_task(path: Path, plan: DemoPlan, args: argparse.Namespace) -> dict | None:
    """``--resume``: the task's results when an earlier run finished it with the same plan,
    methods and seeds (else None: the task is run, keeping its finished runs)."""
    if not path.exists():
        return None
    summary = json.loads(path.read_text())
    setup = summary["setup"]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    same = setup["methods"] == methods and setup["seeds"] == args.seeds
    return summary if same and not plan_differences(plan, setup["plan"]) else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="benchmarks/results/reproduce-cpu")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--tasks", nargs="+", default=list(DEMO_TASKS),
                        help="TASK or TASK:STEPS, among " + ", ".join(DEMO_TASKS))  # fmt: skip
    parser.add_argument("--methods", default=",".join(METHODS),
                        help="comma-separated, among " + ", ".join(ALL_METHODS))  # fmt: skip
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--reuse", type=Path, default=None,
                        help="an earlier reproduction folder: its finished runs with the same"
                             " plan are copied, not trained again (REUSE/<task>/runs)")  # fmt: skip
    parser.add_argument("--resume", action="store_true",
                        help="keep what an interrupted run of the same command finished: whole"
                             " tasks, and within a task its finished runs")  # fmt: skip
    parser.add_argument("--report-only", action="store_true",
                        help="rebuild reproduce.md from the finished OUT/<task>/results.json")  # fmt: skip
    args = parser.parse_args()
    if args.seeds < 3:
        parser.error("--seeds must be >= 3: fewer cannot show seed spread")
    default_steps = 2 * DemoPlan().steps
    try:
        tasks = [parse_task(t, default_steps) for t in args.tasks]
    except argparse.ArgumentTypeError as err:
        parser.error(str(err))
    if args.reuse is not None and not args.reuse.is_dir():
        parser.error(f"--reuse: {args.reuse} is not a folder")
    out = Path(args.out)
    # 1. each task's finished results, or its runs to train; 2. one pool trains every task's
    # runs (it idles only once, at the end); 3. each task's summary and analyses
    summaries: dict[str, dict] = {}
    demos: dict[str, DemoArgs] = {}
    for task, steps in tasks:
        path = out / task / "results.json"
        if args.report_only:
            if not path.exists():
                parser.error(f"--report-only: {path} is missing; run {task} first")
            summaries[task] = json.loads(path.read_text())
            continue
        plan = DemoPlan(samples=args.samples, length_multipliers=(1, 2, 4, 8), task=task,
                        steps=steps)  # fmt: skip
        summary = finished_task(path, plan, args) if args.resume else None
        if summary is not None:
            print(f"{task}: finished earlier with the same plan, kept", flush=True)
            summaries[task] = summary
            continue
        reuse = args.reuse / task if args.reuse and (args.reuse / task).exists() else None
        if args.reuse and reuse is None:
            print(f"{task}: nothing to reuse in {args.reuse}", flush=True)
        demos[task] = DemoArgs(out=out / task, seeds=args.seeds, methods=args.methods,
                               workers=args.workers, plan=plan, reuse=reuse, resume=args.resume)  # fmt: skip
    try:  # every task checked before any task's runs are deleted
        checks = {task: check_demo(demo) for task, demo in demos.items()}
    except ValueError as err:  # bad --methods, --reuse or --resume folders
        parser.error(str(err))
    pending = {task: prepare_demo(demo, checks[task]) for task, demo in demos.items()}
    if pending:
        elapsed = train_jobs(list(pending.values()), args.workers)
        for task, demo in pending.items():
            summaries[task] = finish_demo(demo, elapsed, pool_tasks=list(pending))
    todo = [task for task, _ in tasks if "noisy_context" not in summaries[task]]
    if todo:  # also for runs finished before these analyses
        print(f"{', '.join(todo)}: noisy-context evaluation, beyond 8L and RePo's positions",
              flush=True)  # fmt: skip
        analyse_tasks({t: summaries[t] for t in todo}, out, args.samples, args.workers)
    sections, combined = [], {}
    for task, _ in tasks:
        summary = summaries[task]
        path = out / task / "results.json"
        if task in todo:
            atomic_write_json(path, summary)
        else:  # analysed earlier, perhaps before the base model was evaluated beyond 8L
            long = memory_lengths(out / task, task, summary, args.samples)
            if long != summary["memory_lengths"]:
                summary["memory_lengths"] = long
                atomic_write_json(path, summary)
        combined[task] = summary
        sections += task_section(task, summary)
    steps_of = {t: combined[t]["setup"]["plan"]["steps"] for t, _ in tasks}
    command = f"python benchmarks/reproduce.py --out {args.out} --seeds {args.seeds} --tasks " + (
        " ".join(f"{t}:{s}" for t, s in steps_of.items())
    )
    if args.methods != ",".join(METHODS):
        command += f" --methods {args.methods}"
    if args.reuse is not None:
        command += f" --reuse {args.reuse}"
    minutes = (sum(pool_seconds(combined).values())
               + sum(analysis_seconds(combined).values())) / 60  # fmt: skip
    earlier = any(s["setup"].get(k) for s in combined.values()
                  for k in ("resumed_runs", "reused_runs"))  # fmt: skip
    text = "\n".join([
        "# Small-scale reproduction (CPU)",
        "",
        f"Command: `{command}`",
        f"Wall time: {minutes:.0f} min in all (the tasks' times below)." if not earlier else
        f"Wall time: {minutes:.0f} min for the runs trained by this command; the tasks' times"
        " below name the runs trained earlier.",
        f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} "
        f"threads, torch {torch.__version__}; {args.workers} worker processes, one thread each.",
        "",
        *sections,
        *claims_section(combined),
    ])  # fmt: skip
    atomic_write_json(out / "results.json", combined)
    atomic_write_json(out / "claims.json", claims_report(combined)[1])
    atomic_write_text(out / "reproduce.md", text)
    print(text)


if __name__ == "__main__":
    main()
