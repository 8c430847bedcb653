"""ALiBi: attention with linear biases instead of positional embeddings.

Press, Smith, Lewis, "Train Short, Test Long: Attention with Linear Biases Enables Input
Length Extrapolation", arXiv 2108.12409.

No rotation: each head h adds ``-m_h * (i - j)`` to the logit of query i on key j <= i, a
penalty linear in the distance with a head-specific slope. For H heads a power of two the
slopes are the geometric sequence ``2^(-8/H), 2^(-16/H), ..., 2^(-8)``; otherwise the slopes of
the nearest smaller power of two, then every other slope of the next power of two (the
paper's recipe). The bias depends on integer positions only (the query's and each key's,
counted over real tokens under left padding), so cached decoding equals a full forward.

It goes through the attention's additive-bias seam: ``logit_bias(index, key_index)``; the paper
trains it from scratch, so converting a pretrained RoPE model to it is refused.
"""

from __future__ import annotations

import math

import torch

from longpos.positions.rope import PositionEncoding


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """The paper's head slopes m_h, float32 ``(H,)``."""
    if n_heads < 1:
        raise ValueError(f"n_heads={n_heads} must be >= 1")

    def geometric(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    lower = 2 ** int(math.floor(math.log2(n_heads)))
    slopes = geometric(lower)
    if lower < n_heads:
        slopes += geometric(2 * lower)[0::2][: n_heads - lower]
    return torch.tensor(slopes, dtype=torch.float32)


class ALiBiEncoding(PositionEncoding):
    """No rotation; a linear distance penalty per head on the attention logits."""

    def __init__(self, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.slopes = alibi_slopes(n_heads)  # a plain attribute: never saved, moved lazily

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return q, k

    def logit_bias(self, index: torch.Tensor, key_index: torch.Tensor) -> torch.Tensor:
        """``-m_h (i - j)`` for query positions ``index (B, T)`` and key positions
        ``key_index (B, T_k)`` -> ``(B, H, T, T_k)`` float32 (future keys are masked anyway)."""
        distance = index[:, :, None].to(torch.float32) - key_index[:, None, :].to(torch.float32)
        slopes = self.slopes.to(index.device)[None, :, None, None]  # (1, H, 1, 1)
        return -slopes * distance.clamp(min=0)[:, None]  # (B, H, T, T_k)
