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

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from torch import nn

from longpos.config import RePoConfig, resolve_plan
from longpos.hf.attention import TECHNIQUES, LongposAttentionMixin, drope_beta
from longpos.hf.families import FAMILIES, Family, decoder_layers, family_of
from longpos.hf.memory import check_memory
from longpos.hf.modeling import (
    CONFIG_CLASSES,
    MODEL_CLASSES,
    apply_temperature_from_config,
    install_from_config,
)
from longpos.memory.placement import MemoryConfig
from longpos.positions.scaling import RopeConfig

QK_NORMS: tuple[str | None, ...] = (None, "q", "k", "qk")
TEMPERATURE_PRESETS: dict[str, float] = {"scratch": 0.412, "smollm": 0.103}
"""DroPE's fitted constants c (paper App. C.2): 0.5B from scratch, SmolLM-360M."""


def _layer_plan(plan: str | Sequence[str], n_layers: int, repo_start: int | None) -> list[str]:
    if repo_start is not None and not (isinstance(repo_start, int) and 0 <= repo_start < n_layers):
        raise ValueError(
            f"repo_start={repo_start!r} is out of range: allowed 0..{n_layers - 1} "
            f"for a model with {n_layers} layers"
        )
    start = n_layers // 3 if repo_start is None else repo_start
    if isinstance(plan, str):
        if not plan.strip():
            raise ValueError("plan is empty; allowed: rope, nope, r2n1, n2r1, repo, or a list")
        return resolve_plan(plan, n_layers, start)
    items = [str(p).strip().lower() for p in plan]
    bad = [p for p in items if p not in TECHNIQUES]
    if bad:
        raise ValueError(f"plan entries {bad} are unknown techniques; allowed: {TECHNIQUES}")
    if len(items) != n_layers:
        raise ValueError(
            f"plan lists {len(items)} layers but the model has {n_layers}: give one entry per layer"
        )
    return items


def apply_longpos(
    model: nn.Module,
    plan: str | Sequence[str] | None = "repo",
    *,
    repo_start: int | None = None,
    repo: RePoConfig | None = None,
    rope: RopeConfig | None = None,
    drope_qk_norm: str | None = None,
    memory: MemoryConfig | None = None,
) -> nn.Module:
    """Convert ``model`` in place and return it.

    model: a Llama / Mistral / Qwen2 / Qwen3 / OLMo2 ``ForCausalLM`` (stock or already
    converted). plan: ``rope`` | ``nope`` | ``r2n1`` | ``n2r1`` | ``repo`` or one entry
    per layer (a list or a comma-separated string of rope/nope/repo); None keeps the
    current plan (``rope`` everywhere for a stock model). repo_start: first
    RePo layer of the ``repo`` plan (default L // 3). repo: RePo predictor options
    (``hidden_ratio``, ``variant``, ``init``, ``index_blend``, ``apply_rope_scaling``).
    rope: a new RoPE base / scaling (PI, NTK, YaRN, ...) written to the config's
    ``rope_parameters`` and used by every rotating layer. drope_qk_norm: ``q`` | ``k`` |
    ``qk`` adds full-width RMSNorms (gain 1) before the reshape (DroPE's variant;
    ignored with a warning for Qwen3 and OLMo2, which already normalise q and k).

    memory: FwPKM / static PKM layers (:class:`longpos.memory.placement.MemoryConfig`),
    placed by the reference model's rules (:mod:`longpos.hf.memory`); None keeps the
    current memory, ``MemoryConfig()`` (kind ``none``) removes it. A static PKM that
    replaced an MLP cannot be removed or changed (the MLP weights are gone).

    RePo weights already present in layers that stay ``repo`` are kept; new ones get
    the paper's truncated-normal init (std 0.02). Memory modules already present with the
    same options are kept; new ones get their own init (output projection divided by
    sqrt(2 L), as in the reference model).
    """
    family = family_of(model)
    config: Any = model.config
    n_layers = len(decoder_layers(model))
    if plan is None:
        plan = list(getattr(config, "longpos_plan", None) or ["rope"] * n_layers)
    layer_plan = _layer_plan(plan, n_layers, repo_start)
    if memory is not None:
        check_memory(model, memory)
    if drope_qk_norm not in QK_NORMS:
        raise ValueError(f"drope_qk_norm={drope_qk_norm!r} is unknown; allowed: {QK_NORMS}")
    if drope_qk_norm and family.qk_norm != "none":
        warnings.warn(
            f"{family.name} already normalises q and k; drope_qk_norm={drope_qk_norm!r} "
            "adds no second norm",
            stacklevel=2,
        )
        drope_qk_norm = None
    if drope_qk_norm is None:
        drope_qk_norm = getattr(config, "longpos_qk_norm", None)  # keep existing norms
    repo_cfg = repo if repo is not None else RePoConfig(**_stored_repo(config))
    if rope is not None:
        set_rope(model, rope)
    _to_longpos_types(model, family)
    config.longpos_plan = layer_plan
    config.longpos_repo = asdict(repo_cfg)
    config.longpos_qk_norm = drope_qk_norm
    if memory is not None:
        config.longpos_memory = memory.to_dict() if memory.enabled else None
    install_from_config(model)
    return model


def _stored_repo(config: Any) -> dict[str, Any]:
    stored = getattr(config, "longpos_repo", None) or {}
    return dict(stored)


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
        for name in (
            "longpos_plan",
            "longpos_repo",
            "longpos_qk_norm",
            "longpos_temperature",
            "longpos_memory",
        ):
            if name not in config.__dict__:
                setattr(config, name, None)
    if type(model) is not MODEL_CLASSES[family.name]:
        model.__class__ = MODEL_CLASSES[family.name]
    generation_config: Any = getattr(model, "generation_config", None)
    if generation_config is not None:
        generation_config._from_model_config = False


def set_rope(model: nn.Module, rope: RopeConfig) -> nn.Module:
    """Switch the model's RoPE base / scaling (written to ``config.rope_parameters``).

    Rebuilds the shared rotary module from the config, so integer-RoPE layers use
    exactly transformers' own tables for that ``rope_parameters`` dict; RePo layers
    recompute their frequencies from the same dict.
    """
    family_of(model)
    config: Any = model.config
    inner: Any = model.model
    old = inner.rotary_emb
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    params = rope.to_hf(head_dim)
    if rope.scaling in ("yarn", "llama3") and rope.original_length is not None:
        # transformers validates max_position_embeddings against the original length.
        target = math.ceil(rope.original_length * rope.factor)
        config.max_position_embeddings = max(int(config.max_position_embeddings), target)
    if rope.scaling == "dynamic_ntk" and rope.original_length is not None:
        config.max_position_embeddings = int(rope.original_length)
    config.rope_parameters = params
    new = type(old)(config=config)
    inner.rotary_emb = new.to(old.inv_freq.device)
    for layer in decoder_layers(model):
        attn = layer.self_attn
        if isinstance(attn, LongposAttentionMixin):
            attn._longpos_inv_freq = {}
    return model


def drop_positions(model: nn.Module, *, qk_norm: str | None = None) -> nn.Module:
    """DroPE: remove positional encoding from every layer (in place; returns ``model``).

    qk_norm: ``None`` (paper default) | ``q`` | ``k`` | ``qk``: full-width RMSNorm(s)
    with gain 1 on the projections, before the per-head reshape. Recalibrate with
    ordinary continued pretraining at the original length afterwards.
    """
    return apply_longpos(model, "nope", drope_qk_norm=qk_norm)


def set_temperature(
    model: nn.Module,
    *,
    beta: float | None = None,
    c: float | str | None = None,
    eval_length: int | None = None,
    train_length: int | None = None,
    mode: str = "static",
) -> float | None:
    """Set DroPE's inference temperature on every layer; stored in the config.

    Give ``beta`` directly, or ``c`` (a number or a preset: ``scratch`` 0.412, ``smollm``
    0.103) with ``train_length`` and, for ``mode="static"``, ``eval_length``:
    beta = 1 + c ln(eval / train) (1 when eval <= train). ``mode="dynamic"`` gives each
    query its own beta from its position p: 1 + c ln(max(1, (p + 1) / train)); unlike a
    per-forward length this is identical with and without the KV cache. Returns the
    static beta (None in dynamic mode). ``set_temperature(model, beta=1.0)`` resets.
    """
    family_of(model)
    if mode not in ("static", "dynamic"):
        raise ValueError(f"mode={mode!r} is unknown; allowed: static, dynamic")
    if isinstance(c, str):
        if c not in TEMPERATURE_PRESETS:
            raise ValueError(f"c={c!r} is unknown; presets: {sorted(TEMPERATURE_PRESETS)}")
        c = TEMPERATURE_PRESETS[c]
    config: Any = model.config
    if mode == "dynamic":
        if c is None or train_length is None or beta is not None:
            raise ValueError("mode='dynamic' needs c and train_length (and no beta)")
        if train_length < 1:
            raise ValueError(f"train_length={train_length} must be >= 1")
        temp: dict[str, Any] = {"mode": "dynamic", "c": float(c), "train_length": int(train_length)}
        result = None
    else:
        if beta is None:
            if c is None or eval_length is None or train_length is None:
                raise ValueError("give beta, or c with eval_length and train_length")
            beta = drope_beta(float(c), int(eval_length), int(train_length))
        if not beta > 0:
            raise ValueError(f"beta={beta} must be > 0")
        temp = {"mode": "static", "beta": float(beta)}
        if c is not None:
            temp.update(c=float(c), eval_length=eval_length, train_length=train_length)
        result = float(beta)
    if not isinstance(decoder_layers(model)[0].self_attn, LongposAttentionMixin):
        apply_longpos(model, "rope")
    config.longpos_temperature = None if temp == {"mode": "static", "beta": 1.0} else temp
    apply_temperature_from_config(model)
    return result


def layer_plan(model: nn.Module) -> list[str]:
    """The technique of every layer of a (converted or stock) model."""
    family_of(model)
    plan = getattr(model.config, "longpos_plan", None)
    return list(plan) if plan else ["rope"] * len(decoder_layers(model))


__all__ = [
    "FAMILIES",
    "QK_NORMS",
    "TEMPERATURE_PRESETS",
    "apply_longpos",
    "drop_positions",
    "layer_plan",
    "set_rope",
    "set_temperature",
]
