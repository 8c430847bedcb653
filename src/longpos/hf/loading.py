"""Load local Hugging Face models (stock or converted) and evaluate them.

Context: the RePo (arXiv 2512.14391) and DroPE (arXiv 2512.12167) evaluations score
greedy continuations of long prompts; this module gives ``longpos eval`` and
``longpos train`` a local-folder loader and an adapter with the evaluation protocol
(``.tokenizer``, ``.max_length``, ``generate_ids``) that decodes greedily through the
KV cache.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoModelForCausalLM

from longpos.hf.compat import CACHE_KWARG
from longpos.hf.convert import apply_longpos
from longpos.hf.families import family_of
from longpos.hf.memory import LongposMemoryCache, default_read_passes, fwpkm_layer_indices
from longpos.hf.reference import detect_reference_layout, load_reference_model, reference_config
from longpos.memory.placement import MemoryConfig
from longpos.plan import PositionPlan
from longpos.positions.repo import RePoConfig
from longpos.positions.scaling import RopeConfig


def load_hf_model(
    path_or_model: str | os.PathLike[str] | nn.Module,
    *,
    plan: str | Sequence[str] | PositionPlan | None = None,
    repo_start: int | None = None,
    repo: RePoConfig | None = None,
    rope: RopeConfig | None = None,
    qk_norm: str = "none",
    memory: MemoryConfig | None = None,
    dtype: torch.dtype | str | None = None,
    device: str | torch.device | None = None,
    attn_implementation: str | None = None,
) -> nn.Module:
    """A causal LM from a local folder (stock family or ``<family>_longpos``) or an
    already loaded model, optionally converted to ``plan`` and given ``memory`` layers
    (see :func:`apply_longpos`; ``memory`` alone keeps the current plan).

    Never contacts a hub: only local folders are accepted. ``dtype`` defaults to the
    checkpoint's; ``attn_implementation`` to transformers' choice (sdpa on CPU).
    """
    if isinstance(path_or_model, nn.Module):
        model = path_or_model
        family_of(model)
        if attn_implementation is not None:
            model.set_attn_implementation(attn_implementation)  # type: ignore[operator]
        if dtype is not None:
            model = model.to(dtype=_dtype(dtype))
    else:
        folder = Path(path_or_model)
        if not (folder / "config.json").is_file():
            raise ValueError(
                f"{folder} is not a Hugging Face model folder (no config.json); longpos.hf "
                "loads local folders only"
            )
        kwargs: dict[str, Any] = {"local_files_only": True}
        if dtype is not None:
            kwargs["dtype"] = _dtype(dtype)
        if attn_implementation is not None:
            kwargs["attn_implementation"] = attn_implementation
        try:
            if detect_reference_layout(folder) is not None:  # Sakana's RePo / DroPE folders
                model = load_reference_model(
                    folder, dtype=dtype, attn_implementation=attn_implementation
                )
            else:
                model = AutoModelForCausalLM.from_pretrained(str(folder), **kwargs)
        except ValueError as exc:
            raise ValueError(f"cannot load {folder} as a causal LM: {exc}") from exc
        family_of(model)
    options = (repo_start, repo, rope, memory)
    if plan is not None or qk_norm != "none" or any(o is not None for o in options):
        apply_longpos(
            model, plan, repo_start=repo_start, repo=repo, rope=rope, qk_norm=qk_norm,
            memory=memory,
        )  # fmt: skip
    if device is not None:
        model = model.to(device)
    return model


def _dtype(dtype: torch.dtype | str) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16}
    names.update({"bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16})
    if dtype not in names:
        raise ValueError(f"dtype={dtype!r} is unknown; allowed: {sorted(names)}")
    return names[dtype]


class HFEvalModel:
    """Evaluation-protocol adapter: greedy decoding with the KV cache, one prompt at a time.

    ``tokenizer``: None (the model reads the task suite's token ids directly) or a
    tokenizer object (wrapped by :func:`longpos.data.tokenizers.load_tokenizer`).
    ``max_length``: the longest prompt + continuation to allow (None = no limit; the
    default is ``None`` because RePo / DroPE are meant to run past the training length).
    ``stop_at_eos``: stop at the model's EOS token (it is not returned).
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any = None,
        *,
        max_length: int | None = None,
        device: str | torch.device | None = None,
        stop_at_eos: bool = True,
    ):
        family_of(model)
        if device is not None:
            model = model.to(device)
        self.model = model.eval()
        self.device = next(model.parameters()).device
        if tokenizer is not None:
            from longpos.data.tokenizers import load_tokenizer

            tokenizer = load_tokenizer(tokenizer)
        self.tokenizer = tokenizer
        self.max_length = max_length
        eos = getattr(model.generation_config, "eos_token_id", None) if stop_at_eos else None
        self.eos_ids: list[int] = (
            [] if eos is None else ([eos] if isinstance(eos, int) else list(eos))
        )

    @torch.no_grad()
    def generate_ids(self, prompt_ids: list[int], max_new_tokens: int) -> list[int]:
        """Greedy continuation of ``prompt_ids``: up to ``max_new_tokens`` new ids."""
        if not prompt_ids:
            raise ValueError("the prompt is empty: nothing to condition generation on")
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens={max_new_tokens} must be >= 0")
        config: Any = self.model.config
        vocab = int(config.vocab_size)
        if min(prompt_ids) < 0 or max(prompt_ids) >= vocab:
            raise ValueError(
                f"prompt ids must be in [0, {vocab}); got {min(prompt_ids)}..{max(prompt_ids)}: "
                "the task vocabulary does not match the model"
            )
        if self.max_length is not None and len(prompt_ids) + max_new_tokens > self.max_length:
            raise ValueError(
                f"prompt ({len(prompt_ids)}) + max_new_tokens ({max_new_tokens}) exceeds "
                f"max_length={self.max_length}"
            )
        if max_new_tokens == 0:
            return []
        return greedy_generate(self.model, prompt_ids, max_new_tokens, eos_ids=self.eos_ids)

    @property
    def takes_padding(self) -> bool:
        """Left padding is safe unless the model has FwPKM layers (then: length buckets)."""
        return not fwpkm_layer_indices(self.model)

    @torch.no_grad()
    def generate_batch(self, prompts: list[list[int]], max_new_tokens: int) -> list[list[int]]:
        """Greedy continuations of several prompts at once (new ids, EOS excluded): left
        padding with an attention mask and positions counting real tokens."""
        from longpos.eval.batching import greedy_batch

        if any(len(p) + max_new_tokens > (self.max_length or 1 << 62) for p in prompts):
            raise ValueError(f"a prompt + max_new_tokens exceeds max_length={self.max_length}")
        config: Any = self.model.config
        cache = LongposMemoryCache(config=config)
        memory = bool(fwpkm_layer_indices(self.model))
        passes = default_read_passes(self.model)

        def step(ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
            first = cache.get_seq_length() == 0
            extra: dict[str, Any] = {"read_passes": passes if first else 1} if memory else {}
            if not bool(mask.all()):  # padding: hide it, count real tokens only
                extra.update(attention_mask=mask, position_ids=positions)
            out = self.model(input_ids=ids, use_cache=True, **{CACHE_KWARG: cache}, **extra)
            return out.logits  # type: ignore[no-any-return]

        return greedy_batch(step, prompts, max_new_tokens, self.eos_ids, self.device)


@torch.no_grad()
def greedy_generate(
    model: nn.Module,
    prompt_ids: list[int],
    max_new_tokens: int,
    *,
    eos_ids: Sequence[int] = (),
    use_cache: bool = True,
    read_passes: int | None = None,
) -> list[int]:
    """Plain greedy loop over ``model(...)`` with a ``DynamicCache`` (no generation
    config surprises: no repetition penalty, no length defaults). Returns new ids only.

    FwPKM models: the prompt is read ``read_passes`` times (default: the config's
    ``fwpkm.read_passes``), as ``generate`` does; the fast weights travel in the cache."""
    device = next(model.parameters()).device
    tokens = torch.tensor([prompt_ids], dtype=torch.long, device=device)  # (1, T)
    config: Any = model.config
    cache = LongposMemoryCache(config=config) if use_cache else None
    memory = bool(fwpkm_layer_indices(model))
    passes = default_read_passes(model) if read_passes is None else read_passes
    step = tokens
    new: list[int] = []
    for i in range(max_new_tokens):
        extra = {"read_passes": passes if i == 0 or not use_cache else 1} if memory else {}
        out = model(
            input_ids=step if use_cache else tokens,
            use_cache=use_cache,
            **{CACHE_KWARG: cache},
            **extra,
        )
        nxt = int(out.logits[0, -1].argmax())
        if nxt in eos_ids:
            break
        new.append(nxt)
        step = torch.tensor([[nxt]], dtype=torch.long, device=device)
        tokens = torch.cat((tokens, step), dim=1)
    return new


def load_eval_model(
    path: str | os.PathLike[str],
    device: str | torch.device = "cpu",
    *,
    tokenizer: Any = None,
    dtype: torch.dtype | str | None = None,
    max_length: int | None = None,
) -> HFEvalModel:
    """An :class:`HFEvalModel` for a local folder. The tokenizer is the folder's own
    (``AutoTokenizer``, local files only) unless given; ``None`` if it has none. (Scalings
    and DroPE's temperature: :mod:`longpos.surgery` on ``.model``.)"""
    model = load_hf_model(path, dtype=dtype, device=device)
    if tokenizer is None:
        tokenizer = local_tokenizer(path)
    return HFEvalModel(model, tokenizer, max_length=max_length)


def local_tokenizer(folder: str | os.PathLike[str]) -> Any:
    """The tokenizer saved in a local model folder (``AutoTokenizer``, local files only),
    or None when the folder has no tokenizer files."""
    folder = Path(folder)
    names = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "vocab.json")
    if not any((folder / n).is_file() for n in names):
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


TAKES_FROM_MODEL_CONFIG: tuple[str, ...] = (
    "plan", "repo_start", "repo", "temperature", "rope", "memory", "qk_norm",
)  # fmt: skip
"""The :class:`~longpos.config.ModelConfig` fields a Hugging Face model can take (the rest is
its architecture, fixed by its weights)."""


def model_config_view(path_or_model: str | os.PathLike[str] | nn.Module) -> Any:
    """A Hugging Face model (a local folder's config, or a loaded model) described as a
    :class:`~longpos.config.ModelConfig`, so the CLI's ``--model.*`` options mean the same
    for native and Hugging Face models."""
    from transformers import AutoConfig

    from longpos.config import ModelConfig
    from longpos.hf.memory import memory_config
    from longpos.hf.modeling import layer_shape, position_plan
    from longpos.hf.rope import training_length

    if isinstance(path_or_model, nn.Module):
        config: Any = path_or_model.config
    else:
        folder = Path(path_or_model)
        if not (folder / "config.json").is_file():
            raise ValueError(f"{folder} is not a Hugging Face model folder (no config.json)")
        if detect_reference_layout(folder) is not None:
            config = reference_config(folder)
        else:
            config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    shape = layer_shape(config)
    plan = position_plan(config)
    return ModelConfig(
        **{name: getattr(plan, name) for name in ("plan", "repo_start", "repo", "temperature")},
        vocab_size=int(config.vocab_size),
        d_model=shape.d_model,
        n_layers=int(config.num_hidden_layers),
        n_heads=shape.n_heads,
        n_kv_heads=shape.n_kv_heads,
        head_dim=shape.head_dim,
        ffn_hidden=getattr(config, "intermediate_size", None),
        max_seq_len=training_length(config),
        rope=shape.rope,
        qk_norm=str(getattr(config, "longpos_qk_norm", None) or "none"),
        qk_norm_layout="full",
        norm_eps=float(getattr(config, "rms_norm_eps", 1e-6)),
        tie_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
        memory=memory_config(config) or MemoryConfig(),
    )


def apply_model_config(model: nn.Module, wanted: Any) -> list[str]:
    """Give a Hugging Face model the options of ``wanted`` (a ModelConfig) that differ from
    its own :func:`model_config_view`; returns their names. Options it cannot take (its
    architecture) raise a ``ValueError`` naming them."""
    from dataclasses import fields

    have = model_config_view(model)
    changed = [f.name for f in fields(wanted) if getattr(wanted, f.name) != getattr(have, f.name)]
    fixed = [name for name in changed if name not in TAKES_FROM_MODEL_CONFIG]
    if fixed:
        names = ", ".join(f"--model.{name}" for name in fixed)
        takes = ", ".join(f"--model.{name}" for name in TAKES_FROM_MODEL_CONFIG)
        raise ValueError(
            f"{names}: a Hugging Face model's architecture is fixed by its weights; it takes "
            f"only {takes} (and their sub-options)"
        )
    if not changed:
        return []
    apply_longpos(
        model,
        wanted.position_plan(),
        rope=wanted.rope if "rope" in changed else None,
        qk_norm=wanted.qk_norm if "qk_norm" in changed else "none",
        memory=wanted.memory if "memory" in changed else None,
    )
    return changed
