"""Perplexity against context length on offline English text.

Protocol (``spec/tasks.md`` section 6): the offline corpus (:mod:`longpos.data.corpus`) is
tokenised, and for each window length W the text is cut into non-overlapping windows of
W tokens (at most ``max_windows`` of them, from the start). Reported per W: the mean
per-token negative log-likelihood over every predicted token, its perplexity, and the
**loss against token position** in buckets of ``bucket`` positions, so a failure beyond
the training length L is visible as a rise in the late buckets.

``cropped=True`` gives the "cropped context" baseline: each token is scored with at most
``crop`` - 1 tokens of context (a sliding window of length ``crop``, default L), computed
by scoring chunks of ``crop`` // 2 new tokens after the ``crop`` // 2 preceding tokens.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from longpos.model import LongposLM


def token_losses(model: LongposLM, ids: torch.Tensor) -> torch.Tensor:
    """Per-token NLL of ``ids (B, W)``: (B, W - 1), float32."""
    logits = model(ids[:, :-1]).logits.float()  # (B, W-1, V)
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="none"
    ).view(ids.shape[0], -1)


def cropped_losses(model: LongposLM, ids: torch.Tensor, crop: int) -> torch.Tensor:
    """Per-token NLL where every token sees between ``crop // 2`` and ``crop - 1`` earlier
    tokens: chunks of ``crop // 2`` targets, each scored after the ``crop // 2`` tokens
    before the chunk (fewer at the start of the text)."""
    half = max(1, crop // 2)
    width = ids.shape[1]
    out = torch.empty(ids.shape[0], width - 1)
    for start in range(1, width, half):
        end = min(width, start + half)
        ctx_start = max(0, start - half)
        window = ids[:, ctx_start:end]  # (B, <= crop)
        losses = token_losses(model, window)  # targets ctx_start+1 .. end-1
        out[:, start - 1 : end - 1] = losses[:, start - ctx_start - 1 :]
    return out


@torch.no_grad()
def perplexity_vs_length(
    model: LongposLM,
    tokens: list[int] | torch.Tensor,
    lengths: list[int],
    *,
    max_windows: int = 8,
    bucket: int = 64,
    cropped: bool = False,
    crop: int | None = None,
) -> dict[str, Any]:
    """Mean NLL, perplexity and loss-by-position per window length (see module doc)."""
    ids = torch.as_tensor(tokens, dtype=torch.long)
    model = model.eval()
    crop = crop or model.config.max_seq_len
    if max(ids.tolist(), default=0) >= model.config.vocab_size:
        raise ValueError(
            f"the text has token ids >= the model's vocab_size {model.config.vocab_size}: "
            "use the tokenizer the model was trained with"
        )
    results: dict[str, Any] = {}
    for width in lengths:
        n = min(max_windows, len(ids) // width)
        if n == 0:
            raise ValueError(
                f"the text has {len(ids)} tokens, fewer than one window of {width}: "
                "use shorter lengths or a longer text"
            )
        windows = ids[: n * width].view(n, width)  # (n, W)
        rows = [
            cropped_losses(model, w[None], crop) if cropped else token_losses(model, w[None])
            for w in windows
        ]
        losses = torch.cat(rows)  # (n, W-1)
        by_position = [
            float(losses[:, i : i + bucket].mean()) for i in range(0, losses.shape[1], bucket)
        ]
        nll = float(losses.mean())
        results[str(width)] = {
            "nll": nll,
            "ppl": math.exp(min(nll, 50.0)),
            "windows": n,
            "tokens": n * (width - 1),
            "loss_by_position": by_position,
            "bucket": bucket,
        }
    return {"lengths": lengths, "cropped": cropped, "crop": crop if cropped else None,
            "results": results}  # fmt: skip
