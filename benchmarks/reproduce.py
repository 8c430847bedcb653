"""Small-scale reproduction: the demo's comparison with several seeds, more lengths and tasks.

Runs ``longpos demo``'s pipeline (same models and budget rules) with ``--seeds`` seeds per
method (at least 3), a longer training budget and evaluation at 1x, 2x, 4x and 8x the
training length, on the demo's retrieval task (``mqar``) and on the token-level
structured-data tasks (``table_tokens``: a linearised table; ``graph_tokens``: a linearised
edge list), then writes a Markdown table per task with the mean and the spread (min..max
over seeds) per cell; each task's demo files go to ``OUT/<task>/``:

    python benchmarks/reproduce.py --out benchmarks/results/reproduce-cpu --seeds 3 \\
        --tasks mqar:3000 table_tokens:2000 graph_tokens:2000

``TASK:STEPS`` sets a task's training steps (default: the demo's 2,000 x 2). The text
versions of the graph and table tasks (``graph_*``, ``table_*``) are for converted Hugging
Face models (``longpos eval``); tiny symbolic models read the token-level ones.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
from pathlib import Path

import torch

from longpos.demo import ALL_METHODS, DEMO_TASKS, METHODS, DemoArgs, DemoPlan, run_demo
from longpos.io import atomic_write_json, atomic_write_text


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
        cells = []
        for n in lengths:
            per_seed = [100 * v for v in row[str(n)]["per_seed"]]
            mean = statistics.mean(per_seed)
            cells.append(f"{mean:.1f} ({min(per_seed):.0f}..{max(per_seed):.0f})")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_task(text: str, default_steps: int) -> tuple[str, int]:
    name, _, steps = text.partition(":")
    if name not in DEMO_TASKS:
        raise argparse.ArgumentTypeError(f"unknown task {name!r}; allowed: {', '.join(DEMO_TASKS)}")
    if steps and (not steps.isdigit() or int(steps) < 1):
        raise argparse.ArgumentTypeError(f"steps in {text!r} must be a positive integer")
    return name, int(steps) if steps else default_steps


def task_section(task: str, summary: dict) -> list[str]:
    setup = summary["setup"]
    plan = setup["plan"]
    steps = plan["steps"]
    chance = summary["chance"]
    return [
        f"## `{task}`",
        "",
        f"Options `{json.dumps(setup['task_options'])}`; {steps} steps x {plan['batch_size']}"
        f" x {plan['length']} tokens per method and seed; {setup['wall_seconds']} s wall.",
        "",
        "Accuracy (%) of greedy answers, mean over seeds (min..max):",
        "",
        table(summary),
        "",
        f"Chance: {100 * chance['uniform_value']:.1f}% (random value), "
        f"{100 * chance['copy_any_needle']:.1f}% (copy some record's value).",
        "",
    ]


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
    out = Path(args.out)
    sections, combined = [], {}
    for task, steps in tasks:
        if args.report_only:
            path = out / task / "results.json"
            if not path.exists():
                parser.error(f"--report-only: {path} is missing; run {task} first")
            summary = json.loads(path.read_text())
        else:
            plan = DemoPlan(samples=args.samples, length_multipliers=(1, 2, 4, 8), task=task,
                            steps=steps)  # fmt: skip
            summary = run_demo(DemoArgs(out=out / task, seeds=args.seeds, workers=args.workers,
                                        methods=args.methods, plan=plan))  # fmt: skip
        combined[task] = summary
        sections += task_section(task, summary)
    steps_of = {t: combined[t]["setup"]["plan"]["steps"] for t, _ in tasks}
    command = f"python benchmarks/reproduce.py --out {args.out} --seeds {args.seeds} --tasks " + (
        " ".join(f"{t}:{s}" for t, s in steps_of.items())
    )
    if args.methods != ",".join(METHODS):
        command += f" --methods {args.methods}"
    text = "\n".join([
        "# Small-scale reproduction (CPU)",
        "",
        f"Command: `{command}`",
        f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} "
        f"threads, torch {torch.__version__}; {args.workers} worker processes, one thread each.",
        "",
        *sections,
    ])  # fmt: skip
    atomic_write_json(out / "results.json", combined)
    atomic_write_text(out / "reproduce.md", text)
    print(text)


if __name__ == "__main__":
    main()
