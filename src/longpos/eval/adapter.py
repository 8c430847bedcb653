"""Adapters that let the evaluation runner score a longpos model.

:class:`LongposEvalModel` wraps a :class:`~longpos.model.LongposLM` with greedy KV-cache
decoding; ``tokenizer=None`` means the model speaks the symbolic token-level vocabulary
of the task suite, otherwise prompts are text encoded by that tokenizer.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import torch

from longpos.eval.batching import greedy_batch
from longpos.model import LongposLM


class LongposEvalModel:
    """Greedy decoding through the KV cache: one prompt (:meth:`generate_ids`) or a batch
    (:meth:`generate_batch`, left-padded; FwPKM models batch equal lengths only)."""

    def __init__(self, model: LongposLM, tokenizer=None, device: str | torch.device = "cpu"):
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.max_length: int | None = None  # no hard limit: positions extrapolate
        self.eos_id = getattr(tokenizer, "eos_id", None) if tokenizer is not None else None
        self.trained_on: dict[str, Any] | None = None  # what the model was trained on, if known
        self.takes_padding = not model.fwpkm_layers  # padding would be written into FwPKM

    @torch.no_grad()
    def generate_batch(self, prompts: list[list[int]], max_new_tokens: int) -> list[list[int]]:
        """Greedy continuations of several prompts at once (new ids, EOS excluded)."""
        for prompt in prompts:
            self._check(prompt)
        cache = self.model.new_cache()
        passes = self.model.config.memory.fwpkm.read_passes  # the prompt's, as generate()

        def step(ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
            padded = not bool(mask.all())
            first = cache.length == 0
            return self.model(
                ids, cache=cache, index=positions, attention_mask=mask if padded else None,
                read_passes=passes if first else 1,
            ).logits  # fmt: skip

        eos = [] if self.eos_id is None else [int(self.eos_id)]
        return greedy_batch(step, prompts, max_new_tokens, eos, self.device)

    def _check(self, prompt_ids: list[int]) -> None:
        if not prompt_ids:
            raise ValueError("the prompt is empty: nothing to condition generation on")
        vocab = self.model.config.vocab_size
        if max(prompt_ids) >= vocab or min(prompt_ids) < 0:
            raise ValueError(
                f"prompt ids must be in [0, {vocab}); got {min(prompt_ids)}..{max(prompt_ids)}: "
                "the task vocabulary does not match the model"
            )

    @torch.no_grad()
    def generate_ids(self, prompt_ids: list[int], max_new_tokens: int) -> list[int]:
        self._check(prompt_ids)
        ids = torch.tensor([prompt_ids], dtype=torch.long, device=self.device)
        out = self.model.generate(ids, max_new_tokens, eos_id=self.eos_id)
        return out[0, len(prompt_ids) :].tolist()


def load_eval_model(path: str, device: str = "cpu", tokenizer: str | None = None):
    """A longpos checkpoint folder (or, with ``longpos[hf]``, a Hugging Face model folder).

    A longpos model trained on text gets its training tokenizer unless ``tokenizer`` is
    given; what it was trained on (:func:`longpos.checkpoint.trained_on`) is kept as the
    adapter's ``trained_on`` (None when unknown).
    """
    from pathlib import Path

    from longpos.checkpoint import CONFIG_FILE, load_model, not_a_model_hint, trained_on

    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(f"model folder {folder} does not exist (or is not a folder)")
    is_longpos = (folder / CONFIG_FILE).is_file() and '"longpos-model"' in (
        folder / CONFIG_FILE
    ).read_text(encoding="utf-8", errors="replace")
    if is_longpos:
        info = trained_on(folder)
        if tokenizer is None and info is not None and info.get("kind") == "text":
            tokenizer = str(info.get("tokenizer") or "byte")
        if tokenizer is not None and info is not None and info.get("kind") == "task":
            raise ValueError(
                f"{folder} was trained on token-level tasks ({', '.join(info['tasks'])}), "
                f"not on text: drop --tokenizer {tokenizer}"
            )
        tok = None
        if tokenizer is not None:
            from longpos.data.tokenizers import load_tokenizer

            tok = load_tokenizer(tokenizer)
        adapter = LongposEvalModel(load_model(folder), tok, device)
        adapter.trained_on = info
        return adapter
    hint = not_a_model_hint(folder)
    if hint:
        raise ValueError(f"{folder} is not a model folder{hint}")
    if not (folder / CONFIG_FILE).is_file():
        raise ValueError(
            f"{folder} is neither a longpos checkpoint nor a Hugging Face model folder "
            "(no config.json)"
        )
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
