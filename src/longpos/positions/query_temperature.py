"""NoPE with a log-length query temperature: the NoPE layers of Llama 4's interleaved recipe.

Llama 4 ("The Llama 4 herd", Meta AI, 2025) leaves RoPE out of every fourth layer and, in those
layers only, scales each query by a factor that grows with the log of its position, so that
attention does not flatten over long contexts ("attention temperature tuning"):

    q_p <- q_p * (1 + attn_scale * ln(floor((p + 1) / floor_scale) + 1))

exactly 1 for positions below ``floor_scale``. Keys are untouched, so the KV cache is
unaffected and cached decoding equals a full forward (the factor depends on the query's own
position only). Defaults are Llama 4's released values (``attn_scale`` 0.1, ``floor_scale``
8192); the named plans ``nope_every_K_temp`` use this technique for their NoPE layers, and
SmolLM3-style ``nope_every_K`` plans use plain NoPE (:mod:`longpos.plan`).
"""

from __future__ import annotations

import torch

from longpos.positions.rope import PositionEncoding

QUERY_TEMPERATURE_SCALE = 0.1
QUERY_TEMPERATURE_FLOOR = 8192


class QueryTemperatureNoPE(PositionEncoding):
    """No rotation; queries scaled by 1 + attn_scale * ln(floor((p + 1) / floor_scale) + 1)."""

    def __init__(
        self,
        attn_scale: float = QUERY_TEMPERATURE_SCALE,
        floor_scale: int = QUERY_TEMPERATURE_FLOOR,
    ):
        super().__init__()
        if not attn_scale >= 0:
            raise ValueError(f"query temperature attn_scale={attn_scale} must be >= 0")
        if not (isinstance(floor_scale, int) and floor_scale >= 1):
            raise ValueError(
                f"query temperature floor_scale={floor_scale!r} must be an integer >= 1"
            )
        self.attn_scale = attn_scale
        self.floor_scale = floor_scale

    def scale(self, positions: torch.Tensor) -> torch.Tensor:
        """The factor per query, float32 ``(B, 1, T, 1)`` for integer positions ``(B, T)``."""
        steps = torch.floor((positions.to(torch.float32) + 1) / self.floor_scale)
        return (1 + self.attn_scale * torch.log(steps + 1))[:, None, :, None]

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # q: (B, H, T, D); positions: (B, T) integer index
        if positions.dim() != 2:
            raise ValueError(
                f"query temperature takes positions (B, T); got {tuple(positions.shape)}"
            )
        return (q.to(torch.float32) * self.scale(positions)).to(q.dtype), k
