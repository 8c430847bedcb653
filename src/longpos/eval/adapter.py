"""Adapters that let the evaluation runner score a longpos model.

:class:`LongposEvalModel` wraps a :class:`~longpos.model.LongposLM` with greedy KV-cache
decoding; ``tokenizer=None`` means the model speaks the symbolic token-level vocabulary
of the task suite, otherwise prompts are text encoded by that tokenizer.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import torch

from longpos.model import LongposLM


class LongposEvalModel:
    """Greedy decoding through the KV cache, one prompt at a time."""

    def __init__(self, model: LongposLM, tokenizer=None, device: str | torch.device = "cpu"):
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.max_length: int | None = None  # no hard limit: positions extrapolate
        self.eos_id = getattr(tokenizer, "eos_id", None) if tokenizer is not None else None

    @torch.no_grad()
    def generate_ids(self, prompt_ids: list[int], max_new_tokens: int) -> list[int]:
        if not prompt_ids:
            raise ValueError("the prompt is empty: nothing to condition generation on")
        vocab = self.model.config.vocab_size
        if max(prompt_ids) >= vocab or min(prompt_ids) < 0:
            raise ValueError(
                f"prompt ids must be in [0, {vocab}); got {min(prompt_ids)}..{max(prompt_ids)}: "
                "the task vocabulary does not match the model"
            )
        ids = torch.tensor([prompt_ids], dtype=torch.long, device=self.device)
        out = self.model.generate(ids, max_new_tokens, eos_id=self.eos_id)
        return out[0, len(prompt_ids) :].tolist()


def load_eval_model(path: str, device: str = "cpu", tokenizer: str | None = None):
    """A longpos checkpoint folder (or, with ``longpos[hf]``, a Hugging Face model folder)."""
    from pathlib import Path

    from longpos.checkpoint import CONFIG_FILE, load_model

    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(f"model folder {folder} does not exist (or is not a folder)")
    is_longpos = (folder / CONFIG_FILE).is_file() and '"longpos-model"' in (
        folder / CONFIG_FILE
    ).read_text(encoding="utf-8", errors="replace")
    if is_longpos:
        tok = None
        if tokenizer is not None:
            from longpos.data.tokenizers import load_tokenizer

            tok = load_tokenizer(tokenizer)
        return LongposEvalModel(load_model(folder), tok, device)
    return import_hf(folder).load_eval_model(str(folder), device=device)


def import_hf(folder: Any) -> ModuleType:
    """:mod:`longpos.hf`, for a model ``folder`` that is not a longpos checkpoint.

    The one place that says the Hugging Face extra is missing: a ``ValueError`` naming
    ``folder`` when ``longpos.hf`` cannot be imported.
    """
    try:
        from longpos import hf
    except ImportError as exc:
        raise ValueError(
            f"{folder} is not a longpos checkpoint, and Hugging Face support is not installed "
            "(pip install 'longpos[hf]')"
        ) from exc
    return hf
