"""RePo: context re-positioning with learned, real-valued, per-head positions.

Li, Zhao, Cai, Sproat, "Language Models with Context Re-Positioning", arXiv 2512.14391.

A tiny SwiGLU network f_phi reads the hidden state h_i that feeds the layer's
Q/K/V projections (the normalised residual in pre-norm models) and predicts one real
position per head:

    r_i     = SiLU(h_i W_g) * (h_i W_c)        W_g, W_c: d -> d_p = d/8, no bias
    z_{i,h} = r_i . W_z[:, h]                  W_z: d_p -> H (H_kv under GQA), no bias

z then replaces the integer index in RoPE, for both the query and the key of token i
in head h. There is no activation, clamp, offset or integer index mixed into z: it can
be negative, and it starts small and near-constant (truncated-normal init, std 0.02,
cut at +-3 std), so RePo layers begin close to NoPE. Under grouped-query attention one
z is predicted per key-value head and shared by its query heads (keeps GQA's cache
savings; reduces exactly to the paper when H_kv = H). z is returned in float32.

Named ablations (all off by default): ``index_blend`` p mixes (1-p) z + p i (the
reference's unused ``dynamic_pe_pdrop``), ``init="zero_assign"`` starts W_z at zero,
and ``variant`` selects the simpler ``linear`` (d -> H_kv) or ``linear_shared``
(d -> 1, shared by all heads) predictors of the paper's code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from longpos.positions.rope import PositionAssigner

REPO_VARIANTS = ("swiglu", "linear", "linear_shared")
REPO_INITS = ("trunc_normal", "zero_assign")
REPO_INIT_STD = 0.02


@dataclass
class RePoConfig:
    """Options of the RePo position assigner (``spec/repo.md``); paper defaults."""

    hidden_ratio: int = 8
    """d_p = d_model // hidden_ratio, the SwiGLU width of f_phi (>= 1)."""
    variant: str = "swiglu"
    """Predictor: swiglu (paper) | linear (d -> H_kv) | linear_shared (d -> 1)."""
    init: str = "trunc_normal"
    """trunc_normal (paper: std 0.02, cut at +-3 std) | zero_assign (W_z = 0; ablation)."""
    index_blend: float = 0.0
    """Ablation: z <- (1 - p) z + p * index, p in [0, 1]; 0 (off) in the paper."""
    apply_rope_scaling: bool = True
    """Apply the model's RoPE scaling (e.g. YaRN) to RePo layers too, as the paper's
    evaluation code does; False is the ablation."""
    lr_multiplier: float = 1.0
    """Learning-rate multiplier for the assigner parameters (> 0; 1.0 = paper)."""

    def __post_init__(self) -> None:
        if not isinstance(self.hidden_ratio, int) or self.hidden_ratio < 1:
            raise ValueError(f"repo.hidden_ratio={self.hidden_ratio!r} must be an integer >= 1")
        if self.variant not in REPO_VARIANTS:
            raise ValueError(f"repo.variant={self.variant!r} is unknown; allowed: {REPO_VARIANTS}")
        if self.init not in REPO_INITS:
            raise ValueError(f"repo.init={self.init!r} is unknown; allowed: {REPO_INITS}")
        if not 0.0 <= self.index_blend <= 1.0:
            raise ValueError(f"repo.index_blend={self.index_blend} must be in [0, 1]")
        if not self.lr_multiplier > 0:
            raise ValueError(f"repo.lr_multiplier={self.lr_multiplier} must be > 0")


def trunc_normal_init(weight: torch.Tensor, std: float, generator: torch.Generator | None) -> None:
    """Truncated normal, mean 0, cut at +-3 std."""
    nn.init.trunc_normal_(weight, mean=0.0, std=std, a=-3 * std, b=3 * std, generator=generator)


class RePoAssigner(PositionAssigner):
    """f_phi: hidden state ``(B, T, d)`` -> positions ``(B, H_kv, T)`` (float32).

    Its parameters form the ``repo`` optimiser group at ``options.lr_multiplier``.
    """

    optim_group = "repo"

    def __init__(self, d_model: int, n_heads: int, options: RePoConfig | None = None, **kwargs):
        super().__init__()
        options = options if options is not None else RePoConfig(**kwargs)
        self.options = options
        self.variant = options.variant
        self.init = options.init
        self.index_blend = options.index_blend
        self.lr_multiplier = options.lr_multiplier
        self.n_heads = n_heads
        hidden = max(1, d_model // options.hidden_ratio)
        if options.variant == "swiglu":
            self.gate = nn.Linear(d_model, hidden, bias=False)
            self.content = nn.Linear(d_model, hidden, bias=False)
            self.assign = nn.Linear(hidden, n_heads, bias=False)
        else:
            out = 1 if options.variant == "linear_shared" else n_heads
            self.assign = nn.Linear(d_model, out, bias=False)
        self.init_weights()

    def init_weights(self, generator: torch.Generator | None = None) -> None:
        for module in (getattr(self, "gate", None), getattr(self, "content", None), self.assign):
            if module is not None:
                trunc_normal_init(module.weight, REPO_INIT_STD, generator)
        if self.init == "zero_assign":
            nn.init.zeros_(self.assign.weight)

    def forward(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        # x: (B, T, d); index: (B, T) integer positions (only used by the ablation blend)
        if self.variant == "swiglu":
            r = F.silu(self.gate(x)) * self.content(x)  # (B, T, d_p)
            z = self.assign(r)  # (B, T, H_kv)
        else:
            z = self.assign(x)  # (B, T, H_kv or 1)
            if self.variant == "linear_shared":
                z = z.expand(-1, -1, self.n_heads)  # (B, T, H_kv)
        z = z.to(torch.float32).transpose(1, 2)  # (B, H_kv, T)
        if self.index_blend:
            p = self.index_blend
            z = (1 - p) * z + p * index.to(torch.float32)[:, None, :]
        return z
