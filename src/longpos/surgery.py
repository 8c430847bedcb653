"""Operations on a trained model: drop its positions, set its temperature, change its RoPE.

One name and one signature per operation, for either kind of model: a native
:class:`~longpos.model.LongposLM` (done here) or a Hugging Face causal LM (done by
:mod:`longpos.hf.convert`, imported only when such a model is passed). All work in place and
return the model.

- :func:`drop_positions` is DroPE's first step (Gelberg et al., arXiv 2512.12167): every layer
  becomes NoPE, weights kept; RePo predictors go with their parameters; ``qk_norm`` in
  {none, q, k, qk} adds full-width RMSNorm gains (initialised at 1) unless the model already
  normalises queries or keys. Recalibrate afterwards (``longpos train --init-from``).
- :func:`set_temperature`: DroPE's inference temperature (:mod:`longpos.positions.temperature`);
  ``None`` turns it off.
- :func:`set_rope`: a new RoPE base / scaling (PI, NTK, YaRN, ...) in every rotating layer
  (context extension without retraining, the DroPE paper's baselines); each encoding decides
  whether it follows the scaling (RePo's ``apply_rope_scaling``).
- :func:`scaled_rope`: the model's RoPE with a scaling over its training length.
- :func:`set_plan`: a new per-layer position plan for a native model (RePo's continued
  pretraining: RePo layers added to a RoPE model, as the paper trains it); layers whose
  technique changes get fresh position modules, every other weight is kept.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any, cast

import torch
from torch import nn

from longpos.model import Block, LongposLM, RMSNorm
from longpos.plan import QK_NORMS
from longpos.positions.rope import IndexAssigner, NoPE
from longpos.positions.scaling import RopeConfig
from longpos.positions.techniques import build_positions
from longpos.positions.temperature import TemperatureConfig


def _native(model: nn.Module) -> LongposLM | None:
    return model if isinstance(model, LongposLM) else None


def _hf() -> Any:
    try:
        from longpos.hf import convert
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise ValueError(
            f"{exc}: this is not a longpos model; Hugging Face models need longpos[hf]"
        ) from exc
    return convert


def check_qk_norm(qk_norm: str) -> None:
    if qk_norm not in QK_NORMS:
        raise ValueError(f"qk_norm={qk_norm!r} is unknown; allowed: {QK_NORMS}")


def drop_positions(model: nn.Module, qk_norm: str = "none") -> nn.Module:
    """DroPE: remove positional encoding from every layer (in place); weights are kept."""
    check_qk_norm(qk_norm)
    native = _native(model)
    if native is None:
        return cast(nn.Module, _hf().drop_positions(model, qk_norm=qk_norm))
    cfg = native.config
    if qk_norm != "none" and cfg.qk_norm != "none":
        raise ValueError(
            f"the model already normalises queries/keys (qk_norm={cfg.qk_norm!r}); DroPE adds "
            "no second norm: call drop_positions with qk_norm='none'"
        )
    changes: dict[str, Any] = {"plan": "nope", "repo_start": None}
    if qk_norm != "none":
        changes.update(qk_norm=qk_norm, qk_norm_layout="full")
    new_cfg = dataclasses.replace(cfg, **changes)
    like = native.embed.weight
    for block in cast("Iterable[Block]", native.blocks):
        attn = block.attn
        attn.assigner = IndexAssigner()
        attn.encoding = NoPE()
        block.technique = "nope"
        if qk_norm != "none":
            attn.norm_full_width = True
            if "q" in qk_norm:
                attn.q_norm = RMSNorm(attn.n_heads * attn.head_dim, cfg.norm_eps)
            if "k" in qk_norm:
                attn.k_norm = RMSNorm(attn.n_kv_heads * attn.head_dim, cfg.norm_eps)
            attn.to(device=like.device, dtype=like.dtype)
    native.config = new_cfg
    return native


def set_temperature(model: nn.Module, temp: TemperatureConfig | None) -> nn.Module:
    """Use DroPE's temperature ``temp`` (None: off) in every later forward (in place)."""
    temp = temp if temp is not None else TemperatureConfig()
    if not isinstance(temp, TemperatureConfig):
        raise ValueError(f"temp must be a TemperatureConfig or None, got {type(temp).__name__}")
    native = _native(model)
    if native is None:
        return cast(nn.Module, _hf().set_temperature(model, temp))
    native.config = dataclasses.replace(native.config, temperature=temp)
    train_length = temp.resolved_train_length(native.config.max_seq_len)
    for block in cast("Iterable[Block]", native.blocks):
        block.attn.temperature = temp
        block.attn.train_length = train_length
    return native


def set_rope(model: nn.Module, rope: RopeConfig) -> nn.Module:
    """Use ``rope`` (a new base / scaling) in every rotating layer (in place)."""
    if not isinstance(rope, RopeConfig):
        raise ValueError(f"rope must be a RopeConfig, got {type(rope).__name__}")
    native = _native(model)
    if native is None:
        return cast(nn.Module, _hf().set_rope(model, rope))
    for block in cast("Iterable[Block]", native.blocks):
        block.attn.encoding.set_rope(rope)
    native.config = dataclasses.replace(native.config, rope=rope)
    return native


def training_length(model: nn.Module) -> int:
    """The context length a model was trained at: ``max_seq_len`` (native) or the length its
    RoPE scaling extends from / ``max_position_embeddings`` (Hugging Face)."""
    native = _native(model)
    if native is None:
        return int(_hf().training_length(model))
    return native.config.max_seq_len


def model_rope(model: nn.Module) -> RopeConfig:
    """The RoPE base and scaling the model uses now."""
    native = _native(model)
    if native is None:
        return cast(RopeConfig, _hf().model_rope(model))
    return native.config.rope


def scaled_rope(model: nn.Module, scaling: str, factor: float) -> RopeConfig:
    """The model's RoPE with ``scaling`` by ``factor`` over its training length."""
    base = model_rope(model)
    return base.with_scaling(scaling, factor, training_length(model))


def set_plan(
    model: nn.Module,
    plan: str,
    repo_start: int | None = None,
    generator: torch.Generator | None = None,
) -> nn.Module:
    """Give a native model the position ``plan`` (in place): each layer whose technique changes
    gets that technique's assigner and encoding, initialised as in a new model (drawn from
    ``generator``); attention, MLP and embedding weights are kept. RePo's recipe (arXiv
    2512.14391) is ``set_plan(rope_model, "repo")`` and continued training. Hugging Face
    models are converted with :func:`longpos.hf.apply_longpos` instead."""
    native = _native(model)
    if native is None:
        raise ValueError(
            "set_plan changes native longpos models; convert a Hugging Face model with "
            "longpos.hf.apply_longpos (or `longpos convert`)"
        )
    new_cfg = dataclasses.replace(native.config, plan=plan, repo_start=repo_start)
    techniques = new_cfg.layer_plan()
    like = native.embed.weight
    for block, name in zip(cast("Iterable[Block]", native.blocks), techniques, strict=True):
        if block.technique == name:
            continue
        assigner, encoding = build_positions(name, new_cfg.layer_shape(), new_cfg)
        for module in (assigner, encoding):
            module.init_weights(generator)
        block.attn.assigner = assigner.to(device=like.device, dtype=like.dtype)
        block.attn.encoding = encoding.to(device=like.device, dtype=like.dtype)
        block.technique = name
    native.config = new_cfg
    return native
