"""FoX, the Forgetting Transformer: a data-dependent forget gate as an additive logit bias.

Lin, Nikishin, He, Courville, "Forgetting Transformer: Softmax Attention with a Forget Gate",
arXiv 2503.02130.

No positional embedding. Every token t emits a scalar forget gate per head,
``f_t = sigmoid(w^T x_t + b)``, and the logit of query i on key j <= i gets the log of what the
gates between them let through,

    D_ij = sum_{j < l <= i} ln f_l,

so attention decays with distance at a rate the content sets (``f`` near 1 keeps the past,
near 0 forgets it). In this library's terms the gates are the layer's assigned "positions":
:class:`FoXGate` maps x to ln f per key-value head (shared by its query heads under GQA, as
RePo's positions are), :class:`FoXAttention` stores ln f beside each key (one extra channel,
so the KV cache carries it and each token's gate is computed once) and takes the softmax over
``q . k / sqrt(D) + D_ij`` through the attention-replacing seam, with a reverse cumulative sum
over the allowed keys. Library choices where we did not take a value from the paper: the gate's
weights start at std 0.02 and its bias at 3 (f about 0.95: a slow initial decay). This plain
PyTorch reference materialises (B, H, T, T_k): fine at the demo's scale. The paper trains from
scratch, so converting a pretrained model to it is refused.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from longpos.positions.rope import PositionAssigner, PositionEncoding
from longpos.positions.scores import grouped_scores

FOX_GATE_BIAS = 3.0


class FoXGate(PositionAssigner):
    """x ``(B, T, d)`` -> ln f ``(B, H_kv, T)`` (float32 or wider), one forget gate per
    key-value head."""

    def __init__(self, d_model: int, n_kv_heads: int):
        super().__init__()
        self.gate = nn.Linear(d_model, n_kv_heads, bias=True)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self, generator: torch.Generator | None = None) -> None:
        std = 0.02
        nn.init.trunc_normal_(self.gate.weight, 0.0, std, -3 * std, 3 * std, generator=generator)
        nn.init.constant_(self.gate.bias, FOX_GATE_BIAS)

    def forward(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        logits = self.gate(x)
        wide = logits.to(torch.promote_types(logits.dtype, torch.float32))  # at least float32
        return F.logsigmoid(wide).transpose(1, 2)  # (B, H_kv, T)


class FoXAttention(PositionEncoding):
    """Keys carry ln f in one extra channel; softmax attention with the forget-gate bias."""

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # k: (B, H_kv, T, D); positions: ln f (B, H_kv, T) -> k (B, H_kv, T, D + 1)
        if positions.dim() != 3 or positions.shape[1] != k.shape[1]:
            raise ValueError(
                f"FoX takes forget gates (B, H_kv, T) from its assigner; got "
                f"{tuple(positions.shape)}"
            )
        return q, torch.cat((k, positions[..., None].to(k.dtype)), dim=-1)

    def attend(
        self, q: Tensor, k: Tensor, v: Tensor, allowed: Tensor, scale: float
    ) -> tuple[Tensor, Tensor]:
        """q (B, H, T, D), k (B, H_kv, T_k, D + 1), v (B, H_kv, T_k, D) -> output, weights."""
        keys, log_f = k[..., :-1], k[..., -1]  # (B, H_kv, T_k, D), (B, H_kv, T_k)
        groups = q.shape[1] // keys.shape[1]
        scores, _, v = grouped_scores(q, keys, v, scale)  # (B, H, T, T_k)
        if groups > 1:  # ... and the gates of their key-value head
            log_f = log_f.repeat_interleave(groups, dim=1)
        passed = log_f.to(scores.dtype)[:, :, None, :].masked_fill(~allowed, 0.0)
        decay = passed.flip(-1).cumsum(-1).flip(-1) - passed  # sum over allowed l > j
        logits = (scores + decay).masked_fill(~allowed, float("-inf"))
        weights = logits.softmax(dim=-1)
        return (weights.to(v.dtype) @ v), weights
