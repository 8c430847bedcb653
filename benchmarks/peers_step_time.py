"""Step time of every method against RoPE, measured side by side in one run.

The same model shape with each plan (forward + backward of a language-model loss), timed in
rotating order every round (``benchmarks/timing.py``); prints each method's median per-round
ratio to RoPE with its spread. The materialising peers (CoPE, FIRE, stick-breaking: O(T^2)
memory in plain PyTorch) are expected to be slower; ALiBi pays a float mask instead of the
fused causal path.

    python benchmarks/peers_step_time.py                      # the demo shape, T = 256
    python benchmarks/peers_step_time.py --preset small --seq 1024 --rounds 9
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from overhead import timed  # noqa: E402
from timing import alternate  # noqa: E402

from longpos.config import ModelConfig, preset  # noqa: E402
from longpos.model import LongposLM  # noqa: E402

PLANS = (
    "rope", "nope", "r2n1", "repo", "xpos", "alibi", "fire", "pope", "cope", "fox", "stickbreaking",
    "nope_every_2_temp",
)  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--preset", default=None, help="a model preset (default: the demo's shape)")
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--plans", nargs="*", default=list(PLANS))
    p.add_argument("--json", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if "rope" not in args.plans:
        args.plans = ["rope", *args.plans]
    models = {}
    for plan in args.plans:
        if args.preset:
            cfg = preset(args.preset, plan=plan)
        else:  # the demo's model: 3 layers, width 64, 4 heads
            cfg = ModelConfig(vocab_size=80, d_model=64, n_layers=3, n_heads=4, plan=plan,
                              max_seq_len=64)  # fmt: skip
        models[plan] = LongposLM(cfg, torch.Generator().manual_seed(0))
    vocab = next(iter(models.values())).config.vocab_size
    ids = torch.randint(0, vocab, (args.batch, args.seq + 1), generator=torch.Generator())
    steps = {
        plan: (lambda m=model: timed(m, ids, torch.float32, "cpu"))
        for plan, model in models.items()
    }
    result = alternate(steps, args.rounds, args.warmup, baseline="rope")
    print(f"shape: {args.preset or 'demo (3 layers, d = 64)'} batch={args.batch} T={args.seq} "
          f"rounds={args.rounds} threads={args.threads}; ratio = step time / RoPE's")  # fmt: skip
    print(f"{'method':>18} {'median s':>9} {'ratio':>7}  spread (min..max)")
    rows = {}
    for plan in args.plans:
        seconds = result["medians"][plan]
        if plan == "rope":
            print(f"{plan:>18} {seconds:9.3f} {1.0:7.3f}")
            rows[plan] = {"median_s": seconds, "ratio": 1.0}
            continue
        ratio = result["median_ratios"][plan]
        spread = result["ratio_spread"][plan]
        print(f"{plan:>18} {seconds:9.3f} {ratio:7.3f}  {spread['min']:.3f}..{spread['max']:.3f}")
        rows[plan] = {"median_s": seconds, "ratio": ratio, "spread": spread}
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "methods": rows}, indent=2))


if __name__ == "__main__":
    main()
