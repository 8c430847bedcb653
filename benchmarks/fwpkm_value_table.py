"""FwPKM's in-place value table against plain autograd ops, side by side in one run.

The FwPKM layer reads and writes its fast value table through
``longpos.memory.value_table.ValueTable`` (one buffer per call, written in place, a sparse
backward). ``longpos.memory.naive.PlainValueTable`` is the same maths with plain autograd ops
(a new table per write, dense gradients): the code before the table, and bit-for-bit the same
outputs and gradients (``tests/memory/test_memory_fwpkm_value_table.py``). This benchmark
times a training step (forward, cross-entropy, backward; no optimiser step, so both time the
same weights) of one model with either table, alternating every round
(``benchmarks/timing.py``), and prints the median step times and the median per-round ratio
with its spread, for two shapes:

* ``demo``: the reproduction's FwPKM model (``longpos.demo``'s ``fwpkm`` on ``mqar``: 3 layers,
  width 64, FwPKM in layer 1 with 32 x 32 slots of width 32, chunk 16; batch 32 x 64 tokens);
* ``layer``: that model's FwPKM layer alone, on random inputs of the same batch;
* ``tiny``: ``benchmarks/fwpkm.py``'s shape (preset ``tiny``, FwPKM 64 x 64 slots of width 64,
  chunk 64; batch 8 x 512 tokens).

    python benchmarks/fwpkm_value_table.py --out benchmarks/results/fwpkm-value-table-cpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from timing import alternate, format_spread  # noqa: E402

import longpos.memory.fwpkm as fwpkm_module
from longpos.config import preset
from longpos.demo import DemoPlan, model_config, vocab_size
from longpos.memory import FwPKMLayer
from longpos.memory.naive import PlainValueTable
from longpos.memory.value_table import ValueTable
from longpos.model import LongposLM

TABLES: dict[str, type] = {"plain": PlainValueTable, "in_place": ValueTable}


Loss = Callable[[], torch.Tensor]


def model_loss(model: LongposLM, vocab: int, batch: int, length: int) -> tuple[nn.Module, Loss]:
    ids = torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(1))

    def loss() -> torch.Tensor:
        logits = model(ids).logits
        return F.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())

    return model, loss


def demo_shape() -> tuple[nn.Module, Loss, str]:
    plan = DemoPlan(task="mqar")
    vocab = vocab_size(plan)
    model = LongposLM(model_config(plan, "fwpkm", vocab), torch.Generator().manual_seed(0))
    return (*model_loss(model, vocab, plan.batch_size, plan.length), "batch 32 x 64")


def layer_shape() -> tuple[nn.Module, Loss, str]:
    plan = DemoPlan(task="mqar")
    cfg = model_config(plan, "fwpkm", vocab_size(plan)).memory.fwpkm.for_width(plan.d_model)
    layer = FwPKMLayer(cfg, generator=torch.Generator().manual_seed(0))
    x = torch.randn(plan.batch_size, plan.length, plan.d_model,
                    generator=torch.Generator().manual_seed(1))  # fmt: skip
    weights = torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    return layer, lambda: (layer(x)[0] * weights).sum(), "batch 32 x 64, the layer alone"


def tiny_shape() -> tuple[nn.Module, Loss, str]:
    memory = dict(kind="fwpkm", layers="1",
                  fwpkm=dict(d_k=64, d_v=64, sqrt_n=64, heads=1, topk=8, chunk=64))  # fmt: skip
    cfg = preset("tiny", max_seq_len=512, memory=memory)
    model = LongposLM(cfg, torch.Generator().manual_seed(0))
    return (*model_loss(model, cfg.vocab_size, 8, 512), "batch 8 x 512")


SHAPES: dict[str, Callable[[], tuple[nn.Module, Loss, str]]] = {
    "demo": demo_shape,
    "layer": layer_shape,
    "tiny": tiny_shape,
}


def step_with(table: type, module: nn.Module, loss: Loss) -> Callable[[], float]:
    def step() -> float:
        fwpkm_module.ValueTable = table  # type: ignore[misc]
        try:
            start = time.perf_counter()
            loss().backward()
            seconds = time.perf_counter() - start
        finally:
            fwpkm_module.ValueTable = ValueTable  # type: ignore[misc]
        module.zero_grad(set_to_none=True)
        return seconds

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default="demo,layer,tiny",
                        help="comma-separated: " + ", ".join(SHAPES))  # fmt: skip
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args()
    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown or not shapes:
        parser.error(f"--shapes: unknown {', '.join(unknown) or '(none)'}; allowed: "
                     + ", ".join(SHAPES))  # fmt: skip
    if args.rounds < 1 or args.warmup < 0 or args.threads < 1:
        parser.error("--rounds and --threads must be >= 1, --warmup >= 0")
    torch.set_num_threads(args.threads)
    results: dict[str, Any] = {
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__},"
        f" {args.threads} thread(s)",
        "rounds": args.rounds,
        "shapes": {},
    }
    for shape in shapes:
        module, loss, what = SHAPES[shape]()
        steps = {name: step_with(table, module, loss) for name, table in TABLES.items()}
        timed = alternate(steps, args.rounds, args.warmup, baseline="plain")
        results["shapes"][shape] = {
            "what": what,
            "median_ms": {k: round(1000 * v, 2) for k, v in timed["medians"].items()},  # type: ignore[attr-defined]
            "ratio_in_place_to_plain": timed["ratio_spread"]["in_place"],  # type: ignore[index]
        }
        med = results["shapes"][shape]["median_ms"]
        print(f"{shape} ({what}): plain {med['plain']} ms, in place "
              f"{med['in_place']} ms per step; ratio in place / plain "
              f"{format_spread(timed['ratio_spread']['in_place'])}", flush=True)  # type: ignore[index]  # fmt: skip
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
