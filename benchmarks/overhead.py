"""RePo's cost: forward+backward step time of the same model with RoPE and with RePo.

Both models are built in one process with identical backbone weights; repetitions
alternate (RoPE, RePo, RePo, RoPE, ...) so that machine noise hits both alike. Prints
per-model medians and, as its last line, the median of the per-round ratios:

    repo/rope step-time ratio: X.XXX

The paper reports under 1% overhead. Examples:

    python benchmarks/overhead.py                          # small, T=1024, CPU, fp32
    python benchmarks/overhead.py --preset 1b --seq-len 4096 --device cuda --dtype bfloat16
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from timing import alternate

from longpos.config import preset
from longpos.model import LongposLM


def step(model: LongposLM, ids: torch.Tensor, dtype: torch.dtype, device: str) -> None:
    with torch.autocast(device_type=device, dtype=dtype, enabled=dtype != torch.float32):
        logits = model(ids[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(), ids[:, 1:].reshape(-1)
        )
    loss.backward()
    model.zero_grad(set_to_none=True)


def timed(model: LongposLM, ids: torch.Tensor, dtype: torch.dtype, device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    step(model, ids, dtype, device)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--json", default=None, help="also write the measurements here")
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)

    models = {}
    for plan in ("rope", "repo"):
        cfg = preset(args.preset, plan=plan, max_seq_len=args.seq_len)
        model = LongposLM(cfg, torch.Generator().manual_seed(0)).to(args.device)
        models[plan] = model
    models["repo"].load_state_dict(models["rope"].state_dict(), strict=False)
    gen = torch.Generator().manual_seed(1)
    vocab = models["rope"].config.vocab_size
    ids = torch.randint(0, vocab, (args.batch, args.seq_len + 1), generator=gen).to(args.device)

    run = alternate(
        {plan: (lambda m=m: timed(m, ids, dtype, args.device)) for plan, m in models.items()},
        args.rounds, args.warmup, baseline="rope",
    )  # fmt: skip
    medians, ratio = run["medians"], run["median_ratios"]["repo"]

    cfg = models["repo"].config
    extra = models["repo"].num_parameters() - models["rope"].num_parameters()
    result = {
        "preset": args.preset,
        "plan_repo": cfg.layer_plan(),
        "seq_len": args.seq_len,
        "batch": args.batch,
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(0),
        "dtype": args.dtype,
        "threads": torch.get_num_threads(),
        "rounds": args.rounds,
        "median_rope_s": medians["rope"],
        "median_repo_s": medians["repo"],
        "ratio_of_medians": medians["repo"] / medians["rope"],
        "median_ratio": ratio,
        "extra_params": extra,
        "extra_params_share": extra / models["rope"].num_parameters(),
    }
    if args.device == "cuda":
        result["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=2)
    print(f"repo/rope step-time ratio: {result['median_ratio']:.3f}")


if __name__ == "__main__":
    main()
