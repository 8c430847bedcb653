"""CoPE: contextual position encoding, positions counted by gates the context opens.

Golovneva, Wang, Weston, Sukhbaatar, "Contextual Position Encoding: Learning to Count What's
Important", arXiv 2405.18719.

A key's position is not its index but how many "counted" tokens lie between it and the query:
with scaled scores z_ij = q_i . k_j / sqrt(D) and gates g_ij = sigmoid(z_ij),

    p_ij = sum_{j <= t <= i} g_it,      (fractional, capped at n_pos - 1)

and the logit gets q_i . e[p_ij], with e a learned table of ``n_pos`` position embeddings
interpolated between e[floor p] and e[ceil p]. So a head can count words, sentences or records
instead of tokens. The softmax is taken over z_ij + q_i . e[p_ij] (scaled by the same 1/sqrt(D)).
Library choices where we did not take a value from the paper: the gates only count keys the
query may see (causal mask applied before the cumulative sum); ``n_pos`` is the training
length (at most 512); the table is shared by the heads of a layer and starts small
(std 0.02, so a model starts close to NoPE). This plain PyTorch reference materialises
(B, H, T, T_k): fine at the demo's scale. Keys are untouched, so cached decoding equals a full
forward. The paper trains from scratch, so converting a pretrained model to it is refused.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from longpos.positions.rope import PositionEncoding
from longpos.positions.scores import grouped_scores

COPE_MAX_POSITIONS = 512


class CoPEAttention(PositionEncoding):
    """No rotation; attention with gate-counted fractional positions (replaces the softmax
    attention through the ``attend`` seam)."""

    def __init__(self, head_dim: int, n_positions: int):
        super().__init__()
        if n_positions < 2:
            raise ValueError(f"CoPE n_positions={n_positions} must be >= 2")
        self.n_positions = n_positions
        self.table = nn.Parameter(torch.zeros(head_dim, n_positions))  # e[p] as columns
        self.init_weights()

    @torch.no_grad()
    def init_weights(self, generator: torch.Generator | None = None) -> None:
        nn.init.normal_(self.table, 0.0, 0.02, generator=generator)

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return q, k

    def contextual_positions(self, scores: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """p_ij = sum over allowed t >= j of sigmoid(z_it), capped at n_pos - 1 -> (B, H, T, T_k)."""
        gates = torch.sigmoid(scores).masked_fill(~allowed, 0.0)
        counted = gates.flip(-1).cumsum(-1).flip(-1)
        return counted.clamp(max=self.n_positions - 1)

    def attend(
        self, q: Tensor, k: Tensor, v: Tensor, allowed: Tensor, scale: float
    ) -> tuple[Tensor, Tensor]:
        """q (B, H, T, D), k and v (B, H_kv, T_k, D) -> output (B, H, T, D), weights."""
        scores, k, v = grouped_scores(q, k, v, scale)  # (B, H, T, T_k)
        qw = q.to(scores.dtype)
        pos = self.contextual_positions(scores, allowed)
        lower = pos.floor()
        frac = pos - lower
        lower_i = lower.long()
        upper_i = (lower_i + 1).clamp(max=self.n_positions - 1)
        per_position = (qw @ self.table.to(scores.dtype)) * scale  # (B, H, T, n_pos): q . e[p]
        bias = per_position.gather(-1, upper_i) * frac + per_position.gather(-1, lower_i) * (
            1 - frac
        )
        logits = (scores + bias).masked_fill(~allowed, float("-inf"))
        weights = logits.softmax(dim=-1)
        return (weights.to(v.dtype) @ v), weights
