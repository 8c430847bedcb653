"""Hugging Face transformers integration: RePo, DroPE, NoPE hybrids, scaled RoPE and
FwPKM / static PKM memory layers.

RePo: Li, Zhao, Cai, Sproat, "Language Models with Context Re-Positioning",
arXiv 2512.14391. DroPE: Gelberg, Eguchi, Akiba, Cetin, "Extending the Context of
Pretrained LLMs by Dropping Their Positional Embeddings", arXiv 2512.12167. FwPKM:
Zhao & Jones, "Fast-weight Product Key Memory", arXiv 2601.00671.

The only package of longpos that imports transformers (5.23 or later 5.x). Importing
it registers the ``<family>_longpos`` config and model types with ``AutoConfig`` /
``AutoModelForCausalLM``. Supported families (``SUPPORTED_FAMILIES``; grouped-query
attention included): Llama, Mistral, Qwen2, Qwen3, Qwen3-MoE, OLMo2, OLMo3, Gemma 3 (text),
Phi-3, SmolLM3, Granite; attention implementations: eager, sdpa (and flash / flex, passed
through untouched; not tested on CPU). Converted folders are portable (``auto_map``: any
loader opens them with ``trust_remote_code=True``), and Sakana's released RePo-OLMo2 and
DroPE layouts load through :func:`load_hf_model` (:mod:`longpos.hf.reference`).

Conversion (in place; returns the same model; every pretrained weight is kept)
    apply_longpos(model, plan="repo", *, repo_start=None, repo=None, rope=None,
                  qk_norm="none", memory=None) -> model
        plan: a :class:`longpos.plan.PositionPlan`, or rope | nope | r2n1 | n2r1 | repo |
        one technique per layer (list or comma string) | None (keep the current plan;
        rope for a stock model). repo: :class:`longpos.plan.RePoConfig`.
        rope: :class:`longpos.positions.scaling.RopeConfig` (PI / NTK / YaRN /
        Llama-3), written to ``config.rope_parameters``.
        memory: :class:`longpos.memory.placement.MemoryConfig`: FwPKM sub-blocks
        before the attention of ``layers`` and / or static PKMs replacing (or added
        to) the MLP, placed exactly as in the reference model; None keeps the
        current memory, ``MemoryConfig()`` removes it (not a PKM that replaced an
        MLP). ``apply_longpos(model, None, memory=cfg)`` only adds memory. Not
        supported: pSWA (``pswa_prob`` must be 0).
    The operations shared with native models (:mod:`longpos.surgery`, same signatures):
    set_rope(model, rope), drop_positions(model, qk_norm="none") (q / k / qk full-width
    RMSNorm; not for Qwen3/OLMo2), set_temperature(model, TemperatureConfig) (DroPE's
    per-query beta, stored in the config; train_length defaults to training_length(model)).
    layer_plan(model) -> list[str]; position_plan(model) -> PositionPlan;
    plan_summary(model) -> "rope: 0-2; nope: 3 (stock NoPE); ..."

Memory layers at run time (FwPKM models; :mod:`longpos.hf.memory`)
    model(input_ids, ..., read_passes=1, memory_writes="chunked")
        read_passes n: n - 1 write-only reading passes over the input, then the real
        one (start of a sequence only). ``generate`` / :func:`greedy_generate` read
        the prompt ``config.longpos_memory["fwpkm"]["read_passes"]`` times unless
        given ``read_passes=``. memory_writes: chunked | end | none.
    The fast weights of each sequence live on the KV cache (``cache.longpos_memory``,
    layer -> :class:`longpos.memory.FwPKMState`; fixed size, whatever the length);
    cached decoding equals the full forward. :class:`LongposMemoryCache` (what the
    model and ``generate`` create) also follows beam reordering. An
    ``attention_mask`` with padding is refused (left padding is not supported).
    memory_config(model) -> MemoryConfig | None
    memory_states(cache) -> {layer: FwPKMState}
    memory_parameters(model) -> iterator of (name, parameter) of the memory layers;
    memory_param_groups(model, lr): optimiser groups (PKM values at their own rate).

Persistence
    ``model.save_pretrained(path)`` then ``AutoModelForCausalLM.from_pretrained(path)``
    (or :func:`load_hf_model`) restores a converted model exactly; no
    ``trust_remote_code``. ``CONFIG_CLASSES`` / ``MODEL_CLASSES`` map family -> class.

Loading and evaluation
    load_hf_model(path_or_model, *, plan=None, repo_start=None, repo=None, rope=None,
                  qk_norm="none", memory=None, dtype=None, device=None,
                  attn_implementation=None) -> model
        local folders only (stock or converted); converts when a plan or memory is
        given.
    HFEvalModel(model, tokenizer=None, *, max_length=None, device=None,
                stop_at_eos=True)
        evaluation protocol: ``.tokenizer``, ``.max_length``,
        ``generate_ids(prompt_ids, max_new_tokens) -> list[int]`` (greedy, KV cache).
    load_eval_model(path, device="cpu", *, tokenizer=None, dtype=None, max_length=None)
    greedy_generate(model, prompt_ids, max_new_tokens, *, eos_ids=(),
                    use_cache=True, read_passes=None) -> list[int]
    local_tokenizer(folder) -> tokenizer | None     the folder's own tokenizer

Positions (visualisation)
    with record_positions(model) as rec: model(ids)   rec.by_layer: {layer: (B,H_kv,T)}
    assigned_positions(model, input_ids, attention_mask=None)
        -> (positions (L, B, H_kv, T), learned flags per layer)

Training: a converted model is an ordinary ``PreTrainedModel``; RePo parameters are
named ``model.layers.<i>.self_attn.assigner.{gate,content,assign}.weight`` (as
``blocks.<i>.attn.assigner.*`` in native models; see :func:`position_parameters`) and DroPE
norms ``...self_attn.{q,k}_norm.weight``.
Memory layers: ``model.layers.<i>.fwpkm.*`` (FwPKM), ``model.layers.<i>.mlp.*``
(static PKM replacing the MLP) or ``model.layers.<i>.mlp.pkm.*`` (added to it);
``longpos train --hf-model`` gives PKM values their own group automatically.
"""

from __future__ import annotations

from collections.abc import Iterator

from torch import nn

from longpos.hf import compat
from longpos.hf.attention import ATTENTION_CLASSES, LongposAttentionMixin
from longpos.hf.convert import (
    apply_longpos,
    drop_positions,
    layer_plan,
    model_rope,
    plan_summary,
    set_rope,
    set_temperature,
    training_length,
)
from longpos.hf.families import FAMILIES, SUPPORTED_FAMILIES, family_of
from longpos.hf.loading import (
    HFEvalModel,
    greedy_generate,
    load_eval_model,
    load_hf_model,
    local_tokenizer,
)
from longpos.hf.memory import (
    LongposMemoryCache,
    memory_config,
    memory_parameters,
    memory_states,
)
from longpos.hf.modeling import CONFIG_CLASSES, MODEL_CLASSES, position_plan, register_auto_classes
from longpos.hf.positions import PositionRecord, assigned_positions, record_positions
from longpos.memory.placement import MemoryConfig, memory_param_groups
from longpos.positions.rope import PositionAssigner, PositionEncoding

register_auto_classes()


def position_parameters(model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
    """``(name, parameter)`` of every position module (RePo predictors, ...)."""
    for name, module in model.named_modules():
        if isinstance(module, PositionAssigner | PositionEncoding):
            for sub, param in module.named_parameters():
                yield f"{name}.{sub}", param


__all__ = [
    "ATTENTION_CLASSES",
    "CONFIG_CLASSES",
    "compat",
    "FAMILIES",
    "MODEL_CLASSES",
    "SUPPORTED_FAMILIES",
    "HFEvalModel",
    "LongposAttentionMixin",
    "LongposMemoryCache",
    "MemoryConfig",
    "PositionRecord",
    "apply_longpos",
    "assigned_positions",
    "drop_positions",
    "family_of",
    "greedy_generate",
    "layer_plan",
    "load_eval_model",
    "load_hf_model",
    "local_tokenizer",
    "memory_config",
    "memory_param_groups",
    "memory_parameters",
    "memory_states",
    "model_rope",
    "plan_summary",
    "position_parameters",
    "position_plan",
    "record_positions",
    "register_auto_classes",
    "set_rope",
    "set_temperature",
    "training_length",
]
