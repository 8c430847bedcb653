"""Evaluation throughput: samples/s of batched vs one-by-one greedy decoding, side by side.

The demo's model shape (``longpos.demo.DemoPlan``: 3 layers, width 64, MQAR at L = 64) with a
random init (throughput does not depend on the weights), evaluated with
``longpos.eval.runner.run_eval`` on the same samples at batch size 1 and ``--batch``, in
alternating rounds (``benchmarks/timing.py``); prints samples/s of each, the median per-round
speed-up and its spread, and checks that both give the same predictions.

    python benchmarks/eval_throughput.py                 # CPU, batch 16 vs 1
    python benchmarks/eval_throughput.py --device cuda --preset 1b --length 4096 --samples 32
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from timing import alternate  # noqa: E402

from longpos.config import ModelConfig, preset  # noqa: E402
from longpos.demo import MQAR_OPTIONS, DemoPlan  # noqa: E402
from longpos.eval.adapter import LongposEvalModel  # noqa: E402
from longpos.eval.runner import run_eval  # noqa: E402
from longpos.model import LongposLM  # noqa: E402
from longpos.tasks.symbolic import vocab_for  # noqa: E402


def build(args: argparse.Namespace) -> LongposEvalModel:
    plan = DemoPlan()
    vocab = vocab_for("mqar", **MQAR_OPTIONS).vocab_size
    if args.preset:
        cfg = preset(args.preset, vocab_size=max(vocab, 512), plan=args.plan)
    else:
        cfg = ModelConfig(
            vocab_size=vocab, d_model=plan.d_model, n_layers=plan.n_layers, n_heads=plan.n_heads,
            max_seq_len=plan.length, plan=args.plan,
        )  # fmt: skip
    model = LongposLM(cfg, torch.Generator().manual_seed(0))
    if args.device != "cpu":
        model = model.to(args.device)
    return LongposEvalModel(model, None, args.device)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--plan", default="repo")
    p.add_argument("--task", default="mqar", help="a token-level task (mqar: 1-token answers)")
    p.add_argument("--preset", default=None, help="a model preset instead of the demo shape")
    p.add_argument("--length", type=int, default=64, help="evaluation length (demo L = 64)")
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (CPU)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", default=None, help="also write the results to this file")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = build(args)
    work = Path(tempfile.mkdtemp(prefix="eval-throughput-"))
    predictions: dict[int, list] = {}

    def timed(batch: int):
        def run() -> float:
            start = time.perf_counter()
            run_eval(
                model, [args.task], [args.length], args.samples, work / f"b{batch}", seed=0,
                options=MQAR_OPTIONS, progress=False, batch_size=batch,
            )  # fmt: skip
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            seconds = time.perf_counter() - start
            rows = (work / f"b{batch}" / "samples.jsonl").read_text().splitlines()
            predictions[batch] = [json.loads(r)["prediction_ids"] for r in rows]
            return seconds

        return run

    result = alternate(
        {"batch 1": timed(1), f"batch {args.batch}": timed(args.batch)},
        args.rounds, args.warmup, baseline=f"batch {args.batch}",
    )  # fmt: skip
    speedup = result["median_ratios"]["batch 1"]  # t(batch 1) / t(batch N)
    spread = result["ratio_spread"]["batch 1"]
    same = predictions[1] == predictions[args.batch]
    medians = result["medians"]
    print(f"model: {args.preset or 'demo shape'} plan={args.plan} task={args.task} "
          f"device={args.device} "
          f"length={args.length} samples={args.samples} rounds={args.rounds} "
          f"threads={args.threads}")  # fmt: skip
    for name, seconds in medians.items():
        print(f"{name:>9}: {args.samples / seconds:8.1f} samples/s (median {seconds:.3f} s)")
    print(f"speed-up batch {args.batch} vs 1: {speedup:.2f}x "
          f"(per-round spread {spread['min']:.2f}..{spread['max']:.2f}); "
          f"identical predictions: {same}")  # fmt: skip
    if args.json:
        out = {"args": vars(args), "medians_s": medians, "speedup_median": speedup,
               "speedup_spread": spread, "identical_predictions": same}  # fmt: skip
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
