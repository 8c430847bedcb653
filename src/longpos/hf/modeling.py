"""Registered ``<family>_longpos`` config and causal-LM types, so converted models persist.

Context: RePo (arXiv 2512.14391) adds a position predictor to some attention layers and
DroPE (arXiv 2512.12167) removes the rotation (optionally adding q/k norms and an
inference temperature). A stock class would drop the new tensors as unexpected keys
and forget the plan on reload, so each family gets a config subclass with the plan as
typed fields and a ``ForCausalLM`` subclass whose ``__init__`` rebuilds the converted
layers from the config before the weights load. Both are registered with
``AutoConfig`` / ``AutoModelForCausalLM`` when :mod:`longpos.hf` is imported, so
``AutoModelForCausalLM.from_pretrained(path)`` restores a converted model exactly,
offline and without ``trust_remote_code`` (``spec/hf-integration.md`` §9).

Memory layers (FwPKM, arXiv 2601.00671; static PKM, arXiv 1907.05242) are rebuilt the
same way from ``config.longpos_memory`` (:mod:`longpos.hf.memory`); the causal LM's
``forward`` carries their fast-weight state on the KV cache and runs iterative reading.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import torch
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, DynamicCache

from longpos.hf.attention import ATTENTION_CLASSES, LongposAttentionMixin
from longpos.hf.compat import CACHE_KWARG, either_cache
from longpos.hf.families import FAMILIES, Family, decoder_layers
from longpos.hf.memory import (
    MEMORY_KWARG,
    LongposMemoryCache,
    MemoryRun,
    default_read_passes,
    fwpkm_layer_indices,
    init_missing,
    install_memory,
    memory_states,
    reset_memory,
)
from longpos.hf.rope import layer_rope, model_rope
from longpos.io import atomic_write_text
from longpos.memory.fwpkm import FwPKMLayer
from longpos.memory.pkm import StaticPKM
from longpos.memory.reading import check_reading, run_reading_passes
from longpos.plan import PositionPlan
from longpos.positions.techniques import LayerShape

LONGPOS_FIELDS: dict[str, tuple[str, Any]] = {
    "longpos_positions": ("dict | None", None),
    "longpos_qk_norm": ("str", "none"),
    "longpos_memory": ("dict | None", None),
}
"""The fields a converted config adds to the family's: the position plan
(:meth:`longpos.plan.PositionPlan.plan_dict`, the same JSON as a native config's), DroPE's
added q/k norms (``none | q | k | qk``) and the memory layers
(:meth:`longpos.memory.placement.MemoryConfig.to_dict`)."""


def _make_config_class(family: Family) -> type:
    name = f"{family.config_class.__name__.removesuffix('Config')}LongposConfig"
    namespace: dict[str, Any] = {
        "__module__": __name__,
        "__qualname__": name,
        "__doc__": (
            f"{family.config_class.__name__} plus the longpos per-layer position plan "
            f"(model_type ``{family.longpos_type}``)."
        ),
        "model_type": family.longpos_type,
        "__annotations__": {name: kind for name, (kind, _) in LONGPOS_FIELDS.items()},
        **{name: default for name, (_, default) in LONGPOS_FIELDS.items()},
    }
    cls = type(name, (family.config_class,), namespace)
    return strict(cls)  # type: ignore[no-any-return]


AUTO_MODULE = "longpos_auto"
"""The module file ``save_pretrained`` writes beside the weights (``longpos_auto.py``): it
imports the converted classes from the installed longpos, so ``config.json``'s ``auto_map``
lets any loader open the folder with ``trust_remote_code=True`` without importing longpos."""

AUTO_MODULE_SOURCE = (
    '"""Opens this longpos-converted model with the transformers Auto classes\n'
    '(trust_remote_code=True); needs the longpos package installed (longpos[hf])."""\n\n'
    "from longpos.hf.modeling import {config_class}, {model_class}  # noqa: F401\n"
)


class LongposCausalLMMixin:
    """Rebuilds the converted layers from ``config.longpos_*`` in ``__init__``; carries the
    FwPKM fast-weight state through ``forward`` and ``generate`` (:mod:`longpos.hf.memory`);
    ``save_pretrained`` also writes the ``auto_map`` and its module file (portable folders)."""

    config: Any
    model: Any

    def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)  # type: ignore[call-arg]
        install_from_config(self)  # type: ignore[arg-type]

    def save_pretrained(self, save_directory: Any, *args: Any, **kwargs: Any) -> Any:
        """The family's ``save_pretrained``, plus ``longpos_auto.py`` and ``config.auto_map``, so
        that ``AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)`` opens the
        folder in a process that never imported longpos (lm-evaluation-harness, RULER, ...)."""
        config_class = type(self.config).__name__
        model_class = type(self).__name__
        self.config.auto_map = {
            "AutoConfig": f"{AUTO_MODULE}.{config_class}",
            "AutoModelForCausalLM": f"{AUTO_MODULE}.{model_class}",
        }
        result = super().save_pretrained(save_directory, *args, **kwargs)  # type: ignore[misc]
        source = AUTO_MODULE_SOURCE.format(config_class=config_class, model_class=model_class)
        atomic_write_text(Path(save_directory) / f"{AUTO_MODULE}.py", source)
        return result

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: Any = None,
        cache: Any = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        read_passes: int | None = None,
        memory_writes: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """The family's forward; for FwPKM models also (ignored by models without):

        ``read_passes`` n (default 1; ``generate`` uses ``config.longpos_memory``'s
        ``fwpkm.read_passes`` for the prompt): n - 1 reading passes over the input first
        (no KV cache, each ending with one memory write), then the real pass; only at the
        start of a sequence (empty or no cache). ``memory_writes``: ``chunked`` (default: a
        write every ``chunk`` tokens of the stream) | ``end`` | ``none`` (frozen memory).
        The fast weights live on the cache (``cache.longpos_memory``; the cache may be
        passed as ``cache`` or, before transformers 5.24, ``past_key_values``); an
        ``attention_mask`` with padding is refused.
        """
        base = super().forward  # type: ignore[misc]
        # Both keywords are named in the signature: generate() accepts only the model kwargs the
        # forward names, so a returned cache can be passed back under either.
        cache = either_cache(cache, past_key_values)
        inputs = dict(input_ids=input_ids, position_ids=position_ids, inputs_embeds=inputs_embeds)
        if not fwpkm_layer_indices(self):  # type: ignore[arg-type]
            return base(
                attention_mask=attention_mask, labels=labels, use_cache=use_cache,
                logits_to_keep=logits_to_keep, **{CACHE_KWARG: cache}, **inputs, **kwargs,
            )  # fmt: skip
        padded = attention_mask is not None and attention_mask.dim() == 2
        padded = padded and not bool(attention_mask.all())  # type: ignore[union-attr]
        past = 0 if cache is None else cache.get_seq_length()
        passes, writes = check_reading(read_passes, memory_writes, padded=padded, past=past)
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if use_cache and cache is None:
            cache = LongposMemoryCache(config=self.config)
        states = {} if cache is None else memory_states(cache)
        if past == 0:
            states.clear()  # a new sequence starts from the initial fast weights

        def write_only_pass() -> None:
            self.model(
                attention_mask=attention_mask, use_cache=False, **inputs,
                **{MEMORY_KWARG: MemoryRun(states, "end")},
            )  # fmt: skip

        run_reading_passes(passes, write_only_pass)
        return base(
            attention_mask=attention_mask, labels=labels, use_cache=use_cache,
            logits_to_keep=logits_to_keep, **{CACHE_KWARG: cache}, **inputs,
            **{MEMORY_KWARG: MemoryRun(states, writes)}, **kwargs,
        )  # fmt: skip

    def prepare_inputs_for_generation(
        self, input_ids: torch.Tensor, **kwargs: Any
    ) -> dict[str, Any]:
        """``generate``: the prompt gets ``read_passes`` (default from the config), every
        cached step after it reads once."""
        inputs: dict[str, Any] = super().prepare_inputs_for_generation(  # type: ignore[misc]
            input_ids, **kwargs
        )
        if fwpkm_layer_indices(self):  # type: ignore[arg-type]
            cache = inputs.get(CACHE_KWARG)
            if cache is not None and cache.get_seq_length() > 0:
                inputs["read_passes"] = 1
            elif inputs.get("read_passes") is None:
                inputs["read_passes"] = default_read_passes(self)  # type: ignore[arg-type]
        return inputs

    def _prepare_cache_for_generation(
        self, generation_config: Any, model_kwargs: dict, *args: Any, **kwargs: Any
    ) -> Any:
        result = super()._prepare_cache_for_generation(  # type: ignore[misc]
            generation_config, model_kwargs, *args, **kwargs
        )
        cache = model_kwargs.get(CACHE_KWARG)
        if type(cache) is DynamicCache and fwpkm_layer_indices(self):  # type: ignore[arg-type]
            cache.__class__ = LongposMemoryCache  # same object, plus fast-weight bookkeeping
        return result


def _longpos_init_weights(base_init: Any, module: Any) -> None:
    """``_init_weights`` for the inner decoder model: position and memory modules get their
    own init (the same as in the native model), the rest the family's.

    transformers calls it for the modules of tensors missing from a checkpoint, children
    before parents; tensors it already loaded are kept (:func:`init_missing`).
    """
    owner_init = module.__dict__.get("_longpos_owner")  # a position module's own init
    if owner_init is not None:
        init_missing(owner_init.__self__, owner_init)
    elif isinstance(module, FwPKMLayer | StaticPKM):
        init_missing(module, functools.partial(reset_memory, module))
    else:
        base_init(module)


def _make_model_class(family: Family, config_class: type) -> type:
    base = family.causal_lm_class
    name = f"{base.__name__.removesuffix('ForCausalLM')}LongposForCausalLM"
    return type(
        name,
        (LongposCausalLMMixin, base),
        {
            "__module__": __name__,
            "__qualname__": name,
            "config_class": config_class,
            "__doc__": f"{base.__name__} with longpos RePo / NoPE / DroPE attention layers.",
        },
    )


CONFIG_CLASSES: dict[str, type] = {name: _make_config_class(f) for name, f in FAMILIES.items()}
MODEL_CLASSES: dict[str, type] = {
    name: _make_model_class(f, CONFIG_CLASSES[name]) for name, f in FAMILIES.items()
}
globals().update({cls.__name__: cls for cls in (*CONFIG_CLASSES.values(), *MODEL_CLASSES.values())})


def register_auto_classes() -> None:
    """Register every ``<family>_longpos`` type with the Auto classes (idempotent)."""
    for name, family in FAMILIES.items():
        config_class, model_class = CONFIG_CLASSES[name], MODEL_CLASSES[name]
        AutoConfig.register(family.longpos_type, config_class, exist_ok=True)
        AutoModelForCausalLM.register(config_class, model_class, exist_ok=True)


# ------------------------------------------------------------------ installation
def position_plan(model_or_config: Any) -> PositionPlan:
    """The :class:`~longpos.plan.PositionPlan` of a (converted or stock) model or config; a
    stock model's is its own layout (RoPE everywhere, NoPE where the family leaves it out)."""
    config = getattr(model_or_config, "config", model_or_config)
    stored = getattr(config, "longpos_positions", None)
    if stored:
        return PositionPlan.plan_from_dict(dict(stored))
    n_layers = int(config.num_hidden_layers)
    nope = family_of_config(config).stock_nope(config)
    if not nope:
        return PositionPlan()
    return PositionPlan(plan=",".join("nope" if i in nope else "rope" for i in range(n_layers)))


def family_of_config(config: Any) -> Family:
    return FAMILIES[str(config.model_type).removesuffix("_longpos")]


def layer_shape(config: Any, layer_idx: int | None = None) -> LayerShape:
    """What a position technique needs to know about an attention layer of this model (its
    layer type's RoPE where those differ; the ``full_attention`` one without ``layer_idx``)."""
    heads = int(config.num_attention_heads)
    head_dim = getattr(config, "head_dim", None) or int(config.hidden_size) // heads
    kv = int(getattr(config, "num_key_value_heads", None) or heads)
    rope = model_rope(config) if layer_idx is None else layer_rope(config, layer_idx)
    return LayerShape(int(config.hidden_size), heads, kv, int(head_dim), rope)


def install_from_config(model: nn.Module) -> None:
    """Make every decoder layer's attention match ``model.config.longpos_*``."""
    config: Any = model.config
    family = FAMILIES[config.model_type.removesuffix("_longpos")]
    layers = decoder_layers(model)
    plan = position_plan(config)
    techniques = plan.layer_plan(len(layers))
    inner: Any = model.model
    if not isinstance(inner.__dict__.get("_init_weights"), functools.partial):
        # The decoder model is its own PreTrainedModel: transformers initialises its
        # modules with *its* _init_weights, so the hook goes on that instance.
        inner._init_weights = functools.partial(_longpos_init_weights, inner._init_weights)
    attention_class = ATTENTION_CLASSES[family.name]
    for i, (layer, technique) in enumerate(zip(layers, techniques, strict=True)):
        attn = layer.self_attn
        if not isinstance(attn, LongposAttentionMixin):
            if type(attn) is not family.attention_class:
                raise ValueError(
                    f"layer attention is {type(attn).__name__}, expected "
                    f"{family.attention_class.__name__} for family {family.name!r}"
                )
            attn.__class__ = attention_class
        attn.longpos_configure(  # type: ignore[operator]
            technique,
            plan,
            layer_shape(config, i),
            extra_qk_norm=config.longpos_qk_norm,
            norm_class=type(layer.input_layernorm)
            if hasattr(layer, "input_layernorm")
            else type(layer.post_attention_layernorm),
        )
    install_memory(model)
