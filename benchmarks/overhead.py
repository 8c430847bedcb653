"""RePo's cost: forward+backward step time of the same model with RoPE and with RePo.

Both models are built in one process with identical backbone weights; repetitions
alternate (RoPE, RePo, RePo, RoPE, ...) so that machine noise hits both alike. Prints
per-model medians, the spread of the per-round ratios (quartiles and range) and, as its
last line, the median of the per-round ratios:

    repo/rope step-time ratio: X.XXX

The paper reports under 1% overhead. Examples:

    python benchmarks/overhead.py                          # small, T=1024, CPU, fp32
    python benchmarks/overhead.py --rounds 40 --json benchmarks/results/overhead-cpu-small-1024.json
    python benchmarks/overhead.py --threads 1 --clock cpu  # CPU seconds: robust on a busy machine
    python benchmarks/overhead.py --preset 1b --seq-len 4096 --device cuda --dtype bfloat16
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from typing import Any

import torch
from timing import CLOCKS, alternate, format_spread

from longpos.config import preset
from longpos.model import LongposLM


def step(model: torch.nn.Module, ids: torch.Tensor, dtype: torch.dtype, device: str) -> None:
    with torch.autocast(device_type=device, dtype=dtype, enabled=dtype != torch.float32):
        logits = model(ids[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(), ids[:, 1:].reshape(-1)
        )
    loss.backward()
    model.zero_grad(set_to_none=True)


def timed(
    model: torch.nn.Module,
    ids: torch.Tensor,
    dtype: torch.dtype,
    device: str,
    clock: str = "wall",
) -> float:
    now = CLOCKS[clock]
    if device == "cuda":
        torch.cuda.synchronize()
    start = now()
    step(model, ids, dtype, device)
    if device == "cuda":
        torch.cuda.synchronize()
    return now() - start


def build_model(cfg: Any, device: str, seed: int = 0) -> LongposLM:
    """``LongposLM(cfg)`` initialised on ``device`` itself (a 1B shape builds in seconds on a
    GPU, minutes on its CPU); a CPU build moved there if that fails."""
    dev = torch.device(device)
    if dev.type != "cpu":
        try:
            with dev:
                return LongposLM(cfg, torch.Generator(device=dev).manual_seed(seed))
        except Exception:  # noqa: BLE001  (fall back to the CPU build)
            pass
    return LongposLM(cfg, torch.Generator().manual_seed(seed)).to(dev)


def build_pair(name: str, seq_len: int, device: str, **overrides: Any) -> dict[str, LongposLM]:
    """The RoPE and RePo models of preset ``name``, RePo's backbone copied from RoPE's."""
    models = {}
    for plan in ("rope", "repo"):
        cfg = preset(name, plan=plan, max_seq_len=seq_len, **overrides)
        models[plan] = build_model(cfg, device)
    models["repo"].load_state_dict(models["rope"].state_dict(), strict=False)
    return models


def peak_memory_gib(
    model: torch.nn.Module, ids: torch.Tensor, dtype: torch.dtype, device: str
) -> float | None:
    """Peak CUDA memory (GiB) of one training step of ``model`` alone; None off CUDA."""
    if device != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    step(model, ids, dtype, device)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / 2**30


def measure(
    preset_name: str = "small",
    seq_len: int = 1024,
    batch: int = 1,
    rounds: int = 12,
    warmup: int = 2,
    device: str = "cpu",
    dtype: str = "float32",
    clock: str = "wall",
    compile: bool = False,
    **overrides: Any,
) -> dict[str, Any]:
    """Time RoPE vs RePo (see the module docstring); returns the result dictionary."""
    torch_dtype = getattr(torch, dtype)
    models = build_pair(preset_name, seq_len, device, **overrides)
    gen = torch.Generator().manual_seed(1)
    vocab = models["rope"].config.vocab_size
    ids = torch.randint(0, vocab, (batch, seq_len + 1), generator=gen).to(device)
    runners: dict[str, torch.nn.Module] = dict(models)
    if compile:
        runners = {plan: torch.compile(m) for plan, m in models.items()}  # type: ignore[misc]
    start = time.perf_counter()
    run = alternate(
        {plan: (lambda m=m: timed(m, ids, torch_dtype, device, clock))
         for plan, m in runners.items()},
        rounds, warmup, baseline="rope",
    )  # fmt: skip
    elapsed = time.perf_counter() - start
    medians = run["medians"]
    assert isinstance(medians, dict)
    cfg = models["repo"].config
    extra = models["repo"].num_parameters() - models["rope"].num_parameters()
    ratios = run["ratios"]["repo"]  # type: ignore[index]
    times = run["time_spread"]
    assert isinstance(times, dict)
    result: dict[str, Any] = {
        "preset": preset_name,
        "plan_repo": cfg.layer_plan(),
        "seq_len": seq_len,
        "batch": batch,
        "device": device if device == "cpu" else torch.cuda.get_device_name(0),
        "dtype": dtype,
        "threads": torch.get_num_threads(),
        "clock": clock,
        "compile": compile,
        "rounds": rounds,
        "warmup": warmup,
        "median_rope_s": medians["rope"],
        "median_repo_s": medians["repo"],
        "ratio_of_medians": medians["repo"] / medians["rope"],
        "median_ratio": run["median_ratios"]["repo"],  # type: ignore[index]
        "ratio_spread": run["ratio_spread"]["repo"],  # type: ignore[index]
        "ratio_of_minima": times["repo"]["min"] / times["rope"]["min"],
        "ratio_of_first_quartiles": times["repo"]["q1"] / times["rope"]["q1"],
        "time_spread_s": times,
        "ratios": ratios,
        "times_s": run["times"],
        "extra_params": extra,
        "extra_params_share": extra / models["rope"].num_parameters(),
        "elapsed_s": elapsed,
        "torch": torch.__version__,
    }
    if device == "cuda":
        result["peak_memory_gib"] = {
            plan: peak_memory_gib(m, ids, torch_dtype, device) for plan, m in runners.items()
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--clock", default="wall", choices=sorted(CLOCKS))
    parser.add_argument("--compile", action="store_true", help="torch.compile both models")
    parser.add_argument("--json", default=None, help="also write the measurements here")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    result = measure(
        args.preset, args.seq_len, args.batch, args.rounds, args.warmup, args.device,
        args.dtype, args.clock, args.compile,
    )  # fmt: skip
    result["command"] = "python " + " ".join(sys.argv)
    result["date"] = datetime.date.today().isoformat()
    if load_before is not None:
        result["load_average_before"] = list(load_before)
        result["load_average_after"] = list(os.getloadavg())
    print(json.dumps({k: v for k, v in result.items() if k not in ("ratios", "times_s")}, indent=2))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=2)
    print(f"per-round ratios over {args.rounds} rounds: {format_spread(result['ratio_spread'])}")
    print(
        f"ratio of minimum step times {result['ratio_of_minima']:.3f}, of first quartiles "
        f"{result['ratio_of_first_quartiles']:.3f}"
    )
    print(f"repo/rope step-time ratio: {result['median_ratio']:.3f}")


if __name__ == "__main__":
    main()
