"""FIRE: functional interpolation for relative positions, a learned additive logit bias.

Li, Yun, Wang, Liu, Ouyang, Sarlos, Ranjan, Bhojanapalli, Kumar, "Functional Interpolation
for Relative Positions Improves Long Context Transformers", arXiv 2310.04418.

The logit of query i on key j <= i gets a bias from a small MLP f_theta of the *progressively
interpolated* relative distance:

    b_h(i, j) = f_theta(psi(i - j) / psi(max(L, i)))_h,     psi(x) = ln(c x + 1)

so every query's distances are mapped into [0, 1] by its own position (distances seen in
training and beyond it land in the same range), with ``c`` > 0 and the threshold ``L`` > 0
learned, and one output per head. Library choices where we did not take a value from the
paper: f_theta is Linear(1, 32) -> ReLU -> Linear(32, H); ``c`` starts at 1 and ``L`` at the
model's training length (both kept positive through a softplus); the MLP's weights are drawn
like the model's other small linears (std 1/sqrt(fan_in), output layer std 0.02).

The bias depends only on integer positions, so cached decoding equals a full forward. It is
materialised per query and key, (B, H, T, T_k): fine at the demo's scale, not at long
contexts (when every row has the same positions the MLP runs once and the bias is broadcast
over the batch). It goes through the attention's additive-bias seam; the paper trains from
scratch, so converting a pretrained RoPE model to it is refused.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from longpos.positions.rope import PositionEncoding

FIRE_HIDDEN = 32


def _inverse_softplus(y: float) -> float:
    return y + math.log(-math.expm1(-y))


class FIREEncoding(PositionEncoding):
    """No rotation; a learned bias of the interpolated distance per head on the logits."""

    def __init__(self, n_heads: int, train_length: int, hidden: int = FIRE_HIDDEN):
        super().__init__()
        if train_length < 1:
            raise ValueError(f"FIRE train_length={train_length} must be >= 1")
        self.n_heads = n_heads
        self.train_length = train_length
        self.mlp_in = nn.Linear(1, hidden)
        self.mlp_out = nn.Linear(hidden, n_heads)
        self.raw_c = nn.Parameter(torch.zeros(()))
        self.raw_threshold = nn.Parameter(torch.zeros(()))
        self.init_weights()

    @property
    def c(self) -> torch.Tensor:
        return F.softplus(self.raw_c)

    @property
    def threshold(self) -> torch.Tensor:
        return F.softplus(self.raw_threshold)

    @torch.no_grad()
    def init_weights(self, generator: torch.Generator | None = None) -> None:
        for layer, std in ((self.mlp_in, 1.0), (self.mlp_out, 0.02)):
            nn.init.normal_(layer.weight, 0.0, std, generator=generator)
            nn.init.zeros_(layer.bias)
        self.raw_c.fill_(_inverse_softplus(1.0))
        self.raw_threshold.fill_(_inverse_softplus(float(self.train_length)))

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return q, k

    def interpolated_distance(self, index: torch.Tensor, key_index: torch.Tensor) -> torch.Tensor:
        """psi(i - j) / psi(max(L, i)) for ``index (B, T)`` and ``key_index (B, T_k)`` ->
        ``(B, T, T_k)`` float32 in [0, 1] for keys j <= i (0 for future keys)."""
        i = index.to(torch.float32)[:, :, None]  # (B, T, 1)
        j = key_index.to(torch.float32)[:, None, :]  # (B, 1, T_k)
        c = self.c.to(torch.float32)
        distance = (i - j).clamp(min=0)
        scale = torch.maximum(i, self.threshold.to(torch.float32))  # (B, T, 1)
        return torch.log1p(c * distance) / torch.log1p(c * scale)

    def logit_bias(self, index: torch.Tensor, key_index: torch.Tensor) -> torch.Tensor:
        """``f_theta(interpolated distance)`` -> ``(B, H, T, T_k)`` float32.

        When every row has the same positions (training without padding), the MLP runs on
        one row and the bias is broadcast over the batch."""
        rows = index.shape[0]
        if rows > 1 and _same_rows(index) and _same_rows(key_index):
            return self.logit_bias(index[:1], key_index[:1]).expand(rows, -1, -1, -1)
        x = self.interpolated_distance(index, key_index)[..., None]  # (B, T, T_k, 1)
        with torch.autocast(device_type=x.device.type, enabled=False):
            hidden = F.relu(F.linear(x, self.mlp_in.weight.float(), self.mlp_in.bias.float()))
            bias = F.linear(hidden, self.mlp_out.weight.float(), self.mlp_out.bias.float())
        return bias.permute(0, 3, 1, 2)  # (B, H, T, T_k)


def _same_rows(index: torch.Tensor) -> bool:
    return bool(torch.equal(index, index[:1].expand_as(index)))
