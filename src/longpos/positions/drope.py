"""DroPE: drop positional embeddings from a trained model, then recalibrate.

Gelberg, Eguchi, Akiba, Cetin, "Extending the Context of Pretrained LLMs by Dropping
Their Positional Embeddings", arXiv 2512.12167.

1. Start from a (mostly) pretrained RoPE model.
2. Remove the rotation from **every** layer (NoPE): nothing else changes; position
   information then comes only from the causal mask.
3. Recalibrate: continue ordinary next-token training at the **original** context length
   for a small share of the pretraining budget (``longpos train --init-from``).
4. Beyond the training length, optionally multiply attention logits by
   beta = 1 + c ln(s), s = length / training length (:class:`TemperatureConfig`).

Optional QK-norm variant (the reference's ``qk_norm_nope`` / ``q_norm_nope`` /
``k_norm_nope``): RMSNorm on queries and/or keys, full width over all heads, gains
initialised at 1, added when positions are dropped. A model that already normalises
q or k keeps its norms and gets no second one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import cast

from longpos.config import QK_NORMS, TEMPERATURE_PRESETS, ModelConfig, TemperatureConfig
from longpos.model import Block, LongposLM, RMSNorm
from longpos.positions.rope import IndexAssigner, NoPE


def dropped_config(cfg: ModelConfig, qk_norm: str = "none") -> ModelConfig:
    """The config of ``cfg`` with every layer NoPE (and the requested QK-norm)."""
    if qk_norm not in QK_NORMS:
        raise ValueError(f"qk_norm={qk_norm!r} is unknown; allowed: {QK_NORMS}")
    if qk_norm != "none" and cfg.qk_norm != "none":
        raise ValueError(
            f"the model already normalises queries/keys (qk_norm={cfg.qk_norm!r}); DroPE adds "
            "no second norm: call drop_positions with qk_norm='none'"
        )
    changes: dict = {"plan": "nope", "repo_start": None}
    if qk_norm != "none":
        changes.update(qk_norm=qk_norm, qk_norm_layout="full")
    return dataclasses.replace(cfg, **changes)


def drop_positions(model: LongposLM, qk_norm: str = "none") -> LongposLM:
    """Remove positional encoding from every layer, in place; weights are kept.

    RePo assigners (if any) are removed with their parameters; ``qk_norm`` in
    {none, q, k, qk} adds full-width RMSNorm gains (initialised at 1).
    Returns the same model, whose ``config`` now says ``plan="nope"``.
    """
    cfg = dropped_config(model.config, qk_norm)
    device = model.embed.weight.device
    dtype = model.embed.weight.dtype
    for block in cast("Iterable[Block]", model.blocks):
        attn = block.attn
        attn.assigner = IndexAssigner()
        attn.encoding = NoPE()
        block.technique = "nope"
        if qk_norm != "none":
            attn.norm_full_width = True
            if "q" in qk_norm:
                attn.q_norm = RMSNorm(attn.n_heads * attn.head_dim, cfg.norm_eps).to(device, dtype)
            if "k" in qk_norm:
                attn.k_norm = RMSNorm(attn.n_kv_heads * attn.head_dim, cfg.norm_eps).to(
                    device, dtype
                )
    model.config = cfg
    return model


def temperature(
    c: float | str, target_length: int | None, mode: str = "static"
) -> TemperatureConfig:
    """A temperature config; ``c`` is a number or a preset name (scratch, smollm)."""
    if isinstance(c, str):
        if c not in TEMPERATURE_PRESETS:
            raise ValueError(
                f"temperature preset {c!r} is unknown; allowed: {', '.join(TEMPERATURE_PRESETS)}"
            )
        c = TEMPERATURE_PRESETS[c]
    return TemperatureConfig(c=float(c), mode=mode, target_length=target_length)


def set_temperature(model: LongposLM, temp: TemperatureConfig) -> LongposLM:
    """Use ``temp`` for every later forward of ``model`` (in place)."""
    model.config = dataclasses.replace(model.config, temperature=temp)
    return model
