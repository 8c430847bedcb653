"""FwPKM cost: training throughput with and without memory layers, and streaming memory.

Part 1 builds one small decoder (token embedding, pre-norm blocks of causal SDPA attention and
a GELU MLP, tied output) three times with identical backbone weights: without memory, with an
FwPKM sub-block before the mixer of layer 1, and with FwPKM at layer 1 plus a static PKM
replacing layer 2's MLP (the paper's layouts, scaled down per spec/fwpkm.md §4.3). Training
steps (forward + cross-entropy + backward) alternate between the models so machine noise hits
all alike; it prints medians of tokens/s and the median per-round ratio to the baseline.

Part 2 streams one FwPKM layer over 1x, 4x and 16x the training length in pieces of
``--piece`` tokens without gradients (inference) and reports the peak memory: on CUDA
``torch.cuda.max_memory_allocated``; on CPU the peak resident set size of a fresh child
process per length (``ru_maxrss``), next to the exact size of the fast-weight state. The memory
must not grow with the stream length.

    python benchmarks/fwpkm.py                         # CPU, T=512, batch 8
    python benchmarks/fwpkm.py --device cuda --batch 16 --rounds 10
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import resource
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from longpos.memory import FwPKMConfig, FwPKMLayer, FwPKMState, PKMConfig, StaticPKM

# ------------------------------------------------------------------------------ tiny model


class Block(nn.Module):
    def __init__(self, d: int, heads: int, fwpkm: FwPKMConfig | None, pkm: PKMConfig | None):
        super().__init__()
        self.heads = heads
        self.n1, self.n2 = nn.RMSNorm(d), nn.RMSNorm(d)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.proj = nn.Linear(d, d, bias=False)
        self.mlp: nn.Module = (
            StaticPKM(pkm)
            if pkm is not None
            else nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
        )
        self.mem = FwPKMLayer(fwpkm) if fwpkm is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mem is not None:  # FwPKM: its own residual sub-block before the mixer
            y, _ = self.mem(x)
            x = x + y
        B, T, D = x.shape
        q, k, v = self.qkv(self.n1(x)).view(B, T, 3, self.heads, D // self.heads).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, H, T, D/H)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, D/H)
        x = x + self.proj(a.transpose(1, 2).reshape(B, T, D))
        return x + self.mlp(self.n2(x))


class TinyLM(nn.Module):
    def __init__(self, vocab: int, d: int, layers: int, heads: int, memory: str):
        super().__init__()
        fw = FwPKMConfig(d_model=d, d_k=64, d_v=64, sqrt_n=64, heads=1, topk=8, chunk=64)
        pk = PKMConfig(d_model=d, d_k=64, sqrt_n=64, heads=4, topk=16)
        self.emb = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList(
            Block(
                d,
                heads,
                fw if memory != "none" and i == 1 else None,
                pk if memory == "fwpkm+pkm" and i == 2 else None,
            )
            for i in range(layers)
        )
        self.norm = nn.RMSNorm(d)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.emb(ids)
        for b in self.blocks:
            x = b(x)
        return self.norm(x) @ self.emb.weight.T  # (B, T, vocab)


def train_step(model: TinyLM, ids: torch.Tensor, device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    logits = model(ids[:, :-1])
    loss = F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())
    loss.backward()
    model.zero_grad(set_to_none=True)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


# ------------------------------------------------------------------------------ streaming


def state_bytes(state: FwPKMState) -> int:
    return sum(
        t.numel() * t.element_size()
        for t in (state.keys, state.values, state.pend_q, state.pend_v, state.pend_g)
    )


def stream(n_tokens: int, piece: int, d: int, device: str) -> dict[str, float]:
    """Stream one FwPKM layer over ``n_tokens`` in pieces; return memory and speed."""
    torch.manual_seed(0)  # benchmark script, not library code
    cfg = FwPKMConfig(d_model=d, d_k=64, d_v=64, sqrt_n=64, heads=1, topk=8, chunk=64)
    layer = FwPKMLayer(cfg).to(device).eval()
    state = layer.init_state(1, device)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    max_state = 0
    with torch.no_grad():
        for _ in range(math.ceil(n_tokens / piece)):
            x = torch.randn(1, piece, d, device=device)
            _, state = layer(x, state)
            max_state = max(max_state, state_bytes(state))
    if device == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    out = {
        "tokens": float(n_tokens),
        "tokens_per_s": n_tokens / dt,
        "state_mib": max_state / 2**20,
        "writes": float(state.n_writes),
    }
    if device == "cuda":
        out["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    else:  # ru_maxrss is KiB on Linux
        out["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def _child(args: tuple[int, int, int, str], queue: mp.Queue) -> None:
    queue.put(stream(*args))


def stream_isolated(n_tokens: int, piece: int, d: int, device: str) -> dict[str, float]:
    if device == "cuda":
        return stream(n_tokens, piece, d, device)
    ctx = mp.get_context("spawn")
    queue: mp.Queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=((n_tokens, piece, d, device), queue))
    proc.start()
    res = queue.get()
    proc.join()
    return res


# ------------------------------------------------------------------------------ main


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--piece", type=int, default=16, help="tokens per streaming call")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--skip-train", action="store_true")
    p.add_argument("--json", default=None, help="also write the measurements here")
    args = p.parse_args()
    dev = args.device
    results: dict[str, object] = {"args": vars(args)}

    if not args.skip_train:
        variants = ["none", "fwpkm", "fwpkm+pkm"]
        models = {}
        for v in variants:
            torch.manual_seed(0)  # identical backbone init across variants (script only)
            models[v] = TinyLM(512, args.d_model, args.layers, 4, v).to(dev)
        gen = torch.Generator().manual_seed(1)
        ids = torch.randint(0, 512, (args.batch, args.seq_len + 1), generator=gen).to(dev)
        times: dict[str, list[float]] = {v: [] for v in variants}
        for r in range(args.warmup + args.rounds):
            order = variants if r % 2 == 0 else variants[::-1]
            for v in order:
                t = train_step(models[v], ids, dev)
                if r >= args.warmup:
                    times[v].append(t)
        tok = args.batch * args.seq_len
        print(f"training, {dev}, batch {args.batch} x T {args.seq_len}, {args.rounds} rounds")
        print(f"{'model':<12}{'median s/step':>15}{'tokens/s':>12}{'ratio vs none':>15}")
        train_res = {}
        for v in variants:
            med = statistics.median(times[v])
            ratio = statistics.median([a / b for a, b in zip(times["none"], times[v], strict=True)])
            train_res[v] = {"median_s": med, "tokens_per_s": tok / med, "throughput_ratio": ratio}
            print(f"{v:<12}{med:>15.4f}{tok / med:>12.0f}{ratio:>15.3f}")
        results["train"] = train_res

    print(f"\nstreaming inference, one FwPKM layer, pieces of {args.piece} tokens")
    print(f"{'length':>8}{'x train':>9}{'peak MiB':>10}{'state MiB':>11}{'tokens/s':>10}")
    stream_res = []
    for mult in (1, 4, 16):
        r = stream_isolated(mult * args.seq_len, args.piece, args.d_model, dev)
        r["x_train"] = float(mult)
        stream_res.append(r)
        print(
            f"{int(r['tokens']):>8}{mult:>9}{r['peak_mib']:>10.1f}{r['state_mib']:>11.2f}"
            f"{r['tokens_per_s']:>10.0f}"
        )
    results["stream"] = stream_res
    print(f"peak memory ratio 16x/1x: {stream_res[2]['peak_mib'] / stream_res[0]['peak_mib']:.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
