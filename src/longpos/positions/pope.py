"""PoPE: polar-coordinate position embeddings, content in the magnitudes, position in the phase.

Gopalakrishnan, Csordás, Schmidhuber, Mozer, "Decoupling the 'What' and 'Where' With Polar
Coordinate Positional Embeddings", arXiv 2509.10534.

RoPE rotates pairs of components, so a pair's phase mixes content and position. PoPE makes
every one of the D components of a head a complex number whose magnitude is content only,
``mu = softplus(x_c)``, and whose phase is position only: ``t * theta_c`` for the query at t,
``s * theta_c + delta_c`` for the key at s, with D frequencies ``theta_c = base^(-c / D)`` and a
learned phase offset ``delta`` per key-value head and component. The score is the real part of
the product,

    q_t . k_s = sum_c mu_q,c mu_k,c cos((t - s) theta_c - delta_c),

a function of the distance only. As real vectors, q and k become (mu cos, mu sin), twice the
head width; values keep theirs. Library choices where we did not take a value from the paper:
``delta`` starts at 0 (free, unbounded); the logit scale stays 1/sqrt(D). Keys are transformed
before the KV cache (their positions are absolute), so cached decoding equals a full forward.
The paper trains from scratch, so converting a pretrained RoPE model to it is refused.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from longpos.positions.rope import PositionEncoding


class PoPEEncoding(PositionEncoding):
    """(q, k) of width D -> polar (mu cos, mu sin) of width 2D, position in the phase only."""

    widens_keys = 2
    """q and k leave this encoding twice as wide as they came (values keep their width)."""

    def __init__(self, head_dim: int, n_kv_heads: int, theta: float = 10_000.0):
        super().__init__()
        self.head_dim = head_dim
        exponents = torch.arange(head_dim, dtype=torch.float32) / head_dim
        self.frequencies = 1.0 / (theta**exponents)  # (D,) a plain attribute, never saved
        self.delta = nn.Parameter(torch.zeros(n_kv_heads, head_dim))

    @torch.no_grad()
    def init_weights(self, generator: torch.Generator | None = None) -> None:
        self.delta.zero_()

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # q: (B, H, T, D), k: (B, H_kv, T, D); positions: (B, T) integer index
        if positions.dim() != 2:
            raise ValueError(f"PoPE takes positions (B, T); got {tuple(positions.shape)}")
        bsz, n_heads, seq, dim = q.shape
        n_kv = k.shape[1]
        with torch.autocast(device_type=q.device.type, enabled=False):
            angle = positions.to(torch.float32)[:, None, :, None] * self.frequencies.to(
                q.device
            )  # (B, 1, T, D)
            mu_q, mu_k = F.softplus(q.float()), F.softplus(k.float())
            key_angle = angle + self.delta.float()[None, :, None, :]  # (B, H_kv, T, D)
            q_polar = torch.cat((mu_q * angle.cos(), mu_q * angle.sin()), dim=-1)
            k_polar = torch.cat((mu_k * key_angle.cos(), mu_k * key_angle.sin()), dim=-1)
        del n_heads, n_kv, bsz, seq, dim
        return q_polar.to(q.dtype), k_polar.to(k.dtype)  # (B, H | H_kv, T, 2D)
