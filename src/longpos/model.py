"""The reference decoder language model: Llama-style, one readable file.

Pre-norm blocks (RMSNorm -> attention -> residual, RMSNorm -> SwiGLU -> residual),
grouped-query attention through ``scaled_dot_product_attention``, optional per-head
QK-norm, tied or untied embeddings.

Every attention layer owns exactly one *position assigner* (integer index or RePo)
and one *position encoding* (RoPE, possibly scaled, or NoPE), built from the config's
per-layer plan by the technique registry (:mod:`longpos.positions.techniques`) and applied by
:func:`~longpos.positions.techniques.apply_positions`, the step converted Hugging Face models
run too. Integer-RoPE layers share one cos/sin table per forward. Keys are rotated **before**
they enter the KV cache, so each token's position is computed once, when it is first seen, and
incremental decoding gives the same logits as a full forward for every technique (DroPE's
temperature included: its beta is per query, from the query's position).

Memory layers (``cfg.memory``, :mod:`longpos.memory.placement`): an FwPKM sub-block before the
attention of chosen blocks (``h = h + fwpkm(h)``), a static PKM in place of (or beside) the MLP
of chosen blocks. Each FwPKM layer's per-sequence fast-weight state lives in the
:class:`KVCache` next to the keys and values (``cache.memory``), so incremental decoding and
streaming carry it; its size does not grow with the length. Writes happen on the stream's own
grid (one every ``chunk`` tokens counted from the first token), so any split of a sequence into
forward calls gives the same logits as one full forward. ``forward(..., read_passes=n)`` is the
paper's iterative reading: n - 1 passes over the input, each ending with one memory write and
with fresh attention, then the real pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from longpos.config import ModelConfig
from longpos.memory.fwpkm import FwPKMLayer, FwPKMState
from longpos.memory.pkm import StaticPKM
from longpos.memory.placement import init_memory_layer
from longpos.memory.reading import check_reading, run_reading_passes
from longpos.positions.rope import (
    PositionAssigner,
    PositionEncoding,
    RotaryEncoding,
)
from longpos.positions.techniques import IndexRotation, apply_positions, build_positions


class RMSNorm(nn.Module):
    """Root-mean-square layer norm, computed in float32."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.to(torch.float32)
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


class SwiGLU(nn.Module):
    def __init__(self, d_model: int, hidden: int):
        super().__init__()
        self.gate = nn.Linear(d_model, hidden, bias=False)
        self.up = nn.Linear(d_model, hidden, bias=False)
        self.down = nn.Linear(hidden, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class KVCache:
    """Per-layer rotated keys and values, ``(B, H_kv, T_past, D)`` each, and the per-layer
    FwPKM fast-weight states (``memory``; None for layers without FwPKM or before the first
    forward)."""

    def __init__(self, n_layers: int):
        self.keys: list[torch.Tensor | None] = [None] * n_layers
        self.values: list[torch.Tensor | None] = [None] * n_layers
        self.memory: list[FwPKMState | None] = [None] * n_layers
        self.key_index: torch.Tensor | None = None
        """(B, T_past) integer positions of the cached tokens (for logit biases)."""
        self._length = 0

    @property
    def length(self) -> int:
        """Number of tokens already in the cache."""
        return self._length

    def update(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        old_k, old_v = self.keys[layer], self.values[layer]
        if old_k is not None and old_v is not None:
            k = torch.cat((old_k, k), dim=2)  # (B, H_kv, T_past + T, D)
            v = torch.cat((old_v, v), dim=2)
        self.keys[layer], self.values[layer] = k, v
        return k, v

    def advance(self, n_tokens: int) -> None:
        """Called once per forward, after every layer has appended its keys."""
        self._length += n_tokens

    def select(self, rows: torch.Tensor) -> KVCache:
        """Keep (or reorder, or repeat) the batch rows ``rows (B',)`` of everything cached:
        keys, values, key positions and FwPKM states (beam search, dropping finished rows)."""
        self.keys = [k.index_select(0, rows) if k is not None else None for k in self.keys]
        self.values = [v.index_select(0, rows) if v is not None else None for v in self.values]
        self.memory = [s.select(rows) if s is not None else None for s in self.memory]
        if self.key_index is not None:
            self.key_index = self.key_index.index_select(0, rows)
        return self


@dataclass
class LMOutput:
    logits: torch.Tensor
    """(B, T, V) next-token logits."""
    cache: KVCache | None = None
    positions: list[torch.Tensor] = field(default_factory=list)
    """Per layer: (B, T) integer or (B, H_kv, T) real positions (when requested)."""
    attentions: list[torch.Tensor] = field(default_factory=list)
    """Per layer: (B, H, T, T_past + T) attention probabilities (when requested)."""
    hidden: torch.Tensor | None = None
    """(B, T, C) final normalised hidden state."""
    memory: list[FwPKMState | None] = field(default_factory=list)
    """Per layer: the FwPKM state after this forward (None without FwPKM; empty list when the
    model has no FwPKM layer)."""


@dataclass
class ForwardContext:
    """What every block of one forward shares."""

    index: torch.Tensor
    """(B, T) integer positions of this forward's tokens."""
    key_index: torch.Tensor
    """(B, T_past + T) integer positions of every key: the cached tokens', then these."""
    key_padding: torch.Tensor | None = None
    """(B, T_past + T) bool, True for real tokens (None: no padding)."""
    window: int | None = None
    """Sliding-window attention over the last ``window`` keys (FwPKM's pSWA in training)."""
    rotation: IndexRotation | None = None
    """The model's integer RoPE with this forward's shared tables."""
    return_attention: bool = False
    """Also return the attention probabilities."""


class Attention(nn.Module):
    """Grouped-query causal self-attention with an injected assigner and encoding.

    An encoding may also add a bias to the attention logits (ALiBi and the other
    additive-bias techniques): ``encoding.logit_bias(index (B, T), key_index (B, T_k))`` returns
    ``(B | 1, H, T, T_k)`` float32, added to the scaled scores inside the causal mask. Or it may
    replace the softmax attention itself (stick-breaking, CoPE's gated positions):
    ``encoding.attend(q, k, v, allowed (B | 1, 1, T, T_k) bool, scale)`` returns the output
    ``(B, H, T, D_v)`` and the attention weights ``(B, H, T, T_k)``."""

    def __init__(
        self,
        cfg: ModelConfig,
        layer_idx: int,
        assigner: PositionAssigner,
        encoding: PositionEncoding,
    ):
        super().__init__()
        self.layer_idx = layer_idx
        self.n_heads = cfg.n_heads
        self.n_kv_heads = cfg.resolved_kv_heads
        self.head_dim = cfg.resolved_head_dim
        d = cfg.d_model
        self.q_proj = nn.Linear(d, self.n_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(d, self.n_kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(d, self.n_kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, d, bias=False)
        full = cfg.qk_norm_layout == "full"
        q_width = self.n_heads * self.head_dim if full else self.head_dim
        k_width = self.n_kv_heads * self.head_dim if full else self.head_dim
        self.q_norm = RMSNorm(q_width, cfg.norm_eps) if "q" in cfg.qk_norm else None
        self.k_norm = RMSNorm(k_width, cfg.norm_eps) if "k" in cfg.qk_norm else None
        self.norm_full_width = full
        self.assigner = assigner
        self.encoding = encoding
        self.temperature = cfg.temperature
        self.train_length = cfg.temperature.resolved_train_length(cfg.max_seq_len)

    def forward(
        self, x: torch.Tensor, ctx: ForwardContext, cache: KVCache | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """x: (B, T, C) normalised input; ``ctx``: this forward's positions, padding, window
        and shared RoPE tables (:class:`ForwardContext`).

        Returns the output (B, T, C), the assigned positions and, on request, the
        attention probabilities (B, H, T, T_past + T).
        """
        bsz, seq, _ = x.shape
        past = cache.length if cache is not None else 0
        index = ctx.index
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)  # (B, T, H*D), (B, T, H_kv*D)
        if self.norm_full_width:
            q = self.q_norm(q) if self.q_norm is not None else q
            k = self.k_norm(k) if self.k_norm is not None else k
        q = q.view(bsz, seq, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, D)
        k = k.view(bsz, seq, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, H_kv, T, D)
        v = v.view(bsz, seq, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, H_kv, T, D)
        if not self.norm_full_width:
            q = self.q_norm(q) if self.q_norm is not None else q
            k = self.k_norm(k) if self.k_norm is not None else k
        q, k, positions = apply_positions(
            self.assigner, self.encoding, x, q, k, index, ctx.rotation
        )
        q, beta = self.temperature.scale_queries(q, index, self.train_length)  # DroPE's beta
        if cache is not None:
            k, v = cache.update(self.layer_idx, k, v)  # (B, H_kv, T_past + T, D)
        scale = beta / math.sqrt(self.head_dim)
        attend = getattr(self.encoding, "attend", None)
        logit_bias = getattr(self.encoding, "logit_bias", None)
        probs: torch.Tensor | None = None
        if attend is not None:  # the encoding's own attention (stick-breaking, CoPE)
            allowed = causal_mask(seq, past, ctx.key_padding, x.device, ctx.window, always=True)
            assert allowed is not None  # always=True
            out, weights = attend(q, k, v, allowed, scale)
            probs = weights if ctx.return_attention else None
        else:
            if logit_bias is None:
                mask = causal_mask(seq, past, ctx.key_padding, x.device, ctx.window)
            else:  # an additive bias inside the causal mask: (B | 1, H, T, T_past + T)
                allowed = causal_mask(seq, past, ctx.key_padding, x.device, ctx.window, always=True)
                assert allowed is not None  # always=True
                bias = logit_bias(index, ctx.key_index).to(q.dtype)
                mask = bias.masked_fill(~allowed, float("-inf"))
            if ctx.return_attention:
                out, probs = eager_attention(q, k, v, mask, scale)
            else:
                out = F.scaled_dot_product_attention(
                    q,
                    k,
                    v,
                    attn_mask=mask,
                    is_causal=mask is None and seq > 1,
                    scale=scale,
                    enable_gqa=self.n_kv_heads != self.n_heads,
                )  # (B, H, T, D)
        out = out.transpose(1, 2).reshape(bsz, seq, self.n_heads * self.head_dim)
        return self.o_proj(out), positions, probs


def causal_mask(
    seq: int,
    past: int,
    key_padding: torch.Tensor | None,
    device: torch.device,
    window: int | None = None,
    always: bool = False,
) -> torch.Tensor | None:
    """Boolean mask (B or 1, 1, T, T_past + T), True = may attend; None = plain causal.

    Query i (absolute position past + i) sees keys j <= past + i (and j > past + i - window
    with a sliding window). With no cache, no padding and no window, None lets SDPA use its
    fused causal path.
    """
    if not always and key_padding is None and window is None and (past == 0 or seq == 1):
        return None
    q_pos = torch.arange(past, past + seq, device=device)[:, None]  # (T, 1)
    k_pos = torch.arange(past + seq, device=device)[None, :]  # (1, T_past + T)
    mask = (k_pos <= q_pos)[None, None]  # (1, 1, T, T_past + T)
    if window is not None:
        mask = mask & (k_pos > q_pos - window)[None, None]
    if key_padding is not None:
        mask = mask & key_padding[:, None, None, :].bool()  # (B, 1, T, T_past + T)
        # A fully padded query row would give NaN: let it attend to itself.
        mask = mask | (k_pos == q_pos)[None, None]
    return mask


def eager_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Explicit softmax attention that also returns the probabilities (B, H, T, T_k)."""
    groups = q.shape[1] // k.shape[1]
    if groups > 1:
        k = k.repeat_interleave(groups, dim=1)  # (B, H, T_k, D)
        v = v.repeat_interleave(groups, dim=1)
    scores = (q.to(torch.float32) @ k.to(torch.float32).transpose(-1, -2)) * scale  # (B, H, T, T_k)
    if mask is None:
        t_q, t_k = scores.shape[-2:]
        mask = torch.ones(t_q, t_k, dtype=torch.bool, device=q.device).tril(t_k - t_q)
    if mask.dtype == torch.bool:
        scores = scores.masked_fill(~mask, float("-inf"))
    else:  # additive: a logit bias with -inf where attention is not allowed
        scores = scores + mask.to(torch.float32)
    probs = scores.softmax(dim=-1)
    return (probs.to(v.dtype) @ v), probs


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_idx: int, technique: str):
        super().__init__()
        self.technique = technique
        assigner, encoding = build_positions(technique, cfg.layer_shape(), cfg)
        self.attn_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.attn = Attention(cfg, layer_idx, assigner, encoding)
        self.mlp_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.mlp: nn.Module = SwiGLU(cfg.d_model, cfg.resolved_ffn_hidden)
        # Memory layers (cfg.memory); absent attributes add nothing to the state dict.
        mem = cfg.memory
        self.fwpkm: FwPKMLayer | None = None
        self.pkm: StaticPKM | None = None
        if layer_idx in mem.fwpkm_layers(cfg.n_layers):
            self.fwpkm = FwPKMLayer(mem.fwpkm_config(cfg.d_model))
        if layer_idx in mem.pkm_layers_of(cfg.n_layers):
            pkm = StaticPKM(mem.pkm_config(cfg.d_model))
            if mem.pkm_placement == "replace":
                self.mlp = pkm
            else:
                self.pkm = pkm

    def forward(
        self,
        x: torch.Tensor,
        ctx: ForwardContext,
        cache: KVCache | None,
        memory: list[FwPKMState | None] | None = None,
        memory_writes: str = "chunked",
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``memory``: per-layer FwPKM states, read and replaced in place for this layer."""
        if self.fwpkm is not None:  # FwPKM: its own gated residual sub-block before the mixer
            layer = self.attn.layer_idx
            state = memory[layer] if memory is not None else None
            y, state = self.fwpkm(x, state, writes=memory_writes)  # type: ignore[arg-type]
            if memory is not None:
                memory[layer] = state
            x = x + y
        attn_out, positions, probs = self.attn(self.attn_norm(x), ctx, cache)
        x = x + attn_out
        if self.pkm is None:
            x = x + self.mlp(self.mlp_norm(x))
        else:
            h = self.mlp_norm(x)
            x = x + self.mlp(h) + self.pkm(h)
        return x, positions, probs


class LongposLM(nn.Module):
    """Decoder-only LM built from a :class:`ModelConfig`."""

    def __init__(self, cfg: ModelConfig, generator: torch.Generator | None = None):
        super().__init__()
        self.config = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(
            Block(cfg, i, technique) for i, technique in enumerate(cfg.layer_plan())
        )
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.pswa_generator = torch.Generator().manual_seed(cfg.memory.pswa_seed)
        """Draws FwPKM's pSWA windows in training (checkpointed by the trainer)."""
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed.weight
        self.init_weights(generator)

    # ------------------------------------------------------------------ init
    @torch.no_grad()
    def init_weights(self, generator: torch.Generator | None = None) -> None:
        """Initialise every parameter (the one init of this model).

        Embeddings: normal(0, embed_std) (``fan_in``) or normal(0, init_std) (``normal``).
        Linears: truncated normal with std 1/sqrt(fan_in) (``fan_in``) or ``init_std``
        (``normal``); output projections
        of each residual branch are further divided by sqrt(2 * n_layers). Norm
        weights: 1. Position assigners and encodings: their own ``init_weights`` (RePo: the
        paper's truncated normal, std 0.02), whatever the technique. Memory layers:
        their own ``reset_parameters`` (drawn from ``generator``), with their residual output
        projection divided by sqrt(2 * n_layers) like the others.
        """
        cfg = self.config
        embed_std = cfg.embed_std if cfg.init_scheme == "fan_in" else cfg.init_std
        nn.init.normal_(self.embed.weight, 0.0, embed_std, generator=generator)
        residual_outputs = set()
        for block in self.blocks:
            residual_outputs.add(id(cast(Block, block).attn.o_proj.weight))
            if isinstance(block.mlp, SwiGLU):
                residual_outputs.add(id(block.mlp.down.weight))
        memories = (FwPKMLayer, StaticPKM)
        self_initialised = (*memories, PositionAssigner, PositionEncoding)
        inside = {
            id(sub)
            for m in self.modules()
            if isinstance(m, self_initialised)
            for sub in m.modules()
            if sub is not m
        }
        for module in self.modules():
            if id(module) in inside:
                continue
            if isinstance(module, PositionAssigner | PositionEncoding):
                module.init_weights(generator)
            elif isinstance(module, memories):
                init_memory_layer(module, cfg.n_layers, generator)
            elif isinstance(module, RMSNorm):
                nn.init.ones_(module.weight)
            elif isinstance(module, nn.Linear):
                if module is self.lm_head and cfg.tie_embeddings:
                    continue
                std = module.in_features**-0.5 if cfg.init_scheme == "fan_in" else cfg.init_std
                if id(module.weight) in residual_outputs:
                    std /= math.sqrt(2 * cfg.n_layers)
                nn.init.trunc_normal_(
                    module.weight, 0.0, std, a=-3 * std, b=3 * std, generator=generator
                )

    # --------------------------------------------------------------- forward
    def forward(
        self,
        input_ids: torch.Tensor,
        *,
        cache: KVCache | None = None,
        index: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        return_positions: bool = False,
        return_attention: bool = False,
        read_passes: int = 1,
        memory_writes: str = "chunked",
    ) -> LMOutput:
        """input_ids: (B, T). ``cache`` holds earlier tokens (pass ``new_cache()`` to start one).

        ``index``: (B, T) integer positions of these tokens (default: past + arange(T), or
        derived from ``attention_mask`` under left padding). ``attention_mask``:
        (B, T_past + T), 1 for real tokens, 0 for padding.

        FwPKM layers only (ignored by models without): ``read_passes`` n >= 1 runs n - 1
        reading passes over ``input_ids`` first (fresh attention, each pass ending with one
        memory write, ``writes="end"``), then the real pass from the written memory; it needs
        an empty cache (the start of a sequence). ``memory_writes`` is the real pass's write
        mode: ``chunked`` (one write every ``chunk`` tokens of the stream), ``end`` (one write
        after the last token) or ``none`` (frozen memory). Memory states start fresh per
        sequence unless the cache holds them.
        """
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (batch, time); got shape {tuple(input_ids.shape)}")
        bsz, seq = input_ids.shape
        past = cache.length if cache is not None else 0
        if index is None:
            if attention_mask is not None:
                counts = attention_mask.long().cumsum(-1) - 1  # (B, T_past + T)
                index = counts[:, past:].clamp(min=0)
            else:
                index = torch.arange(past, past + seq, device=input_ids.device).expand(bsz, seq)
        key_padding = None
        if attention_mask is not None:
            if attention_mask.shape != (bsz, past + seq):
                raise ValueError(
                    f"attention_mask must be (B, T_past + T) = {(bsz, past + seq)}; "
                    f"got {tuple(attention_mask.shape)}"
                )
            key_padding = attention_mask.bool()
        x = self.embed(input_ids)  # (B, T, C)
        rotation = self.index_rotation(index)
        memory, passes, writes = self._memory_states(cache, key_padding, read_passes, memory_writes)
        window = None
        pswa = self.config.memory.pswa_prob
        # FwPKM's pSWA, drawn from the model's own generator
        if (
            self.training
            and pswa > 0
            and float(torch.rand((), generator=self.pswa_generator)) < pswa
        ):
            window = self.config.memory.window
        key_index = index  # every key's position: kept only while a layer adds a logit bias
        if cache is not None and cache.key_index is not None and self.uses_logit_bias:
            key_index = torch.cat((cache.key_index, index), dim=1)
        ctx = ForwardContext(index, key_index, key_padding, window, rotation, return_attention)
        if memory is not None:
            reading = ForwardContext(index, index, key_padding, window, rotation)  # no cache

            def write_only_pass() -> None:
                h = x
                for block in self.blocks:
                    h, _, _ = block(h, reading, None, memory, "end")

            run_reading_passes(passes, write_only_pass)
        positions, attentions = [], []
        for block in self.blocks:
            x, pos, probs = block(x, ctx, cache, memory, writes)
            if return_positions:
                positions.append(pos)
            if probs is not None:
                attentions.append(probs)
        if cache is not None:
            cache.advance(seq)
            cache.key_index = key_index if self.uses_logit_bias else None
            if memory is not None:
                cache.memory = memory
        hidden = self.norm(x)
        return LMOutput(
            logits=self.lm_head(hidden),
            cache=cache,
            positions=positions,
            attentions=attentions,
            hidden=hidden,
            memory=memory if memory is not None else [],
        )

    @property
    def uses_logit_bias(self) -> bool:
        """Whether any layer's encoding adds a bias from key positions (then the cache keeps
        them; otherwise decoding does not pay for it)."""
        return any(hasattr(cast(Block, block).attn.encoding, "logit_bias") for block in self.blocks)

    def index_rotation(self, index: torch.Tensor) -> IndexRotation | None:
        """The model's integer RoPE for positions ``index (B, T)``, with cos/sin computed once
        for every layer that uses it (None when no layer does)."""
        encoding = next(
            (
                enc
                for block in self.blocks
                if isinstance(enc := cast(Block, block).attn.encoding, RotaryEncoding)
                and enc.uses_model_rope
            ),
            None,
        )
        if encoding is None:
            return None
        return encoding.rotation(index)

    @property
    def fwpkm_layers(self) -> list[int]:
        """Indices of the blocks with an FwPKM sub-block."""
        return [i for i, block in enumerate(self.blocks) if block.fwpkm is not None]

    def _memory_states(
        self,
        cache: KVCache | None,
        key_padding: torch.Tensor | None,
        read_passes: int,
        memory_writes: str,
    ) -> tuple[list[FwPKMState | None] | None, int, str]:
        """The per-layer FwPKM states this forward starts from (None: no FwPKM layer), and the
        validated reading options (:func:`longpos.memory.reading.check_reading`)."""
        has_memory = bool(self.fwpkm_layers)
        padded = has_memory and key_padding is not None and not bool(key_padding.all())
        past = cache.length if cache is not None and has_memory else 0
        passes, writes = check_reading(read_passes, memory_writes, padded=padded, past=past)
        if not has_memory:
            return None, passes, writes
        if cache is None:
            return [None] * len(self.blocks), passes, writes
        return list(cache.memory), passes, writes

    def new_cache(self) -> KVCache:
        return KVCache(len(self.blocks))

    # ------------------------------------------------------------ generation
    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        max_new_tokens: int,
        *,
        temperature: float = 0.0,
        top_k: int | None = None,
        top_p: float | None = None,
        eos_id: int | None = None,
        generator: torch.Generator | None = None,
        use_cache: bool = True,
        read_passes: int | None = None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """Continue ``input_ids (B, T)`` by up to ``max_new_tokens``; returns (B, T + n).

        ``temperature=0`` is greedy; otherwise sample from softmax(logits / temperature),
        optionally restricted to the ``top_k`` tokens or the ``top_p`` nucleus. After a
        sequence emits ``eos_id`` it is padded with ``eos_id``; generation stops when
        every sequence has. ``use_cache=False`` recomputes the full forward each step
        (slow; for checking the cache).

        FwPKM models: ``read_passes`` (default ``config.memory.fwpkm.read_passes``) reading
        passes over the prompt before its real pass (iterative reading); the memory state then
        travels in the cache and keeps writing every ``chunk`` tokens while decoding. Without
        the cache each step re-reads prompt and generated tokens (equal to the cached path for
        ``read_passes=1`` only).

        ``cache``: continue from a cache that already holds the first ``cache.length`` tokens
        of ``input_ids`` (from ``forward(..., cache=...)`` or an earlier step); only the rest
        is fed, with one reading pass, and the cache is extended in place. FwPKM's paper
        protocol (reading passes over the haystack only, then the question):
        ``out = model(haystack, cache=model.new_cache(), read_passes=2)``, then
        ``model.generate(torch.cat((haystack, question), 1), n, cache=out.cache)``.
        """
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens={max_new_tokens} must be >= 0")
        if temperature < 0:
            raise ValueError(f"temperature={temperature} must be >= 0")
        if top_p is not None and not 0 < top_p <= 1:
            raise ValueError(f"top_p={top_p} must be in (0, 1]")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k={top_k} must be >= 1")
        passes = self.config.memory.fwpkm.read_passes if read_passes is None else read_passes
        step_input = input_ids
        if cache is not None:
            if not use_cache:
                raise ValueError("cache= continues a cached sequence: it needs use_cache=True")
            if not 0 < cache.length < input_ids.shape[1]:
                raise ValueError(
                    f"the cache holds {cache.length} tokens; input_ids ({input_ids.shape[1]} "
                    "tokens) must start with them and add at least one"
                )
            step_input = input_ids[:, cache.length :]
            passes = 1 if read_passes is None else read_passes  # refused if > 1 (a past)
        elif use_cache:
            cache = self.new_cache()
        was_training = self.training
        self.eval()
        tokens = input_ids
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        for step in range(max_new_tokens):
            first = step == 0 or not use_cache
            logits = self(
                step_input if use_cache else tokens,
                cache=cache,
                read_passes=passes if first else 1,
            ).logits[:, -1]
            nxt = sample_next(logits, temperature, top_k, top_p, generator)  # (B,)
            if eos_id is not None:
                nxt = torch.where(done, torch.full_like(nxt, eos_id), nxt)
                done |= nxt == eos_id
            tokens = torch.cat((tokens, nxt[:, None]), dim=1)
            step_input = nxt[:, None]
            if eos_id is not None and bool(done.all()):
                break
        self.train(was_training)
        return tokens

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def sample_next(
    logits: torch.Tensor,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Pick one token per row of ``logits (B, V)``: greedy or filtered sampling."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.to(torch.float32) / temperature
    if top_k is not None:
        kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop = cumulative - sorted_logits.softmax(-1) >= top_p  # keep the first token always
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
