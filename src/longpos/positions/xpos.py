"""xPos: RoPE with a per-frequency exponential decay of attention over distance.

Sun, Dong, Patra, Ma, Huang, Benhaim, Chaudhary, Song, Wei, "A Length-Extrapolatable
Transformer", arXiv 2212.10554.

Each rotary frequency i (of D/2) gets a decay base zeta_i = (2i/D + gamma) / (1 + gamma) in
(0, 1). The query at position m is rotated as in RoPE and scaled by zeta^(m / B), the key at
position n rotated and scaled by zeta^(-n / B), so the score of pair i carries
zeta_i^((m - n) / B): still a function of the distance only, and decaying with it (faster for
low frequencies, which carry long-range position). Paper defaults: gamma = 0.4, B
(``scale_base``) = 512.

Positions are absolute (keys are scaled once, before the KV cache, so cached decoding equals
the full forward); the key factor zeta^(-n/B) grows with n (about 5e8 at n = 16 B for the
smallest zeta), so angles and scales are computed in float32. With a partial rotary factor
only the rotated dimensions are scaled. Being index-based, xPos converts a pretrained RoPE
layer mechanically (the paper itself trains from scratch).
"""

from __future__ import annotations

import torch
from torch import Tensor

from longpos.positions.rope import RotaryEncoding
from longpos.positions.scaling import RopeConfig

XPOS_GAMMA = 0.4
XPOS_SCALE_BASE = 512.0


def xpos_zeta(rotary_dim: int, gamma: float = XPOS_GAMMA) -> torch.Tensor:
    """Decay bases ``zeta_i = (2i / D + gamma) / (1 + gamma)``, float32 ``(D/2,)``."""
    i = torch.arange(0, rotary_dim, 2, dtype=torch.float32)
    return (i / rotary_dim + gamma) / (1 + gamma)


class XPosEncoding(RotaryEncoding):
    """The model's RoPE frequencies plus xPos's decay, on integer positions ``(B, T)``."""

    def __init__(
        self,
        head_dim: int,
        rope: RopeConfig,
        gamma: float = XPOS_GAMMA,
        scale_base: float = XPOS_SCALE_BASE,
    ):
        if not gamma > 0:
            raise ValueError(f"xpos gamma={gamma} must be > 0")
        if not scale_base > 0:
            raise ValueError(f"xpos scale_base={scale_base} must be > 0")
        self.gamma = gamma
        self.scale_base = scale_base
        super().__init__(head_dim, rope)

    def decay(self, positions: torch.Tensor) -> torch.Tensor:
        """zeta^(p / B) for positions ``(B, T)`` -> ``(B, 1, T, rotary_dim)`` float32."""
        zeta = xpos_zeta(self.rotary_dim, self.gamma).to(positions.device)
        with torch.autocast(device_type=positions.device.type, enabled=False):
            power = positions.to(torch.float32)[:, None, :, None] / self.scale_base
            scale = zeta**power  # (B, 1, T, D_rot / 2)
        return torch.cat((scale, scale), dim=-1)

    def forward(
        self, q: Tensor, k: Tensor, positions: Tensor, seq_len: int | None = None
    ) -> tuple[Tensor, Tensor]:
        # q: (B, H, T, D), k: (B, H_kv, T, D); positions: (B, T) integer index
        if positions.dim() != 2:
            raise ValueError(f"xPos takes positions (B, T); got {tuple(positions.shape)}")
        cos, sin = self.tables(positions[:, None, :], seq_len)  # (B, 1, T, D_rot)
        scale = self.decay(positions)
        return self._rotate(q, cos * scale, sin * scale), self._rotate(k, cos / scale, sin / scale)
