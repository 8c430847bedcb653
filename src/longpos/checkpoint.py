"""Save and load a longpos model as one folder: ``config.json`` + ``model.safetensors``.

``config.json`` holds the format tag, the library version, the model config and the
size and tensor count of the weights file, so a truncated or swapped weights file is
detected before it is read. Every file is written atomically (weights first, config
last). Loading fails with :class:`CheckpointError` (a ``ValueError``) naming the file
and the problem: missing folder or file, unreadable JSON, a config this version does not
accept, a truncated or corrupt weights file, missing / unexpected / mis-shaped tensors.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from longpos import __version__
from longpos.config import ModelConfig
from longpos.io import atomic_write, atomic_write_json, read_json_object
from longpos.model import LongposLM

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT = "longpos-model"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be loaded; the message names file and problem."""


def model_state(model: LongposLM) -> dict[str, torch.Tensor]:
    """The weights to save: the state dict without tied duplicates, contiguous."""
    state = model.state_dict()
    if model.config.tie_embeddings:
        state.pop("lm_head.weight", None)
    return {name: t.detach().contiguous() for name, t in state.items()}


def save_model(model: LongposLM, folder: str | os.PathLike[str], extra: dict | None = None) -> Path:
    """Write ``folder/model.safetensors`` then ``folder/config.json``; returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = model_state(model)
    weights = atomic_write(
        folder / WEIGHTS_FILE,
        lambda tmp: save_file(state, str(tmp), metadata={"format": FORMAT}),
    )
    meta: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "longpos_version": __version__,
        "model": model.config.to_dict(),
        "weights": {"file": WEIGHTS_FILE, "bytes": weights.stat().st_size, "tensors": len(state)},
    }
    if extra:
        meta["extra"] = extra
    atomic_write_json(folder / CONFIG_FILE, meta)
    return folder


def not_a_model_hint(folder: Path) -> str:
    """What to pass instead of ``folder`` when it is a training run's folder, or ''."""
    for sub in ("model", "checkpoint"):
        if (folder / sub / CONFIG_FILE).is_file():
            return f"; it is a training run's folder: pass {folder / sub}"
    return ""


def read_config(folder: str | os.PathLike[str]) -> tuple[ModelConfig, dict[str, Any]]:
    """Parse and validate ``folder/config.json``; returns (config, raw metadata)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder {folder} does not exist (or is not a folder)")
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(
            f"{path} is missing: is {folder} a longpos checkpoint folder?"
            + not_a_model_hint(folder)
        )
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc}); the file is corrupt") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(
            f'{path} is not a longpos model config (expected "format": "{FORMAT}")'
            + not_a_model_hint(folder)
        )
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format_version={version!r}; this longpos reads version {FORMAT_VERSION}"
        )
    try:
        cfg = ModelConfig.from_dict(meta["model"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} holds an incompatible model config: {exc}") from exc
    return cfg, meta


def read_weights(folder: str | os.PathLike[str], meta: dict[str, Any]) -> dict[str, torch.Tensor]:
    path = Path(folder) / WEIGHTS_FILE
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: the checkpoint has a config but no weights")
    expected = meta.get("weights", {}).get("bytes")
    actual = path.stat().st_size
    if expected is not None and actual != expected:
        raise CheckpointError(
            f"{path} has {actual} bytes but config.json records {expected}: the weights file "
            "is truncated or belongs to another checkpoint"
        )
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is corrupt and cannot be read: {exc}") from exc


def check_state(
    model: LongposLM, state: dict[str, torch.Tensor], source: Path, allow_missing: bool
) -> list[str]:
    """Compare a loaded state with the model; returns the missing names (if allowed)."""
    expected = model_state(model)
    unexpected = sorted(set(state) - set(expected))
    missing = sorted(set(expected) - set(state))
    shapes = [
        f"{n}: file {tuple(state[n].shape)} vs model {tuple(expected[n].shape)}"
        for n in sorted(set(state) & set(expected))
        if state[n].shape != expected[n].shape
    ]
    problems = []
    if unexpected:
        problems.append(f"unexpected tensors {unexpected[:8]}")
    if shapes:
        problems.append(f"mis-shaped tensors {shapes[:8]}")
    if missing and not allow_missing:
        problems.append(f"missing tensors {missing[:8]}")
    if problems:
        raise CheckpointError(f"{source} does not match its model config: " + "; ".join(problems))
    return missing


def load_model(
    folder: str | os.PathLike[str],
    *,
    map_location: str | torch.device = "cpu",
    config: ModelConfig | None = None,
    allow_missing: bool = False,
) -> LongposLM:
    """Load a model saved by :func:`save_model`.

    ``config`` overrides the saved one (continued pretraining with new modules, e.g. a
    RoPE checkpoint loaded into a RePo plan): with ``allow_missing=True`` tensors the new
    modules add keep their fresh initialisation and their names are stored in
    ``model.missing_weights``; unexpected or mis-shaped tensors are always an error.
    """
    saved_cfg, meta = read_config(folder)
    cfg = config or saved_cfg
    state = read_weights(folder, meta)
    model = LongposLM(cfg)
    source = Path(folder) / WEIGHTS_FILE
    missing = check_state(model, state, source, allow_missing)
    model.load_state_dict(state, strict=False)
    model.missing_weights = missing  # type: ignore[assignment]
    return model.to(map_location)


def trained_on(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """What the model in ``folder`` was trained on, or None when nothing says so.

    ``{"kind": "task", "tasks": [...], "options": {...}, "seq_len": L, ...}`` for token-level
    tasks, ``{"kind": "text", "tokenizer": NAME, "seq_len": L}`` for text. Read from the
    checkpoint's ``extra["trained_on"]`` (written by ``longpos train``), else from the
    training run's ``config.json`` next to the model folder (``RUN/model``, ``RUN/checkpoint``:
    models written before the metadata existed, e.g. older demo runs).
    """
    folder = Path(folder)
    extra = (read_json_object(folder / CONFIG_FILE) or {}).get("extra") or {}
    if isinstance(extra, dict) and isinstance(extra.get("trained_on"), dict):
        return dict(extra["trained_on"])
    run = read_json_object(folder.parent / CONFIG_FILE) or {}
    train = run.get("train")
    if not isinstance(train, dict) or not isinstance(train.get("data"), dict):
        return None
    return data_description(train["data"], int(train.get("seq_len") or 0) or None)


def data_description(data: dict[str, Any], seq_len: int | None) -> dict[str, Any] | None:
    """:func:`trained_on`'s dict from a ``DataConfig`` as a dict (``train.data`` of a run)."""
    if data.get("kind") == "text":
        return {"kind": "text", "tokenizer": data.get("tokenizer") or "byte", "seq_len": seq_len}
    if data.get("kind") != "task":
        return None
    options = data.get("options") or {}
    if isinstance(options, str):
        try:
            options = json.loads(options)
        except ValueError:
            options = {}
    tasks = [t.strip() for t in str(data.get("tasks") or "").split(",") if t.strip()]
    return {"kind": "task", "tasks": tasks, "options": dict(options), "seq_len": seq_len}
