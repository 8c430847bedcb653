"""How the trainer saves and reloads the two kinds of model it trains.

- a native :class:`~longpos.model.LongposLM`: ``longpos.checkpoint`` (safetensors + JSON);
- a Hugging Face causal LM (converted by ``longpos.hf`` or stock): ``save_pretrained``,
  reloaded with ``longpos.hf.load_hf_model``; tokenizer files of the source folder are
  copied next to the weights so the saved folder is self-contained.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, cast

import torch

from longpos.model import LongposLM

TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
    "vocab.json", "merges.txt", "generation_config.json",
)  # fmt: skip


def is_native(model: torch.nn.Module) -> bool:
    return isinstance(model, LongposLM)


def vocab_size(model: torch.nn.Module) -> int:
    return int(cast(Any, model).config.vocab_size)


TRAINED_ON_FILE = "longpos_trained_on.json"
"""Next to a Hugging Face model's weights: what it was trained on (native models keep it in
``config.json``'s ``extra``)."""


def save(model: torch.nn.Module, state: dict[str, torch.Tensor], folder: Path,
         source: str | None = None, trained_on: dict[str, Any] | None = None) -> None:  # fmt: skip
    """Write ``state`` (full, unsharded) as a loadable model folder; ``trained_on`` (what the
    data was: tasks and options, or the tokenizer) is stored with it."""
    if is_native(model):
        from longpos.checkpoint import save_model

        snapshot = LongposLM(cast(LongposLM, model).config)
        snapshot.load_state_dict(state)
        save_model(snapshot, folder, extra={"trained_on": trained_on} if trained_on else None)
        return
    cast(Any, model).save_pretrained(str(folder), state_dict=state)
    if trained_on:
        from longpos.io import atomic_write_json

        atomic_write_json(Path(folder) / TRAINED_ON_FILE, trained_on)
    if source is not None:
        for name in TOKENIZER_FILES:
            if (Path(source) / name).is_file():
                shutil.copy2(Path(source) / name, Path(folder) / name)


def load_state(model: torch.nn.Module, folder: Path) -> dict[str, Any]:
    """The full state saved in ``folder`` by :func:`save`, checked against ``model``."""
    if is_native(model):
        from longpos.checkpoint import load_model

        loaded = load_model(folder)
        if loaded.config != model.config:
            raise ValueError(
                f"{folder} was written for another model config; use another --out "
                "or delete the checkpoint to start over"
            )
        return loaded.state_dict()
    from longpos.hf import load_hf_model

    return load_hf_model(str(folder)).state_dict()
