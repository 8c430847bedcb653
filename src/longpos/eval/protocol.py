"""What the evaluation runner needs from a model: :class:`EvalModel`.

Any object with these three members can be evaluated; the adapter from a longpos model (or a
Hugging Face model) lives elsewhere. ``tokenizer`` is a
:class:`~longpos.data.tokenizers.Tokenizer` for text-level tasks, or ``None`` for a model
that reads the symbolic token-level vocabulary of :mod:`longpos.tasks.symbolic`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from longpos.data.tokenizers import Tokenizer

__all__ = ["EvalModel"]


@runtime_checkable
class EvalModel(Protocol):
    """A model the runner can evaluate."""

    tokenizer: Tokenizer | None
    """Tokenizer of text-level tasks; ``None``: token level (symbolic vocabulary)."""
    max_length: int | None
    """Longest sequence (prompt + generated tokens) the model accepts; ``None``: no limit."""

    def generate_ids(self, prompt_ids: list[int], max_new_tokens: int) -> list[int]:
        """Greedy continuation of ``prompt_ids``: only the new ids, at most ``max_new_tokens``."""
        ...
