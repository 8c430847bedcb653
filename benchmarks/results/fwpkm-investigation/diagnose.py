"""Diagnostics of a trained tiny FwPKM model on MQAR (issue 15, part 5; see README.md here).

Loads a model kept by ``benchmarks/fwpkm_quality.py --task mqar --runs-dir DIR`` and measures,
on held-out data, with one thread:

* ``passes``: accuracy with 1-3 reading passes with the pass-boundary fix and without it (the
  old behaviour is restored by making ``FwPKMLayer.end_pass`` a no-op).
* ``dense``: every query of dense training-style sequences at L and 4L, split by where its
  needle is: still in the query's own chunk (not yet written to the memory) or in an earlier
  chunk (written), and whether it is within the pSWA window; under full or sliding-window
  attention at evaluation, with the memory read on or dropped (gate forced to 0).
* ``long``: on the benchmark's evaluation prompts at 1, 4, 16, 32 L: accuracy, accuracy when
  the asked key's random filler occurrences are replaced by other symbols (interference), what
  the memory returns at the question (closer to the needle's value target or to the target
  written by the last filler occurrence of the key), the size of the value table, the
  self-rewrite factor of the writes, and the gate by region.

    PYTHONPATH=src python benchmarks/results/fwpkm-investigation/diagnose.py \
        --model /tmp/fwinv/mqar/fwpkm-s0/model --out benchmarks/results/fwpkm-investigation/diag
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from longpos.checkpoint import load_model
from longpos.memory.fwpkm import FwPKMLayer
from longpos.tasks.base import generate_sample
from longpos.tasks.mqar import MQARConfig, mqar_example

OPTIONS = dict(num_symbols=64, num_kv_pairs=8)


def mean(xs: list[float]) -> float | None:
    return statistics.fmean(xs) if xs else None


class GateOff:
    """Context: force every FwPKM gate of ``model`` to 0 (the memory read is dropped)."""

    def __init__(self, model: Any, on: bool = True):
        self.model, self.on, self.hooks = model, on, []

    def __enter__(self) -> None:
        if self.on:
            for b in self.model.blocks:
                if b.fwpkm is not None:
                    hook = b.fwpkm.g_proj.register_forward_hook(
                        lambda m, i, o: torch.full_like(o, -30.0)
                    )
                    self.hooks.append(hook)

    def __exit__(self, *exc: Any) -> None:
        for h in self.hooks:
            h.remove()


@torch.no_grad()
def logits_of(model: Any, ids: torch.Tensor, window: bool) -> torch.Tensor:
    """Full forward logits; ``window``: sliding-window attention of ``chunk`` tokens (pSWA)."""
    if not window:
        model.eval()
        return model(ids).logits
    mem = model.config.memory
    old = mem.pswa_prob
    mem.pswa_prob = 1.0  # the model applies the window in training mode only
    model.train()
    try:
        return model(ids).logits
    finally:
        mem.pswa_prob = old
        model.eval()


def eval_prompts(length: int, n: int) -> list[Any]:
    return [generate_sample("mqar", length, seed=10_000 + i, **OPTIONS) for i in range(n)]


def accuracy(model: Any, samples: list[Any], prompts: torch.Tensor, passes: int) -> float:
    hits = []
    for b in range(0, len(samples), 25):
        out = model.generate(prompts[b : b + 25], 1, read_passes=passes)[:, -1]
        hits += [int(out[j]) == s.answer_ids[0][0] for j, s in enumerate(samples[b : b + 25])]
    return statistics.fmean(hits)


# ------------------------------------------------------------------------------ passes


def part_passes(model: Any, L: int, n: int) -> dict[str, Any]:
    res: dict[str, Any] = {}
    keep = FwPKMLayer.__dict__["end_pass"]  # the staticmethod object
    for mult in (1, 4):
        samples = eval_prompts(mult * L, n)
        prompts = torch.tensor([s.prompt_ids for s in samples])
        for label, patch in (("fixed", keep), ("old", staticmethod(lambda s: s))):
            FwPKMLayer.end_pass = patch  # type: ignore[method-assign]
            try:
                res[f"{mult}L/{label}"] = {
                    p: accuracy(model, samples, prompts, p) for p in (1, 2, 3)
                }
            finally:
                FwPKMLayer.end_pass = keep  # type: ignore[method-assign]
    return res


# ------------------------------------------------------------------------------ dense


def part_dense(model: Any, L: int, chunk: int, n_seq: int) -> dict[str, Any]:
    cfg = MQARConfig(**OPTIONS)
    out: dict[str, Any] = {}
    for mult in (1, 4):
        T = mult * L
        seqs = [mqar_example(T + 1, 900_000 + i, cfg) for i in range(n_seq)]
        ids = torch.tensor([s[0] for s in seqs])  # (S, T + 1)
        inputs, targets = ids[:, :-1], ids[:, 1:]
        # per query: category of its needle
        cats: list[tuple[int, int, str]] = []  # (row, position p, category)
        for r, (seq, mask) in enumerate(seqs):
            pairs = {seq[1 + 2 * i]: 2 + 2 * i for i in range(8)}  # key -> value position
            for t in range(1, T + 1):
                if not mask[t]:
                    continue
                p = t - 1  # the key position: logits at p predict the value at t
                vpos = pairs[seq[p]]
                written = p // chunk > vpos // chunk  # the pair was written before p's chunk
                near = p - vpos < chunk  # the value token is inside the pSWA window
                cat = ("written" if written else "same-chunk") + ("/near" if near else "/far")
                cats.append((r, p, cat))
        for window in (False, True):
            for gate_off in (False, True):
                with GateOff(model, gate_off):
                    pred = torch.cat(
                        [
                            logits_of(model, inputs[b : b + 32], window).argmax(-1)
                            for b in range(0, n_seq, 32)
                        ]
                    )
                key = f"{mult}L/{'swa' if window else 'full'}/{'nomem' if gate_off else 'mem'}"
                by: dict[str, list[int]] = {}
                for r, p, cat in cats:
                    by.setdefault(cat, []).append(int(pred[r, p] == targets[r, p]))
                out[key] = {c: (statistics.fmean(v), len(v)) for c, v in sorted(by.items())}
    return out


# ------------------------------------------------------------------------------ long


def layer_input(model: Any, ids: torch.Tensor, layer_idx: int) -> torch.Tensor:
    seen: list[torch.Tensor] = []
    hook = model.blocks[layer_idx].fwpkm.register_forward_pre_hook(
        lambda m, args: seen.append(args[0].detach())
    )
    try:
        with torch.no_grad():
            model.eval()
            model(ids)
    finally:
        hook.remove()
    return seen[0]


def remove_filler_occurrences(sample: Any, rng: random.Random) -> tuple[list[int], int]:
    """Prompt with the asked key's random filler occurrences replaced (not its query pairs)."""
    ids = list(sample.prompt_ids)
    key = ids[-1]
    value = sample.answer_ids[0][0]
    symbols = [t for t in range(16, 16 + OPTIONS["num_symbols"]) if t != key]
    n = 0
    for i in range(17, len(ids) - 1):
        if ids[i] == key and ids[i + 1] != value:
            ids[i] = rng.choice(symbols)
            n += 1
    return ids, n


@torch.no_grad()
def part_long(model: Any, L: int, mults: list[int], n: int) -> dict[str, Any]:
    li = next(i for i, b in enumerate(model.blocks) if b.fwpkm is not None)
    layer: FwPKMLayer = model.blocks[li].fwpkm
    c = layer.config
    kh = c.topk * c.heads
    res: dict[str, Any] = {}
    for mult in mults:
        T0 = time.perf_counter()
        samples = eval_prompts(mult * L, n)
        prompts = torch.tensor([s.prompt_ids for s in samples])
        rng = random.Random(mult)
        cleaned = [remove_filler_occurrences(s, rng) for s in samples]
        row: dict[str, Any] = {
            "accuracy": accuracy(model, samples, prompts, 1),
            "filler_occurrences_of_asked_key": statistics.fmean(k for _, k in cleaned),
            "accuracy_without_them": accuracy(
                model, samples, torch.tensor([ids for ids, _ in cleaned]), 1
            ),
        }
        with GateOff(model):
            row["accuracy_nomem"] = accuracy(model, samples, prompts, 1)
        # the memory at the question, the value table and the writes
        x = torch.cat([layer_input(model, prompts[b : b + 25], li) for b in range(0, n, 25)])
        B, T, _ = x.shape
        q, v, g = layer.project(x)
        state = layer.init_state(B)
        rms, amax, lam = [], [], []
        for t0 in range(0, ((T - 1) // c.chunk) * c.chunk, c.chunk):
            rd = layer._read(q[:, t0 : t0 + c.chunk], state)
            _, state = layer(x[:, t0 : t0 + c.chunk], state)
            # self-rewrite factor of each written token: kH g sum_a w_a^2 / n_{i_a}
            counts = state.access_counts  # (B, N) reads of the write just done
            n_i = counts.gather(1, rd.idx.reshape(B, -1)).view_as(rd.w).clamp_min(1)
            lam.append((kh * g[:, t0 : t0 + c.chunk, None] * rd.w**2 / n_i).sum(-1).flatten())
            rms.append(float(state.values.pow(2).mean().sqrt()))
            amax.append(float(state.values.abs().amax()))
        lam_all = torch.cat(lam)
        vhat_q = layer._read(q[:, -1:], state).vhat[:, 0]  # (B, d_v): what the question reads
        needle, last_fill, closer = [], [], []
        for b, s in enumerate(samples):
            key, value = s.prompt_ids[-1], s.answer_ids[0][0]
            vpos = next(nd.token_start for nd in s.needles if nd.role == "value")
            fills = [
                i + 1
                for i in range(17, T - 1)
                if s.prompt_ids[i] == key and s.prompt_ids[i + 1] != value
            ]
            cn = float(F.cosine_similarity(vhat_q[b], v[b, vpos], dim=0))
            needle.append(cn)
            if fills:
                cf = float(F.cosine_similarity(vhat_q[b], v[b, fills[-1]], dim=0))
                last_fill.append(cf)
                closer.append(int(cn > cf))
        kv = g[:, 1:17].flatten().tolist()
        fill = g[:, 17:-1].flatten().tolist()
        row.update(
            cos_read_vs_needle_target=mean(needle),
            cos_read_vs_last_filler_target=mean(last_fill),
            needle_closer_share=mean([float(x) for x in closer]),
            n_with_filler=len(closer),
            value_rms_first_last=(rms[0], rms[-1]),
            value_rms_curve=rms[:: max(1, len(rms) // 8)],
            value_absmax_last=amax[-1],
            vhat_question_rms=float(vhat_q.pow(2).mean().sqrt()),
            rewrite_factor_mean=float(lam_all.mean()),
            rewrite_factor_gt1=float((lam_all > 1).float().mean()),
            rewrite_factor_gt2=float((lam_all > 2).float().mean()),
            read_weight_sum_sq_mean=float((layer._read(q, state).w ** 2).sum(-1).mean()),
            gate_kv_region=mean(kv),
            gate_filler=mean(fill),
            gate_question=float(g[:, -1].mean()),
            writes_per_slot=T * kh / c.n_slots,
            seconds=time.perf_counter() - T0,
        )
        res[f"{mult}L"] = row
        print(mult, json.dumps(row))
    return res


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--dense", type=int, default=128, help="dense sequences per length")
    p.add_argument("--mults", default="1,4,16,32")
    p.add_argument("--parts", default="passes,dense,long")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    torch.set_num_threads(1)
    model = load_model(args.model).eval()
    L = model.config.max_seq_len
    chunk = model.config.memory.fwpkm.chunk
    res: dict[str, Any] = {"model": args.model, "L": L, "chunk": chunk}
    t0 = time.perf_counter()
    parts = args.parts.split(",")
    if "passes" in parts:
        res["passes"] = part_passes(model, L, args.samples)
        print(json.dumps(res["passes"]))
    if "dense" in parts:
        res["dense"] = part_dense(model, L, chunk, args.dense)
        print(json.dumps(res["dense"]))
    if "long" in parts:
        res["long"] = part_long(model, L, [int(m) for m in args.mults.split(",")], args.samples)
    res["seconds"] = time.perf_counter() - t0
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).with_suffix(".json").write_text(json.dumps(res, indent=2))
    print(f"wall {res['seconds']:.0f} s")


if __name__ == "__main__":
    main()
