"""The training loop: AdamW groups, schedules, accumulation, clipping, z-loss, bf16,
periodic evaluation, JSONL metrics, exact resume, and DDP / FSDP under ``torchrun``.

Losses are sums divided by **global** token counts (known on every rank, because every
rank draws the same global batch and keeps its own rows), so a run with any world size
or accumulation gives the same update as one process with the whole batch.

Output folder::

    out/config.json        resolved model + training config
    out/metrics.jsonl      one line per logged step / evaluation
    out/checkpoint/        resumable state: model (loadable with load_model), optimiser,
                           step, RNG (written atomically)
    out/model/             final model (config.json + model.safetensors)
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from longpos.io import atomic_write, atomic_write_json, read_json_object
from longpos.memory.placement import memory_param_groups
from longpos.train import distributed, model_io
from longpos.train.config import TrainConfig
from longpos.train.data import DataSource, build_source
from longpos.train.optim import build_optimizer, param_groups, set_lr
from longpos.train.schedule import lr_multiplier

STATE_FILE = "trainer_state.pt"


@dataclass
class LossParts:
    """Sums over tokens (not means), so they can be divided by global counts."""

    answer: torch.Tensor
    lm: torch.Tensor
    zloss: torch.Tensor
    correct: torch.Tensor


def loss_sums(
    model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor | None, autocast: bool
) -> LossParts:
    """ids: (B, T+1) tokens; mask: (B, T+1) answer tokens or None."""
    inputs, targets = ids[:, :-1], ids[:, 1:]  # (B, T) each
    with torch.autocast(device_type=ids.device.type, dtype=torch.bfloat16, enabled=autocast):
        logits = model(
            inputs, **({} if model_io.is_native(_inner(model)) else {"use_cache": False})
        ).logits
    logits = logits.float()  # (B, T, V)
    token_loss = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none"
    ).view_as(targets)  # (B, T)
    log_z = torch.logsumexp(logits, dim=-1)  # (B, T)
    answer_mask = mask[:, 1:] if mask is not None else torch.zeros_like(targets, dtype=torch.bool)
    hits = (logits.argmax(-1) == targets) & answer_mask
    return LossParts(
        answer=(token_loss * answer_mask).sum(),
        lm=token_loss.sum(),
        zloss=log_z.pow(2).sum(),
        correct=hits.sum().float(),
    )


def _inner(model: torch.nn.Module) -> torch.nn.Module:
    return cast(torch.nn.Module, model.module) if hasattr(model, "module") else model


class Trainer:
    """Trains ``model`` (a LongposLM, or a Hugging Face causal LM) with ``cfg``, writing
    everything under ``out_dir``."""

    def __init__(
        self,
        model: torch.nn.Module,
        cfg: TrainConfig,
        out_dir: str | Path,
        *,
        source: DataSource | None = None,
        extra_groups: dict | None = None,
        parallel: str = "ddp",
        on_eval: Callable[[torch.nn.Module, int], dict[str, Any]] | None = None,
        source_folder: str | None = None,
    ):
        self.cfg = cfg
        self.out = Path(out_dir)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.ctx = distributed.setup(cfg.device)
        self.device = self.ctx.device
        self.source = source or build_source(cfg.data, cfg.seed)
        if self.source.vocab_size > model_io.vocab_size(model):
            raise ValueError(
                f"the data uses {self.source.vocab_size} token ids but model.vocab_size="
                f"{model_io.vocab_size(model)}: set --model.vocab_size {self.source.vocab_size} "
                "(or leave it unset to follow the data), or pick task options with fewer "
                "symbols (--train.data.options)"
            )
        self.source_folder = source_folder
        from longpos.train.limits import check_train_memory

        check_train_memory(
            cast(Any, model).config, sum(p.numel() for p in model.parameters()),
            max(1, cfg.batch_size // (cfg.grad_accum * self.ctx.world_size)), cfg.seq_len + 1,
        )  # fmt: skip
        self.model = model.to(self.device)
        self.wrapped = distributed.wrap(self.model, self.ctx, parallel)
        if extra_groups is None:  # memory layers get their own groups unless the caller chose
            extra_groups = memory_param_groups(self.model, cfg.optim.lr)
        groups = param_groups(self.model, cfg.optim, extra_groups)
        self.optimizer = build_optimizer(groups, cfg.optim)
        self.autocast = cfg.bf16 and self.device.type == "cuda"
        self.on_eval = on_eval
        self.step = 0
        self.tokens = 0
        self.is_text = cfg.data.kind == "text"

    # -------------------------------------------------------------- state
    def checkpoint_dir(self) -> Path:
        return self.out / "checkpoint"

    def save_checkpoint(self) -> None:
        model_state = distributed.full_model_state(self.wrapped, self.ctx)
        optim_state = distributed.full_optimizer_state(self.wrapped, self.optimizer, self.ctx)
        if not self.ctx.is_main:
            return
        final = self.checkpoint_dir()
        tmp = self.out / "checkpoint.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        model_io.save(self.model, model_state, tmp, self.source_folder)
        state = {
            "step": self.step,
            "tokens": self.tokens,
            "optimizer": optim_state,
            "torch_rng": torch.get_rng_state(),
            "train_config": self.cfg.to_dict(),
        }
        pswa = getattr(self.model, "pswa_generator", None)
        if isinstance(pswa, torch.Generator):  # FwPKM's pSWA draws (native models)
            state["pswa_rng"] = pswa.get_state()
        atomic_write(tmp / STATE_FILE, lambda p: torch.save(state, p))
        old = self.out / "checkpoint.old"
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)

    def try_resume(self) -> bool:
        """Load ``out/checkpoint`` if present; returns whether training resumed."""
        folder = self.checkpoint_dir()
        if not (folder / STATE_FILE).is_file():
            return False
        saved = model_io.load_state(self.model, folder)
        state = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=False)
        distributed.load_full_model_state(self.wrapped, saved, self.ctx)
        distributed.load_full_optimizer_state(
            self.wrapped, self.optimizer, state["optimizer"], self.ctx
        )
        torch.set_rng_state(state["torch_rng"])
        pswa = getattr(self.model, "pswa_generator", None)
        if isinstance(pswa, torch.Generator) and "pswa_rng" in state:
            pswa.set_state(state["pswa_rng"])
        self.step, self.tokens = int(state["step"]), int(state["tokens"])
        self._truncate_metrics(self.step)
        return True

    def _truncate_metrics(self, step: int) -> None:
        path = self.out / "metrics.jsonl"
        if not self.ctx.is_main or not path.exists():
            return
        keep = [
            line for line in path.read_text().splitlines()
            if line.strip() and json.loads(line)["step"] <= step
        ]  # fmt: skip

        def write(p: Path) -> None:
            p.write_text("".join(k + "\n" for k in keep))

        atomic_write(path, write)

    def trained_on(self) -> dict[str, Any] | None:
        """What the data was, stored with the saved model (``longpos eval`` / ``viz`` read it)."""
        from longpos.train.data import TaskSource, TextSource

        src, cfg = self.source, self.cfg
        if isinstance(src, TaskSource):
            return {
                "kind": "task", "tasks": list(src.tasks), "options": dict(src.options),
                "task_options": src.task_options, "vocab_size": src.vocab_size,
                "seq_len": cfg.seq_len,
            }  # fmt: skip
        if isinstance(src, TextSource):
            name = cfg.data.tokenizer if self.source_folder is None else "hf (the folder's own)"
            return {"kind": "text", "tokenizer": name, "vocab_size": src.vocab_size,
                    "seq_len": cfg.seq_len}  # fmt: skip
        return None

    def run_config(self) -> dict[str, Any]:
        return {
            "model": cast(Any, self.model).config.to_dict(), "train": self.cfg.to_dict(),
            "source": self.source_folder, "world_size": self.ctx.world_size,
        }  # fmt: skip

    def check_same_run(self) -> None:
        """Refuse to resume a run in ``out`` that was started with other options."""
        saved = read_json_object(self.out / "config.json")
        if saved is None:
            return
        new = json.loads(json.dumps(self.run_config(), default=str))  # as saved on disk
        # A Hugging Face config also records its own bookkeeping (versions, paths): only a
        # native model's config is compared; the weights check catches other architectures.
        parts = ("model", "train") if model_io.is_native(self.model) else ("train",)
        diffs = [
            (key, a, b)
            for part in parts
            for key, a, b in _differences(saved.get(part) or {}, new[part], part)
            if key.split(".", 1)[1] not in RESUME_FREE or part != "train"
        ]
        if saved.get("source") != new["source"]:
            diffs.append(("hf-model", saved.get("source"), new["source"]))
        if not diffs:
            return
        key, was, now = diffs[0]
        others = ", ".join(d[0] for d in diffs[1:4])
        more = f" (also differs: {others})" if others else ""
        out = self.out
        raise ValueError(
            f"--out {out} holds a run started with {key}={was!r}, this command has "
            f"{key}={now!r} (--{key}){more}: rerun with the run's own options to resume it, "
            f"pass --no-resume to start over in {out}, use another --out, or train further from "
            f"its weights with a new schedule: --init-from {out / 'model'} --out OTHER"
        )

    def log(self, record: dict[str, Any]) -> None:
        if self.ctx.is_main:
            with open(self.out / "metrics.jsonl", "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")

    # ----------------------------------------------------------- one step
    def train_step(self) -> dict[str, float]:
        cfg, ctx = self.cfg, self.ctx
        length = cfg.length_at(self.step)
        ids, mask = self.source.batch(self.step, cfg.batch_size, length + 1, "train")
        n_all = ids.shape[0] * length
        n_ans = int(mask[:, 1:].sum()) if mask is not None else 0
        answer_w = 0.0 if self.is_text or n_ans == 0 else cfg.data.answer_weight
        lm_w = 1.0 if self.is_text else cfg.data.lm_weight
        rows = distributed.rank_rows(ids.shape[0], ctx)
        ids = ids[rows].to(self.device)
        mask = mask[rows].to(self.device) if mask is not None else None
        micro = torch.chunk(torch.arange(ids.shape[0]), cfg.grad_accum)
        totals = torch.zeros(4, device=self.device)
        self.wrapped.train()
        for i, part in enumerate(micro):
            sync = i == len(micro) - 1
            with distributed.maybe_no_sync(self.wrapped, ctx, sync):
                sums = loss_sums(
                    self.wrapped, ids[part], mask[part] if mask is not None else None,
                    self.autocast,
                )  # fmt: skip
                loss = lm_w * sums.lm / n_all + cfg.z_loss * sums.zloss / n_all
                if answer_w:
                    loss = loss + answer_w * sums.answer / n_ans
                (loss * ctx.world_size).backward()  # DDP averages over ranks
            totals += torch.stack([sums.answer, sums.lm, sums.zloss, sums.correct]).detach()
        mult = lr_multiplier(self.step, cfg.steps, cfg.optim)
        set_lr(self.optimizer, mult)
        grad_norm = distributed.clip_grad_norm(self.wrapped, cfg.optim.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.tokens += n_all
        totals = distributed.all_reduce_sum(totals, ctx)
        out = {
            "lm_loss": float(totals[1]) / n_all,
            "lr": cfg.optim.lr * mult,
            "grad_norm": float(grad_norm),
            "seq_len": length,
        }
        if n_ans:
            out["answer_loss"] = float(totals[0]) / n_ans
            out["answer_acc"] = float(totals[3]) / n_ans
        out["loss"] = (answer_w * out.get("answer_loss", 0.0)) + lm_w * out["lm_loss"]
        return out

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Held-out batches (split ``eval``) at the training length."""
        cfg = self.cfg
        self.wrapped.eval()
        totals = torch.zeros(4)
        n_all = n_ans = 0
        for i in range(cfg.eval_batches):
            ids, mask = self.source.batch(i, cfg.batch_size, cfg.seq_len + 1, "eval")
            sums = loss_sums(
                self.model, ids.to(self.device),
                mask.to(self.device) if mask is not None else None, self.autocast,
            )  # fmt: skip
            totals += torch.stack([sums.answer, sums.lm, sums.zloss, sums.correct]).cpu()
            n_all += ids.shape[0] * cfg.seq_len
            n_ans += int(mask[:, 1:].sum()) if mask is not None else 0
        out = {"eval_lm_loss": float(totals[1]) / n_all}
        out["eval_ppl"] = math.exp(min(out["eval_lm_loss"], 50.0))
        if n_ans:
            out["eval_answer_loss"] = float(totals[0]) / n_ans
            out["eval_answer_acc"] = float(totals[3]) / n_ans
        if self.on_eval is not None:
            out.update(self.on_eval(self.model, self.step))
        return out

    # ------------------------------------------------------------ the run
    def fit(
        self, resume: bool = True, stop_after: int | None = None, verbose: bool = False
    ) -> dict[str, Any]:
        """Run to ``cfg.steps`` (or stop early after ``stop_after`` total steps, leaving a
        resumable checkpoint, as an interrupted run would).

        With ``resume``, a checkpoint in ``out`` written with other options is refused
        (ValueError naming the first option that differs); a finished run is not trained
        or evaluated again. ``verbose`` prints when a run resumes or was already finished.
        """
        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        has_checkpoint = (self.checkpoint_dir() / STATE_FILE).is_file()
        if resume and has_checkpoint:
            self.check_same_run()
        if self.ctx.is_main:
            atomic_write_json(self.out / "config.json", self.run_config())
        resumed = resume and self.try_resume()
        say = print if verbose and self.ctx.is_main else (lambda *_: None)
        if resumed and self.step >= cfg.steps and (self.out / "model" / "config.json").is_file():
            final = _last_eval(self.out / "metrics.jsonl")
            say(f"{self.out} already finished ({self.step} of {cfg.steps} steps): nothing to do "
                "(--no-resume trains it again from scratch)")  # fmt: skip
            return {"last": {}, "eval": final or {}, "resumed": True, "already_done": True}
        if resumed:
            say(f"resuming from step {self.step} of {cfg.steps} ({self.checkpoint_dir()})")
        if not resumed and self.ctx.is_main:
            (self.out / "metrics.jsonl").unlink(missing_ok=True)
        bar = tqdm(
            total=cfg.steps, initial=self.step, disable=not (cfg.progress and self.ctx.is_main),
            desc="train", dynamic_ncols=True,
        )  # fmt: skip
        last: dict[str, Any] = {}
        window_tokens: float
        window_start, window_tokens = time.perf_counter(), 0
        while self.step < cfg.steps:
            if stop_after is not None and self.step >= stop_after:
                bar.close()
                self.save_checkpoint()
                return {"last": last, "stopped_at": self.step, "resumed": resumed}
            record = self.train_step()
            window_tokens += cfg.batch_size * record["seq_len"]
            bar.update(1)
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                elapsed = time.perf_counter() - window_start
                record.update(step=self.step, tokens=self.tokens,
                              tokens_per_s=window_tokens / max(elapsed, 1e-9))  # fmt: skip
                window_start, window_tokens = time.perf_counter(), 0
                self.log(record)
                bar.set_postfix(_bar_fields(record))
            last = record
            if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < cfg.steps:
                self.log({"step": self.step, **self.evaluate()})
            if cfg.save_every and self.step % cfg.save_every == 0 and self.step < cfg.steps:
                self.save_checkpoint()
        bar.close()
        final_eval = {"step": self.step, **self.evaluate()}
        self.log(final_eval)
        self.save_checkpoint()
        state = distributed.full_model_state(self.wrapped, self.ctx)  # every rank takes part
        if self.ctx.is_main:
            model_io.save(
                self.model, state, self.out / "model", self.source_folder, self.trained_on()
            )
        return {"last": last, "eval": final_eval, "resumed": resumed}


RESUME_FREE = frozenset({"progress", "device", "threads", "save_every", "log_every", "eval_every"})
"""Training options a resumed run may change: they do not change what it computes."""


def _bar_fields(record: dict[str, Any]) -> dict[str, str]:
    """The progress bar's fields: the plain next-token loss over all positions (nats), the
    answer accuracy on training batches (task data), tokens per second."""
    out = {"next_token_loss": f"{record['lm_loss']:.3f}"}
    if "answer_acc" in record:
        out["answer_acc"] = f"{100 * record['answer_acc']:.0f}%"
    out["tok/s"] = f"{record['tokens_per_s']:.0f}"
    return out


def _differences(old: dict[str, Any], new: dict[str, Any], prefix: str):
    """(dotted key, old value, new value) for every leaf that differs."""
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key), new.get(key)
        name = f"{prefix}.{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            yield from _differences(a, b, name)
        elif a != b and not (isinstance(a, list | tuple) and list(a) == list(b or [])):
            yield name, a, b


def _last_eval(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    evals = [r for r in rows if "eval_lm_loss" in r]
    return evals[-1] if evals else None


def train(model: torch.nn.Module, cfg: TrainConfig, out_dir: str | Path, **kwargs: Any) -> dict:
    """Train (resuming from ``out_dir/checkpoint`` if present); returns final metrics."""
    resume = kwargs.pop("resume", True)
    stop_after = kwargs.pop("stop_after", None)
    verbose = kwargs.pop("verbose", False)
    trainer = Trainer(model, cfg, out_dir, **kwargs)
    return trainer.fit(resume=resume, stop_after=stop_after, verbose=verbose)
