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

The model's layers rotate pairwise (:func:`rotate_pairs`; one autograd node for per-head
positions): ``(x1 c - x2 s, x2 c + x1 s)`` with one cos/sin per pair, the same float32
operations as the formula above (the outputs are bit-identical), without materialising
``rotate_half`` or the repeated tables. For learned positions the backward takes
d loss / d angle from the rotated vectors (``g2 x1' - g1 x2'`` per pair) instead of
differentiating cos and sin.

Positions may be shared by all heads, ``(B, T)``, or per key-value head,
``(B, H_kv, T)``; query heads of a GQA group share their key head's positions.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from longpos.positions.scaling import NoScaling, RopeConfig


def unscaled(rope: RopeConfig) -> RopeConfig:
    """``rope`` without its frequency scaling (same base)."""
    return dataclasses.replace(rope, scaling=NoScaling())


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) on the last dimension's two halves."""
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def rope_half_cos_sin(
    positions: torch.Tensor, inv_freq: torch.Tensor, attention_factor: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin (float32) of the angles ``positions * inv_freq``, one per rotation pair.

    positions: ``(..., T)``; inv_freq: ``(D/2,)``. Returns two ``(..., T, D/2)`` tensors
    multiplied by ``attention_factor``: half of :func:`rope_cos_sin`'s tables, which repeat
    them (the same values, element for element), and what :func:`rotate_pairs` takes.
    Differentiable in ``positions`` (RePo's learned positions).
    """
    with torch.autocast(device_type=positions.device.type, enabled=False):
        if positions.dtype != torch.float32:
            positions = positions.to(torch.float32)
        if inv_freq.device != positions.device:
            inv_freq = inv_freq.to(positions.device)
        angles = positions[..., None] * inv_freq  # (..., T, D/2)
        cos, sin = angles.cos(), angles.sin()
        if attention_factor != 1.0:
            cos, sin = cos * attention_factor, sin * attention_factor
    return cos, sin


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


def _pair_rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """The forward of :class:`_PairRotation`, without autograd (see there)."""
    half = cos.shape[-1]
    x32 = x.to(torch.promote_types(x.dtype, torch.float32))  # no copy when float32
    x1, x2 = x32[..., :half], x32[..., half : 2 * half]
    out = torch.empty_like(x)  # x's layout (a transposed view stays one)
    torch.sub(x1 * cos, x2 * sin, out=out[..., :half])
    torch.add(x2 * cos, x1 * sin, out=out[..., half : 2 * half])
    if 2 * half < x.shape[-1]:
        out[..., 2 * half :] = x[..., 2 * half :]
    return out


def _pair_rotate_back(grad: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """The gradient of :func:`_pair_rotate` with respect to its input: the inverse rotation
    (the same float32 operations as autograd through ``apply_rotary``)."""
    half = cos.shape[-1]
    g32 = grad.to(torch.promote_types(grad.dtype, torch.float32))
    g1, g2 = g32[..., :half], g32[..., half : 2 * half]
    grad_x = torch.empty_like(grad)
    torch.add(g1 * cos, g2 * sin, out=grad_x[..., :half])
    torch.sub(g2 * cos, g1 * sin, out=grad_x[..., half : 2 * half])
    if 2 * half < grad.shape[-1]:
        grad_x[..., 2 * half :] = grad[..., 2 * half :]
    return grad_x


def _angle_grad(
    grad: torch.Tensor, saved: torch.Tensor, half: int, from_output: bool
) -> torch.Tensor:
    """Per-pair d loss / d angle, before the tables: ``g2 x1' - g1 x2'`` from the rotated
    output ``x'`` (``from_output``), else the two sums ``g2 x1 - g1 x2`` and ``g1 x1 + g2 x2``
    of the input, stacked on a new leading dimension (the caller combines them with cos/sin).
    """
    g32 = grad.to(torch.promote_types(grad.dtype, torch.float32))
    g1, g2 = g32[..., :half], g32[..., half : 2 * half]
    x32 = saved.to(torch.promote_types(saved.dtype, torch.float32))
    x1, x2 = x32[..., :half], x32[..., half : 2 * half]
    if from_output:
        return g2 * x1 - g1 * x2
    return torch.stack((g2 * x1 - g1 * x2, g1 * x1 + g2 * x2))


class _PairRotation(torch.autograd.Function):
    """``x' = (x1 c - x2 s, x2 c + x1 s)`` on the first ``2 * D_rot/2`` dims, the rest unchanged.

    The same numbers as ``apply_rotary`` with the repeated tables (each product and sum is
    the same float32 operation), without materialising ``rotate_half`` or repeated tables,
    and with a backward that computes only what is needed: the gradient of ``x`` (the
    rotation by minus the angle) and, when the tables require it (RePo), the gradient of
    ``c`` and ``s`` reduced to their shape (summed over the query heads of a GQA group).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        # x: (..., T, D) any float dtype; cos, sin: float32 (..., T, D_rot/2), broadcastable
        tables_grad = ctx.needs_input_grad[1] or ctx.needs_input_grad[2]
        ctx.save_for_backward(x if tables_grad else None, cos, sin)
        return _pair_rotate(x, cos, sin)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        x, cos, sin = ctx.saved_tensors
        grad_x = grad_cos = grad_sin = None
        if ctx.needs_input_grad[0]:
            grad_x = _pair_rotate_back(grad, cos, sin)
        if x is not None:
            # d/dc and d/ds: the input sums of _angle_grad, reduced to the tables' shape
            sums = _angle_grad(grad, x, cos.shape[-1], from_output=False)
            if ctx.needs_input_grad[1]:
                grad_cos = sums[1].sum_to_size(cos.shape)
            if ctx.needs_input_grad[2]:
                grad_sin = sums[0].sum_to_size(sin.shape)
        return grad_x, grad_cos, grad_sin


class _PositionRotation(torch.autograd.Function):
    """RoPE of q and k by per-key-value-head real positions, in one autograd node.

    forward(q (B, H_kv, G, T, D), k (B, H_kv, T, D), positions (B, H_kv, T), inv_freq
    (D_rot/2,), factor): angles ``positions * inv_freq``, their cos and sin (float32, one per
    pair, times ``factor``), and both rotations (the numbers of ``apply_rotary`` with the
    repeated tables). backward: the inverse rotation for q and k, and d loss / d positions
    without differentiating cos and sin: a rotation's derivative in its angle is the rotated
    vector turned by 90 degrees, so per pair ``d loss / d angle = g2 x1' - g1 x2'`` (x' the
    rotated output, summed over the group's query heads and the key), times ``inv_freq``.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        q: torch.Tensor,
        k: torch.Tensor,
        positions: torch.Tensor,
        inv_freq: torch.Tensor,
        factor: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        angles = positions.to(torch.float32)[..., None] * inv_freq  # (B, H_kv, T, D_rot/2)
        cos, sin = angles.cos(), angles.sin()
        if factor != 1.0:
            cos, sin = cos * factor, sin * factor
        q_out = _pair_rotate(q, cos[:, :, None], sin[:, :, None])  # (B, H_kv, G, T, D)
        k_out = _pair_rotate(k, cos, sin)  # (B, H_kv, T, D)
        # d/d positions from the float32 outputs when they are float32 (no extra memory:
        # attention keeps them anyway), else from the inputs (no bf16 rounding of the outputs)
        ctx.from_output = q_out.dtype == torch.float32 and k_out.dtype == torch.float32
        saved_q, saved_k = (q_out, k_out) if ctx.from_output else (q, k)
        if not ctx.needs_input_grad[2]:
            saved_q = saved_k = None  # type: ignore[assignment]
        ctx.positions_dtype = positions.dtype
        ctx.save_for_backward(cos, sin, inv_freq, saved_q, saved_k)
        return q_out, k_out

    @staticmethod
    def backward(ctx, grad_q: torch.Tensor, grad_k: torch.Tensor):  # type: ignore[override]
        cos, sin, inv_freq, saved_q, saved_k = ctx.saved_tensors
        half = cos.shape[-1]
        dq = dk = dpos = None
        if ctx.needs_input_grad[0]:
            dq = _pair_rotate_back(grad_q, cos[:, :, None], sin[:, :, None])
        if ctx.needs_input_grad[1]:
            dk = _pair_rotate_back(grad_k, cos, sin)
        if ctx.needs_input_grad[2]:
            from_output = ctx.from_output
            per_q = _angle_grad(grad_q, saved_q, half, from_output)  # ([2,] B, H_kv, G, T, D/2)
            per_k = _angle_grad(grad_k, saved_k, half, from_output)  # ([2,] B, H_kv, T, D/2)
            d_angle = per_q.sum(dim=-3) + per_k  # ([2,] B, H_kv, T, D_rot/2)
            if not from_output:  # the input sums, turned by the angle (tables carry factor)
                d_angle = cos * d_angle[0] - sin * d_angle[1]
            dpos = (d_angle @ inv_freq).to(ctx.positions_dtype)  # (B, H_kv, T)
        return dq, dk, dpos, None, None


def rotate_pairs(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x (..., T, D)`` by the half tables of :func:`rope_half_cos_sin`.

    cos, sin: float32 ``(..., T, D_rot/2)`` broadcastable to x's pairs; dimensions beyond
    ``D_rot`` pass through (partial rotary). Equals ``apply_rotary`` with the repeated
    tables, number for number; returns x's dtype.
    """
    with torch.autocast(device_type=x.device.type, enabled=False):
        return _PairRotation.apply(x, cos, sin)  # type: ignore[no-any-return]


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

    @property
    def is_dynamic(self) -> bool:
        """The frequencies depend on the context length (dynamic NTK, LongRoPE)."""
        return self.rope.is_dynamic

    def _inv_freq_for(self, positions: torch.Tensor, seq_len: int | None) -> torch.Tensor:
        """The frequencies for this call: fixed, or for a dynamic scaling those of the context
        length ``seq_len`` (by default the largest position + 1)."""
        if not self.rope.is_dynamic:
            return self.frequencies(positions.device)
        if seq_len is None:
            seq_len = int(positions.detach().max().item()) + 1
        inv_freq, _ = self.rope.frequencies(self.head_dim, seq_len=seq_len)
        return inv_freq.to(positions.device)

    def tables(
        self, positions: torch.Tensor, seq_len: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin tables for positions ``(B, T)`` or ``(B, H, T)`` -> ``(..., T, rotary_dim)``."""
        return rope_cos_sin(
            positions, self._inv_freq_for(positions, seq_len), self.attention_factor
        )

    def _rotate(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        if self.rotary_dim == x.shape[-1]:
            return apply_rotary(x, cos, sin)
        rot, rest = x[..., : self.rotary_dim], x[..., self.rotary_dim :]
        return torch.cat((apply_rotary(rot, cos, sin), rest), dim=-1)

    def half_tables(
        self, positions: torch.Tensor, seq_len: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin for positions ``(B, T)`` or ``(B, H, T)`` -> ``(..., T, rotary_dim / 2)``,
        one per rotation pair (what :func:`rotate_pairs` takes)."""
        inv_freq = self._inv_freq_for(positions, seq_len)
        return rope_half_cos_sin(positions, inv_freq, self.attention_factor)

    def rotation(self, positions: torch.Tensor, seq_len: int | None = None):
        """``(q, k) -> (q, k)`` for positions shared by all heads ``(B, T)``, with the tables
        computed once (what a back end shares between the layers of the model's RoPE)."""
        cos, sin = self.half_tables(positions[:, None, :], seq_len)  # (B, 1, T, D_rot / 2)

        def rotate(q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return rotate_pairs(q, cos, sin), rotate_pairs(k, cos, sin)

        return rotate

    def forward(
        self, q: Tensor, k: Tensor, positions: Tensor, seq_len: int | None = None
    ) -> tuple[Tensor, Tensor]:
        # q: (B, H, T, D), k: (B, H_kv, T, D)
        # positions: (B, T) shared, or (B, H_kv, T) per key-value head. seq_len: the context
        # length a dynamic scaling follows (default: the largest position + 1).
        if positions.dim() == 2:
            return self.rotation(positions, seq_len)(q, k)
        bsz, n_heads, seq, dim = q.shape
        n_kv = k.shape[1]
        if positions.dim() != 3 or positions.shape[1] != n_kv or n_heads % n_kv:
            raise ValueError(
                f"per-head positions must be (B, H_kv={n_kv}, T); got {tuple(positions.shape)}"
            )
        inv_freq = self._inv_freq_for(positions, seq_len)
        # each query group shares its key-value head's positions: cos/sin once per kv head
        q_grouped = q.view(bsz, n_kv, n_heads // n_kv, seq, dim)  # (B, H_kv, G, T, D)
        with torch.autocast(device_type=q.device.type, enabled=False):
            q_rot, k_rot = _PositionRotation.apply(
                q_grouped, k, positions, inv_freq, self.attention_factor
            )
        return q_rot.view_as(q), k_rot


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
