"""Training data behind one interface: token-level task mixtures and packed English text.

A :class:`DataSource` returns the **global** batch of a step, deterministically from
(seed, split, step): a run resumed at step s sees exactly the batches it would have seen,
and every rank of a distributed run can slice its own rows out of the same global batch.
A batch is ``input_ids (B, T)`` plus an optional ``target_mask (B, T)`` marking the
tokens whose prediction is the task's answer (``None`` for plain language modelling).
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from typing import Any, Protocol

import torch

from longpos.train.config import DataConfig


def stream_seed(*parts: object) -> int:
    """A stable 63-bit seed from any parts (independent of PYTHONHASHSEED)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class DataSource(Protocol):
    vocab_size: int

    def batch(
        self, step: int, batch_size: int, length: int, split: str = "train"
    ) -> tuple[torch.Tensor, torch.Tensor | None]: ...


def options_per_task(tasks: list[str], options: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Split one options dict of a task mixture into each task's own options.

    A mixture shares one dict (e.g. ``{"num_symbols": 64, "num_kv_pairs": 8}`` for
    ``mqar,table_tokens``): each task receives the keys that are fields of its config and
    ignores the others. A key that is a field of no task in the mixture is an error.
    """
    from longpos.tasks import get_task

    per: dict[str, dict[str, Any]] = {}
    used: set[str] = set()
    fields: set[str] = set()
    for t in tasks:
        names = {f.name for f in dataclasses.fields(get_task(t).config_cls)}
        per[t] = {k: v for k, v in options.items() if k in names}
        used |= set(per[t])
        fields |= names
    unknown = sorted(set(options) - used)
    if unknown:
        raise ValueError(
            f"unknown option(s) {unknown} in data.options: not an option of any task in "
            f"{tasks}; valid: {sorted(fields)}"
        )
    return per


class TaskSource:
    """Token-level tasks of the suite (symbolic vocabulary), dense answer masks.

    ``options`` is shared by the tasks of a mixture; each task gets only its own keys
    (:func:`options_per_task`), so all tasks must agree on ``num_symbols`` to share one
    vocabulary (the model's vocabulary is the largest one).
    """

    def __init__(self, tasks: list[str], options: dict, seed: int = 0):
        from longpos.tasks.symbolic import vocab_for

        if not tasks:
            raise ValueError("data.tasks is empty: name at least one token-level task")
        self.tasks = tasks
        self.options = options
        self.task_options = options_per_task(tasks, options)
        self.seed = seed
        self.vocab_size = max(vocab_for(t, **self.task_options[t]).vocab_size for t in tasks)

    def batch(
        self, step: int, batch_size: int, length: int, split: str = "train"
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        from longpos.tasks.symbolic import make_token_batch

        rng = random.Random(stream_seed("task", self.seed, split, step))
        choice = [rng.randrange(len(self.tasks)) for _ in range(batch_size)]
        ids = torch.empty(batch_size, length, dtype=torch.long)  # (B, T)
        mask = torch.empty(batch_size, length, dtype=torch.bool)  # (B, T)
        for t, task in enumerate(self.tasks):
            rows = [i for i, c in enumerate(choice) if c == t]
            if rows:
                part_ids, part_mask = make_token_batch(
                    task, length, len(rows), rng, **self.task_options[task]
                )
                ids[rows], mask[rows] = part_ids, part_mask
        return ids, mask


class TextSource:
    """Packed next-token text: the offline English corpus, tokenised and cut into windows.

    The corpus is tokenised once and split into a training part (first 95%) and a
    held-out part (last 5%); each sequence is a window at a seeded random offset.
    """

    def __init__(self, tokenizer: Any = "byte", seed: int = 0):
        """``tokenizer``: a name for :func:`longpos.data.tokenizers.load_tokenizer`, or a
        tokenizer object (the library's, or a Hugging Face one)."""
        from longpos.data.corpus import english_corpus
        from longpos.data.tokenizers import load_tokenizer

        self.tokenizer = load_tokenizer(tokenizer)
        self.vocab_size = self.tokenizer.vocab_size
        self.seed = seed
        ids = torch.tensor(self.tokenizer.encode(english_corpus()), dtype=torch.long)
        cut = int(0.95 * len(ids))
        self.splits = {"train": ids[:cut], "eval": ids[cut:]}

    def batch(
        self, step: int, batch_size: int, length: int, split: str = "train"
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        tokens = self.splits[split]
        if len(tokens) <= length:
            raise ValueError(
                f"the {split} text has {len(tokens)} tokens, fewer than seq_len={length}"
            )
        gen = torch.Generator().manual_seed(stream_seed("text", self.seed, split, step))
        starts = torch.randint(0, len(tokens) - length, (batch_size,), generator=gen)
        return torch.stack([tokens[s : s + length] for s in starts.tolist()]), None


def build_source(cfg: DataConfig, seed: int) -> DataSource:
    if cfg.kind == "task":
        names = [t.strip() for t in cfg.tasks.split(",") if t.strip()]
        return TaskSource(names, cfg.task_options(), seed)
    return TextSource(cfg.tokenizer, seed)
