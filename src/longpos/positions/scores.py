"""Attention scores for the encodings that replace the softmax attention (``attend``).

Stick-breaking, CoPE and FoX compute their weights from the full score matrix; this module
owns the part they share: query heads of a grouped-query group use their key-value head's keys
and values, and scores are taken in at least float32.
"""

from __future__ import annotations

import torch


def grouped_scores(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q (B, H, T, D), k (B, H_kv, T_k, D), v (B, H_kv, T_k, D_v) -> scores (B, H, T, T_k) in
    at least float32 (``q . k * scale``), and k, v repeated to the query heads."""
    groups = q.shape[1] // k.shape[1]
    if groups > 1:  # query heads of a group share their key-value head
        k = k.repeat_interleave(groups, dim=1)
        v = v.repeat_interleave(groups, dim=1)
    wide = torch.promote_types(q.dtype, torch.float32)
    scores = (q.to(wide) @ k.to(wide).transpose(-1, -2)) * scale
    return scores, k, v
