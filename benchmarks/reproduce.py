"""Small-scale reproduction: the demo's comparison with several seeds and more lengths.

Runs ``longpos demo``'s pipeline (same task, models and budget rules) with ``--seeds``
seeds per method (at least 3), a longer training budget and evaluation at 1x, 2x, 4x and
8x the training length, then writes a Markdown table with the mean and the spread
(min..max over seeds) per cell, next to the demo's own files:

    python benchmarks/reproduce.py --out benchmarks/results/reproduce-cpu --seeds 3

The structured-data tasks (graphs, tables) exist only as text, which tiny symbolic
models cannot read, so they are evaluated only on converted Hugging Face models
(``longpos eval``), not here.
"""

from __future__ import annotations

import argparse
import platform
import statistics
from pathlib import Path

import torch

from longpos.demo import DemoArgs, DemoPlan, run_demo
from longpos.io import atomic_write_text


def table(summary: dict) -> str:
    lengths = summary["lengths"]
    base = summary["train_length"]
    lines = [
        "| method | " + " | ".join(f"{n} ({n // base}L)" for n in lengths) + " |",
        "|---" * (len(lengths) + 1) + "|",
    ]
    for method, row in summary["accuracy"].items():
        cells = []
        for n in lengths:
            per_seed = [100 * v for v in row[str(n)]["per_seed"]]
            mean = statistics.mean(per_seed)
            cells.append(f"{mean:.1f} ({min(per_seed):.0f}..{max(per_seed):.0f})")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="benchmarks/results/reproduce-cpu")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=None, help="default: the demo's x 2")
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if args.seeds < 3:
        parser.error("--seeds must be >= 3: fewer cannot show seed spread")
    plan = DemoPlan(samples=args.samples, length_multipliers=(1, 2, 4, 8))
    plan.steps = args.steps or 2 * plan.steps
    summary = run_demo(DemoArgs(out=Path(args.out), seeds=args.seeds, workers=args.workers,
                                plan=plan))  # fmt: skip
    setup = summary["setup"]
    text = "\n".join([
        "# Small-scale reproduction (CPU)",
        "",
        f"Command: `python benchmarks/reproduce.py --out {args.out} --seeds {args.seeds}"
        + (f" --steps {args.steps}" if args.steps else "") + "`",
        f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} "
        f"threads, torch {torch.__version__}; {setup['wall_seconds']} s wall.",
        f"Task: token-level `{setup['task']}` {setup['task_options']}; {plan.steps} steps x "
        f"{plan.batch_size} x {plan.length} tokens per method and seed.",
        "",
        "Accuracy (%) of greedy answers, mean over seeds (min..max):",
        "",
        table(summary),
        "",
        f"Chance: {100 * summary['chance']['uniform_value']:.1f}% (random value), "
        f"{100 * summary['chance']['copy_any_needle']:.1f}% (copy some needle's value).",
        "",
    ])  # fmt: skip
    atomic_write_text(Path(args.out) / "reproduce.md", text)
    print(text)


if __name__ == "__main__":
    main()
