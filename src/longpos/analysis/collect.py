"""Run a model once and collect what the analyses need: per-layer positions and attention.

Works with a :class:`~longpos.model.LongposLM`, with Hugging Face causal LMs of the families
``longpos.hf`` supports (stock or converted; read through
:func:`longpos.hf.assigned_positions`) and, by duck typing, with any model that offers one
of (checked in this order):

1. a method ``collect_positions(input_ids) -> list[Tensor]`` (one entry per layer);
2. ``model(input_ids, return_positions=True)`` returning an object with ``.positions``.

Each layer's entry is ``(B, T)`` integer positions (RoPE / NoPE layers) or ``(B, H_kv, T)``
real positions (RePo layers).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["LayerPositions", "collect_positions", "layer_techniques", "as_batch", "hf_module"]


@dataclass
class LayerPositions:
    """Positions of one sequence in one layer."""

    technique: str
    """``repo``, ``rope``, ``nope`` (or ``index`` when the model does not say)."""
    values: torch.Tensor
    """(H_kv, T) float32 for learned positions, (1, T) for integer index layers."""
    learned: bool
    """True when the positions are per-head real values predicted by the model."""


def as_batch(input_ids: Any) -> torch.Tensor:
    """``input_ids`` as a (1, T) or (B, T) LongTensor (accepts lists and (T,) tensors)."""
    ids = torch.as_tensor(input_ids, dtype=torch.long)
    if ids.dim() == 1:
        ids = ids[None]  # (1, T)
    if ids.dim() != 2 or ids.shape[1] == 0:
        raise ValueError(f"input_ids must be a non-empty (T,) or (B, T) sequence; got {ids.shape}")
    return ids


def hf_module(model: Any) -> Any:
    """``longpos.hf`` when ``model`` is a Hugging Face causal LM it supports, else None.

    Imports transformers only for models that look like Hugging Face ones."""
    if hasattr(model, "blocks") or not hasattr(getattr(model, "model", None), "layers"):
        return None
    try:
        from longpos import hf
    except ImportError:  # the hf extra is not installed
        return None
    try:
        hf.family_of(model)
    except ValueError:
        return None
    return hf


def layer_techniques(model: Any, n_layers: int | None = None) -> list[str] | None:
    """Per-layer technique names (``rope`` / ``nope`` / ``repo``) of a longpos model
    (``config.layer_plan()``) or a Hugging Face model (``longpos.hf.layer_plan``), else None."""
    cfg = getattr(model, "config", None)
    plan = getattr(cfg, "layer_plan", None)
    names: list[str] | None = None
    if callable(plan):
        try:
            names = list(plan())
        except (TypeError, ValueError):
            names = None
    else:
        hf = hf_module(model)
        if hf is not None:
            names = [str(t) for t in hf.layer_plan(model)]
    if names is not None and (n_layers is None or len(names) == n_layers):
        return names
    return None


def _model_device(model: Any) -> torch.device:
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration, TypeError):
        return torch.device("cpu")


@torch.no_grad()
def _raw_positions(model: Any, ids: torch.Tensor) -> list[torch.Tensor]:
    if hasattr(model, "collect_positions") and callable(model.collect_positions):
        return list(model.collect_positions(ids))
    hf = hf_module(model)
    if hf is not None:
        positions, learned = hf.assigned_positions(model, ids)  # (L, B, H_kv, T), flags
        # integer-index layers come back repeated over heads: keep one row, (B, T)
        return [p if flag else p[:, 0, :] for p, flag in zip(positions, learned, strict=True)]
    out = model(ids, return_positions=True)
    positions = getattr(out, "positions", None)
    if not positions:
        raise ValueError(
            f"{type(model).__name__} returned no positions: pass a longpos model, or a model "
            "with collect_positions(input_ids) or a forward accepting return_positions=True"
        )
    return list(positions)


def collect_positions(model: Any, input_ids: Any) -> list[list[LayerPositions]]:
    """One forward pass; returns ``[sample][layer] -> LayerPositions`` (values on the CPU)."""
    ids = as_batch(input_ids).to(_model_device(model))
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    try:
        raw = _raw_positions(model, ids)
    finally:
        if was_training and hasattr(model, "train"):
            model.train()
    names = layer_techniques(model, len(raw))
    bsz, seq = ids.shape
    result: list[list[LayerPositions]] = [[] for _ in range(bsz)]
    for layer, pos in enumerate(raw):
        pos = torch.as_tensor(pos).detach().to("cpu")
        if pos.dim() == 3:  # (B, H_kv, T): learned
            learned = True
            values = pos.to(torch.float32)
        elif pos.dim() == 2:  # (B, T): integer index (or one shared real position)
            learned = pos.is_floating_point() and not torch.equal(pos, pos.round())
            values = pos.to(torch.float32)[:, None, :]  # (B, 1, T)
        else:
            raise ValueError(f"layer {layer}: positions of shape {tuple(pos.shape)} not understood")
        if values.shape[0] != bsz or values.shape[-1] != seq:
            raise ValueError(
                f"layer {layer}: positions {tuple(pos.shape)} do not match input {(bsz, seq)}"
            )
        technique = names[layer] if names else ("repo" if learned else "index")
        for b in range(bsz):
            result[b].append(LayerPositions(technique, values[b].contiguous(), learned))
    return result


def learned_layers(layers: Sequence[LayerPositions]) -> list[int]:
    """Indices of the layers with learned (RePo) positions."""
    return [i for i, lp in enumerate(layers) if lp.learned]
