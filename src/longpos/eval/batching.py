"""Batched greedy decoding for evaluation: several prompts at once, the same answers as one by one.

Prompts of different lengths are left-padded, with an attention mask that hides the padding
and positions that count real tokens only (each row sees exactly what it would see alone).
Models that cannot take padding (FwPKM: padding would be written into the memory) get length
buckets instead: only prompts of equal length share a batch. Both back ends use the same loop
(:func:`greedy_batch`); each adapter supplies one ``step`` that runs its model on new tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import torch

Step = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``step(ids (B, T_new), mask (B, T_past + T_new), positions (B, T_new)) -> logits (B, T_new, V)``
for the tokens after those already in the step's own cache."""


class BatchModel(Protocol):
    """An evaluation model that decodes several prompts at once."""

    takes_padding: bool
    """Whether left padding is safe for this model (False: length buckets)."""

    def generate_batch(self, prompts: list[list[int]], max_new_tokens: int) -> list[list[int]]:
        """Greedy continuations (new ids only, EOS excluded) of prompts in one batch."""
        ...


@torch.no_grad()
def greedy_batch(
    step: Step,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    eos_ids: Sequence[int] = (),
    device: torch.device | str = "cpu",
) -> list[list[int]]:
    """Greedy decoding of left-padded ``prompts``; returns each row's new ids, cut before its
    first EOS and at ``max_new_tokens``."""
    if any(not p for p in prompts):
        raise ValueError("a prompt is empty: nothing to condition generation on")
    longest = max(len(p) for p in prompts)
    ids = torch.zeros(len(prompts), longest, dtype=torch.long, device=device)
    mask = torch.zeros_like(ids)
    for row, prompt in enumerate(prompts):
        ids[row, longest - len(prompt) :] = torch.tensor(list(prompt), device=device)
        mask[row, longest - len(prompt) :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, T): real tokens count from 0
    stop = set(int(e) for e in eos_ids)
    out: list[list[int]] = [[] for _ in prompts]
    done = [False] * len(prompts)
    for _ in range(max_new_tokens):
        logits = step(ids, mask, positions)[:, -1]  # (B, V)
        nxt = logits.argmax(-1)  # (B,)
        for row, token in enumerate(nxt.tolist()):
            if done[row]:
                continue
            if token in stop:
                done[row] = True
            else:
                out[row].append(int(token))
        if all(done):
            break
        ids = nxt[:, None]
        mask = torch.cat((mask, torch.ones_like(ids)), dim=1)
        positions = positions[:, -1:] + 1
    return out


def batches(lengths: Sequence[int], batch_size: int, takes_padding: bool) -> list[list[int]]:
    """Sample indices grouped into batches of at most ``batch_size``: sorted by length when
    padding is allowed (little padding per batch), else one bucket per exact length."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    groups: list[list[int]] = []
    if takes_padding:
        groups = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        return groups
    for i in order:
        if groups and lengths[groups[-1][-1]] == lengths[i] and len(groups[-1]) < batch_size:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def predict_all(
    model: object,
    prompts: list[list[int]],
    max_new_tokens: int,
    batch_size: int,
    done: Callable[[int], None] | None = None,
) -> list[list[int]]:
    """New ids for every prompt, in order: batched through ``model.generate_batch`` when the
    model has it and ``batch_size`` > 1, else one ``generate_ids`` call per prompt.
    ``done(n)`` is called as each prompt or batch of ``n`` prompts finishes (progress)."""
    generate_batch = getattr(model, "generate_batch", None)
    result: list[list[int]] = [[] for _ in prompts]
    if batch_size <= 1 or generate_batch is None:
        for i, prompt in enumerate(prompts):
            result[i] = list(model.generate_ids(prompt, max_new_tokens))  # type: ignore[attr-defined]
            if done is not None:
                done(1)
        return result
    takes_padding = bool(getattr(model, "takes_padding", False))
    for group in batches([len(p) for p in prompts], batch_size, takes_padding):
        outputs = generate_batch([prompts[i] for i in group], max_new_tokens)
        for i, ids in zip(group, outputs, strict=True):
            result[i] = list(ids)
        if done is not None:
            done(len(group))
    return result
