"""FwPKM and static PKM memory layers inside transformers decoder layers.

FwPKM: Zhao & Jones, "Fast-weight Product Key Memory", arXiv 2601.00671. Static PKM:
Lample et al., "Large Memory Layers with Product Keys", arXiv 1907.05242.

Placement is the reference model's (:class:`longpos.memory.placement.MemoryConfig`, the same
layer rules): an FwPKM residual sub-block **before** the attention of its layers, reading the
raw residual stream (``h = h + fwpkm(h)``, then the stock decoder layer), and a static PKM in
the MLP slot of its layers, replacing the MLP (``replace``) or added to it on the same input
(``add``: ``mlp(x) + pkm(x)``). For the pre-norm families that input is the
post-attention RMSNorm, exactly as in the reference model; OLMo2 (post-norm) normalises the
slot's output instead.

How it hooks in (``spec/hf-integration.md`` §8):

- the FwPKM sub-block runs in a forward **pre-hook** of the decoder layer, so it stays outside
  transformers' gradient checkpointing (which wraps ``forward``): a replayed layer never writes
  the memory twice; the module is ``model.layers.<i>.fwpkm``;
- a static PKM that replaces the MLP *is* ``layer.mlp``; an added one lives at
  ``layer.mlp.pkm`` (the MLP changes class to a subclass that adds its output), so every
  pretrained tensor keeps its name;
- per-sequence fast-weight state: a dict ``{layer index: FwPKMState}`` kept on the KV cache
  object (``cache.longpos_memory``; :class:`LongposMemoryCache` also reorders / selects it
  for beam search). The causal LM's ``forward`` hands it to the layers through the
  ``longpos_memory`` keyword; without a cache each forward starts from fresh fast weights.
  Writes follow the stream's grid (one every ``chunk`` tokens from the first token), so
  prefill + incremental decoding equal one full forward; the state never grows with length.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from transformers import DynamicCache

from longpos.hf.families import decoder_layers
from longpos.memory.fwpkm import FwPKMConfig, FwPKMLayer, FwPKMState
from longpos.memory.pkm import PKMConfig, StaticPKM
from longpos.memory.placement import MemoryConfig, init_memory_layer, memory_config_from_dict

MEMORY_KWARG = "longpos_memory"

__all__ = [
    "LongposMemoryCache",
    "check_memory",
    "fwpkm_layer_indices",
    "install_memory",
    "memory_config",
    "memory_parameters",
    "memory_states",
]


# ------------------------------------------------------------------------------ config
def memory_config(model_or_config: Any) -> MemoryConfig | None:
    """The :class:`MemoryConfig` stored in a converted model's config (None: no memory)."""
    config = getattr(model_or_config, "config", model_or_config)
    data = getattr(config, "longpos_memory", None)
    if not data:
        return None
    memory = memory_config_from_dict(dict(data))
    return memory if memory.enabled else None


def check_memory(model: nn.Module, memory: MemoryConfig) -> None:
    """Validate ``memory`` for ``model`` before anything changes (``ValueError`` otherwise)."""
    if not isinstance(memory, MemoryConfig):
        raise ValueError(f"memory must be a longpos MemoryConfig, got {type(memory).__name__}")
    config: Any = model.config
    layers = decoder_layers(model)
    memory.validate(int(config.hidden_size), len(layers))
    if memory.enabled and memory.pswa_prob > 0:
        raise ValueError(
            f"memory.pswa_prob={memory.pswa_prob} (probabilistic sliding-window attention) is "
            "only implemented in the reference model; set it to 0 for Hugging Face models"
        )
    want = _pkm_plan(memory, len(layers), int(config.hidden_size))
    for i, layer in enumerate(layers):
        if isinstance(layer.mlp, StaticPKM) and want.get(i) != ("replace", layer.mlp.config):
            raise ValueError(
                f"layer {i}'s MLP was replaced by a static PKM, so its MLP weights are gone; "
                "that memory layer cannot be changed or removed (reload the original model)"
            )


def _pkm_plan(
    memory: MemoryConfig | None, n_layers: int, d_model: int
) -> dict[int, tuple[str, PKMConfig]]:
    if memory is None or not memory.enabled:
        return {}
    cfg = memory.pkm_config(d_model) if memory.pkm_layers_of(n_layers) else None
    return {i: (memory.pkm_placement, cfg) for i in memory.pkm_layers_of(n_layers) if cfg}


def _same_fwpkm(a: FwPKMConfig, b: FwPKMConfig) -> bool:
    """Equal up to ``read_passes`` (a reading default, not a weight shape)."""
    return dataclasses.replace(a, read_passes=b.read_passes) == b


# ------------------------------------------------------------------------ installation
class PKMAddedMixin:
    """An MLP whose output gets a static PKM's read of the same input added (``add``)."""

    pkm: StaticPKM

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + self.pkm(x)  # type: ignore[misc,no-any-return]


_ADDED_CLASSES: dict[type, type] = {}


def _pkm_added_class(mlp_class: type) -> type:
    if issubclass(mlp_class, PKMAddedMixin):
        return mlp_class
    if mlp_class not in _ADDED_CLASSES:
        name = f"PKMAdded{mlp_class.__name__}"
        _ADDED_CLASSES[mlp_class] = type(
            name, (PKMAddedMixin, mlp_class), {"__module__": __name__, "__qualname__": name}
        )
    return _ADDED_CLASSES[mlp_class]


def _new_memory(module: FwPKMLayer | StaticPKM, n_layers: int, like: torch.Tensor) -> Any:
    """A fresh memory module with the native model's init (:func:`init_memory_layer`), on
    ``like``'s device and dtype."""
    init_memory_layer(module, n_layers)
    module._longpos_n_layers = n_layers  # type: ignore[assignment]  # for missing-key init
    return module.to(device=like.device, dtype=like.dtype)


@torch.no_grad()
def init_missing(module: nn.Module, init: Callable[[], None]) -> None:
    """transformers' missing-key init for a module with its own init (memory, position
    modules): ``init()`` for every tensor the checkpoint did not provide (tensors flagged
    ``_is_hf_initialized`` are kept)."""
    tensors = [*module.parameters(), *module.buffers()]
    kept = [(t, t.detach().clone()) for t in tensors if getattr(t, "_is_hf_initialized", False)]
    if len(kept) == len(tensors):
        return
    init()
    for tensor, value in kept:
        tensor.copy_(value)


def reset_memory(module: FwPKMLayer | StaticPKM) -> None:
    """A memory module's init for missing checkpoint keys (:func:`init_memory_layer`)."""
    init_memory_layer(module, int(getattr(module, "_longpos_n_layers", 1)))


def install_memory(model: nn.Module) -> None:
    """Make every decoder layer's memory modules match ``config.longpos_memory``.

    Modules that already match are kept with their weights (a change of ``read_passes`` only
    updates the config); new ones are initialised; removed ones are dropped.
    """
    config: Any = model.config
    memory = memory_config(config)
    layers = decoder_layers(model)
    n, d = len(layers), int(config.hidden_size)
    fw_layers = set(memory.fwpkm_layers(n)) if memory else set()
    fw_cfg = memory.fwpkm_config(d) if memory and fw_layers else None
    pkm_plan = _pkm_plan(memory, n, d)
    like = layers[0].self_attn.o_proj.weight
    for i, layer in enumerate(layers):
        have: FwPKMLayer | None = getattr(layer, "fwpkm", None)
        if i in fw_layers:
            assert fw_cfg is not None
            if have is not None and _same_fwpkm(have.config, fw_cfg):
                have.config = fw_cfg
            else:
                layer.fwpkm = _new_memory(FwPKMLayer(fw_cfg), n, like)
        elif have is not None:
            del layer.fwpkm
        if fw_layers:
            _ensure_hook(layer)
        _install_pkm(layer, pkm_plan.get(i), n, like)


def _install_pkm(
    layer: nn.Module, want: tuple[str, PKMConfig] | None, n_layers: int, like: torch.Tensor
) -> None:
    mlp: Any = layer.mlp
    if isinstance(layer.mlp, StaticPKM):
        if want == ("replace", mlp.config):
            return
        raise ValueError("a static PKM that replaced an MLP cannot be changed")  # see check
    if isinstance(layer.mlp, PKMAddedMixin):
        if want == ("add", mlp.pkm.config):
            return
        del mlp.pkm
        mlp.__class__ = next(c for c in type(mlp).__mro__ if not issubclass(c, PKMAddedMixin))
    if want is None:
        return
    placement, cfg = want
    if placement == "replace":
        layer.mlp = _new_memory(StaticPKM(cfg), n_layers, like)
    else:
        mlp.__class__ = _pkm_added_class(type(mlp))
        mlp.pkm = _new_memory(StaticPKM(cfg), n_layers, like)


def _ensure_hook(layer: nn.Module) -> None:
    if not any(h is _memory_pre_hook for h in layer._forward_pre_hooks.values()):
        layer.register_forward_pre_hook(_memory_pre_hook, with_kwargs=True)


@dataclass
class MemoryRun:
    """What one forward hands every decoder layer: the states to read and replace, and the
    write mode (``chunked`` | ``end`` | ``none``, see :meth:`FwPKMLayer.forward`)."""

    states: dict[int, FwPKMState] = field(default_factory=dict)
    writes: str = "chunked"


def _memory_pre_hook(
    layer: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``h <- h + fwpkm(h)`` before the decoder layer; consumes the ``longpos_memory`` kwarg."""
    run: MemoryRun | None = kwargs.pop(MEMORY_KWARG, None)
    fwpkm: FwPKMLayer | None = getattr(layer, "fwpkm", None)
    if fwpkm is None:
        return args, kwargs
    hidden = args[0] if args else kwargs["hidden_states"]  # (B, T, C) raw residual
    attn: Any = layer.self_attn
    index = int(attn.layer_idx)
    if run is None:  # called outside the causal LM's forward: a fresh memory, no carry
        y, _ = fwpkm(hidden)
    else:
        y, state = fwpkm(hidden, run.states.get(index), writes=run.writes)  # type: ignore[arg-type]
        run.states[index] = state
    hidden = hidden + y
    if args:
        return (hidden, *args[1:]), kwargs
    return args, {**kwargs, "hidden_states": hidden}


def fwpkm_layer_indices(model: nn.Module) -> list[int]:
    """Indices of the decoder layers with an FwPKM sub-block."""
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None) or []
    return [i for i, layer in enumerate(layers) if getattr(layer, "fwpkm", None) is not None]


def memory_parameters(model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
    """``(name, parameter)`` of every memory layer (FwPKM slow weights, static PKM query,
    keys, values and output). For optimiser groups with the reference model's rules
    (PKM values at their own rate, no weight decay) use
    :func:`longpos.memory.placement.memory_param_groups`, which works on these models too."""
    for name, param in model.named_parameters():
        if ".fwpkm." in name or ".mlp.pkm." in name or _in_replaced_pkm(model, name):
            yield name, param


def _in_replaced_pkm(model: nn.Module, name: str) -> bool:
    parts = name.split(".")
    if "mlp" not in parts:
        return False
    owner = model.get_submodule(".".join(parts[: parts.index("mlp") + 1]))
    return isinstance(owner, StaticPKM)


# ------------------------------------------------------------------------------ cache
def memory_states(cache: Any) -> dict[int, FwPKMState]:
    """The FwPKM states kept on a transformers cache (created empty on first use)."""
    states = getattr(cache, MEMORY_KWARG, None)
    if states is None:
        states = {}
        setattr(cache, MEMORY_KWARG, states)
    return states  # type: ignore[no-any-return]


class LongposMemoryCache(DynamicCache):
    """A ``DynamicCache`` that also carries the FwPKM fast-weight states
    (``longpos_memory``: layer index -> :class:`~longpos.memory.fwpkm.FwPKMState`) and keeps
    them in step when generation reorders, selects or repeats the batch. A fresh cache (or
    :meth:`reset`) starts a fresh memory."""

    def _map_states(self, index: torch.Tensor) -> None:
        states = memory_states(self)
        for key, state in states.items():
            states[key] = state.select(index)

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        super().reorder_cache(beam_idx)
        self._map_states(beam_idx)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        super().batch_select_indices(indices)
        self._map_states(indices)

    def batch_repeat_interleave(self, repeats: int) -> None:
        super().batch_repeat_interleave(repeats)
        states = memory_states(self)
        if states:
            batch = next(iter(states.values())).batch_size
            device = next(iter(states.values())).pend_q.device
            self._map_states(torch.arange(batch, device=device).repeat_interleave(repeats))

    def crop(self, max_length: int) -> None:
        if memory_states(self) and max_length < self.get_seq_length():
            raise ValueError(
                "the FwPKM memory cannot be rolled back: cropping a cache with fast-weight state "
                "(e.g. assisted decoding) is not supported"
            )
        super().crop(max_length)

    def reset(self) -> None:
        super().reset()
        memory_states(self).clear()


# ------------------------------------------------------------------------------ forward
def default_read_passes(model: nn.Module) -> int:
    """``config.longpos_memory.fwpkm.read_passes`` (1 without memory)."""
    memory = memory_config(model)
    return memory.fwpkm.read_passes if memory is not None else 1
