"""RePo step-time overhead on a transformers Llama: converted vs unconverted.

RePo (Li et al., arXiv 2512.14391) adds, per RePo layer, a d -> d/8 SwiGLU predictor and
per-head cos/sin tables computed from learned positions; the paper reports about +0.9%
FLOPs. This script builds one random Llama config twice with identical weights (stock,
and converted with ``longpos.hf.apply_longpos(model, "repo")``: RoPE in layers [0, L/3),
RePo above), then times forward + backward of the LM loss for both in one process,
alternating repetitions so machine noise hits both alike. It prints the median step
times, peak CUDA memory of each, and, as its last line, the median per-repetition ratio:

    repo/rope step-time ratio: X.XXX

    python benchmarks/hf_overhead.py                      # tiny, CPU, fp32
    python benchmarks/hf_overhead.py --preset 1b --device cuda   # hidden 2048, 16 layers,
                                                                  # 16/8 heads, bf16
"""

from __future__ import annotations

import argparse
import time

import torch
from timing import alternate
from transformers import LlamaConfig, LlamaForCausalLM

from longpos.hf import apply_longpos

PRESETS = {
    "tiny": dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=512,
    ),
    "small": dict(
        hidden_size=512,
        intermediate_size=1536,
        num_hidden_layers=8,
        num_attention_heads=8,
        num_key_value_heads=4,
        vocab_size=8192,
    ),
    "1b": dict(
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=16,
        num_key_value_heads=8,
        vocab_size=32_000,
        rope_parameters={"rope_type": "default", "rope_theta": 500_000.0},
    ),
}


def build(preset: str, attn: str, dtype: torch.dtype, device: str, seed: int):
    config = LlamaConfig(max_position_embeddings=131_072, **PRESETS[preset])
    config._attn_implementation = attn
    torch.manual_seed(seed)
    stock = LlamaForCausalLM(config).to(device=device, dtype=dtype)
    twin = LlamaForCausalLM(LlamaConfig(max_position_embeddings=131_072, **PRESETS[preset]))
    twin.config._attn_implementation = attn
    twin = twin.to(device=device, dtype=dtype)
    twin.load_state_dict(stock.state_dict())
    repo = apply_longpos(twin, "repo")
    return stock.train(), repo.train()


def step(model, ids: torch.Tensor, device: str) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    loss = model(input_ids=ids, labels=ids, use_cache=False).loss
    loss.backward()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    model.zero_grad(set_to_none=True)
    return elapsed


def peak_memory(model, ids: torch.Tensor, device: str) -> float | None:
    if not device.startswith("cuda"):
        return None
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    step(model, ids, device)
    return torch.cuda.max_memory_allocated() / 2**30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=["auto", "float32", "bfloat16"], default="auto")
    parser.add_argument("--attn", choices=["sdpa", "eager", "flash_attention_2"], default="sdpa")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--seq", type=int, default=None)
    parser.add_argument("--reps", type=int, default=None, help="timed repetitions per model")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()

    big = args.preset == "1b"
    dtype_name = args.dtype
    if dtype_name == "auto":
        dtype_name = "bfloat16" if args.device.startswith("cuda") else "float32"
    dtype = getattr(torch, dtype_name)
    batch = args.batch or (4 if big else 2)
    seq = args.seq or (4096 if big else 256)
    reps = args.reps or (10 if big else 20)

    stock, repo = build(args.preset, args.attn, dtype, args.device, args.seed)
    n_stock = sum(p.numel() for p in stock.parameters())
    n_repo = sum(p.numel() for p in repo.parameters())
    g = torch.Generator().manual_seed(args.seed)
    ids = torch.randint(0, stock.config.vocab_size, (batch, seq), generator=g).to(args.device)

    run = alternate(
        {"rope": lambda: step(stock, ids, args.device),
         "repo": lambda: step(repo, ids, args.device)},
        reps, args.warmup, baseline="rope",
    )  # fmt: skip

    result = {
        "preset": args.preset,
        "device": args.device,
        "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
        "dtype": dtype_name,
        "attn": args.attn,
        "batch": batch,
        "seq": seq,
        "reps": reps,
        "params_rope": n_stock,
        "params_repo": n_repo,
        "param_overhead": n_repo / n_stock - 1,
        "median_step_s_rope": run["medians"]["rope"],
        "median_step_s_repo": run["medians"]["repo"],
        "peak_gib_rope": peak_memory(stock, ids, args.device),
        "peak_gib_repo": peak_memory(repo, ids, args.device),
        "median_ratio": run["median_ratios"]["repo"],
    }
    print(
        f"preset={args.preset} device={result['device_name']} dtype={dtype_name} "
        f"attn={args.attn} batch={batch} seq={seq} reps={reps}"
    )
    print(
        f"parameters: rope {n_stock:,}  repo {n_repo:,}  (+{100 * result['param_overhead']:.2f}%)"
    )
    print(
        f"median step: rope {1e3 * result['median_step_s_rope']:.1f} ms  "
        f"repo {1e3 * result['median_step_s_repo']:.1f} ms"
    )
    if result["peak_gib_rope"] is not None:
        print(
            f"peak memory: rope {result['peak_gib_rope']:.2f} GiB  "
            f"repo {result['peak_gib_repo']:.2f} GiB"
        )
    if args.json:
        from longpos.io import atomic_write_json

        atomic_write_json(args.json, result)
    print(f"repo/rope step-time ratio: {result['median_ratio']:.3f}")


if __name__ == "__main__":
    main()
