"""RePo / NoPE / RoPE attention for transformers models, one forward for all families.

RePo: Li, Zhao, Cai, Sproat, "Language Models with Context Re-Positioning",
arXiv 2512.14391. DroPE: Gelberg, Eguchi, Akiba, Cetin, "Extending the Context of
Pretrained LLMs by Dropping Their Positional Embeddings", arXiv 2512.12167.

Each converted layer's ``self_attn`` becomes an instance of ``Longpos<Family>Attention``,
a subclass of the family's own attention class, so every pretrained weight keeps its
name. Its forward follows the stock one with one change: how q and k are rotated.

- ``rope``: the shared integer tables the model computes once (the family's own
  ``apply_rotary_pos_emb``; bit-identical to the stock model);
- ``nope``: no rotation at all (DroPE, NoPE layers of hybrids);
- ``repo``: a :class:`~longpos.positions.repo.RePoAssigner` reads the attention's own
  input (the tensor that feeds q/k/v) and predicts one real position per key-value
  head, z ``(B, H_kv, T)`` float32; cos/sin come from z with autograd in float32
  (:func:`~longpos.positions.rope.rope_cos_sin`), keys per KV head, queries with z
  repeated over their group.

Keys are rotated **before** the cache's ``update``, so the cache holds rotated
keys and each token's position is computed once. ``position_ids`` stay integers; the
learned positions never pass through them (they would change the mask,
``spec/hf-integration.md`` §4). The registered attention function (eager, sdpa,
flash, ...) is called exactly as in the stock forward, with ``scaling`` multiplied by
DroPE's inference temperature beta when one is set.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.llama.modeling_llama import eager_attention_forward

from longpos.hf.compat import take_cache
from longpos.hf.families import FAMILIES, Family
from longpos.positions.repo import RePoAssigner
from longpos.positions.rope import apply_rotary, rope_cos_sin
from longpos.positions.scaling import RopeConfig

TECHNIQUES = ("rope", "nope", "repo")


class LongposAttentionMixin:
    """Forward shared by every ``Longpos<Family>Attention`` class.

    Instance state (set by :meth:`longpos_configure`):

    - ``longpos_technique``: ``rope`` | ``nope`` | ``repo``;
    - ``position_assigner``: the RePo predictor (a submodule; only in ``repo`` layers);
    - ``q_norm`` / ``k_norm``: DroPE's full-width RMSNorms where the family has none;
    - ``longpos_beta`` (static temperature) or ``longpos_dynamic_temperature``
      ``(c, train_length)`` (per-query beta from the query's position).
    """

    longpos_family: ClassVar[Family]
    # Declared for type checkers; the real values live on the instance.
    config: Any
    head_dim: int
    scaling: float
    layer_idx: int
    num_key_value_groups: int
    attention_dropout: float
    training: bool
    q_proj: nn.Linear
    k_proj: nn.Linear
    v_proj: nn.Linear
    o_proj: nn.Linear

    # -------------------------------------------------------------- configuration
    def longpos_configure(
        self,
        technique: str,
        *,
        repo_options: dict[str, Any] | None = None,
        extra_qk_norm: str | None = None,
        norm_class: type[nn.Module] | None = None,
    ) -> None:
        """(Re)configure this layer. Existing RePo weights are kept when the layer stays
        ``repo``; DroPE norms are added once and kept."""
        if technique not in TECHNIQUES:
            raise ValueError(f"technique={technique!r} is unknown; allowed: {TECHNIQUES}")
        module: Any = self
        weight = self.q_proj.weight
        self.longpos_technique = technique
        if technique == "repo":
            opts = dict(repo_options or {})
            if not isinstance(getattr(module, "position_assigner", None), RePoAssigner):
                assigner = RePoAssigner(
                    self.config.hidden_size,
                    self.config.num_key_value_heads,
                    hidden_ratio=int(opts.get("hidden_ratio", 8)),
                    variant=str(opts.get("variant", "swiglu")),
                    init=str(opts.get("init", "trunc_normal")),
                    index_blend=float(opts.get("index_blend", 0.0)),
                )
                # Tell the model's _init_weights how to initialise these linears should
                # a checkpoint lack them (transformers initialises missing keys per module).
                for sub_name, sub in assigner.named_children():
                    zero = sub_name == "assign" and assigner.init == "zero_assign"
                    setattr(sub, "_longpos_init", "zeros" if zero else "trunc_normal")  # noqa: B010
                module.position_assigner = assigner.to(device=weight.device, dtype=weight.dtype)
            self.longpos_repo_rope_scaling = bool(opts.get("apply_rope_scaling", True))
        elif isinstance(getattr(module, "position_assigner", None), nn.Module):
            del module.position_assigner
        if extra_qk_norm and self.longpos_family.qk_norm == "none":
            assert norm_class is not None
            eps = float(self.config.rms_norm_eps)
            if "q" in extra_qk_norm and getattr(module, "q_norm", None) is None:
                module.q_norm = norm_class(self.q_proj.out_features, eps=eps).to(
                    device=weight.device, dtype=weight.dtype
                )
            if "k" in extra_qk_norm and getattr(module, "k_norm", None) is None:
                module.k_norm = norm_class(self.k_proj.out_features, eps=eps).to(
                    device=weight.device, dtype=weight.dtype
                )
        if not hasattr(self, "longpos_beta"):
            self.longpos_beta = 1.0
            self.longpos_dynamic_temperature: tuple[float, int] | None = None
        self._longpos_inv_freq: dict[torch.device, tuple[torch.Tensor, float]] = {}
        self._longpos_record: list[torch.Tensor] | None = None

    # ------------------------------------------------------------------ helpers
    def longpos_rope(self) -> RopeConfig:
        """The RoPE frequencies a RePo layer uses: the model's (scaled) RoPE, or its
        unscaled base when ``apply_rope_scaling`` is off (``spec/repo.md`` §4.3)."""
        params = self.config.rope_parameters
        if not isinstance(params, dict) or "rope_type" not in params:
            raise ValueError(
                "RePo layers need a flat rope_parameters dict (per-layer-type rope "
                f"parameters are not supported); got {params!r}"
            )
        rope = RopeConfig.from_hf(dict(params), self.config.max_position_embeddings)
        if not getattr(self, "longpos_repo_rope_scaling", True):
            rope = RopeConfig(theta=rope.theta)
        return rope

    def _repo_tables(self, device: torch.device) -> tuple[torch.Tensor, float]:
        # Plain attributes, not buffers: transformers re-materialises non-persistent
        # buffers as garbage when loading on the meta device.
        cached = self._longpos_inv_freq.get(device)
        if cached is None:
            inv_freq, factor = self.longpos_rope().frequencies(self.head_dim)
            cached = (inv_freq.to(device), factor)
            self._longpos_inv_freq[device] = cached
        return cached

    def longpos_positions(
        self, hidden_states: torch.Tensor, position_ids: torch.Tensor | None
    ) -> torch.Tensor:
        """RePo positions z ``(B, H_kv, T)`` float32 for this attention's input."""
        bsz, seq = hidden_states.shape[:2]
        if position_ids is None:
            index = torch.arange(seq, device=hidden_states.device).expand(bsz, seq)
        else:
            index = position_ids.expand(bsz, seq)  # (B, T) integer index (blend ablation)
        assigner: RePoAssigner = getattr(self, "position_assigner")  # noqa: B009
        return assigner(hidden_states, index)  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
        attention_mask: torch.Tensor | None = None,
        past_key_values: Any = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        cache = take_cache(past_key_values, kwargs)  # `cache` from transformers 5.24 on
        family = self.longpos_family
        input_shape = hidden_states.shape[:-1]
        hidden_shape = (*input_shape, -1, self.head_dim)
        q_norm: nn.Module | None = getattr(self, "q_norm", None)
        k_norm: nn.Module | None = getattr(self, "k_norm", None)

        query = self.q_proj(hidden_states)  # (B, T, H * D)
        key = self.k_proj(hidden_states)  # (B, T, H_kv * D)
        value = self.v_proj(hidden_states)
        if family.qk_norm != "head":  # full-width norms (OLMo2, or DroPE's added ones)
            if q_norm is not None:
                query = q_norm(query)
            if k_norm is not None:
                key = k_norm(key)
        query = query.view(hidden_shape)  # (B, T, H, D)
        key = key.view(hidden_shape)  # (B, T, H_kv, D)
        if family.qk_norm == "head":  # Qwen3: per-head norms before the rotation
            assert q_norm is not None and k_norm is not None
            query, key = q_norm(query), k_norm(key)
        query = query.transpose(1, 2)  # (B, H, T, D)
        key = key.transpose(1, 2)  # (B, H_kv, T, D)
        value = value.view(hidden_shape).transpose(1, 2)  # (B, H_kv, T, D)

        position_ids = kwargs.get("position_ids")
        technique = self.longpos_technique
        if technique == "rope":
            if position_embeddings is None:
                raise ValueError("a RoPE layer needs the model's position_embeddings (cos, sin)")
            cos, sin = position_embeddings
            query, key = family.apply_rotary_pos_emb(query, key, cos, sin)
        elif technique == "repo":
            z = self.longpos_positions(hidden_states, position_ids)  # (B, H_kv, T) fp32
            if self._longpos_record is not None:
                self._longpos_record.append(z.detach())
            inv_freq, factor = self._repo_tables(query.device)
            cos_k, sin_k = rope_cos_sin(z, inv_freq, factor)  # (B, H_kv, T, D) fp32
            # Query heads of a GQA group share their key head's position.
            groups = self.num_key_value_groups
            cos_q = cos_k.repeat_interleave(groups, dim=1) if groups > 1 else cos_k
            sin_q = sin_k.repeat_interleave(groups, dim=1) if groups > 1 else sin_k
            query = apply_rotary(query, cos_q, sin_q)  # tables (B, H, T, D)
            key = apply_rotary(key, cos_k, sin_k)
        # nope: no rotation

        scaling = self.scaling * self.longpos_beta
        dynamic = self.longpos_dynamic_temperature
        if dynamic is not None:
            # Per-query beta from the query's own (integer) position: cache-consistent.
            c, train_length = dynamic
            seq = query.shape[2]
            if position_ids is None:
                past = 0 if cache is None else cache.get_seq_length()
                position_ids = torch.arange(past, past + seq, device=query.device)[None]
            ratio = (position_ids.to(torch.float32) + 1) / float(train_length)  # (B|1, T)
            beta = 1 + c * torch.log(ratio.clamp(min=1.0))
            query = query * beta[:, None, :, None].to(query.dtype)  # (B, H, T, D)

        if cache is not None:
            key, value = cache.update(key, value, self.layer_idx)

        attention_interface: Callable[..., Any] = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        extra: dict[str, Any] = {}
        if family.sliding_window == "attribute":
            extra["sliding_window"] = getattr(self, "sliding_window", None)
        elif family.sliding_window == "config":
            extra["sliding_window"] = getattr(self.config, "sliding_window", None)
        attn_output, attn_weights = attention_interface(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=0.0 if not self.training else self.attention_dropout,
            scaling=scaling,
            **extra,
            **kwargs,
        )
        attn_output = attn_output.reshape(*input_shape, -1).contiguous()  # (B, T, H * D)
        return self.o_proj(attn_output), attn_weights


def _make_attention_class(family: Family) -> type[nn.Module]:
    name = f"Longpos{family.attention_class.__name__}"
    cls = type(
        name,
        (LongposAttentionMixin, family.attention_class),
        {"longpos_family": family, "__module__": __name__, "__qualname__": name},
    )
    return cls


ATTENTION_CLASSES: dict[str, type[nn.Module]] = {
    name: _make_attention_class(family) for name, family in FAMILIES.items()
}
globals().update({cls.__name__: cls for cls in ATTENTION_CLASSES.values()})


def drope_beta(c: float, eval_length: int, train_length: int) -> float:
    """DroPE inference temperature ``beta = 1 + c ln(s)``, ``s = eval / train`` (1 if s <= 1)."""
    if train_length < 1 or eval_length < 1:
        raise ValueError(f"eval_length={eval_length} and train_length={train_length} must be >= 1")
    s = eval_length / train_length
    return 1.0 + c * math.log(s) if s > 1 else 1.0
