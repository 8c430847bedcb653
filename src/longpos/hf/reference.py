"""Open the released reference checkpoints of RePo and DroPE as longpos models.

RePo: Li, Zhao, Cai, Sproat, "Language Models with Context Re-Positioning", arXiv 2512.14391
(checkpoint ``SakanaAI/RePo-OLMo2-1B-stage2-L5``, written by Sakana's fork of transformers 4.52).
DroPE: Gelberg, Eguchi, Akiba, Cetin, "Extending the Context of Pretrained LLMs by Dropping
Their Positional Embeddings", arXiv 2512.12167 (``SakanaAI/Llama-2-7b-hf-DroPE``, the SmolLM
collection; remote code pinned to transformers 4.56).

Neither opens correctly on stock transformers 5.x: the RePo folder says ``model_type: olmo2``,
so stock transformers loads it as a plain OLMo2 and drops the position predictors with only an
"unused weights" warning; the DroPE folders name ``<base>_drope`` types that exist only in
their remote code. This module reads both layouts and builds the equivalent longpos model on
stock transformers: the stock family model from the config (reference-only keys removed),
converted with :func:`longpos.hf.apply_longpos` to the equivalent plan, every tensor loaded
through an explicit name map (none missing, none unexpected).

Layouts (:func:`detect_reference_layout`):

``sakana_repo_olmo2``: ``config.json`` holds a ``pe_config`` dict
    ``dynamic_pe_mode``: ``swigluex_multihead`` (the released model) -> technique ``repo``,
    variant ``swiglu``; ``multihead_continuous`` -> variant ``linear``; ``continuous`` ->
    variant ``linear_shared``; ``nope`` -> technique ``nope``; ``none`` -> ``rope``. Others are
    refused. Layers: ``dynmaic_pe_layer_ids`` (comma list, empty = all) from
    ``dynmaic_pe_start_layer`` on; the fork's model reads these misspelt keys, the correctly
    spelt copies must agree with them. Tensors per RePo layer: ``self_attn.gate_map`` ->
    ``self_attn.assigner.gate``, ``content_map`` -> ``assigner.content``, ``final_map`` /
    ``dynamic_map`` -> ``assigner.assign``. The reference predicts one z per *attention* head
    and longpos one per key-value head: per-head modes need ``num_key_value_heads ==
    num_attention_heads`` (true of OLMo2-1B), otherwise they are refused.
    ``dynamic_pe_init_pdrop`` / ``dynamic_pe_dropout_anneal_step`` are the training-time
    index-blend schedule; the reference's inference uses p = 0, which is longpos's default.
``sakana_drope``: ``model_type`` ``llama_drope`` or ``qwen2_drope``
    ``attention_type``: ``nope`` -> plan ``nope``; ``qk_norm_nope`` / ``q_norm_nope`` /
    ``k_norm_nope`` -> plan ``nope`` with ``qk_norm`` ``qk`` / ``q`` / ``k`` (full-width
    RMSNorms ``self_attn.q_norm`` / ``k_norm``, same tensor names). The reference creates both
    norms for every norm variant but applies only its own; the unused one is dropped (named in
    the report). ``softmax_scale`` (an absolute logit scale s replacing 1/sqrt(head_dim)) ->
    DroPE's static temperature with beta = s * sqrt(head_dim) at every length (stored as
    ``c = (beta - 1) / ln 2``, ``target_length = 2 * train_length``); beta < 1 is refused.

Functions
    detect_reference_layout(folder_or_config_dict) -> "sakana_repo_olmo2" | "sakana_drope" | None
    mapping_report(folder) -> ReferenceMapping      what would be mapped (no weights read)
    reference_config(folder) -> config               the ``<family>_longpos`` config it loads as
    load_reference_model(folder, *, dtype=None, device=None, attn_implementation=None) -> model
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from longpos.hf.convert import apply_longpos
from longpos.hf.families import FAMILIES, Family, decoder_layers
from longpos.hf.modeling import CONFIG_CLASSES
from longpos.hf.rope import training_length
from longpos.plan import PositionPlan
from longpos.positions.repo import RePoConfig
from longpos.positions.temperature import TemperatureConfig

REPO_LAYOUT = "sakana_repo_olmo2"
DROPE_LAYOUT = "sakana_drope"
LAYOUTS: tuple[str, ...] = (REPO_LAYOUT, DROPE_LAYOUT)

REPO_MODES: dict[str, tuple[str, str | None]] = {
    # dynamic_pe_mode -> (technique of the chosen layers, RePo variant)
    "swigluex_multihead": ("repo", "swiglu"),
    "multihead_continuous": ("repo", "linear"),
    "continuous": ("repo", "linear_shared"),
    "nope": ("nope", None),
    "none": ("rope", None),
}
"""The reference's ``dynamic_pe_mode`` values longpos maps (any other is refused)."""
REPO_MODULES: dict[str, dict[str, str]] = {
    # RePo variant -> {reference module of self_attn: longpos module of self_attn}
    "swiglu": {"gate_map": "assigner.gate", "content_map": "assigner.content",
               "final_map": "assigner.assign"},
    "linear": {"dynamic_map": "assigner.assign"},
    "linear_shared": {"dynamic_map": "assigner.assign"},
}  # fmt: skip
PER_HEAD_VARIANTS = ("swiglu", "linear")
"""Variants whose reference predicts one z per attention head."""
PE_KEYS: dict[str, str] = {
    "dynamic_pe_mode": "mode",
    "dynmaic_pe_start_layer": "start layer (the key the fork's model reads)",
    "dynamic_pe_start_layer": "start layer",
    "dynmaic_pe_layer_ids": "layer ids (the key the fork's model reads)",
    "dynamic_pe_layer_ids": "layer ids",
    "dynamic_pe_init_pdrop": "training-only",
    "dynamic_pe_dropout_anneal_step": "training-only",
}
GENERIC_CONFIG_KEYS = frozenset(
    {
        "_name_or_path", "architectures", "chunk_size_feed_forward", "dtype", "torch_dtype",
        "id2label", "label2id", "is_encoder_decoder", "model_type", "output_attentions",
        "output_hidden_states", "problem_type", "return_dict", "transformers_version",
    }
)  # fmt: skip
"""Keys any serialised transformers config carries (ignored inside ``pe_config``)."""

DROPE_FAMILIES: tuple[str, ...] = ("llama", "qwen2")
"""Families the DroPE reference defines ``<base>_drope`` types for (its ``MODEL_ARCH_MAP``)."""
DROPE_ATTENTION: dict[str, str] = {
    "nope": "none",
    "qk_norm_nope": "qk",
    "q_norm_nope": "q",
    "k_norm_nope": "k",
}
"""The reference's ``attention_type`` -> longpos ``qk_norm`` (RoPE dropped in every case)."""
DROPE_CONFIG_KEYS = ("attention_type", "softmax_scale", "auto_map")
"""Reference-only keys removed before the stock config is built."""

_ROTARY_BUFFER = re.compile(r"(?:.*\.)?rotary_emb\.(?:inv_freq|original_inv_freq)")
_ATTN_MODULE = re.compile(r"model\.layers\.(\d+)\.self_attn\.([A-Za-z_]+)\.weight")


@dataclass
class ReferenceMapping:
    """What loading a reference folder maps, and to what (see :func:`mapping_report`)."""

    layout: str
    family: str
    """The stock transformers family the model is built as (``olmo2``, ``llama``, ``qwen2``)."""
    config: dict[str, Any]
    """The stock family config (reference-only keys removed)."""
    plan: PositionPlan
    qk_norm: str
    options: list[tuple[str, str]] = field(default_factory=list)
    """(reference setting, what longpos does with it), one per config key read."""
    tensors: dict[str, str] = field(default_factory=dict)
    """Reference tensor name -> longpos parameter name (every tensor that is loaded)."""
    dropped: dict[str, str] = field(default_factory=dict)
    """Reference tensor name -> why it is not loaded."""

    @property
    def renamed(self) -> dict[str, str]:
        """The tensors whose name changes."""
        return {k: v for k, v in self.tensors.items() if k != v}

    def lines(self) -> list[str]:
        """A human-readable account, one item per line (what ``longpos convert`` prints)."""
        plan = self.plan.plan if self.plan.repo_start is None else (
            f"{self.plan.plan} (repo_start {self.plan.repo_start})"
        )  # fmt: skip
        out = [
            f"layout {self.layout}: built as stock {self.family}, converted to plan {plan}, "
            f"qk_norm {self.qk_norm}",
        ]
        if "repo" in self.plan.plan:
            out.append(f"  repo options: {self.plan.repo}")
        if self.plan.temperature.enabled:
            out.append(f"  temperature: {self.plan.temperature}")
        out += [f"  config {key}: {meaning}" for key, meaning in self.options]
        same = len(self.tensors) - len(self.renamed)
        out.append(f"  tensors: {len(self.tensors)} loaded ({same} under their own name)")
        for pattern, (target, count) in _patterns(self.renamed).items():
            out.append(f"    {pattern} -> {target}  ({count} layers)")
        for name, reason in sorted(self.dropped.items()):
            out.append(f"  dropped {name}: {reason}")
        return out


def _patterns(renamed: dict[str, str]) -> dict[str, tuple[str, int]]:
    """Group renames by layer: ``model.layers.{i}.x -> model.layers.{i}.y``: count."""
    groups: dict[str, tuple[str, int]] = {}
    for src, dst in sorted(renamed.items()):
        key = re.sub(r"layers\.\d+\.", "layers.{i}.", src)
        target = re.sub(r"layers\.\d+\.", "layers.{i}.", dst)
        groups[key] = (target, groups.get(key, (target, 0))[1] + 1)
    return groups


# ---------------------------------------------------------------------- reading files
def _config_dict(folder_or_config: str | os.PathLike[str] | dict[str, Any]) -> dict[str, Any]:
    if isinstance(folder_or_config, dict):
        return dict(folder_or_config)
    path = Path(folder_or_config)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise ValueError(f"{folder_or_config} is not a model folder (no config.json)")
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return data


def weight_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The safetensors files of a folder: ``model.safetensors`` or the shards named by
    ``model.safetensors.index.json``."""
    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text()).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ValueError(f"{index} has no weight_map")
        files = [folder / name for name in sorted(set(weight_map.values()))]
        absent = [str(f.name) for f in files if not f.is_file()]
        if absent:
            raise ValueError(f"{index} names shards that are not in {folder}: {absent}")
        return files
    single = folder / "model.safetensors"
    if single.is_file():
        return [single]
    others = sorted(p.name for p in folder.glob("*.bin")) + sorted(
        p.name for p in folder.glob("*.safetensors")
    )
    raise ValueError(
        f"{folder} has no model.safetensors or model.safetensors.index.json (found: "
        f"{others or 'no weight files'}); only safetensors checkpoints are read: re-save the "
        "weights as safetensors first"
    )


def _tensor_names(files: Iterable[Path]) -> dict[str, Path]:
    names: dict[str, Path] = {}
    for path in files:
        with safe_open(str(path), framework="pt") as f:
            for name in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                if name in names:
                    raise ValueError(f"tensor {name} is stored twice ({names[name]}, {path})")
                names[name] = path
    return names


_SAFETENSORS_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                       "F64": torch.float64}  # fmt: skip


def _checkpoint_dtype(files: list[Path]) -> torch.dtype | None:
    with safe_open(str(files[0]), framework="pt") as f:
        for name in f.keys():  # noqa: SIM118
            dtype = _SAFETENSORS_DTYPES.get(f.get_slice(name).get_dtype())
            if dtype is not None:
                return dtype
    return None


# --------------------------------------------------------------------------- detecting
def detect_reference_layout(
    folder_or_config: str | os.PathLike[str] | dict[str, Any],
) -> str | None:
    """``"sakana_repo_olmo2"`` (a ``pe_config`` dict in the config), ``"sakana_drope"`` (a
    ``<base>_drope`` model type) or None (anything else, including a folder without
    ``config.json``)."""
    try:
        config = _config_dict(folder_or_config)
    except ValueError:
        return None
    model_type = config.get("model_type")
    if isinstance(model_type, str) and model_type.endswith("_drope"):
        return DROPE_LAYOUT
    if "pe_config" in config:
        return REPO_LAYOUT
    return None


# --------------------------------------------------------------------- config mapping
def _int_option(pe: dict[str, Any], key: str) -> int | None:
    value = pe.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"pe_config.{key}={value!r} must be an integer")
    return value


def _layer_ids(pe: dict[str, Any], key: str, n_layers: int) -> list[int] | None:
    value = pe.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",") if v.strip()]
        try:
            ids = [int(v) for v in items]
        except ValueError as exc:
            raise ValueError(f"pe_config.{key}={value!r} must be comma-separated integers") from exc
    elif isinstance(value, list) and all(isinstance(v, int) for v in value):
        ids = list(value)
    else:
        raise ValueError(f"pe_config.{key}={value!r} must be a comma-separated string of ids")
    if not ids:
        return list(range(n_layers))  # the fork: empty = every layer
    bad = [i for i in ids if not 0 <= i < n_layers]
    if bad:
        raise ValueError(f"pe_config.{key} names layers {bad} outside 0..{n_layers - 1}")
    return sorted(set(ids))


def _agreeing(misspelt: Any, correct: Any, name: str) -> Any:
    if misspelt is not None and correct is not None and misspelt != correct:
        raise ValueError(
            f"pe_config.dynmaic_pe_{name}={misspelt!r} and pe_config.dynamic_pe_{name}="
            f"{correct!r} disagree: the reference's model reads the misspelt key, its converter "
            "writes both with one value; fix the folder's config.json"
        )
    return misspelt if misspelt is not None else correct


def _repo_config(config: dict[str, Any]) -> tuple[dict[str, Any], PositionPlan, list[Any]]:
    model_type = config.get("model_type")
    if model_type != "olmo2":
        raise ValueError(
            f"a pe_config (Sakana's RePo fork) with model_type={model_type!r}: only the fork's "
            "OLMo2 (model_type 'olmo2') is supported"
        )
    pe = config.get("pe_config")
    if not isinstance(pe, dict):
        raise ValueError(f"pe_config={pe!r} must be a JSON object")
    unknown = sorted(k for k in pe if k not in PE_KEYS and k not in GENERIC_CONFIG_KEYS)
    if unknown:
        raise ValueError(
            f"pe_config keys {unknown} are not supported by longpos (known: {sorted(PE_KEYS)})"
        )
    mode = pe.get("dynamic_pe_mode", "none")
    if mode not in REPO_MODES:
        raise ValueError(
            f"pe_config.dynamic_pe_mode={mode!r} is not supported by longpos; supported: "
            f"{sorted(REPO_MODES)}"
        )
    base = {k: v for k, v in config.items() if k != "pe_config"}
    n_layers = int(config.get("num_hidden_layers", 0))
    heads = int(config.get("num_attention_heads", 0))
    kv = int(config.get("num_key_value_heads") or heads)
    start = _agreeing(
        _int_option(pe, "dynmaic_pe_start_layer"), _int_option(pe, "dynamic_pe_start_layer"),
        "start_layer",
    )  # fmt: skip
    start = 0 if start is None else start
    ids = _agreeing(
        _layer_ids(pe, "dynmaic_pe_layer_ids", n_layers),
        _layer_ids(pe, "dynamic_pe_layer_ids", n_layers),
        "layer_ids",
    )
    ids = list(range(n_layers)) if ids is None else ids
    chosen = [i for i in ids if i >= start]
    technique, variant = REPO_MODES[mode]
    options: list[tuple[str, str]] = []
    if variant in PER_HEAD_VARIANTS and chosen and kv != heads:
        raise ValueError(
            f"pe_config.dynamic_pe_mode={mode!r} predicts one position per attention head "
            f"({heads}) but the model has num_key_value_heads={kv}; longpos predicts one per "
            "key-value head and maps this mode only when the two counts are equal"
        )
    layers = [technique if i in chosen else "rope" for i in range(n_layers)]
    repo = RePoConfig(variant=variant) if variant is not None else RePoConfig()
    if technique == "rope" or not chosen:
        plan = PositionPlan(plan="rope")
    elif technique == "repo" and chosen == list(range(chosen[0], n_layers)):
        plan = PositionPlan(plan="repo", repo_start=chosen[0], repo=repo)
    else:
        plan = PositionPlan(plan=",".join(layers), repo=repo)
    where = f"layers {chosen}" if chosen else "no layer"
    meaning = {
        "repo": f"technique repo, variant {variant} (hidden_ratio 8, index_blend 0, RoPE scaling "
        f"applied as in the reference) in {where}",
        "nope": f"technique nope in {where}",
        "rope": "technique rope in every layer (the fork's integer RoPE)",
    }[technique]
    options.append((f"pe_config.dynamic_pe_mode={mode!r}", meaning))
    for key in ("dynmaic_pe_start_layer", "dynamic_pe_start_layer"):
        if key in pe:
            options.append((f"pe_config.{key}={pe[key]!r}", f"first RePo layer {start}"))
    for key in ("dynmaic_pe_layer_ids", "dynamic_pe_layer_ids"):
        if key in pe:
            options.append((f"pe_config.{key}={pe[key]!r}", f"candidate layers {ids}"))
    for key in ("dynamic_pe_init_pdrop", "dynamic_pe_dropout_anneal_step"):
        if key in pe:
            options.append(
                (
                    f"pe_config.{key}={pe[key]!r}",
                    "not used: the training-time index-blend schedule; the reference's "
                    "inference blends with p = 0 (longpos repo.index_blend = 0)",
                )
            )
    return base, plan, options


def _drope_config(
    config: dict[str, Any],
) -> tuple[str, dict[str, Any], PositionPlan, str, list[Any]]:
    model_type = str(config.get("model_type"))
    family = model_type.removesuffix("_drope")
    if family not in DROPE_FAMILIES:
        raise ValueError(
            f"model_type={model_type!r} is not supported: the DroPE reference defines "
            f"{', '.join(f + '_drope' for f in DROPE_FAMILIES)}"
        )
    attention_type = config.get("attention_type", "nope")  # the reference's default
    if attention_type not in DROPE_ATTENTION:
        raise ValueError(
            f"attention_type={attention_type!r} is not supported; supported: "
            f"{sorted(DROPE_ATTENTION)}"
        )
    qk_norm = DROPE_ATTENTION[attention_type]
    base = {k: v for k, v in config.items() if k not in DROPE_CONFIG_KEYS}
    base["model_type"] = family
    base["architectures"] = [FAMILIES[family].causal_lm_class.__name__]
    options: list[tuple[str, str]] = [
        (f"model_type={model_type!r}", f"stock {family}, every layer nope"),
        (
            f"attention_type={attention_type!r}",
            f"qk_norm {qk_norm}"
            + (" (full-width RMSNorm before the reshape)" if qk_norm != "none" else ""),
        ),  # fmt: skip
    ]
    if "auto_map" in config:
        options.append(("auto_map", "removed (remote code is not needed)"))
    temp = TemperatureConfig()
    if "softmax_scale" in config:
        scale = config["softmax_scale"]
        stock = _config_class(FAMILIES[family].config_class).from_dict(base)
        heads = int(stock.num_attention_heads)
        head_dim = int(getattr(stock, "head_dim", None) or int(stock.hidden_size) // heads)
        temp, meaning = _softmax_scale(scale, head_dim, training_length(stock))
        options.append((f"softmax_scale={scale!r}", meaning))
    plan = PositionPlan(plan="nope", temperature=temp)
    return family, base, plan, qk_norm, options


def _softmax_scale(scale: Any, head_dim: int, train_length: int) -> tuple[TemperatureConfig, str]:
    """The reference sets ``attn.scaling = softmax_scale`` (absolute); longpos multiplies
    1/sqrt(head_dim) by DroPE's beta: beta = scale * sqrt(head_dim), static at every length."""
    if scale is None:
        return TemperatureConfig(), "null: no override (the default 1/sqrt(head_dim))"
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not scale > 0:
        raise ValueError(f"softmax_scale={scale!r} must be a number > 0")
    beta = float(scale) * math.sqrt(head_dim)
    if math.isclose(beta, 1.0, rel_tol=1e-12):
        return TemperatureConfig(), f"equals the default 1/sqrt({head_dim}): no temperature"
    if beta < 1.0:
        raise ValueError(
            f"softmax_scale={scale!r} is below the default 1/sqrt(head_dim) = "
            f"{head_dim**-0.5:.6g} (beta = {beta:.6g} < 1): longpos's inference temperature "
            "beta = 1 + c ln(s) only sharpens attention, so this override is not supported"
        )
    temp = TemperatureConfig(
        c=(beta - 1.0) / math.log(2.0),
        mode="static",
        target_length=2 * train_length,
        train_length=train_length,
    )
    return temp, (
        f"static temperature beta = {beta:.9g} = softmax_scale * sqrt({head_dim}) at every length "
        f"(c = (beta - 1) / ln 2 with target_length = 2 x train_length {train_length}); a later "
        "set_temperature replaces it"
    )


def _config_mapping(
    config: dict[str, Any],
) -> tuple[str, str, dict[str, Any], PositionPlan, str, list[Any]]:
    layout = detect_reference_layout(config)
    if layout == REPO_LAYOUT:
        base, plan, options = _repo_config(config)
        return layout, "olmo2", base, plan, "none", options
    if layout == DROPE_LAYOUT:
        family, base, plan, qk_norm, options = _drope_config(config)
        return layout, family, base, plan, qk_norm, options
    raise ValueError(
        f"model_type={config.get('model_type')!r} without a pe_config is not a reference "
        f"layout ({', '.join(LAYOUTS)}); open it with longpos.hf.load_hf_model"
    )


# --------------------------------------------------------------------- tensor mapping
def _tensor_mapping(
    layout: str, plan: PositionPlan, qk_norm: str, names: Iterable[str]
) -> tuple[dict[str, str], dict[str, str]]:
    tensors: dict[str, str] = {}
    dropped: dict[str, str] = {}
    modules = REPO_MODULES.get(plan.repo.variant, {}) if layout == REPO_LAYOUT else {}
    for name in sorted(names):
        if _ROTARY_BUFFER.fullmatch(name):
            dropped[name] = "RoPE frequency table, recomputed from the config (values checked)"
            continue
        match = _ATTN_MODULE.fullmatch(name)
        if match is not None and match.group(2) in modules:
            tensors[name] = (
                f"model.layers.{match.group(1)}.self_attn.{modules[match.group(2)]}.weight"
            )
            continue
        if match is not None and layout == DROPE_LAYOUT and qk_norm in ("q", "k"):
            unused = {"q": "k_norm", "k": "q_norm"}[qk_norm]
            if match.group(2) == unused:
                dropped[name] = (
                    f"created by the reference's {qk_norm}_norm_nope attention but never applied"
                )
                continue
        tensors[name] = name  # same name in longpos (anything foreign is caught as unexpected)
    return tensors, dropped


def mapping_report(
    folder_or_config: str | os.PathLike[str] | dict[str, Any],
    tensor_names: Iterable[str] | None = None,
) -> ReferenceMapping:
    """What :func:`load_reference_model` maps for a reference folder (or its config dict and
    tensor names), without reading any weights. Unsupported settings raise ``ValueError``
    naming them."""
    config = _config_dict(folder_or_config)
    layout, family, base, plan, qk_norm, options = _config_mapping(config)
    if tensor_names is None:
        if isinstance(folder_or_config, dict):
            tensor_names = ()
        else:
            tensor_names = _tensor_names(weight_files(folder_or_config))
    tensors, dropped = _tensor_mapping(layout, plan, qk_norm, tensor_names)
    return ReferenceMapping(layout, family, base, plan, qk_norm, options, tensors, dropped)


def reference_config(folder_or_config: str | os.PathLike[str] | dict[str, Any]) -> Any:
    """The ``<family>_longpos`` config a reference folder loads as (no weights read): for
    the CLI's view of a model's options before it is loaded."""
    mapping = mapping_report(folder_or_config, tensor_names=())
    data = {k: v for k, v in mapping.config.items() if k != "model_type"}
    data["longpos_positions"] = mapping.plan.plan_dict()
    data["longpos_qk_norm"] = mapping.qk_norm
    return _config_class(CONFIG_CLASSES[mapping.family]).from_dict(data)


# ----------------------------------------------------------------------------- loading
def _config_class(cls: type) -> Any:
    return cls  # a transformers config class (``from_dict``); typed loosely for mypy


def _resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    names = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
             "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16,
             "float64": torch.float64}  # fmt: skip
    if dtype not in names:
        raise ValueError(f"dtype={dtype!r} is unknown; allowed: {sorted(names)}")
    return names[dtype]


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _listing(names: Iterable[str], limit: int = 12) -> str:
    names = sorted(names)
    shown = ", ".join(names[:limit])
    return f"{shown}, ... ({len(names)} in all)" if len(names) > limit else shown


def build_reference_model(
    mapping: ReferenceMapping,
    *,
    dtype: torch.dtype = torch.float32,
    attn_implementation: str | None = None,
) -> nn.Module:
    """The converted model of ``mapping`` with uninitialised weights (to be loaded)."""
    from transformers.initialization import no_init_weights

    family: Family = FAMILIES[mapping.family]
    # model_type is the class's (a stored value would shadow the converted type's)
    config = _config_class(family.config_class).from_dict(
        {k: v for k, v in mapping.config.items() if k != "model_type"}
    )
    if attn_implementation is not None:
        config._attn_implementation = attn_implementation
    with _default_dtype(dtype), no_init_weights():
        model: nn.Module = family.causal_lm_class(config)
        apply_longpos(model, mapping.plan, qk_norm=mapping.qk_norm)
    return model


def load_reference_model(
    folder: str | os.PathLike[str],
    *,
    dtype: torch.dtype | str | None = None,
    device: str | torch.device | None = None,
    attn_implementation: str | None = None,
) -> nn.Module:
    """A reference checkpoint folder (:func:`detect_reference_layout`) as the equivalent
    longpos model on stock transformers (see the module docstring for what maps to what).

    ``dtype`` defaults to the checkpoint's; ``attn_implementation`` to transformers' choice.
    Every tensor is loaded through the name map of :func:`mapping_report`; a missing, an
    unexpected or a mis-shaped tensor raises ``ValueError`` listing them. Only local folders.
    """
    folder = Path(folder)
    files = weight_files(folder)
    names = _tensor_names(files)
    mapping = mapping_report(folder, tensor_names=names)
    resolved = _resolve_dtype(dtype) or _checkpoint_dtype(files) or torch.float32
    model = build_reference_model(mapping, dtype=resolved, attn_implementation=attn_implementation)
    config: Any = model.config
    params = model.state_dict()
    mapped = set(mapping.tensors.values())
    tied = bool(getattr(config, "tie_word_embeddings", False))
    optional = {"lm_head.weight"} if tied else set()
    missing = set(params) - mapped - optional
    unexpected = mapped - set(params)
    if missing or unexpected:
        raise ValueError(
            f"{folder} ({mapping.layout}) does not match the equivalent longpos model: "
            f"missing tensors [{_listing(missing)}]; unexpected tensors "
            f"[{_listing(k for k, v in mapping.tensors.items() if v in unexpected)}]"
        )
    rotary: Any = model.model.rotary_emb  # type: ignore[union-attr]
    for path in files:
        part = load_file(str(path))
        state: dict[str, torch.Tensor] = {}
        for name, tensor in part.items():
            if name in mapping.dropped:
                if _ROTARY_BUFFER.fullmatch(name):
                    _check_rotary(name, tensor, rotary.inv_freq)
                continue
            target = mapping.tensors[name]
            if tuple(tensor.shape) != tuple(params[target].shape):
                raise ValueError(
                    f"tensor {name} has shape {tuple(tensor.shape)}; {target} of the equivalent "
                    f"longpos model needs {tuple(params[target].shape)}"
                )
            state[target] = tensor
        model.load_state_dict(state, strict=False)
        del part, state
    if tied:
        model.tie_weights()  # type: ignore[operator]
    _load_generation_config(model, folder)
    model.eval()
    if device is not None:
        model = model.to(device)
    return model


def _check_rotary(name: str, tensor: torch.Tensor, inv_freq: torch.Tensor) -> None:
    if tensor.shape != inv_freq.shape or not torch.allclose(
        tensor.float(), inv_freq.float().cpu(), rtol=1e-3, atol=0
    ):
        raise ValueError(
            f"{name} differs from the RoPE frequencies of the config (rope_theta / rope scaling): "
            "the config does not describe the checkpoint"
        )


def _load_generation_config(model: nn.Module, folder: Path) -> None:
    if not (folder / "generation_config.json").is_file():
        return
    from transformers import GenerationConfig

    with contextlib.suppress(OSError, ValueError, TypeError):  # unreadable: keep the default
        model.generation_config = GenerationConfig.from_pretrained(  # type: ignore[assignment]
            str(folder), local_files_only=True
        )


def repo_layers(model: nn.Module) -> list[int]:
    """Indices of the layers whose attention carries a RePo assigner (for reports)."""
    return [
        i
        for i, layer in enumerate(decoder_layers(model))
        if getattr(layer.self_attn, "technique", None) == "repo"
    ]


__all__ = [
    "DROPE_ATTENTION",
    "DROPE_LAYOUT",
    "LAYOUTS",
    "REPO_LAYOUT",
    "REPO_MODES",
    "ReferenceMapping",
    "build_reference_model",
    "detect_reference_layout",
    "load_reference_model",
    "mapping_report",
    "reference_config",
    "repo_layers",
    "weight_files",
]
