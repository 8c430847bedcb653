"""Samples, the task registry and the one entry point :func:`generate_sample`.

A task is registered under a name with a text-level generator (a prompt in words, measured
in the evaluated model's tokenizer) and a token-level generator (the same structure over the
symbolic vocabulary of :mod:`longpos.tasks.symbolic`, for from-scratch models without a
tokenizer). Both return a :class:`Sample`.

Length convention (RULER, arXiv 2404.06654): ``sample.length = len(prompt_ids) +
tokens_to_generate`` and generators guarantee ``sample.length <= target_length``, with the
haystack grown until the next unit would overflow.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "NeedleSpan",
    "Sample",
    "TaskSpec",
    "register_task",
    "get_task",
    "list_tasks",
    "generate_sample",
    "derive_seed",
    "apply_options",
]


@dataclass
class NeedleSpan:
    """Where a piece of evidence sits in the prompt.

    ``role`` is ``"value"`` (the answer's occurrence), ``"key"`` or ``"needle"`` (the whole
    inserted sentence). Character offsets index ``Sample.prompt`` (-1 at token level); token
    offsets index ``Sample.prompt_ids`` (end exclusive). For subword tokenizers token offsets
    are computed by encoding the prompt prefix, so they can be off by one token at a boundary.
    """

    role: str
    text: str
    char_start: int
    char_end: int
    token_start: int
    token_end: int


@dataclass
class Sample:
    """One evaluation sample, JSON-serialisable (:meth:`to_dict` / :meth:`from_dict`)."""

    task: str
    """Registered task name."""
    level: Literal["text", "token"]
    """``text``: a prompt string in some tokenizer; ``token``: symbolic ids, no tokenizer."""
    seed: int
    target_length: int
    """Requested total length in tokens: prompt plus generation budget."""
    prompt_ids: list[int]
    """The model input, ending with the answer prefix; the model continues it."""
    answers: list[str]
    """Gold strings (text level) or space-separated symbolic ids (token level)."""
    metric: str
    """Name of the metric in :mod:`longpos.tasks.metrics`."""
    tokens_to_generate: int
    prompt: str | None = None
    """The prompt text (text level); ``None`` at token level."""
    answer_prefix: str = ""
    answer_ids: list[list[int]] | None = None
    """Token level: the gold id sequences."""
    depth: float | None = None
    """Relative position (0 = start, 1 = end of the haystack) of the queried evidence."""
    needles: list[NeedleSpan] = field(default_factory=list)
    tokenizer: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    """Generator-specific data (graph edges, optimal weights, configuration, ...)."""

    @property
    def length(self) -> int:
        """Prompt tokens plus the generation budget (never above ``target_length``)."""
        return len(self.prompt_ids) + self.tokens_to_generate

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Sample:
        d = dict(d)
        d["needles"] = [NeedleSpan(**n) for n in d.get("needles", [])]
        return cls(**d)


TextGen = Callable[..., Sample]
TokenGen = Callable[..., Sample]


@dataclass(frozen=True)
class TaskSpec:
    """A registered task: its family, config class, metric and generators."""

    name: str
    family: str
    description: str
    metric: str
    config_cls: type
    defaults: dict[str, Any]
    text_fn: TextGen | None
    token_fn: TokenGen | None
    ruler_like: bool = False

    def make_config(self, options: dict[str, Any] | None = None) -> Any:
        return apply_options(self.config_cls, {**self.defaults, **(options or {})}, self.name)


_REGISTRY: dict[str, TaskSpec] = {}


def register_task(spec: TaskSpec) -> TaskSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"task {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def list_tasks(family: str | None = None) -> list[str]:
    """Names of the registered tasks (optionally of one family), sorted."""
    _ensure_loaded()
    return sorted(n for n, s in _REGISTRY.items() if family is None or s.family == family)


def get_task(name: str) -> TaskSpec:
    _ensure_loaded()
    if name not in _REGISTRY:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def _ensure_loaded() -> None:
    # Importing the task modules registers them.
    from longpos.tasks import graphs, mqar, passkey, ruler, symbolic, tables  # noqa: F401


def apply_options(cls: type, options: dict[str, Any], task: str = "") -> Any:
    """Build config ``cls`` from ``options``; unknown names give a ``ValueError`` listing fields."""
    names = {f.name for f in dataclasses.fields(cls)}
    bad = sorted(set(options) - names)
    if bad:
        raise ValueError(
            f"unknown option(s) {bad} for task {task or cls.__name__}; valid: {sorted(names)}"
        )
    return cls(**options)


def derive_seed(*parts: Any) -> int:
    """A stable 63-bit seed from any printable parts (same on every machine and run)."""
    h = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(h[:8], "big") >> 1


def generate_sample(
    task: str,
    length: int,
    *,
    tokenizer: Any = None,
    seed: int = 0,
    depth: float | None = None,
    level: Literal["text", "token"] | None = None,
    tokens_to_generate: int | None = None,
    **options: Any,
) -> Sample:
    """Generate one sample of ``task`` whose ``length`` is at most ``length`` tokens.

    Args:
        task: a name from :func:`list_tasks`.
        length: target total length (prompt + ``tokens_to_generate``) in tokens.
        tokenizer: ``None`` (token level), ``"byte"``, a SentencePiece name / path, a
            :class:`~longpos.data.tokenizers.Tokenizer`, or a Hugging Face tokenizer object.
        seed: the sample's seed; the same seed gives the same sample everywhere.
        depth: relative position in [0, 1] of the queried needle; ``None`` draws one.
        level: ``"text"`` or ``"token"``; default ``"token"`` iff ``tokenizer is None``.
        tokens_to_generate: generation budget (text level; defaults per task family).
        **options: fields of the task's config dataclass (e.g. ``num_keys=4``,
            ``data_path=...`` for qa, ``num_symbols=...`` at token level).
    """
    spec = get_task(task)
    if not isinstance(length, int) or length <= 0:
        raise ValueError(f"length must be a positive integer, got {length!r}")
    if depth is not None and not 0.0 <= depth <= 1.0:
        raise ValueError(f"depth must be in [0, 1], got {depth}")
    if level is None:
        level = "token" if tokenizer is None else "text"
    if level == "token":
        if spec.token_fn is None:
            raise ValueError(f"task {task!r} has no token-level rendering")
        return spec.token_fn(spec, length=length, seed=seed, depth=depth, options=options)
    if level != "text":
        raise ValueError(f"level must be 'text' or 'token', got {level!r}")
    if spec.text_fn is None:
        raise ValueError(f"task {task!r} exists only at token level; pass tokenizer=None")
    from longpos.data.tokenizers import load_tokenizer

    tok = load_tokenizer("byte" if tokenizer is None else tokenizer)
    return spec.text_fn(
        spec,
        length=length,
        tokenizer=tok,
        seed=seed,
        depth=depth,
        tokens_to_generate=tokens_to_generate,
        options=options,
    )


def new_rng(task: str, seed: int) -> random.Random:
    """The sample's private generator: depends on the task name and the seed only."""
    return random.Random(derive_seed("longpos", task, seed))
