"""The attention forward of converted transformers models: the shared position step.

Each converted layer's ``self_attn`` becomes an instance of ``Longpos<Family>Attention``, a
subclass of the family's own attention class, so every pretrained weight keeps its name. It
holds the same objects as the native model's attention: an ``assigner`` and an ``encoding``
built by the technique registry (:mod:`longpos.positions.techniques`), and DroPE's
``temperature``; its forward projects q / k / v with the family's q/k-norm layout, then calls
:func:`~longpos.positions.techniques.apply_positions`, exactly as the native forward does.
There is no dispatch on technique names here.

What the family supplies (:mod:`longpos.hf.families`): where it normalises q and k, its own
``apply_rotary_pos_emb`` with the model's shared cos/sin for integer-RoPE layers (so those
stay bit-identical to the stock model), and the ``sliding_window`` keyword of its attention
function.

Keys are rotated **before** the cache's ``update``, so the cache holds rotated keys and each
token's position is computed once. ``position_ids`` stay integers; learned positions never
pass through them (they would change the mask, ``spec/hf-integration.md`` §4). The registered
attention function (eager, sdpa, flash, ...) is called as in the stock forward, through
transformers' public ``ALL_ATTENTION_FUNCTIONS`` interface.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.llama.modeling_llama import eager_attention_forward

from longpos.hf.compat import take_cache
from longpos.hf.families import FAMILIES, Family
from longpos.plan import PositionPlan
from longpos.positions.rope import PositionAssigner, PositionEncoding
from longpos.positions.techniques import LayerShape, apply_positions, build_positions
from longpos.positions.temperature import TemperatureConfig


class LongposAttentionMixin:
    """Forward shared by every ``Longpos<Family>Attention`` class.

    Instance state (set by :meth:`longpos_configure`): ``technique`` (the plan's name for this
    layer), ``assigner`` and ``encoding`` (submodules; RePo's predictor is
    ``self_attn.assigner``), DroPE's ``q_norm`` / ``k_norm`` where the family has none,
    ``temperature`` and ``train_length``.
    """

    longpos_family: ClassVar[Family]
    # Declared for type checkers; the real values live on the instance.
    config: Any
    head_dim: int
    scaling: float
    layer_idx: int
    attention_dropout: float
    training: bool
    o_proj: nn.Linear
    assigner: PositionAssigner
    encoding: PositionEncoding

    # -------------------------------------------------------------- configuration
    def longpos_configure(
        self,
        technique: str,
        plan: PositionPlan,
        shape: LayerShape,
        *,
        extra_qk_norm: str = "none",
        norm_class: type[nn.Module] | None = None,
    ) -> None:
        """(Re)build this layer's position modules for ``technique``. An assigner with
        parameters is kept when the layer keeps its technique and options; DroPE norms are
        added once and kept."""
        module: Any = self
        weight = self.o_proj.weight  # every family has it (Phi-3 fuses q, k and v)
        assigner, encoding = build_positions(technique, shape, plan)
        old = getattr(module, "assigner", None)
        keep = (
            getattr(module, "technique", None) == technique
            and isinstance(old, type(assigner))
            and getattr(old, "options", None) == getattr(assigner, "options", None)
        )
        if not keep:
            for sub in assigner.modules():  # missing-key init: the assigner's own (modeling.py)
                sub.__dict__["_longpos_owner"] = assigner.init_weights
            module.assigner = assigner.to(device=weight.device, dtype=weight.dtype)
        module.encoding = encoding
        module.technique = technique
        if extra_qk_norm != "none" and self.longpos_family.qk_norm == "none":
            assert norm_class is not None
            eps = float(self.config.rms_norm_eps)
            q_width, k_width = self.longpos_family.projection_widths(self.config)
            if "q" in extra_qk_norm and getattr(module, "q_norm", None) is None:
                module.q_norm = norm_class(q_width, eps=eps).to(
                    device=weight.device, dtype=weight.dtype
                )
            if "k" in extra_qk_norm and getattr(module, "k_norm", None) is None:
                module.k_norm = norm_class(k_width, eps=eps).to(
                    device=weight.device, dtype=weight.dtype
                )
        self.longpos_set_temperature(plan.temperature)
        self._longpos_record: list[torch.Tensor] | None = None

    def longpos_set_temperature(self, temp: TemperatureConfig) -> None:
        module: Any = self
        module.temperature = temp
        module.train_length = temp.resolved_train_length(None) if temp.enabled else 1

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
        bsz, seq = hidden_states.shape[:2]
        query, key, value = family.project_qkv(self, hidden_states)  # (B, H | H_kv, T, D)

        position_ids = kwargs.get("position_ids")
        if position_ids is None:
            past = 0 if cache is None else cache.get_seq_length()
            index = torch.arange(past, past + seq, device=query.device).expand(bsz, seq)
        else:
            index = position_ids.expand(bsz, seq)  # (B, T) integer positions

        def family_rotation(q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            if position_embeddings is None:
                raise ValueError("a RoPE layer needs the model's position_embeddings (cos, sin)")
            cos, sin = position_embeddings
            return family.apply_rotary_pos_emb(q, k, cos, sin)  # type: ignore[no-any-return]

        query, key, positions = apply_positions(
            self.assigner, self.encoding, hidden_states, query, key, index, family_rotation
        )
        if self._longpos_record is not None:
            self._longpos_record.append(positions.detach())
        temp: TemperatureConfig = getattr(self, "temperature")  # noqa: B009
        query, beta = temp.scale_queries(query, index, getattr(self, "train_length"))  # noqa: B009

        if cache is not None:
            key, value = cache.update(key, value, self.layer_idx, kwargs=kwargs)

        attention_interface: Callable[..., Any] = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        attn_output, attn_weights = attention_interface(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=0.0 if not self.training else self.attention_dropout,
            scaling=self.scaling * beta,
            **family.attention_kwargs(self),
            **kwargs,
        )
        attn_output = attn_output.reshape(bsz, seq, -1).contiguous()  # (B, T, H * D)
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
