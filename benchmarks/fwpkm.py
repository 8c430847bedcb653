"""FwPKM cost in the reference model: training throughput and streaming-inference memory.

Part 1 builds ``longpos.model.LongposLM`` (the ``tiny`` preset shape unless overridden) three
times with the same seed: without memory, with an FwPKM sub-block before the attention of
layer 1, and with FwPKM at layer 1 plus a static PKM replacing layer 2's MLP (the paper's two
layouts scaled down, spec/fwpkm.md §2.7 and §4.3). Training steps (forward, cross-entropy,
backward, AdamW step) alternate between the models in every round, in rotating order, so
machine noise hits all alike; it prints the median step time, tokens/s and the median of the
per-round throughput ratios to the model without memory (the paper reports about 0.35).

Part 2 streams each model (without / with FwPKM) through its KV cache over 1x, 4x and 16x the
training length, in pieces of ``--piece`` tokens, without gradients, in a fresh child process
per (model, length), and reports the peak memory: the peak resident set size (CPU,
``VmHWM``) or ``torch.cuda.max_memory_allocated`` (CUDA), next to the exact bytes of the
KV cache and of the FwPKM states at the end. The KV cache grows with the length (full
attention); the FwPKM state must not, so "with FwPKM minus without" should stay flat.

    python benchmarks/fwpkm.py                                  # CPU: T=512, batch 8, 1 thread
    python benchmarks/fwpkm.py --device cuda --batch 16 --rounds 20
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import platform
import resource
import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F

from longpos.config import preset
from longpos.model import KVCache, LongposLM

FWPKM = dict(d_k=64, d_v=64, sqrt_n=64, heads=1, topk=8)  # spec §4.3 CPU scale (+ chunk)
PKM = dict(d_k=64, sqrt_n=64, heads=4, topk=16)
VARIANTS = ("none", "fwpkm", "fwpkm+pkm")


def memory_options(variant: str, chunk: int) -> dict[str, Any]:
    fw = dict(FWPKM, chunk=chunk)
    if variant == "none":
        return {}
    if variant == "fwpkm":
        return dict(kind="fwpkm", layers="1", fwpkm=fw)
    return dict(kind="fwpkm+pkm", layers="1", pkm_layers="2", fwpkm=fw, pkm=PKM)


def build(variant: str, args: argparse.Namespace) -> LongposLM:
    overrides: dict[str, Any] = dict(max_seq_len=args.seq_len, d_model=args.d_model)
    overrides["n_layers"] = args.layers
    mem = memory_options(variant, args.chunk)
    if mem:
        overrides["memory"] = mem
    cfg = preset(args.preset, **overrides)
    return LongposLM(cfg, torch.Generator().manual_seed(0))


# ------------------------------------------------------------------------------ training


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def train_step(model: LongposLM, opt: torch.optim.Optimizer, ids: torch.Tensor, dev: str) -> float:
    sync(dev)
    t0 = time.perf_counter()
    logits = model(ids[:, :-1]).logits
    loss = F.cross_entropy(logits.flatten(0, 1).float(), ids[:, 1:].flatten())
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    sync(dev)
    return time.perf_counter() - t0


def bench_training(args: argparse.Namespace) -> dict[str, Any]:
    dev = args.device
    models = {v: build(v, args).to(dev).train() for v in VARIANTS}
    opts = {v: torch.optim.AdamW(m.parameters(), lr=1e-4) for v, m in models.items()}
    vocab = models["none"].config.vocab_size
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, vocab, (args.batch, args.seq_len + 1), generator=gen).to(dev)
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for r in range(args.warmup + args.rounds):
        order = VARIANTS[r % 3 :] + VARIANTS[: r % 3]
        for v in order:
            t = train_step(models[v], opts[v], ids, dev)
            if r >= args.warmup:
                times[v].append(t)
    tok = args.batch * args.seq_len
    print(
        f"training: {dev}, batch {args.batch} x T {args.seq_len}, {args.rounds} rounds "
        f"(+{args.warmup} warm-up), FwPKM chunk {args.chunk}"
    )
    print(f"{'model':<12}{'params':>10}{'median s/step':>15}{'tokens/s':>11}{'ratio vs none':>15}")
    out = {}
    for v in VARIANTS:
        med = statistics.median(times[v])
        ratios = [a / b for a, b in zip(times["none"], times[v], strict=True)]
        ratio = statistics.median(ratios)
        n_par = models[v].num_parameters()
        out[v] = dict(median_s=med, tokens_per_s=tok / med, throughput_ratio=ratio, params=n_par)
        out[v]["ratio_min_max"] = [min(ratios), max(ratios)]
        print(f"{v:<12}{n_par:>10}{med:>15.4f}{tok / med:>11.0f}{ratio:>15.3f}")
    return out


# ------------------------------------------------------------------------------ streaming


def cache_bytes(cache: KVCache) -> tuple[int, int]:
    """(KV bytes, FwPKM state bytes) held by the cache."""
    kv = sum(t.numel() * t.element_size() for t in cache.keys + cache.values if t is not None)
    mem = 0
    for s in cache.memory:
        if s is not None:
            for t in (s.keys, s.values, s.pend_q, s.pend_v, s.pend_g, s.access_counts):
                mem += t.numel() * t.element_size()
    return kv, mem


def peak_rss_mib() -> float:
    """Peak resident set size of this process: ``VmHWM`` (reset by exec, unlike ``ru_maxrss``,
    which a spawned child inherits from its parent on Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def stream(variant: str, n_tokens: int, args: argparse.Namespace) -> dict[str, float]:
    dev = args.device
    model = build(variant, args).to(dev).eval()
    vocab = model.config.vocab_size
    gen = torch.Generator().manual_seed(2)
    cache = model.new_cache()
    if dev.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    base_rss = peak_rss_mib()
    t0 = time.perf_counter()
    with torch.no_grad():
        for _ in range(math.ceil(n_tokens / args.piece)):
            x = torch.randint(0, vocab, (1, args.piece), generator=gen).to(dev)
            model(x, cache=cache)
    sync(dev)
    dt = time.perf_counter() - t0
    kv, mem = cache_bytes(cache)
    out = dict(tokens=float(cache.length), tokens_per_s=cache.length / dt)
    out.update(kv_mib=kv / 2**20, fwpkm_state_mib=mem / 2**20, rss_before_mib=base_rss)
    if dev.startswith("cuda"):
        out["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    else:
        out["peak_mib"] = peak_rss_mib()
    writes = [s.n_writes for s in cache.memory if s is not None]
    out["writes"] = float(writes[0]) if writes else 0.0
    return out


def _child(variant: str, n: int, args: argparse.Namespace, queue: mp.Queue) -> None:
    torch.set_num_threads(args.threads)
    queue.put(stream(variant, n, args))


def stream_isolated(variant: str, n: int, args: argparse.Namespace) -> dict[str, float]:
    if args.device.startswith("cuda"):
        return stream(variant, n, args)
    ctx = mp.get_context("spawn")
    queue: mp.Queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(variant, n, args, queue))
    proc.start()
    res = queue.get()
    proc.join()
    return res


def bench_streaming(args: argparse.Namespace) -> list[dict[str, float]]:
    print(f"\nstreaming inference through the KV cache, batch 1, pieces of {args.piece} tokens")
    head = f"{'model':<8}{'length':>8}{'x train':>8}{'peak MiB':>10}{'KV MiB':>9}"
    print(head + f"{'FwPKM MiB':>11}{'writes':>8}{'tokens/s':>10}")
    rows = []
    for mult in (1, 4, 16):
        for variant in ("none", "fwpkm"):
            r = stream_isolated(variant, mult * args.seq_len, args)
            r.update(x_train=float(mult))
            r["model"] = variant  # type: ignore[assignment]
            rows.append(r)
            print(
                f"{variant:<8}{int(r['tokens']):>8}{mult:>8}{r['peak_mib']:>10.1f}"
                f"{r['kv_mib']:>9.2f}{r['fwpkm_state_mib']:>11.2f}{int(r['writes']):>8}"
                f"{r['tokens_per_s']:>10.0f}"
            )
    peak = {(r["model"], r["x_train"]): r["peak_mib"] for r in rows}
    diffs = [peak[("fwpkm", m)] - peak[("none", m)] for m in (1.0, 4.0, 16.0)]
    print(
        "peak(with FwPKM) - peak(without) at 1x / 4x / 16x: "
        + " / ".join(f"{d:.1f}" for d in diffs)
        + " MiB"
    )
    for v in ("none", "fwpkm"):
        print(f"peak 16x / 1x, {v}: {peak[(v, 16.0)] / peak[(v, 1.0)]:.3f}")
    return rows


# ------------------------------------------------------------------------------ main


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--chunk", type=int, default=64, help="FwPKM write chunk C")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--piece", type=int, default=16, help="tokens per streaming call")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: on a shared CPU, multi-threaded small ops stall under load)",
    )
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--skip-train", action="store_true")
    p.add_argument("--skip-stream", action="store_true")
    p.add_argument("--json", default=None, help="also write the measurements here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {platform.machine()}, {os.cpu_count()} CPUs visible, "
        f"{torch.get_num_threads()} threads"
    )
    results: dict[str, Any] = {"args": vars(args), "torch": torch.__version__}
    if not args.skip_train:
        results["train"] = bench_training(args)
    if not args.skip_stream:
        results["stream"] = bench_streaming(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
