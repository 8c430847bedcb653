"""The GPU run of issue 17: everything only a GPU can measure, in one command, in a fixed order.

On the device machine (one H100 / H200), from the repository root:

    python benchmarks/gpu_run.py --out gpu-results

and on a CPU, the same code on tiny shapes (under a minute; the default test suite runs it):

    python benchmarks/gpu_run.py --device cpu --smoke --out /tmp/gpu-smoke

Parts, in this order (expected time on one H100/H200, model builds included; the whole run
is sized for 8 minutes and skips a part, saying so, when ``--budget-s`` would be exceeded):

1. ``env`` (seconds): device name, torch / CUDA / transformers versions, the command.
2. ``correctness`` (~1 min): in bf16, native (``LongposLM``) and Hugging Face (a tiny random
   Llama built in code, converted with ``longpos.hf.apply_longpos``) models for every plan:
   rope, nope, r2n1, repo, DroPE with dynamic temperature, YaRN (x4), FwPKM. For each, the
   max abs difference between cached decoding (prefill, token-by-token steps, a last chunk)
   and the full forward, and the greedy-token agreement; which SDPA backends run (each of
   flash / memory-efficient / cuDNN / math alone under ``torch.nn.attention.sdpa_kernel``)
   and which one the default dispatch picks (the profiler's op names); and no NaN/Inf in a
   RePo forward over 32K positions (native and HF).
3. ``speed`` (~3 min): RePo/RoPE step-time ratio (forward + backward, bf16 autocast) at the
   ``1b`` shape, T = 4096, native (``benchmarks/overhead.py``'s measurement) and HF (stock
   Llama vs converted), with the peak memory of each; FwPKM / no-memory training throughput
   (``small`` width, 8 layers, batch 8 x 2048); ``torch.compile`` on and off for the RePo
   path (``small``, T = 2048). Batched vs unbatched evaluation (``run_eval`` at batch 1 and 16,
   a 1B-shape RePo model on MQAR at 4K, samples/s and identical predictions).
4. ``evidence`` (~3 min, what is left): the demo's task (``mqar``) at L = 128 with more
   tokens than the CPU affords, one process per method (rope + DroPE, nope, r2n1, repo)
   training concurrently on the one GPU, evaluated at 1x, 2x, 4x, 8x L with greedy decoding;
   reported with its seeds and tokens, as an extra data point.

Output folder: ``results.json`` (everything so far, rewritten after every measurement),
``<part>.json`` per part, ``summary.md`` (the same as tables), ``evidence/`` (the training
runs and their evaluations). A part that raises is recorded with its error (the traceback's
last line, and the traceback) and the next part runs; a run cut short keeps what it wrote.
Features a CPU lacks (bf16 autocast timing, flash kernels, ``max_memory_allocated``) are
recorded as "not available on cpu".
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import overhead  # noqa: E402  (benchmarks/overhead.py)
from timing import alternate, format_spread  # noqa: E402

from longpos.config import ModelConfig  # noqa: E402
from longpos.model import LongposLM  # noqa: E402

NOT_ON_CPU = "not available on cpu"
COMPILE_NEEDS_S = 120.0
"""About what compiling and timing both models takes (the compile itself dominates)."""
PLANS = ("rope", "nope", "r2n1", "repo", "drope", "yarn", "fwpkm")


# ------------------------------------------------------------------ sizes
@dataclasses.dataclass(frozen=True)
class Sizes:
    """Every shape of the run; ``full`` on the GPU, ``smoke`` on a CPU."""

    # correctness
    d_model: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    vocab: int
    train_length: int
    seq: int
    batch: int
    long_positions: int
    fwpkm_chunk: int
    # speed
    speed_preset: str
    speed_seq: int
    speed_rounds: int
    speed_warmup: int
    hf_shape: dict[str, int]
    fwpkm_shape: dict[str, int]
    compile_preset: str
    compile_seq: int
    eval_preset: str
    eval_length: int
    eval_samples: int
    eval_batch: int
    # evidence
    evidence_methods: tuple[str, ...]
    evidence_length: int
    evidence_steps: int
    evidence_batch: int
    evidence_samples: int
    evidence_multipliers: tuple[int, ...]
    evidence_seeds: tuple[int, ...]


FULL = Sizes(
    d_model=256, n_layers=4, n_heads=4, n_kv_heads=2, vocab=512, train_length=128, seq=256,
    batch=2, long_positions=32_768, fwpkm_chunk=64,
    speed_preset="1b", speed_seq=4096, speed_rounds=8, speed_warmup=2,
    hf_shape=dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                  num_attention_heads=16, num_key_value_heads=8, vocab_size=32_000),
    fwpkm_shape=dict(d_model=512, n_layers=8, batch=8, seq=2048, rounds=6),
    compile_preset="small", compile_seq=2048,
    eval_preset="1b", eval_length=4096, eval_samples=16, eval_batch=16,
    evidence_methods=("rope", "nope", "r2n1", "repo", "drope"), evidence_length=128,
    evidence_steps=2500, evidence_batch=64, evidence_samples=100,
    evidence_multipliers=(1, 2, 4, 8), evidence_seeds=(0,),
)  # fmt: skip
SMOKE = Sizes(
    d_model=32, n_layers=3, n_heads=2, n_kv_heads=1, vocab=64, train_length=16, seq=24,
    batch=2, long_positions=256, fwpkm_chunk=8,
    speed_preset="tiny", speed_seq=32, speed_rounds=2, speed_warmup=0,
    hf_shape=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                  num_attention_heads=2, num_key_value_heads=1, vocab_size=64),
    fwpkm_shape=dict(d_model=32, n_layers=2, batch=2, seq=32, rounds=2),
    compile_preset="tiny", compile_seq=32,
    eval_preset="tiny", eval_length=48, eval_samples=4, eval_batch=4,
    evidence_methods=("rope", "repo", "drope"), evidence_length=40, evidence_steps=8,
    evidence_batch=2, evidence_samples=2, evidence_multipliers=(1, 2), evidence_seeds=(0,),
)  # fmt: skip


# ------------------------------------------------------------------ recording
def atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class Recorder:
    """Holds the results and rewrites ``results.json`` / ``<part>.json`` / ``summary.md`` after
    every measurement, so that a run cut short keeps what it finished."""

    def __init__(self, out: Path, header: dict[str, Any]):
        self.out = out
        out.mkdir(parents=True, exist_ok=True)
        self.results: dict[str, Any] = {"header": header, "parts": {}}
        self.flush()

    def part(self, name: str) -> dict[str, Any]:
        return self.results["parts"].setdefault(name, {"status": "running"})

    def flush(self, part: str | None = None) -> None:
        text = json.dumps(self.results, indent=2, default=str)
        atomic_write(self.out / "results.json", text)
        if part is not None:
            body = json.dumps(self.results["parts"][part], indent=2, default=str)
            atomic_write(self.out / f"{part}.json", body)
        atomic_write(self.out / "summary.md", summary_markdown(self.results))


def error_record(exc: BaseException) -> dict[str, Any]:
    lines = traceback.format_exception(exc)
    last = "".join(traceback.format_exception_only(exc)).strip().splitlines()
    return {"status": "error", "error": last[-1] if last else repr(exc),
            "traceback": "".join(lines)[-4000:]}  # fmt: skip


def guarded(
    record: dict[str, Any],
    key: str,
    fn: Callable[[], Any],
    flush: Callable[[], None],
    label: str = "",
) -> Any:
    """``record[key] = fn()``; an exception is recorded there instead; flushes either way and
    prints one progress line."""
    start = time.perf_counter()
    try:
        value = fn()
    except Exception as exc:  # noqa: BLE001  (every failure is a result here)
        value = error_record(exc)
    seconds = round(time.perf_counter() - start, 2)
    if isinstance(value, dict):
        value.setdefault("seconds", seconds)
    record[key] = value
    flush()
    status = value.get("status", "ok") if isinstance(value, dict) else "ok"
    detail = f": {value.get('error', value.get('reason', ''))}" if status != "ok" else ""
    print(f"[gpu_run]   {label}{key}: {status} in {seconds} s{detail}", flush=True)
    return value


# ------------------------------------------------------------------ device helpers
def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max())


def finite(t: torch.Tensor) -> bool:
    return bool(torch.isfinite(t.float()).all())


SDPA_BACKENDS = ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "MATH")


def sdpa_ops_used(fn: Callable[[], Any], device: str) -> list[str]:
    """The scaled-dot-product-attention ops (and CUDA attention kernels) ``fn`` runs."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if device == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        fn()
        sync(device)
    names = {e.key for e in prof.key_averages()}
    keep = ("scaled_dot_product", "flash", "fmha", "efficient_attention", "cudnn", "attention")
    return sorted(n for n in names if any(k in n.lower() for k in keep))[:20]


def sdpa_backends(fn: Callable[[], Any], device: str) -> dict[str, str]:
    """For each SDPA backend alone: ``ok`` or the error that refused it."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    result = {}
    for name in SDPA_BACKENDS:
        backend = getattr(SDPBackend, name, None)
        if backend is None:
            result[name.lower()] = "not in this torch"
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with sdpa_kernel([backend]):
                    fn()
                    sync(device)
            result[name.lower()] = "ok"
        except Exception as exc:  # noqa: BLE001
            result[name.lower()] = "refused: " + str(exc).strip().splitlines()[0][:200]
    return result


def peak_gib(device: str) -> float | str:
    if device != "cuda":
        return NOT_ON_CPU
    return round(torch.cuda.max_memory_allocated() / 2**30, 3)


# ------------------------------------------------------------------ model builders
def native_config(s: Sizes, plan: str) -> ModelConfig:
    technique = {"drope": "rope", "yarn": "rope", "fwpkm": "rope"}.get(plan, plan)
    extra: dict[str, Any] = {}
    if plan == "fwpkm":
        extra["memory"] = {"kind": "fwpkm", "layers": "1", "fwpkm": {"chunk": s.fwpkm_chunk}}
    return ModelConfig(
        vocab_size=s.vocab, d_model=s.d_model, n_layers=s.n_layers, n_heads=s.n_heads,
        n_kv_heads=s.n_kv_heads, max_seq_len=s.train_length, plan=technique, **extra,
    )  # fmt: skip


def build_native(cfg: ModelConfig, device: str, seed: int = 0) -> LongposLM:
    """``LongposLM`` initialised on ``device`` (see ``overhead.build_model``)."""
    return overhead.build_model(cfg, device, seed)


def apply_plan_native(model: LongposLM, plan: str) -> LongposLM:
    from longpos.positions.temperature import temperature
    from longpos.surgery import drop_positions, scaled_rope, set_rope, set_temperature

    if plan == "drope":
        drop_positions(model)
        set_temperature(model, temperature("scratch", mode="dynamic"))
    elif plan == "yarn":
        set_rope(model, scaled_rope(model, "yarn", 4.0))
    return model


def hf_llama(
    shape: dict[str, int],
    device: str,
    dtype: torch.dtype,
    seed: int = 0,
    max_positions: int = 131_072,
    **extra: Any,
) -> Any:
    """A random Llama built in code (nothing downloaded), initialised on ``device``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        max_position_embeddings=max_positions, rope_parameters={"rope_type": "default",
        "rope_theta": 500_000.0}, eos_token_id=None, bos_token_id=None, pad_token_id=None,
        **shape, **extra,
    )  # fmt: skip
    config._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(config)
    except Exception:  # noqa: BLE001
        model = LlamaForCausalLM(config).to(device)
    return model.to(dtype)


def apply_plan_hf(model: Any, plan: str, s: Sizes) -> Any:
    from longpos.hf import apply_longpos
    from longpos.memory.placement import MemoryConfig
    from longpos.positions.temperature import temperature
    from longpos.surgery import drop_positions, scaled_rope, set_rope, set_temperature

    torch.manual_seed(1)  # new modules draw from the default generator
    if plan in ("rope", "nope", "r2n1", "repo"):
        apply_longpos(model, plan)
    elif plan == "drope":
        drop_positions(model)
        set_temperature(model, temperature("scratch", mode="dynamic", train_length=s.train_length))
    elif plan == "yarn":
        apply_longpos(model, "rope")
        set_rope(model, scaled_rope(model, "yarn", 4.0))
    elif plan == "fwpkm":
        memory = MemoryConfig(kind="fwpkm", layers="1", fwpkm={"chunk": s.fwpkm_chunk})
        apply_longpos(model, None, memory=memory)
    else:
        raise ValueError(plan)
    return model


def hf_small_shape(s: Sizes) -> dict[str, int]:
    return dict(hidden_size=s.d_model, intermediate_size=2 * s.d_model,
                num_hidden_layers=s.n_layers, num_attention_heads=s.n_heads,
                num_key_value_heads=s.n_kv_heads, vocab_size=s.vocab)  # fmt: skip


# ------------------------------------------------------------------ part 1: env
def part_env(ctx: Run) -> dict[str, Any]:
    info: dict[str, Any] = {
        "status": "ok",
        "device_kind": ctx.device,
        "device": torch.cuda.get_device_name(0)
        if ctx.device == "cuda"
        else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
    }
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        info["transformers"] = None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=HERE.parent, timeout=10)  # fmt: skip
        info["commit"] = commit.stdout.strip() or None
    except Exception:  # noqa: BLE001
        info["commit"] = None
    if ctx.device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        info["bf16_supported"] = torch.cuda.is_bf16_supported()
    return info


# ------------------------------------------------------------------ part 2: correctness
def cached_vs_full_native(model: LongposLM, ids: torch.Tensor) -> dict[str, Any]:
    seq = ids.shape[1]
    a, b = seq // 2, (3 * seq) // 4
    with torch.no_grad():
        full = model(ids).logits
        cache = model.new_cache()
        parts = [model(ids[:, :a], cache=cache).logits]
        for t in range(a, b):
            parts.append(model(ids[:, t : t + 1], cache=cache).logits)
        parts.append(model(ids[:, b:], cache=cache).logits)
    return compare(torch.cat(parts, 1), full)


def cached_vs_full_hf(model: Any, ids: torch.Tensor) -> dict[str, Any]:
    from transformers import DynamicCache

    from longpos.hf.compat import CACHE_KWARG

    seq = ids.shape[1]
    a, b = seq // 2, (3 * seq) // 4
    with torch.no_grad():
        full = model(input_ids=ids, use_cache=False).logits
        cache = DynamicCache(config=model.config)
        kw = {CACHE_KWARG: cache, "use_cache": True}
        parts = [model(input_ids=ids[:, :a], **kw).logits]
        for t in range(a, b):
            parts.append(model(input_ids=ids[:, t : t + 1], **kw).logits)
        parts.append(model(input_ids=ids[:, b:], **kw).logits)
    return compare(torch.cat(parts, 1), full)


def compare(cached: torch.Tensor, full: torch.Tensor) -> dict[str, Any]:
    agree = (cached.argmax(-1) == full.argmax(-1)).float().mean()
    return {
        "status": "ok",
        "max_abs_diff": max_abs(cached, full),
        "logit_scale": float(full.float().abs().max()),
        "greedy_agreement": float(agree),
        "finite": finite(cached) and finite(full),
    }


def part_correctness(ctx: Run) -> dict[str, Any]:
    s, device, record = ctx.sizes, ctx.device, ctx.rec.part("correctness")
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    record["dtype"] = str(dtype).replace("torch.", "")
    if device != "cuda":
        record["bf16"] = NOT_ON_CPU + " (the smoke run checks the same code in float32)"
    gen = torch.Generator().manual_seed(3)
    ids = torch.randint(0, s.vocab, (s.batch, s.seq), generator=gen).to(device)
    flush = ctx.flush("correctness")
    # bf16 on CUDA, and float32 beside it there: the bf16 differences are then read against
    # what the same code gives without bf16 rounding
    dtypes = [dtype, torch.float32] if dtype != torch.float32 else [dtype]
    for run_dtype in dtypes:
        suffix = "" if run_dtype == dtype else "_float32"
        native: dict[str, Any] = record.setdefault("native" + suffix, {})
        hf: dict[str, Any] = record.setdefault("hf" + suffix, {})
        for plan in PLANS:

            def run_native(plan: str = plan, run_dtype: torch.dtype = run_dtype) -> Any:
                model = build_native(native_config(s, plan), device)
                model = apply_plan_native(model, plan).to(run_dtype).eval()
                return cached_vs_full_native(model, ids)

            guarded(native, plan, run_native, flush, f"native{suffix}/")
        for plan in PLANS:

            def run_hf(plan: str = plan, run_dtype: torch.dtype = run_dtype) -> Any:
                # trained length = train_length: YaRN and DroPE's temperature act beyond it
                model = hf_llama(hf_small_shape(s), device, torch.float32,
                                 max_positions=s.train_length)  # fmt: skip
                model = apply_plan_hf(model, plan, s).to(run_dtype).eval()
                return cached_vs_full_hf(model, ids)

            guarded(hf, plan, run_hf, flush, f"hf{suffix}/")
    guarded(record, "sdpa", lambda: sdpa_report(ctx, ids, dtype), flush, "correctness/")
    guarded(record, "long_positions", lambda: long_positions(ctx, dtype), flush, "correctness/")
    return {"status": "ok"}


def sdpa_report(ctx: Run, ids: torch.Tensor, dtype: torch.dtype) -> dict[str, Any]:
    s, device = ctx.sizes, ctx.device
    native = build_native(native_config(s, "repo"), device).to(dtype).eval()
    hf = apply_plan_hf(hf_llama(hf_small_shape(s), device, torch.float32), "repo", s)
    hf = hf.to(dtype).eval()

    def native_train() -> None:
        with torch.enable_grad():
            native(ids).logits.float().sum().backward()
        native.zero_grad(set_to_none=True)

    def native_decode() -> None:
        with torch.no_grad():
            cache = native.new_cache()
            native(ids[:, :-1], cache=cache)
            native(ids[:, -1:], cache=cache)

    def hf_forward() -> None:
        with torch.no_grad():
            hf(input_ids=ids, use_cache=False)

    out: dict[str, Any] = {"status": "ok"}
    for name, fn in (("native_train_step", native_train), ("native_prefill_and_decode",
                     native_decode), ("hf_forward", hf_forward)):  # fmt: skip
        out[name] = {"backends_alone": sdpa_backends(fn, device),
                     "default_dispatch_ops": sdpa_ops_used(fn, device)}  # fmt: skip
    return out


def long_positions(ctx: Run, dtype: torch.dtype) -> dict[str, Any]:
    """A RePo forward over ``long_positions`` tokens: no NaN/Inf, the positions' range."""
    s, device = ctx.sizes, ctx.device
    n = s.long_positions
    gen = torch.Generator().manual_seed(4)
    ids = torch.randint(0, s.vocab, (1, n), generator=gen).to(device)
    out: dict[str, Any] = {"status": "ok", "tokens": n}
    model = build_native(native_config(s, "repo"), device).to(dtype).eval()
    with torch.no_grad():
        res = model(ids, return_positions=True)
    z = torch.stack([p.float().flatten() for p, t in zip(res.positions, model.config.layer_plan(),
                     strict=True) if t == "repo"])  # fmt: skip
    out["native"] = {"logits_finite": finite(res.logits), "positions_finite": finite(z),
                     "z_min": float(z.min()), "z_max": float(z.max())}  # fmt: skip
    del model, res
    hf = apply_plan_hf(hf_llama(hf_small_shape(s), device, torch.float32), "repo", s)
    hf = hf.to(dtype).eval()
    with torch.no_grad():
        logits = hf(input_ids=ids, use_cache=False, logits_to_keep=64).logits
    out["hf"] = {"logits_finite": finite(logits), "last_logits_checked": 64}
    return out


# ------------------------------------------------------------------ part 3: speed
def part_speed(ctx: Run) -> dict[str, Any]:
    device, record = ctx.device, ctx.rec.part("speed")
    flush = ctx.flush("speed")
    dtype = "bfloat16" if device == "cuda" else "float32"
    record["dtype"] = dtype
    if device != "cuda":
        record["bf16_autocast"] = NOT_ON_CPU + " (smoke: float32)"
    guarded(record, "native_repo_vs_rope", lambda: native_overhead(ctx, dtype), flush, "speed/")
    guarded(record, "hf_repo_vs_stock", lambda: hf_overhead(ctx, dtype), flush, "speed/")
    guarded(record, "fwpkm_throughput", lambda: fwpkm_throughput(ctx, dtype), flush, "speed/")
    guarded(record, "compile_repo", lambda: compile_repo(ctx, dtype), flush, "speed/")
    guarded(
        record, "eval_batched_vs_unbatched", lambda: eval_throughput(ctx, dtype), flush, "speed/"
    )
    flush()
    return {"status": "ok"}


def eval_throughput(ctx: Run, dtype_name: str) -> dict[str, Any]:
    """Samples/s of ``run_eval`` at batch 1 and ``eval_batch`` on the same MQAR samples (a
    RePo model of ``eval_preset``, random weights), and whether the predictions agree."""
    import tempfile

    from longpos.eval.adapter import LongposEvalModel
    from longpos.eval.runner import run_eval

    s, device = ctx.sizes, ctx.device
    options = {"num_symbols": 64, "num_kv_pairs": 8}
    from longpos.config import preset as model_preset

    cfg = model_preset(s.eval_preset, plan="repo", vocab_size=512)
    model = build_native(cfg, device).to(getattr(torch, dtype_name)).eval()
    adapter = LongposEvalModel(model, None, device)
    work = Path(tempfile.mkdtemp(prefix="gpu-eval-"))
    seconds: dict[int, float] = {}
    predictions: dict[int, list[Any]] = {}
    for batch in (1, s.eval_batch):
        sync(device)
        start = time.perf_counter()
        run_eval(
            adapter, ["mqar"], [s.eval_length], s.eval_samples, work / f"b{batch}",
            options=options, progress=False, batch_size=batch,
        )  # fmt: skip
        sync(device)
        seconds[batch] = time.perf_counter() - start
        rows = (work / f"b{batch}" / "samples.jsonl").read_text().splitlines()
        predictions[batch] = [json.loads(r)["prediction_ids"] for r in rows]
    del model, adapter
    return {
        "status": "ok", "preset": s.eval_preset, "length": s.eval_length,
        "samples": s.eval_samples, "batch": s.eval_batch, "dtype": dtype_name,
        "samples_per_s": {str(b): s.eval_samples / t for b, t in seconds.items()},
        "speedup": seconds[1] / seconds[s.eval_batch],
        "identical_predictions": predictions[1] == predictions[s.eval_batch],
    }  # fmt: skip


def clean(result: dict[str, Any]) -> dict[str, Any]:
    keep = {k: v for k, v in result.items() if k not in ("times_s",)}
    keep["status"] = "ok"
    return keep


def native_overhead(ctx: Run, dtype: str) -> dict[str, Any]:
    s = ctx.sizes
    result = overhead.measure(
        s.speed_preset, s.speed_seq, 1, s.speed_rounds, s.speed_warmup, ctx.device, dtype
    )
    result = clean(result)
    if ctx.device != "cuda":
        result["peak_memory_gib"] = NOT_ON_CPU
    result["summary"] = format_spread(result["ratio_spread"])
    torch.cuda.empty_cache() if ctx.device == "cuda" else None
    return result


def hf_step(model: Any, ids: torch.Tensor, dtype: torch.dtype, device: str) -> float:
    sync(device)
    start = time.perf_counter()
    with torch.autocast(device_type=device, dtype=dtype, enabled=dtype != torch.float32):
        loss = model(input_ids=ids, labels=ids, use_cache=False).loss
    loss.backward()
    sync(device)
    elapsed = time.perf_counter() - start
    model.zero_grad(set_to_none=True)
    return elapsed


def hf_overhead(ctx: Run, dtype_name: str) -> dict[str, Any]:
    from longpos.hf import layer_plan

    s, device = ctx.sizes, ctx.device
    dtype = getattr(torch, dtype_name)
    stock = hf_llama(s.hf_shape, device, torch.float32).train()
    twin = hf_llama(s.hf_shape, device, torch.float32).train()
    twin.load_state_dict(stock.state_dict())
    repo = apply_plan_hf(twin, "repo", s).train()
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, s.hf_shape["vocab_size"], (1, s.speed_seq), generator=gen).to(device)
    models = {"rope": stock, "repo": repo}
    run = alternate({name: (lambda m=m: hf_step(m, ids, dtype, device))
                     for name, m in models.items()},
                    s.speed_rounds, s.speed_warmup, baseline="rope")  # fmt: skip
    out: dict[str, Any] = {
        "status": "ok", "shape": s.hf_shape, "seq_len": s.speed_seq, "dtype": dtype_name,
        "rounds": s.speed_rounds, "medians_s": run["medians"],
        "median_ratio": run["median_ratios"]["repo"],  # type: ignore[index]
        "ratio_spread": run["ratio_spread"]["repo"],  # type: ignore[index]
        "ratios": run["ratios"]["repo"],  # type: ignore[index]
        "repo_layers": layer_plan(repo),
    }  # fmt: skip
    out["summary"] = format_spread(out["ratio_spread"])
    peaks: dict[str, Any] = {}
    for name, m in models.items():
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        hf_step(m, ids, dtype, device)
        peaks[name] = peak_gib(device)
    out["peak_memory_gib"] = peaks
    del stock, twin, repo, models
    if device == "cuda":
        torch.cuda.empty_cache()
    return out


def train_step(model: torch.nn.Module, opt: torch.optim.Optimizer, ids: torch.Tensor,
               dtype: torch.dtype, device: str) -> float:  # fmt: skip
    sync(device)
    start = time.perf_counter()
    with torch.autocast(device_type=device, dtype=dtype, enabled=dtype != torch.float32):
        logits = model(ids[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(), ids[:, 1:].reshape(-1)
        )
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    sync(device)
    return time.perf_counter() - start


def fwpkm_throughput(ctx: Run, dtype_name: str) -> dict[str, Any]:
    s, device = ctx.sizes, ctx.device
    shape = s.fwpkm_shape
    dtype = getattr(torch, dtype_name)
    base = dict(vocab_size=512, d_model=shape["d_model"], n_layers=shape["n_layers"],
                n_heads=8 if shape["d_model"] >= 256 else 2,
                max_seq_len=shape["seq"], plan="rope")  # fmt: skip
    fw = {"kind": "fwpkm", "layers": "middle", "fwpkm": {"chunk": 64 if shape["seq"] >= 256
          else 8}}  # fmt: skip
    models = {"none": build_native(ModelConfig(**base), device),
              "fwpkm": build_native(ModelConfig(**base, memory=fw), device)}  # fmt: skip
    opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-4) for k, m in models.items()}
    gen = torch.Generator().manual_seed(2)
    ids = torch.randint(0, 512, (shape["batch"], shape["seq"] + 1), generator=gen).to(device)
    run = alternate({k: (lambda k=k: train_step(models[k], opts[k], ids, dtype, device))
                     for k in models}, shape["rounds"], 1, baseline="none")  # fmt: skip
    medians = run["medians"]
    assert isinstance(medians, dict)
    tokens = shape["batch"] * shape["seq"]
    out = {
        "status": "ok", "shape": shape, "dtype": dtype_name, "memory": fw,
        "tokens_per_step": tokens,
        "tokens_per_s": {k: tokens / v for k, v in medians.items()},
        "median_step_s": medians,
        "throughput_ratio_fwpkm_over_none": 1 / run["median_ratios"]["fwpkm"],  # type: ignore[index]
        "step_ratio_spread": run["ratio_spread"]["fwpkm"],  # type: ignore[index]
    }  # fmt: skip
    models.clear()  # free the GPU memory before the next measurement
    opts.clear()
    if device == "cuda":
        torch.cuda.empty_cache()
    return out


def compile_repo(ctx: Run, dtype: str) -> dict[str, Any]:
    s, device = ctx.sizes, ctx.device
    if device != "cuda":
        return {"status": "skipped", "reason": NOT_ON_CPU + " in the smoke run (inductor on "
                "a CPU compiles C++ for minutes); the GPU run measures it"}  # fmt: skip
    left = ctx.budget_s - ctx.elapsed()
    if left < COMPILE_NEEDS_S + PARTS[-1][2]:
        return {
            "status": "skipped",
            "reason": f"{left:.0f} s of the budget left: compiling "
            f"(~{COMPILE_NEEDS_S:.0f} s) would leave too little for the evidence part",
        }
    out: dict[str, Any] = {"status": "ok", "preset": s.compile_preset, "seq_len": s.compile_seq}
    for mode, flag in (("eager", False), ("compiled", True)):
        result = overhead.measure(s.compile_preset, s.compile_seq, 1, s.speed_rounds,
                                  s.speed_warmup + (2 if flag else 0), device, dtype,
                                  compile=flag)  # fmt: skip
        out[mode] = clean(result)
        ctx.flush("speed")()
    eager, compiled = out["eager"], out["compiled"]
    out["repo_speedup_compiled"] = eager["median_repo_s"] / compiled["median_repo_s"]
    out["rope_speedup_compiled"] = eager["median_rope_s"] / compiled["median_rope_s"]
    return out


# ------------------------------------------------------------------ part 4: evidence
def evidence_job(job: dict[str, Any]) -> dict[str, Any]:
    """Train one method (rope also yields DroPE) on the demo's task and evaluate it (worker)."""
    from longpos.checkpoint import load_model
    from longpos.demo import DemoPlan, model_config, train_config, vocab_size
    from longpos.eval.adapter import LongposEvalModel
    from longpos.eval.runner import run_eval
    from longpos.surgery import drop_positions
    from longpos.train.loop import train

    torch.set_num_threads(1)
    plan = DemoPlan(**job["plan"])
    device, method, seed, root = job["device"], job["method"], job["seed"], Path(job["root"])
    start = time.perf_counter()
    cfg = model_config(plan, method, vocab_size(plan))
    tcfg = dataclasses.replace(train_config(plan, seed, plan.steps), device=device)
    run_dir = root / f"{method}-s{seed}"
    model = LongposLM(cfg, torch.Generator().manual_seed(seed))
    done = [run_dir]
    if method == "rope" and job["drope"]:
        drop_step = round(plan.drop_fraction * plan.steps)
        train(model, tcfg, run_dir, stop_after=drop_step, resume=False)
        snapshot = load_model(run_dir / "checkpoint")
        train(LongposLM(cfg), tcfg, run_dir)  # resumes to the end
        drop_positions(snapshot)
        recal = dataclasses.replace(train_config(plan, seed + 1000, plan.steps - drop_step),
                                    device=device)  # fmt: skip
        train(snapshot, recal, root / f"drope-s{seed}", resume=False)
        done.append(root / f"drope-s{seed}")
    else:
        train(model, tcfg, run_dir, resume=False)
    lengths = [plan.length * m for m in plan.length_multipliers]
    accuracy: dict[str, dict[str, float]] = {}
    for folder in done:
        evaluated = LongposEvalModel(load_model(folder / "model"), device=device)
        result = run_eval(
            evaluated, [plan.task], lengths, plan.samples, folder / "eval", seed=10_000 + seed,
            task_options={plan.task: plan.task_options}, progress=False,
        )  # fmt: skip
        accuracy[folder.name] = {
            str(length): None if score is None else score / 100
            for length, score in result.scores[plan.task].items()
        }
    return {"job": f"{method}-s{seed}", "seconds": round(time.perf_counter() - start, 1),
            "accuracy": accuracy}  # fmt: skip


def part_evidence(ctx: Run) -> dict[str, Any]:
    from longpos.demo import DemoPlan

    s, record = ctx.sizes, ctx.rec.part("evidence")
    plan = DemoPlan(length=s.evidence_length, steps=s.evidence_steps,
                    batch_size=s.evidence_batch, samples=s.evidence_samples,
                    length_multipliers=s.evidence_multipliers)  # fmt: skip
    root = ctx.out / "evidence"
    root.mkdir(parents=True, exist_ok=True)
    methods = [m for m in s.evidence_methods if m != "drope"]
    jobs = [dict(plan=dataclasses.asdict(plan), device=ctx.device, method=m, seed=seed,
                 root=str(root), drope="drope" in s.evidence_methods)
            for seed in s.evidence_seeds for m in methods]  # fmt: skip
    tokens = plan.steps * plan.batch_size * plan.length
    record.update(
        task=plan.task, task_options=plan.task_options, length=plan.length, steps=plan.steps,
        batch=plan.batch_size, tokens_per_model=tokens, seeds=list(s.evidence_seeds),
        methods=list(s.evidence_methods), eval_lengths=[plan.length * m for m in
        plan.length_multipliers], samples_per_length=plan.samples, processes=len(jobs),
        drope=f"the rope run dropped at {plan.drop_fraction:.1%} of its steps, recalibrated "
        "for the rest at L (the demo's recipe)",
    )  # fmt: skip
    ctx.flush("evidence")()
    results: dict[str, Any] = record.setdefault("jobs", {})
    spawn = mp.get_context("spawn")
    # the jobs get what is left of the budget (at least a minute); late ones are recorded
    deadline = time.perf_counter() + max(60.0, ctx.budget_s - ctx.elapsed())
    timed_out = False
    pool = spawn.Pool(len(jobs))
    try:
        pending = {job["method"] + f"-s{job['seed']}": pool.apply_async(evidence_job, (job,))
                   for job in jobs}  # fmt: skip
        for name, handle in pending.items():
            try:
                results[name] = handle.get(timeout=max(1.0, deadline - time.perf_counter()))
            except mp.TimeoutError:
                timed_out = True
                results[name] = {"status": "timed out", "reason": "past the run's budget"}
            except Exception as exc:  # noqa: BLE001
                results[name] = error_record(exc)
            print(f"[gpu_run]   evidence/{name}: {results[name].get('status', 'ok')}", flush=True)
            ctx.flush("evidence")()
    finally:
        if timed_out:
            pool.terminate()
        else:
            pool.close()
        pool.join()
    return {"status": "ok" if not timed_out else "partial"}


# ------------------------------------------------------------------ markdown
def _ratio_line(key: str, r: dict[str, Any]) -> str:
    return (f"{key}: RePo/RoPE median per-round ratio {r['summary']}, {r.get('rounds')} rounds;"
            f" peak memory GiB {r.get('peak_memory_gib')}")  # fmt: skip


SPEED_LINES: dict[str, Callable[[str, dict[str, Any]], str]] = {
    "native_repo_vs_rope": _ratio_line,
    "hf_repo_vs_stock": _ratio_line,
    "fwpkm_throughput": lambda _, r: (
        f"FwPKM / no memory training throughput: {r['throughput_ratio_fwpkm_over_none']:.3f}"
        f" (tokens/s { {k: round(v) for k, v in r['tokens_per_s'].items()} })"),
    "compile_repo": lambda _, r: (
        f"torch.compile, RePo step: {r['repo_speedup_compiled']:.3f}x faster compiled;"
        f" RePo/RoPE eager {r['eager']['median_ratio']:.3f},"
        f" compiled {r['compiled']['median_ratio']:.3f}"),
    "eval_batched_vs_unbatched": lambda _, r: (
        f"eval, {r['preset']} at {r['length']}: batch {r['batch']} is {r['speedup']:.2f}x"
        f" batch 1 (identical predictions: {r['identical_predictions']})"),
}  # fmt: skip
"""How ``summary.md`` words each finished speed measurement (a failed one: status and error)."""


def summary_markdown(results: dict[str, Any]) -> str:
    header = results.get("header", {})
    lines = [
        f"# GPU run ({header.get('mode', '?')})",
        "",
        f"Command: `{header.get('command', '')}`; started {header.get('started', '')}.",
        "",
    ]
    parts = results.get("parts", {})
    env = parts.get("env", {})
    if env:
        lines += [f"Device: {env.get('device')}; torch {env.get('torch')}, CUDA "
                  f"{env.get('cuda')}, transformers {env.get('transformers')}.", ""]  # fmt: skip
    lines += ["| part | status | seconds |", "|---|---|---|"]
    for name, part in parts.items():
        lines.append(f"| {name} | {part.get('status')} | {part.get('seconds', '')} |")
    corr = parts.get("correctness", {})
    for backend in ("native", "hf"):
        rows = corr.get(backend, {})
        if rows:
            lines += ["", f"## Cached decoding vs full forward: {backend} ({corr.get('dtype')})",
                      "", "| plan | max abs diff | logit scale | greedy agreement | finite |",
                      "|---|---|---|---|---|"]  # fmt: skip
            for plan, r in rows.items():
                if r.get("status") == "ok":
                    lines.append(f"| {plan} | {r['max_abs_diff']:.3g} | {r['logit_scale']:.3g} "
                                 f"| {r['greedy_agreement']:.3f} | {r['finite']} |")  # fmt: skip
                else:
                    lines.append(f"| {plan} | {r.get('status')}: {r.get('error', '')} | | | |")
    sdpa = corr.get("sdpa", {})
    if sdpa.get("status") == "ok":
        lines += ["", "## SDPA backends", "", "| path | alone: ok / refused | default dispatch |",
                  "|---|---|---|"]  # fmt: skip
        for path, r in sdpa.items():
            if isinstance(r, dict):
                alone = ", ".join(f"{k}: {'ok' if v == 'ok' else 'no'}"
                                  for k, v in r["backends_alone"].items())  # fmt: skip
                lines.append(f"| {path} | {alone} | {', '.join(r['default_dispatch_ops'])} |")
    longp = corr.get("long_positions", {})
    if longp:
        lines += [
            "",
            f"Long positions ({longp.get('tokens')} tokens, RePo): "
            f"{json.dumps({k: v for k, v in longp.items() if k in ('native', 'hf', 'error')})}",
        ]
    speed = parts.get("speed", {})
    if speed:
        lines += ["", "## Speed", ""]
        for key, describe in SPEED_LINES.items():
            r = speed.get(key, {})
            if r.get("status") == "ok":
                lines.append(f"- {describe(key, r)}")
            elif r:
                lines.append(f"- {key}: {r.get('status')} "
                             f"({r.get('error', r.get('reason', ''))})")  # fmt: skip
    ev = parts.get("evidence", {})
    if ev.get("jobs"):
        lines += ["", f"## Evidence: `{ev.get('task')}` at L = {ev.get('length')}, "
                  f"{ev.get('tokens_per_model')} tokens per model, seeds {ev.get('seeds')}", "",
                  "| run | " + " | ".join(str(x) for x in ev.get("eval_lengths", [])) + " |",
                  "|---|" + "---|" * len(ev.get("eval_lengths", []))]  # fmt: skip
        for job in ev["jobs"].values():
            for run_name, acc in job.get("accuracy", {}).items():
                cells = [f"{100 * acc[str(n)]:.0f}" if acc.get(str(n)) is not None else "?"
                         for n in ev.get("eval_lengths", [])]  # fmt: skip
                lines.append(f"| {run_name} | " + " | ".join(cells) + " |")
            if job.get("status") == "error":
                lines.append(f"| (job error) | {job.get('error')} |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ driver
@dataclasses.dataclass
class Run:
    out: Path
    device: str
    sizes: Sizes
    rec: Recorder
    budget_s: float
    start: float

    def flush(self, part: str) -> Callable[[], None]:
        return lambda: self.rec.flush(part)

    def elapsed(self) -> float:
        return time.perf_counter() - self.start


PARTS: tuple[tuple[str, Callable[[Run], dict[str, Any]], float], ...] = (
    ("env", part_env, 0.0),
    ("correctness", part_correctness, 90.0),
    ("speed", part_speed, 180.0),
    ("evidence", part_evidence, 150.0),
)
"""(name, function, the least time in seconds it needs on the GPU: a part starts only if
that much of ``--budget-s`` is left)."""


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--out", default="gpu-results", help="output folder")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes (CPU check)")
    parser.add_argument("--parts", default=",".join(p[0] for p in PARTS),
                        help="comma-separated subset, run in the fixed order")  # fmt: skip
    parser.add_argument("--budget-s", type=float, default=480.0,
                        help="skip a part when less than it needs is left of this")  # fmt: skip
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here (use --device cpu --smoke)")
    device = "cuda" if args.device.startswith("cuda") else "cpu"
    if args.smoke and device == "cpu":
        # tiny shapes: one thread (two OpenMP threads on a shared machine are 100x slower)
        torch.set_num_threads(1)
    wanted = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(wanted) - {p[0] for p in PARTS})
    if unknown:
        parser.error(f"--parts: unknown {unknown}; allowed: {[p[0] for p in PARTS]}")
    out = Path(args.out)
    header = {
        "command": "python " + " ".join([sys.argv[0], *(argv if argv is not None else
                                                       sys.argv[1:])]),
        "mode": "smoke" if args.smoke else "full", "device": device,
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "budget_s": args.budget_s,
    }  # fmt: skip
    ctx = Run(out, device, SMOKE if args.smoke else FULL, Recorder(out, header), args.budget_s,
              time.perf_counter())  # fmt: skip
    for name, fn, needs in PARTS:
        if name not in wanted:
            continue
        record = ctx.rec.part(name)
        left = ctx.budget_s - ctx.elapsed()
        if not args.smoke and left < needs:
            record.update(status="skipped", reason=f"{left:.0f} s of the budget left, needs "
                          f"about {needs:.0f} s")  # fmt: skip
            ctx.rec.flush(name)
            print(f"[gpu_run] {name}: skipped ({left:.0f} s left)", flush=True)
            continue
        start = time.perf_counter()
        print(f"[gpu_run] {name}: start at {ctx.elapsed():.1f} s", flush=True)
        try:
            status = fn(ctx)
            record.update({k: v for k, v in status.items() if k != "status"})
            record["status"] = status.get("status", "ok")
        except Exception as exc:  # noqa: BLE001
            record.update(error_record(exc))
        record["seconds"] = round(time.perf_counter() - start, 1)
        ctx.rec.flush(name)
        print(f"[gpu_run] {name}: {record['status']} in {record['seconds']} s", flush=True)
        if device == "cuda":
            with contextlib.suppress(Exception):
                torch.cuda.empty_cache()
    ctx.rec.results["header"]["total_s"] = round(ctx.elapsed(), 1)
    ctx.rec.flush()
    print(f"[gpu_run] done in {ctx.elapsed():.1f} s: {out / 'summary.md'}", flush=True)
    return ctx.rec.results


if __name__ == "__main__":
    main()
