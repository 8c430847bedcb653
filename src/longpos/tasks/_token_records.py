"""Shared layout of the token-level structured tasks (:mod:`~longpos.tasks.table_tokens`,
:mod:`~longpos.tasks.graph_tokens`, :mod:`~longpos.tasks.order_tokens`).

A sequence is ``[BOS] context questions``: the context is a list of equal-length *records*
(table rows, graph edges, ordered-key records) that each start with a marker and end with
``SEP``, with random-symbol filler between or after them; every question is ``QUERY .. ANS``
(or ``QUERY ..`` with a task's ``answer_marker=False``) followed by a one-token answer.

Token budget of a sequence of ``length`` tokens (``body = length - 1`` after ``BOS``):

- training (``dense=True``): the questions take the second half of the body (as many whole
  questions as fit in ``body - body // 2`` tokens, fewer if the records need more than half),
  the records and the filler the rest;
- eval (``dense=False``): exactly one question at the very end; the records and the filler
  take everything else.

So at the same length an eval context has the records of a training context plus about half
a sequence more filler.

Both tasks build a layout with ``_build(cfg, length, rng, depth, dense)``; this module also
owns the seeding of that call for training (:func:`training_example`) and eval
(:func:`eval_layout`), the eval :class:`~longpos.tasks.base.Sample` (:func:`eval_sample`),
the registration of such a task (:func:`register`) and the ``filler`` option check.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar

from longpos.tasks.base import NeedleSpan, Sample, TaskSpec, derive_seed, register_task
from longpos.tasks.fitting import TooShortError
from longpos.tasks.symbolic import (
    NUM_MARKERS,
    ExampleFn,
    SymbolicVocab,
    check_distractor_noise,
    noise_symbols,
    register_token_example,
    token_level_sample,
)

FILLER_MODES = ("between", "after")


def default_records(length: int, record_len: int, lo: int, hi: int) -> int:
    """Records of ``record_len`` tokens filling about half the body: ``((length - 1) // 2) //
    record_len``, clamped to ``[lo, hi]`` (the default table / graph size)."""
    return min(hi, max(lo, ((length - 1) // 2) // record_len))


def budget(
    task: str,
    length: int,
    num_records: int,
    record_len: int,
    qa_len: int,
    dense: bool,
    max_questions: int | None = None,
) -> tuple[int, int]:
    """``(filler tokens, number of questions)`` for a sequence of exactly ``length`` tokens.

    ``max_questions`` caps the questions of a training (``dense``) sequence; the tokens they
    leave go to the filler. Raises :class:`TooShortError` when the records and one question do
    not fit.
    """
    body = length - 1
    records = num_records * record_len
    n_q = min(body - records, body - body // 2) // qa_len if dense else 1
    if dense and max_questions is not None:
        n_q = min(n_q, max_questions)
    filler = body - records - n_q * qa_len
    if n_q < 1 or filler < 0:
        need = 1 + records + qa_len
        raise TooShortError(
            f"{task}: length {length} cannot hold {num_records} records of {record_len} tokens "
            f"plus one question of {qa_len} tokens (needs at least {need}); use a larger "
            "length or fewer rows / nodes"
        )
    return filler, n_q


def gaps(rng: random.Random, num_records: int, filler: int, mode: str) -> list[int]:
    """Filler sizes before each record and after the last one (``num_records + 1`` ints).

    ``between``: a uniformly random split of ``filler`` over the ``num_records + 1`` gaps;
    ``after``: everything after the last record (between the records and the questions).
    """
    if mode == "after":
        return [0] * num_records + [filler]
    if mode != "between":
        raise ValueError(f"filler must be one of {FILLER_MODES}, got {mode!r}")
    cuts = sorted(rng.randint(0, filler) for _ in range(num_records))
    bounds = [0, *cuts, filler]
    return [b - a for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def render(
    records: list[list[int]],
    gap_sizes: list[int],
    vocab: SymbolicVocab,
    rng: random.Random,
    distractor_noise: float = 0.0,
) -> tuple[list[int], list[int]]:
    """The context ids and the offset of each record in it.

    Filler is i.i.d. random symbols; with ``distractor_noise`` = p > 0 each filler token is,
    with probability p, instead a copy of a random content symbol of the records (a key or a
    value seen out of its record: noise a lookup by symbol alone is fooled by)."""
    pool = [t for rec in records for t in rec if t >= NUM_MARKERS]

    def filler(n: int) -> list[int]:
        return noise_symbols(n, vocab, rng, pool, distractor_noise)

    out: list[int] = []
    starts: list[int] = []
    for rec, g in zip(records, gap_sizes[:-1], strict=True):
        out += filler(g)
        starts.append(len(out))
        out += rec
    out += filler(gap_sizes[-1])
    return out, starts


class Layout(Protocol):
    """What a task's ``_build`` returns: the sequence and its answer mask (and task details)."""

    ids: list[int]
    mask: list[bool]


@dataclass
class RecordsConfig:
    """What the configs of the record tasks share (table, graph and order tokens): the symbolic
    vocabulary, the ``ANS`` marker option and the question's length with or without it, and
    the checks of the shared options. A config sets ``QA_LEN`` (its question's length with the
    marker) and its own ``filler`` field."""

    QA_LEN: ClassVar[int]

    num_symbols: int = 512
    """Content symbols (vocabulary = 16 markers + num_symbols); each task checks its minimum."""
    answer_marker: bool = True
    """End a question with ``ANS`` (the original layout); ``False``: the answer follows the
    question's last key token directly, as a value follows its key in MQAR (the calibrated CPU
    setting, ``benchmarks/results/calibration-cpu/``)."""
    distractor_noise: float = 0.0
    """Share of filler tokens that copy a symbol of the records instead of a random symbol
    (0 in training): the noisy-context evaluation of ``benchmarks/reproduce.py``."""

    @property
    def vocab(self) -> SymbolicVocab:
        return SymbolicVocab(self.num_symbols)

    @property
    def qa_len(self) -> int:
        """The question with its ``ANS`` marker, or one token shorter without it."""
        return self.QA_LEN if self.answer_marker else self.QA_LEN - 1

    def check_records_options(self, task: str) -> None:
        check_filler(task, getattr(self, "filler"))  # noqa: B009 (each task's own field)
        if not isinstance(self.answer_marker, bool):
            raise ValueError(f"{task}: answer_marker must be a bool, got {self.answer_marker!r}")
        check_distractor_noise(self.distractor_noise, task)


def check_filler(task: str, mode: Any) -> None:
    """A config's ``filler`` must be one of :data:`FILLER_MODES`."""
    if mode not in FILLER_MODES:
        raise ValueError(f"{task}: filler must be one of {FILLER_MODES}, got {mode!r}")


L = TypeVar("L", bound=Layout)


def _checked(b: L, length: int) -> L:
    assert len(b.ids) == length, (len(b.ids), length)
    return b


def training_example(
    build: Callable[..., L], task: str, length: int, seed: int, cfg: Any, dense: bool
) -> tuple[list[int], list[bool]]:
    """``(ids, mask)`` of ``build(cfg, length, rng, None, dense)`` for the training seed.

    ``dense=True``: many questions, every answer token marked; ``dense=False``: the eval
    layout (one question at the end).
    """
    b = build(cfg, length, random.Random(derive_seed(task, seed, dense)), None, dense)
    _checked(b, length)
    return b.ids, b.mask


def eval_layout(
    build: Callable[..., L], task: str, length: int, seed: int, cfg: Any, depth: float | None
) -> L:
    """``build(cfg, length, rng, depth, dense=False)`` for the eval seed."""
    rng = random.Random(derive_seed(task + "-eval", seed))
    return _checked(build(cfg, length, rng, depth, False), length)


def eval_sample(
    spec: TaskSpec,
    cfg: Any,
    b: Layout,
    *,
    length: int,
    seed: int,
    qa_len: int,
    depth: float,
    needles: list[NeedleSpan],
    meta: dict[str, Any],
) -> Sample:
    """The eval :class:`Sample` of layout ``b``: prompt ``b.ids[:-1]``, answer the last token.

    Its ``meta`` is the shared keys (family, vocabulary, the context's token span), then ``meta``.
    """
    v = cfg.vocab
    return token_level_sample(
        spec, length=length, seed=seed, prompt=b.ids[:-1], answer_ids=[b.ids[-1:]], vocab=v,
        depth=depth, needles=needles,
        meta={"family": spec.family, "vocab_size": v.vocab_size, "num_symbols": v.num_symbols,
              "context_token_span": [1, length - 1 - (qa_len - 1)], **meta},
    )  # fmt: skip


Describe = Callable[[Any, Any], tuple[float, list[NeedleSpan], dict[str, Any]]]
"""``(cfg, eval layout) -> (depth, needles, task meta)`` of one eval sample."""


def register(
    name: str,
    family: str,
    config_cls: type,
    build: Callable[..., Layout],
    describe: Describe,
    example: ExampleFn,
    *,
    qa_len: int | Callable[[Any], int],
    description: str,
) -> None:
    """Register a token-level-only structured task and its training ``example`` function.

    Its eval sample is ``build``'s eval layout (:func:`eval_layout`), described by ``describe``
    and finished by :func:`eval_sample`; the metric is ``token_accuracy``. ``qa_len`` is the
    question's length in tokens, or a function of the task's config that returns it.
    """

    def token_fn(
        spec: TaskSpec, *, length: int, seed: int, depth: float | None, options: dict[str, Any]
    ) -> Sample:
        cfg = spec.make_config(options)
        b = eval_layout(build, name, length, seed, cfg, depth)
        d, needles, meta = describe(cfg, b)
        q = qa_len(cfg) if callable(qa_len) else qa_len
        return eval_sample(
            spec, cfg, b, length=length, seed=seed, qa_len=q,
            depth=d, needles=needles, meta=meta,
        )  # fmt: skip

    token_fn.__name__ = token_fn.__qualname__ = f"_{name}"
    register_task(
        TaskSpec(
            name=name,
            family=family,
            metric="token_accuracy",
            config_cls=config_cls,
            defaults={},
            text_fn=None,
            token_fn=token_fn,
            description=description,
        )
    )
    register_token_example(name, example)
