"""FwPKM quality at tiny scale: token-level NIAH at L, 4L, 16L, 32L with 1, 2, 3 reading passes.

Trains ``LongposLM`` models with the same backbone, data, steps and seed, one with an FwPKM
sub-block before the attention of one middle layer, one without memory (and one without memory
but with pSWA), on the suite's token-level ``niah_multikey_1`` (4 key-value needles in a
repeated-sentence haystack, one symbol per key and per value; ``--task mqar``: the demo's
8-pair MQAR) with dense supervision (every key is asked at the end of each training sequence,
plus 0.5 x next-token loss), at length L. The FwPKM model is trained with
the paper's pSWA (each step, with probability ``--pswa``, every attention layer is a sliding
window of ``chunk`` tokens, so attention alone cannot reach most needles); the model without
memory is trained with plain full attention (the usual recipe). Evaluation always uses full
attention.

Each model answers the same held-out samples (one question; exact match of the value symbol)
at each ``--mults`` multiple of L; the FwPKM model with 1, 2 and 3 reading passes under the
``--eval-modes`` protocols (:data:`EVAL_MODES`): ``chunked`` (the main table, ``generate(...,
read_passes=n)``: n - 1 passes over the prompt that each end with one memory write, then the
real pass with writes every ``chunk`` tokens), ``paper`` (the paper's NIAH protocol: passes
over the haystack without the question, then one write at the end of the final pass),
``nomem`` (gate forced to 0) and ``frozen`` (no writes). Chance: a uniformly guessed value
symbol scores 1 / (number of value symbols); copying the value of a random needle scores
1 / num_keys.

Each run trains in its own process with one thread (``--workers 2`` use both cores of the
machine). Writes a Markdown table (``--out``) and the raw numbers (``--out`` with ``.json``).
``--runs-dir`` keeps the trained models; ``--eval-only a.json,b.json`` evaluates the models of
earlier runs again (e.g. variants trained one at a time) and writes one combined report.

    python benchmarks/fwpkm_quality.py                 # the committed run (about 15 CPU minutes)
    python benchmarks/fwpkm_quality.py --steps 200 --samples 20 --out /tmp/q.md   # smoke
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from longpos.demo import MQAR_OPTIONS as DEMO_MQAR_OPTIONS

TASKS: dict[str, dict[str, Any]] = {
    "niah_multikey_1": dict(
        num_symbols=32, key_len=1, value_len=1, num_keys=4, noise="repeat", haystack="repeat"
    ),
    "mqar": DEMO_MQAR_OPTIONS,  # the demo's calibrated retrieval task
}
"""``--task`` choices and their fixed token-level options."""
TASK_TEXT = {
    "niah_multikey_1": "4 key-value needles (one symbol each) in a repeated random sentence."
    " Training sequences ask every key at the end",
    "mqar": "8 key-value pairs at the start, then queries at power-law gaps among random"
    " symbols (the demo's task). Training scores every queried value",
}


VARIANTS = {
    "fwpkm": "FwPKM (pSWA)",
    "none": "no memory",
    "none+pswa": "no memory (pSWA)",
}


def model_config(args: argparse.Namespace, variant: str) -> Any:
    from longpos.config import ModelConfig
    from longpos.tasks.symbolic import vocab_for

    mem: dict[str, Any] = {}
    if variant == "fwpkm":
        fw = dict(d_k=args.d_k, d_v=args.d_v, sqrt_n=args.sqrt_n, topk=args.topk, chunk=args.chunk)
        mem = dict(kind="fwpkm", layers=args.fwpkm_layers, fwpkm=fw, pswa_prob=args.pswa)
    elif variant == "none+pswa":  # the same pSWA recipe without memory (window = chunk)
        mem = dict(kind="none", pswa_prob=args.pswa, pswa_window=args.chunk)
    return ModelConfig(
        vocab_size=vocab_for(args.task, **TASKS[args.task]).vocab_size,
        d_model=args.d_model,
        n_layers=args.layers,
        n_heads=args.heads,
        max_seq_len=args.length,
        memory=mem,
    )


EVAL_MODES = {
    "chunked": "`generate(read_passes=n)`: n - 1 passes over the whole prompt, each ending with "
    "one write, then the real pass writing every chunk (the training regime; the paper's "
    "`--keep_chunk_size`)",
    "paper": "the paper's NIAH protocol (`eval_niah.py`): n - 1 passes over the prompt without "
    "the question, each ending with one write, then the whole prompt once with a single write at "
    "its end, so the answer reads only what the earlier passes wrote (1 pass: nothing)",
    "nomem": "FwPKM model with its gate forced to 0 at evaluation (the memory read is dropped, "
    "`o = v`): what attention alone retrieves",
    "frozen": "FwPKM model with frozen fast weights (`memory_writes='none'`: every read sees the "
    "initial memory; the paper's freezing ablation)",
}
"""``--eval-modes`` choices (``chunked`` is the main table; the others are FwPKM-only)."""


def question_start(task: str, prompt: list[int]) -> int:
    """Index of the first question token of a prompt (the haystack is ``prompt[:index]``)."""
    if task == "mqar":
        return len(prompt) - 1  # the asked key is the last prompt token
    from longpos.tasks.symbolic import QUERY

    return max(i for i, t in enumerate(prompt) if t == QUERY)  # QUERY key ANS


@torch.no_grad()
def answer(model: Any, prompts: torch.Tensor, n_new: int, mode: str, passes: int,
           q_start: int) -> torch.Tensor:  # fmt: skip
    """Greedy answer tokens ``(B, n_new)`` of ``prompts (B, T)`` under an evaluation mode."""
    if mode == "chunked":
        return model.generate(prompts, n_new, read_passes=passes)[:, prompts.shape[1] :]
    memory = [None] * len(model.blocks)
    writes = "none" if mode == "frozen" else "chunked"
    if mode == "paper":
        for _ in range(passes - 1):  # fresh attention each pass, fast weights kept
            pre = model.new_cache()
            pre.memory = memory
            memory = model(prompts[:, :q_start], cache=pre, memory_writes="end").memory
        writes = "end"
    cache = model.new_cache()
    cache.memory = memory
    out = model(prompts, cache=cache, memory_writes=writes)
    tokens = [out.logits[:, -1].argmax(-1)]
    for _ in range(n_new - 1):
        out = model(tokens[-1][:, None], cache=cache, memory_writes="none" if mode == "frozen"
                    else "chunked")  # fmt: skip
        tokens.append(out.logits[:, -1].argmax(-1))
    return torch.stack(tokens, 1)


def evaluate(
    model: Any, args: argparse.Namespace, passes: list[int], modes: list[str] | None = None
) -> list[dict[str, Any]]:
    """Accuracy per (mode, length, passes) on the same seeded samples, plus FwPKM gate means
    (over every token read, and at the last prompt token, the question, of the real pass)."""
    from longpos.tasks.base import generate_sample
    from longpos.tasks.metrics import score_sample

    model.eval()
    fw = [block.fwpkm for block in model.blocks if block.fwpkm is not None]
    modes = ["chunked"] if not fw else (modes or ["chunked"])
    gates: list[torch.Tensor] = []
    force_off = [False]

    def hook(module: Any, inputs: Any, out: torch.Tensor) -> torch.Tensor | None:
        if force_off[0]:
            gates.append(torch.zeros_like(out))
            return torch.full_like(out, -30.0)  # sigmoid(-30) ~ 1e-13: the read is dropped
        gates.append(torch.sigmoid(out))
        return None

    hooks = [layer.g_proj.register_forward_hook(hook) for layer in fw]
    rows = []
    for mult in args.mults:
        length = mult * args.length
        samples = [
            generate_sample(args.task, length, seed=10_000 + i, **TASKS[args.task])
            for i in range(args.samples)
        ]
        prompts = torch.tensor([s.prompt_ids for s in samples])  # (S, T): equal lengths
        q_starts = {question_start(args.task, s.prompt_ids) for s in samples}
        assert len(q_starts) == 1, "the question has the same length in every sample"
        dist = [len(s.prompt_ids) - next(n.token_start for n in s.needles if n.role == "value")
                for s in samples]  # fmt: skip
        for mode in modes:
            force_off[0] = mode == "nomem"
            for n in passes if mode in ("chunked", "paper") else [1]:
                gates.clear()
                scores, at_question = [], []
                t0 = time.perf_counter()
                for b in range(0, len(samples), args.eval_batch):
                    part = prompts[b : b + args.eval_batch]
                    done = len(gates)
                    new = answer(model, part, samples[0].tokens_to_generate, mode, n,
                                 *q_starts)  # fmt: skip
                    real = [g for g in gates[done:] if g.shape[1] == part.shape[1]][-len(fw) :]
                    at_question += [float(g[:, -1].mean()) for g in real] if fw else []
                    scores += [score_sample(s, new[j].tolist()) for j, s in
                               enumerate(samples[b : b + args.eval_batch])]  # fmt: skip
                far = [sc for sc, d in zip(scores, dist, strict=True) if d > args.length]
                row = dict(
                    mode=mode,
                    length=length,
                    x_train=mult,
                    passes=n,
                    accuracy=statistics.fmean(scores),
                    n=len(scores),
                    far_accuracy=statistics.fmean(far) if far else None,
                    n_far=len(far),
                    seconds=time.perf_counter() - t0,
                )
                if gates and mode != "nomem":
                    row["gate_mean"] = float(torch.cat([g.flatten() for g in gates]).mean())
                    row["gate_question"] = statistics.fmean(at_question)
                rows.append(row)
    force_off[0] = False
    for h in hooks:
        h.remove()
    return rows


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    torch.set_num_threads(1)
    torch.manual_seed(job["seed"])  # global RNG; pSWA draws come from the model's own generator
    from longpos.model import LongposLM
    from longpos.train import DataConfig, OptimConfig, TrainConfig, train

    args = argparse.Namespace(**job["args"])
    memory = job["variant"] == "fwpkm"
    cfg = model_config(args, job["variant"])
    model = LongposLM(cfg, torch.Generator().manual_seed(job["seed"]))
    tcfg = TrainConfig(
        steps=args.steps,
        batch_size=args.batch,
        seq_len=args.length,
        seed=job["seed"],
        log_every=50,
        eval_batches=2,
        progress=False,
        device="cpu",
        optim=OptimConfig(lr=args.lr, warmup_steps=max(1, args.steps // 20)),
        data=DataConfig(kind="task", tasks=args.task, options=json.dumps(TASKS[args.task])),
    )
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    result = train(model, tcfg, job["out"])
    train_s = time.perf_counter() - t0
    metrics = [json.loads(x) for x in (Path(job["out"]) / "metrics.jsonl").read_text().splitlines()]
    curve = [(m["step"], m.get("answer_acc")) for m in metrics if "answer_acc" in m]
    train_cpu = time.process_time() - cpu0
    t0 = time.perf_counter()
    rows = evaluate(model, args, args.passes if memory else [1], args.eval_modes)
    return dict(
        variant=job["variant"],
        seed=job["seed"],
        params=model.num_parameters(),
        train_seconds=train_s,
        eval_seconds=time.perf_counter() - t0,
        cpu_seconds=time.process_time() - cpu0,
        train_cpu_seconds=train_cpu,
        run_dir=job["out"],
        tokens=args.steps * args.batch * args.length,
        final_train=result["last"],
        final_eval=result["eval"],
        curve=curve,
        rows=rows,
    )


def eval_job(job: dict[str, Any]) -> dict[str, Any]:
    """Re-evaluate a model trained by an earlier run (``--eval-only``), with this run's options."""
    torch.set_num_threads(1)
    from longpos.checkpoint import load_model

    args = argparse.Namespace(**job["args"])
    prev = job["result"]
    run_dir = prev.get("run_dir") or str(Path(args.runs_dir) / f"{prev['variant']}-s{prev['seed']}")
    model = load_model(Path(run_dir) / "model")
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    memory = prev["variant"] == "fwpkm"
    rows = evaluate(model, args, args.passes if memory else [1], args.eval_modes)
    # earlier runs stored only train + eval CPU time: their eval was one thread, wall ~ CPU
    train_cpu = prev.get("train_cpu_seconds", prev["cpu_seconds"] - prev["eval_seconds"])
    return {
        **prev,
        "run_dir": run_dir,
        "rows": rows,
        "eval_seconds": time.perf_counter() - t0,
        "train_cpu_seconds": train_cpu,
        "cpu_seconds": train_cpu + time.process_time() - cpu0,
    }


# ------------------------------------------------------------------------------ report


def wilson(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion ``p`` measured on ``n`` samples."""
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def cell(
    rows: list[dict[str, Any]], mult: int, passes: int, key: str = "accuracy", mode: str = "chunked"
) -> str:
    sel = [
        r
        for r in rows
        if r["x_train"] == mult and r["passes"] == passes and r.get("mode", "chunked") == mode
    ]
    count = "n" if key == "accuracy" else "n_far"
    pairs = [(r[key], r[count]) for r in sel if r[key] is not None]
    if not pairs:
        return "-"
    vals = [v for v, _ in pairs]
    text = f"{100 * statistics.fmean(vals):.1f}"
    if len(vals) > 1:
        text += f" ({', '.join(f'{100 * v:.0f}' for v in vals)})"
    else:
        lo, hi = wilson(*pairs[0])
        text += f" [{100 * lo:.0f}-{100 * hi:.0f}]"
    return text


def report(results: list[dict[str, Any]], args: argparse.Namespace, command: str) -> str:
    options = TASKS[args.task]
    n_values = options["num_symbols"] - options["num_symbols"] // 2
    n_records = options.get("num_keys", options.get("num_kv_pairs"))
    by = {v: [r for r in results if r["variant"] == v] for v in VARIANTS}
    head = "| model | passes | " + " | ".join(f"{m}L = {m * args.length}" for m in args.mults)
    sep = "|---|---|" + "---|" * len(args.mults)
    lines = [
        f"# FwPKM quality at tiny scale (token-level `{args.task}`)",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores (shared), torch "
        f"{torch.__version__}, one thread per run, {args.workers} runs in parallel.",
        "",
        "## Setup",
        "",
        f"- Task: `{args.task}` of the suite, token level, options `{json.dumps(options)}`: "
        f"{TASK_TEXT[args.task]} (dense supervision, answer loss + 0.5 x "
        "next-token loss); evaluation samples ask one key, exact match of the value.",
        f"- Model: `LongposLM`, d_model {args.d_model}, {args.layers} layers, {args.heads} "
        f"heads, RoPE, L = {args.length}.",
        f"- FwPKM: before the attention of layer(s) {args.fwpkm_layers}; sqrt_n {args.sqrt_n} "
        f"(N = {args.sqrt_n**2}), d_k {args.d_k}, d_v {args.d_v}, top-k {args.topk}, 1 head, "
        f"chunk {args.chunk}; trained with pSWA p = {args.pswa} (window = chunk); "
        "the model without memory trains with full attention; `no memory (pSWA)` is the "
        "FwPKM recipe without the memory (pSWA with the same window), to separate the two.",
        f"- Training: {args.steps} steps x batch {args.batch} x {args.length} tokens = "
        f"{args.steps * args.batch * args.length:,} tokens per run; AdamW lr {args.lr}, "
        "5% warm-up, cosine; seeds "
        f"{', '.join(str(s) for s in args.seeds)} (model init and data stream).",
        f"- Evaluation: {args.samples} samples per length (seeds 10000..), greedy; full "
        "attention; FwPKM writes every chunk while reading the prompt (main table; the other "
        "protocols are below). A reading pass ends its sequence: no fast-weight pair joins its "
        "last token to the first token of the next pass.",
        f"- Chance: guessing one of the {n_values} value symbols = "
        f"{100 / n_values:.1f}%; copying the value of a random needle = "
        f"{100 / n_records:.1f}%.",
        "",
        "## Accuracy (%)",
        "",
        "Mean over seeds (per-seed values in parentheses when several; with one seed, the "
        "95% Wilson interval in brackets).",
        "",
        head + " |",
        sep,
    ]
    for n in args.passes if by["fwpkm"] else []:
        cells = [cell([x for r in by["fwpkm"] for x in r["rows"]], m, n) for m in args.mults]
        lines.append(f"| {VARIANTS['fwpkm']} | {n} | " + " | ".join(cells) + " |")
    for variant in ("none", "none+pswa"):
        if by[variant]:
            flat = [x for r in by[variant] for x in r["rows"]]
            cells = [cell(flat, m, 1) for m in args.mults]
            lines.append(f"| {VARIANTS[variant]} | 1 | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Needles farther than L = {args.length} tokens from the question only "
        "(accuracy %, number of such samples in the first run):",
        "",
        head + " |",
        sep,
    ]
    for variant, label in VARIANTS.items():
        runs = by[variant]
        passes = args.passes if variant == "fwpkm" else [1]
        if not runs:
            continue
        flat = [x for r in runs for x in r["rows"]]
        for n in passes:
            cells = []
            for m in args.mults:
                n_far = next(x["n_far"] for x in runs[0]["rows"] if x["x_train"] == m)  # any mode
                cells.append(f"{cell(flat, m, n, 'far_accuracy')} (n={n_far})")
            lines.append(f"| {label} | {n} | " + " | ".join(cells) + " |")
    fw_rows = [x for r in by["fwpkm"] for x in r["rows"]]
    other = [m for m in EVAL_MODES if m != "chunked" and any(x.get("mode") == m for x in fw_rows)]
    if other:
        lines += [
            "",
            "## Other evaluation protocols (FwPKM model, accuracy %)",
            "",
            *[f"- `{m}`: {EVAL_MODES[m]}." for m in other],
            "",
            "| protocol | passes | " + " | ".join(f"{m}L" for m in args.mults) + " |",
            sep,
        ]
        for mode in other:
            for n in sorted({x["passes"] for x in fw_rows if x.get("mode") == mode}):
                cells = [cell(fw_rows, m, n, mode=mode) for m in args.mults]
                lines.append(f"| {mode} | {n} | " + " | ".join(cells) + " |")
    if any("gate_question" in x for x in fw_rows):
        lines += [
            "",
            "FwPKM gate at the question (last prompt token of the real pass; mean over "
            "every token read in parentheses):",
            "",
            "| protocol | passes | " + " | ".join(f"{m}L" for m in args.mults) + " |",
            sep,
        ]
        for mode in [m for m in EVAL_MODES if m not in ("nomem",)]:
            for n in sorted({x["passes"] for x in fw_rows if x.get("mode", "chunked") == mode}):
                sel = [x for x in fw_rows if x.get("mode", "chunked") == mode and x["passes"] == n]
                cells = []
                for m in args.mults:
                    hit = [x for x in sel if x["x_train"] == m and "gate_question" in x]
                    cells.append(
                        f"{statistics.fmean(x['gate_question'] for x in hit):.2f} "
                        f"({statistics.fmean(x['gate_mean'] for x in hit):.2f})"
                        if hit
                        else "-"
                    )
                lines.append(f"| {mode} | {n} | " + " | ".join(cells) + " |")
    lines += ["", "## Runs", ""]
    lines.append(
        "| model | seed | params | train s | eval s | final train answer acc | "
        "held-out answer acc at L | FwPKM gate mean at L (1 pass) |"
    )
    lines.append("|---|---|---|---|---|---|---|---|")
    for r in results:
        gate = next(
            (
                x.get("gate_mean")
                for x in r["rows"]
                if x["x_train"] == 1 and x["passes"] == 1 and x.get("mode", "chunked") == "chunked"
            ),
            None,
        )
        lines.append(
            f"| {r['variant']} | {r['seed']} | {r['params']:,} | {r['train_seconds']:.0f} | "
            f"{r['eval_seconds']:.0f} | {r['final_train'].get('answer_acc', float('nan')):.3f} | "
            f"{r['final_eval'].get('eval_answer_acc', float('nan')):.3f} | "
            f"{'-' if gate is None else f'{gate:.3f}'} |"
        )
    lines += ["", "Training answer accuracy (dense, at L) during training, per run:", ""]
    for r in results:
        pts = r["curve"][:: max(1, len(r["curve"]) // 8)] + r["curve"][-1:]
        text = ", ".join(f"{s}: {a:.2f}" for s, a in pts if a is not None)
        lines.append(f"- {r['variant']} seed {r['seed']}: {text}")
    total = sum(r["train_seconds"] + r["eval_seconds"] for r in results)
    lines += [
        "",
        f"Sum of the runs' wall-clock times (one thread each, so an upper bound of their CPU "
        f"time on a shared machine): {total / 60:.1f} min.",
    ]
    if all("cpu_seconds" in r for r in results):
        cpu = sum(r["cpu_seconds"] for r in results)
        lines.append(f"CPU time of the runs (process time): {cpu / 60:.1f} min.")
    lines.append("")
    return "\n".join(lines)


def write_outputs(results: list[dict[str, Any]], args: argparse.Namespace, command: str) -> None:
    text = report(results, args, command)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(
        json.dumps({"args": vars(args), "command": command, "results": results}, indent=2,
                   default=str)
    )  # fmt: skip
    print(text)


def evaluate_saved(args: argparse.Namespace, command: str) -> None:
    """``--eval-only``: the models of earlier runs, evaluated again (training options and
    timings are those of the earlier runs; they must agree on task, length and model shape)."""
    results, saved_args = [], None
    for path in args.eval_only.split(","):
        saved = json.loads(Path(path).read_text())
        for key in ("task", "length", "chunk", "steps", "d_model", "layers", "sqrt_n"):
            if saved_args is not None and saved["args"].get(key) != saved_args.get(key):
                raise SystemExit(f"{path}: {key} differs from the other runs")
        saved_args = saved["args"]
        results += saved["results"]
    assert saved_args is not None
    for key in ("task", "length", "chunk", "steps", "batch", "lr", "d_model", "layers", "heads",
                "fwpkm_layers", "sqrt_n", "d_k", "d_v", "topk", "pswa", "seeds"):  # fmt: skip
        setattr(args, key, saved_args[key])
    jobs = [dict(result=r, args=vars(args)) for r in results]
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(min(args.workers, len(jobs))) as pool:
        results = pool.map(eval_job, jobs)
    print(f"wall time {time.perf_counter() - t0:.0f} s")
    write_outputs(results, args, command)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", choices=list(TASKS), default="niah_multikey_1")
    p.add_argument("--length", type=int, default=64, help="training length L")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--fwpkm-layers", default="1")
    p.add_argument("--sqrt-n", type=int, default=32)
    p.add_argument("--d-k", type=int, default=32)
    p.add_argument("--d-v", type=int, default=32)
    p.add_argument("--topk", type=int, default=8)
    p.add_argument("--chunk", type=int, default=None, help="FwPKM chunk (default L / 4)")
    p.add_argument("--pswa", type=float, default=0.9, help="pSWA probability (FwPKM model)")
    p.add_argument("--seeds", default="0")
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--eval-batch", type=int, default=25)
    p.add_argument("--mults", default="1,4,16,32")
    p.add_argument("--passes", default="1,2,3")
    p.add_argument(
        "--eval-modes",
        default=",".join(EVAL_MODES),
        help=f"evaluation protocols of the FwPKM model, from {', '.join(EVAL_MODES)}",
    )
    p.add_argument(
        "--eval-only",
        default=None,
        help="comma-separated JSON files of earlier runs whose models were kept (--runs-dir): "
        "evaluate those models again with this run's evaluation options, no training",
    )
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", default="benchmarks/results/fwpkm-quality.md")
    p.add_argument("--keep-runs", action="store_true", help="keep the training folders")
    p.add_argument(
        "--runs-dir",
        default=None,
        help="folder for the training runs (kept; default: a temporary folder, removed)",
    )
    p.add_argument("--report-only", default=None, help="re-render the report of this JSON")
    args = p.parse_args()
    if args.report_only:
        saved = json.loads(Path(args.report_only).read_text())
        text = report(
            saved["results"],
            argparse.Namespace(**{"task": "niah_multikey_1", **saved["args"]}),
            saved.get("command", "(not recorded)"),
        )
        Path(args.out).write_text(text)
        print(text)
        return
    command = " ".join(["python benchmarks/fwpkm_quality.py", *sys.argv[1:]])
    args.chunk = args.chunk or max(1, args.length // 4)
    args.seeds = [int(s) for s in str(args.seeds).split(",")]
    args.mults = [int(m) for m in str(args.mults).split(",")]
    args.passes = [int(n) for n in str(args.passes).split(",")]
    args.eval_modes = [m.strip() for m in str(args.eval_modes).split(",")]
    bad = [m for m in args.eval_modes if m not in EVAL_MODES]
    if bad:
        p.error(f"--eval-modes {bad} unknown; allowed: {', '.join(EVAL_MODES)}")
    if args.eval_only:
        evaluate_saved(args, command.strip())
        return
    variants = [v.strip() for v in args.variants.split(",")]
    if args.runs_dir:
        work = Path(args.runs_dir)
        work.mkdir(parents=True, exist_ok=True)
        args.keep_runs = True
    else:
        work = Path(tempfile.mkdtemp(prefix="fwpkm-quality-"))
    jobs = [
        dict(variant=v, seed=s, args=vars(args), out=str(work / f"{v}-s{s}"))
        for s in args.seeds
        for v in variants
    ]
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(min(args.workers, len(jobs))) as pool:
        results = pool.map(run_job, jobs)
    print(f"wall time {time.perf_counter() - t0:.0f} s")
    if args.keep_runs:
        print(f"runs (metrics.jsonl, model/) kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    write_outputs(results, args, command.strip())
    if any(math.isnan(r["final_eval"].get("eval_lm_loss", 0.0)) for r in results):
        raise SystemExit("a run diverged (NaN loss)")


if __name__ == "__main__":
    main()
