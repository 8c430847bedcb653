"""Stick-breaking attention: each query takes what is left of the stick, nearest key first.

Tan, Shen, Yang, Panda, Courville, "Scaling Stick-Breaking Attention: An Efficient
Implementation and In-depth Study", arXiv 2410.17980.

No positional encoding and no softmax. With z_ij = q_i . k_j / sqrt(D) and beta_ij = sigmoid(z_ij),
query i gives key j <= i the weight

    A_ij = beta_ij * prod_{j < l <= i} (1 - beta_il),

so the nearest key breaks off its share first and farther keys get what remains: recency is
built into the weights (positions come from the order alone). The weights sum to at most 1
(the rest of the stick is dropped, as in the paper's formulation). Computed in log space,
``log A_ij = logsigmoid(z_ij) + sum_{l > j} logsigmoid(-z_il)`` over allowed keys, with a
reverse cumulative sum; this plain PyTorch reference materialises (B, H, T, T_k), fine at the
demo's scale. Keys are untouched by it, so cached decoding equals a full forward. The paper
trains from scratch, so converting a pretrained model to it is refused.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from longpos.positions.rope import PositionEncoding
from longpos.positions.scores import grouped_scores


def stick_breaking_weights(scores: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """A ``(B, H, T, T_k)`` (float32 or wider) from scaled scores z and the boolean mask."""
    z = scores.to(torch.promote_types(scores.dtype, torch.float32))  # at least float32
    log_take = F.logsigmoid(z).masked_fill(~allowed, float("-inf"))
    log_pass = F.logsigmoid(-z).masked_fill(~allowed, 0.0)  # (B, H, T, T_k)
    after = log_pass.flip(-1).cumsum(-1).flip(-1) - log_pass  # sum over allowed keys l > j
    return torch.exp(log_take + after)


class StickBreakingAttention(PositionEncoding):
    """No rotation; the attention weights of stick-breaking instead of a softmax."""

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return q, k

    def attend(
        self, q: Tensor, k: Tensor, v: Tensor, allowed: Tensor, scale: float
    ) -> tuple[Tensor, Tensor]:
        """q (B, H, T, D), k and v (B, H_kv, T_k, D) -> output (B, H, T, D), weights."""
        scores, k, v = grouped_scores(q, k, v, scale)  # bf16 scores would lose the stick
        weights = stick_breaking_weights(scores, allowed)
        return (weights.to(v.dtype) @ v), weights
