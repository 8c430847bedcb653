"""Convert a transformers causal LM to RePo, NoPE / hybrids, scaled RoPE or DroPE.

RePo: Li, Zhao, Cai, Sproat, "Language Models with Context Re-Positioning",
arXiv 2512.14391 -- RoPE below a start layer, learned per-KV-head positions from it.
DroPE: Gelberg, Eguchi, Akiba, Cetin, "Extending the Context of Pretrained LLMs by
Dropping Their Positional Embeddings", arXiv 2512.12167 -- remove RoPE from every
layer (optionally adding q/k RMSNorms), recalibrate briefly, and at inference beyond
the training length scale the logits by beta = 1 + c ln(s).

Conversion is in place: every pretrained tensor object is kept, attention modules and
the model change class to the registered ``<family>_longpos`` types, and the plan is
written into the config so ``save_pretrained`` / ``from_pretrained`` round-trip it.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence
from typing import Any

from torch import nn

from longpos.hf import rope as hf_rope
from longpos.hf.attention import LongposAttentionMixin
from longpos.hf.families import Family, decoder_layers, family_of
from longpos.hf.memory import check_memory
from longpos.hf.modeling import (
    CONFIG_CLASSES,
    LONGPOS_FIELDS,
    MODEL_CLASSES,
    install_from_config,
    position_plan,
)
from longpos.memory.placement import MemoryConfig
from longpos.plan import QK_NORMS, PositionPlan, plan_text
from longpos.positions.repo import RePoConfig
from longpos.positions.scaling import RopeConfig
from longpos.positions.techniques import technique
from longpos.positions.temperature import TemperatureConfig


def apply_longpos(
    model: nn.Module,
    plan: str | Sequence[str] | PositionPlan | None = "repo",
    *,
    repo_start: int | None = None,
    repo: RePoConfig | None = None,
    rope: RopeConfig | None = None,
    qk_norm: str = "none",
    memory: MemoryConfig | None = None,
) -> nn.Module:
    """Convert ``model`` in place and return it.

    model: a Llama / Mistral / Qwen2 / Qwen3 / OLMo2 ``ForCausalLM`` (stock or already
    converted). plan: a :class:`~longpos.plan.PositionPlan`, or its ``plan`` field (``rope`` |
    ``nope`` | ``r2n1`` | ``n2r1`` | ``repo`` or one technique per layer, as a list or a
    comma-separated string) with ``repo_start`` (first RePo layer of the ``repo`` plan,
    default L // 3) and ``repo`` (:class:`~longpos.plan.RePoConfig`) replacing the stored
    ones; None keeps the current plan (``rope`` everywhere for a stock model). rope: a new
    RoPE base / scaling (:func:`set_rope`). qk_norm: ``q`` | ``k`` | ``qk`` adds full-width
    RMSNorms (gain 1) before the reshape (DroPE's variant; ignored with a warning for Qwen3
    and OLMo2, which already normalise q and k); ``none`` keeps what the model has.

    memory: FwPKM / static PKM layers (:class:`longpos.memory.placement.MemoryConfig`),
    placed by the reference model's rules (:mod:`longpos.hf.memory`); None keeps the
    current memory, ``MemoryConfig()`` (kind ``none``) removes it. A static PKM that
    replaced an MLP cannot be removed or changed (the MLP weights are gone).

    RePo weights already present in layers that keep their technique and options are kept;
    new ones get the paper's truncated-normal init (std 0.02). Memory modules already present
    with the same options are kept; new ones get their own init.
    """
    family = family_of(model)
    config: Any = model.config
    n_layers = len(decoder_layers(model))
    new_plan = _keep_stock_nope(
        family, config, _resolve_plan(position_plan(config), plan, repo_start, repo), n_layers
    )
    temp = new_plan.temperature
    if temp.enabled and temp.train_length is None:  # stored explicitly: HF has no max_seq_len
        temp = dataclasses.replace(temp, train_length=hf_rope.training_length(config))
        new_plan = dataclasses.replace(new_plan, temperature=temp)
    refused = sorted(
        {t for t in new_plan.layer_plan(n_layers) if not technique(t).converts_pretrained}
    )
    if refused:
        raise ValueError(
            f"techniques {refused} cannot be put into a pretrained model (their paper describes "
            "no such conversion): train them from scratch with a native model"
        )
    if memory is not None:
        check_memory(model, memory)
    if qk_norm not in QK_NORMS:
        raise ValueError(f"qk_norm={qk_norm!r} is unknown; allowed: {QK_NORMS}")
    if qk_norm != "none" and family.qk_norm != "none":
        warnings.warn(
            f"{family.name} already normalises q and k; qk_norm={qk_norm!r} adds no second norm",
            stacklevel=2,
        )
        qk_norm = "none"
    if rope is not None:
        set_rope(model, rope)
    _to_longpos_types(model, family)
    config.longpos_positions = new_plan.plan_dict()
    if qk_norm != "none":
        config.longpos_qk_norm = qk_norm
    if memory is not None:
        config.longpos_memory = memory.to_dict() if memory.enabled else None
    install_from_config(model)
    return model


def _keep_stock_nope(
    family: Family, config: Any, plan: PositionPlan, n_layers: int
) -> PositionPlan:
    """Layers the stock model leaves without RoPE (SmolLM3) stay NoPE under a *named* plan
    (rope, repo, r2n1, ...: they change the RoPE layers); an explicit per-layer list is taken
    as it is."""
    nope = family.stock_nope(config)
    if not nope or "," in plan.plan:
        return plan
    layers = plan.layer_plan(n_layers)
    kept = ["nope" if i in nope else t for i, t in enumerate(layers)]
    return dataclasses.replace(plan, plan=",".join(kept), repo_start=None)


def _resolve_plan(
    current: PositionPlan,
    plan: str | Sequence[str] | PositionPlan | None,
    repo_start: int | None,
    repo: RePoConfig | None,
) -> PositionPlan:
    if isinstance(plan, PositionPlan):
        if repo_start is not None or repo is not None:
            raise ValueError("give repo_start / repo inside the PositionPlan, not beside it")
        return plan.position_plan()
    changes: dict[str, Any] = {}
    if plan is not None:
        changes.update(plan=plan_text(plan), repo_start=repo_start)
    elif repo_start is not None:
        changes["repo_start"] = repo_start
    if repo is not None:
        changes["repo"] = repo
    return dataclasses.replace(current, **changes)


def _to_longpos_types(model: nn.Module, family: Family) -> None:
    config: Any = model.config
    config_class = CONFIG_CLASSES[family.name]
    if type(config) is not config_class:
        if type(config) is not family.config_class:
            raise ValueError(
                f"config is {type(config).__name__}, expected {family.config_class.__name__}"
            )
        # Same dataclass plus optional fields: switching the class keeps every value
        # and every module's reference to this config object.
        config.__class__ = config_class
        for name, (_, default) in LONGPOS_FIELDS.items():
            if name not in config.__dict__:
                setattr(config, name, default)
    if type(model) is not MODEL_CLASSES[family.name]:
        model.__class__ = MODEL_CLASSES[family.name]
    generation_config: Any = getattr(model, "generation_config", None)
    if generation_config is not None:
        generation_config._from_model_config = False


def _converted(model: nn.Module) -> None:
    """Make a stock model a converted one with its current (rope) plan, if it is not yet."""
    if not isinstance(decoder_layers(model)[0].self_attn, LongposAttentionMixin):
        apply_longpos(model, None)


def set_rope(model: nn.Module, rope: RopeConfig) -> nn.Module:
    """Switch the model's RoPE base / scaling (written to ``config.rope_parameters``).

    Rebuilds the shared rotary module from the config, so integer-RoPE layers use exactly
    transformers' own tables for that ``rope_parameters`` dict; every layer's encoding gets
    the same :class:`RopeConfig` (RePo layers follow it unless ``apply_rope_scaling`` is off).
    """
    family = family_of(model)
    config: Any = model.config
    inner: Any = model.model
    old = inner.rotary_emb
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    params = hf_rope.rope_parameters(config, rope, int(head_dim))
    original = getattr(rope.scaling, "original_length", None)
    factor = float(getattr(rope.scaling, "factor", 1.0))
    before = (dict(config.rope_parameters), int(config.max_position_embeddings))
    try:
        if rope.scaling.name in ("yarn", "llama3") and original is not None:
            # transformers validates max_position_embeddings against the original length.
            target = math.ceil(original * factor)
            config.max_position_embeddings = max(int(config.max_position_embeddings), target)
        if rope.scaling.name == "dynamic_ntk" and original is not None:
            config.max_position_embeddings = int(original)
        config.rope_parameters = params
        config.validate_rope()
    except (ValueError, TypeError, KeyError) as exc:  # the family's validation of rope_parameters
        config.rope_parameters, config.max_position_embeddings = before
        cause = getattr(exc, "__cause__", None) or exc
        raise ValueError(
            f"{family.name} does not take RoPE scaling {rope.scaling.name!r}: {cause}"
        ) from exc
    device = next(iter(old.buffers())).device
    inner.rotary_emb = type(old)(config=config).to(device)
    for layer in decoder_layers(model):
        attn = layer.self_attn
        if isinstance(attn, LongposAttentionMixin):
            attn.encoding.set_rope(rope)
    return model


def drop_positions(model: nn.Module, qk_norm: str = "none") -> nn.Module:
    """DroPE: remove positional encoding from every layer (in place; returns ``model``).

    qk_norm: ``none`` (paper default) | ``q`` | ``k`` | ``qk``: full-width RMSNorm(s)
    with gain 1 on the projections, before the per-head reshape. Recalibrate with
    ordinary continued pretraining at the original length afterwards.
    """
    return apply_longpos(model, "nope", qk_norm=qk_norm)


def set_temperature(model: nn.Module, temp: TemperatureConfig) -> nn.Module:
    """Use DroPE's temperature ``temp`` in every layer; stored in the config's plan. Without
    ``temp.train_length`` the model's :func:`training_length` is used (and stored)."""
    family_of(model)
    if temp.enabled and temp.train_length is None:
        temp = dataclasses.replace(temp, train_length=training_length(model))
    _converted(model)
    config: Any = model.config
    plan = dataclasses.replace(position_plan(config), temperature=temp)
    config.longpos_positions = plan.plan_dict()
    for layer in decoder_layers(model):
        layer.self_attn.longpos_set_temperature(temp)
    return model


def layer_plan(model: nn.Module) -> list[str]:
    """The technique of every layer of a (converted or stock) model."""
    family_of(model)
    return position_plan(model.config).layer_plan(len(decoder_layers(model)))


def plan_summary(model: nn.Module) -> str:
    """Which layers use which technique, e.g. ``rope: 0-2, 4-6; nope: 3, 7 (stock NoPE)``."""
    family = family_of(model)
    layers = layer_plan(model)
    stock_nope = family.stock_nope(model.config)
    parts = []
    for name in dict.fromkeys(layers):
        idx = [i for i, t in enumerate(layers) if t == name]
        note = " (stock NoPE)" if name == "nope" and set(idx) <= stock_nope and idx else ""
        parts.append(f"{name}: {_ranges(idx)}{note}")
    return "; ".join(parts)


def _ranges(indices: list[int]) -> str:
    runs: list[list[int]] = []
    for i in indices:
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)


def model_rope(model: nn.Module) -> RopeConfig:
    """The RoPE base and scaling of a (converted or stock) model."""
    family_of(model)
    return hf_rope.model_rope(model.config)


def training_length(model: nn.Module) -> int:
    """The length the model was trained at (its RoPE scaling's original length, or
    ``max_position_embeddings``)."""
    family_of(model)
    return hf_rope.training_length(model.config)


__all__ = [
    "apply_longpos",
    "drop_positions",
    "layer_plan",
    "model_rope",
    "plan_summary",
    "set_rope",
    "set_temperature",
    "training_length",
]
