"""Rotary position encoding (RoPE; Su et al., arXiv 2104.09864) with real-valued positions.

A head vector at position p is rotated pairwise by the angles p * omega_i. The score
between a query rotated at m and a key rotated at n then depends only on n - m, which
holds for any real m, n: this is what lets RePo (arXiv 2512.14391) feed learned,
real-valued, per-head positions through the same machinery.

Convention: half-split (NeoX / Llama / Qwen / Mistral / OLMo2): pairs are
(x_i, x_{i + D/2}) and ``x' = x * cos + rotate_half(x) * sin`` with
``cos = concat(cos(p omega), cos(p omega))``. Angles and the rotation are computed in
float32 with autocast disabled whatever the activation dtype (z can reach the
thousands; bf16 angles would destroy positional resolution), then cast back.

Positions may be shared by all heads, ``(B, T)``, or per key-value head,
``(B, H_kv, T)``; query heads of a GQA group share their key head's positions.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from longpos.positions.scaling import NoScaling, RopeConfig


def unscaled(rope: RopeConfig) -> RopeConfig:
    """``rope`` without its frequency scaling (same base)."""
    return dataclasses.replace(rope, scaling=NoScaling())


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) on the last dimension's two halves."""
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def rope_cos_sin(
    positions: torch.Tensor, inv_freq: torch.Tensor, attention_factor: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables (float32) for integer or real positions.

    positions: ``(..., T)`` (e.g. (B, T) or (B, H, T)); inv_freq: ``(D/2,)``.
    Returns two tensors of shape ``(..., T, D)``, already multiplied by
    ``attention_factor`` (as transformers does for YaRN).
    """
    with torch.autocast(device_type=positions.device.type, enabled=False):
        angles = positions.to(torch.float32)[..., None] * inv_freq.to(
            positions.device
        )  # (..., T, D/2)
        emb = torch.cat((angles, angles), dim=-1)  # (..., T, D)
        cos, sin = emb.cos(), emb.sin()
        if attention_factor != 1.0:
            cos, sin = cos * attention_factor, sin * attention_factor
    return cos, sin


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x (B, H, T, D)`` by float32 tables broadcastable to it; returns x's dtype."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        x32 = x.to(torch.float32)
        out = x32 * cos + rotate_half(x32) * sin
    return out.to(x.dtype)


class PositionEncoding(nn.Module):
    """Maps ``(q (B, H, T, D), k (B, H_kv, T, D), positions)`` to rotated ``(q, k)``.

    ``uses_model_rope``: True when the encoding is the model's own integer RoPE, so a back end
    may rotate with tables it computed once for all such layers (the native model's shared
    tables, a Hugging Face family's ``position_embeddings``) instead of calling it.
    """

    uses_model_rope: bool = False

    def init_weights(self, generator: torch.Generator | None = None) -> None:
        """Initialise this encoding's parameters (none for the parameter-free ones)."""

    def set_rope(self, rope: RopeConfig) -> None:
        """The model's RoPE base / scaling changed (e.g. YaRN at evaluation); encodings that
        do not rotate ignore it."""

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


class NoPE(PositionEncoding):
    """No positional encoding (Kazemnejad et al., arXiv 2305.19466): the identity.

    Position information then comes only from the causal mask. The rotation is
    skipped entirely (not applied with cos = 1, sin = 0), so it costs nothing.
    """

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return q, k


class RotaryEncoding(PositionEncoding):
    """RoPE, optionally frequency-scaled (PI / NTK / YaRN / Llama-3), on any positions.

    The frequencies are recomputed from the config (never saved) and kept per device in a
    plain attribute, not a buffer: a model built on the meta device (as transformers loads
    checkpoints) would otherwise hold uninitialised frequencies. So a model's rope scaling can
    be changed after training with :meth:`set_rope`. ``follows_scaling=False`` keeps the base
    frequencies whatever scaling the model's RoPE gets (RePo's ``apply_rope_scaling=False``
    ablation). With ``rope.partial_rotary_factor`` < 1 only the first ``rotary_dim``
    dimensions of each head rotate (Phi-3 / GPT-NeoX style); the rest pass through.
    """

    def __init__(
        self,
        head_dim: int,
        rope: RopeConfig,
        apply_attention_factor: bool = True,
        uses_model_rope: bool = False,
        follows_scaling: bool = True,
    ):
        super().__init__()
        self.head_dim = head_dim
        self.uses_model_rope = uses_model_rope
        self.follows_scaling = follows_scaling
        self.apply_attention_factor = apply_attention_factor
        self.set_rope(rope)

    def set_rope(self, rope: RopeConfig) -> None:
        """Switch to another base / scaling (e.g. YaRN at evaluation time)."""
        if not self.follows_scaling:
            rope = unscaled(rope)
        self.rope = rope
        self.rotary_dim = rope.rotary_dim(self.head_dim)
        with torch.device("cpu"):  # real numbers even while a model is built on "meta"
            inv_freq, factor = rope.frequencies(self.head_dim)
        self.attention_factor = factor if self.apply_attention_factor else 1.0
        self._inv_freq: dict[torch.device, torch.Tensor] = {inv_freq.device: inv_freq}

    def frequencies(self, device: torch.device) -> torch.Tensor:
        """The inverse frequencies ``(rotary_dim / 2,)`` float32 on ``device``."""
        table = self._inv_freq.get(device)
        if table is None:
            table = next(iter(self._inv_freq.values())).to(device)
            self._inv_freq[device] = table
        return table

    def tables(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin tables for positions ``(B, T)`` or ``(B, H, T)`` -> ``(..., T, rotary_dim)``."""
        if self.rope.is_dynamic:
            seq_len = int(positions.detach().max().item()) + 1
            inv_freq, _ = self.rope.frequencies(self.head_dim, seq_len=seq_len)
        else:
            inv_freq = self.frequencies(positions.device)
        return rope_cos_sin(positions, inv_freq, self.attention_factor)

    def _rotate(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        if self.rotary_dim == x.shape[-1]:
            return apply_rotary(x, cos, sin)
        rot, rest = x[..., : self.rotary_dim], x[..., self.rotary_dim :]
        return torch.cat((apply_rotary(rot, cos, sin), rest), dim=-1)

    def rotation(self, positions: torch.Tensor):
        """``(q, k) -> (q, k)`` for positions shared by all heads ``(B, T)``, with the tables
        computed once (what a back end shares between the layers of the model's RoPE)."""
        cos, sin = self.tables(positions[:, None, :])  # (B, 1, T, D_rot)

        def rotate(q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self._rotate(q, cos, sin), self._rotate(k, cos, sin)

        return rotate

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # q: (B, H, T, D), k: (B, H_kv, T, D)
        # positions: (B, T) shared, or (B, H_kv, T) per key-value head.
        if positions.dim() == 2:
            return self.rotation(positions)(q, k)
        bsz, n_heads, seq, dim = q.shape
        n_kv = k.shape[1]
        if positions.dim() != 3 or positions.shape[1] != n_kv or n_heads % n_kv:
            raise ValueError(
                f"per-head positions must be (B, H_kv={n_kv}, T); got {tuple(positions.shape)}"
            )
        cos, sin = self.tables(positions)  # (B, H_kv, T, D_rot), computed once per kv head
        # each query group shares its key-value head's positions
        q_grouped = q.view(bsz, n_kv, n_heads // n_kv, seq, dim)  # (B, H_kv, G, T, D)
        q_rot = self._rotate(q_grouped, cos[:, :, None], sin[:, :, None]).view_as(q)
        return q_rot, self._rotate(k, cos, sin)


class PositionAssigner(nn.Module):
    """Maps the layer input ``x (B, T, C)`` and integer positions ``(B, T)`` to the
    positions its layer's encoding uses: ``(B, T)`` or per key-value head ``(B, H_kv, T)``.

    ``optim_group``: the optimiser group of this assigner's parameters (None: the backbone's
    groups); ``lr_multiplier``: that group's learning-rate multiplier. ``returns_index``: the
    assigner returns the integer index unchanged.
    """

    optim_group: str | None = None
    lr_multiplier: float = 1.0
    returns_index: bool = False

    def init_weights(self, generator: torch.Generator | None = None) -> None:
        """Initialise this assigner's parameters (none for the parameter-free ones)."""

    def forward(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class IndexAssigner(PositionAssigner):
    """The usual integer token index: position i for the i-th token."""

    returns_index = True

    def forward(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return index
