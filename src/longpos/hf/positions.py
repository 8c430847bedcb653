"""Read out the positions RePo layers assign, for plots and the position viewer.

RePo: Li, Zhao, Cai, Sproat, "Language Models with Context Re-Positioning",
arXiv 2512.14391 (§5.3 and §6 of ``spec/repo.md``: per-layer, per-head z over the
tokens of a text; non-RePo layers are reported with their integer index and flagged).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from longpos.hf.attention import LongposAttentionMixin
from longpos.hf.families import decoder_layers, family_of


@dataclass
class PositionRecord:
    """Positions collected while a :func:`record_positions` block runs."""

    chunks: dict[int, list[torch.Tensor]] = field(default_factory=dict)
    """layer index -> one (B, H_kv, T_call) float32 tensor per forward call."""

    @property
    def by_layer(self) -> dict[int, torch.Tensor]:
        """layer index -> z (B, H_kv, T) for every RePo layer, calls joined along T
        (so a cached generation gives the positions of the prompt and every new token)."""
        return {i: torch.cat(parts, dim=-1) for i, parts in self.chunks.items() if parts}


@contextmanager
def record_positions(model: nn.Module) -> Iterator[PositionRecord]:
    """Collect the positions of every layer with learned positions (RePo) during the forwards
    run inside the block.

    >>> with record_positions(model) as rec:
    ...     model(input_ids)
    >>> rec.by_layer[5].shape  # (B, H_kv, T)
    """
    family_of(model)
    record = PositionRecord()
    attns = [layer.self_attn for layer in decoder_layers(model)]
    try:
        for attn in attns:
            if isinstance(attn, LongposAttentionMixin) and not attn.assigner.returns_index:
                record.chunks[attn.layer_idx] = []
                attn._longpos_record = record.chunks[attn.layer_idx]
        yield record
    finally:
        for attn in attns:
            if isinstance(attn, LongposAttentionMixin):
                attn._longpos_record = None


@torch.no_grad()
def assigned_positions(
    model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, list[bool]]:
    """One forward pass; returns ``(positions (L, B, H_kv, T) float32, learned flags)``.

    RePo layers give their learned z; the other layers give the integer index (as
    float) repeated over heads, flagged ``False``. Under left padding the index counts
    real tokens only (what ``generate`` would use).
    """
    family_of(model)
    config: Any = model.config
    bsz, seq = input_ids.shape
    if attention_mask is not None:
        index = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)  # (B, T)
    else:
        index = torch.arange(seq, device=input_ids.device).expand(bsz, seq)
    with record_positions(model) as rec:
        model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=index,
            use_cache=False,
        )
    learned = rec.by_layer
    n_kv = int(config.num_key_value_heads)
    out, flags = [], []
    for i in range(len(decoder_layers(model))):
        if i in learned:
            out.append(learned[i].to(torch.float32))
            flags.append(True)
        else:
            out.append(index.to(torch.float32)[:, None, :].expand(bsz, n_kv, seq))
            flags.append(False)
    return torch.stack(out), flags
