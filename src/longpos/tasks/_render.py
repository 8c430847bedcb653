"""The skeleton shared by every text-level generator, and the usual prompt layout.

A text generator registered as ``TaskSpec.text_fn`` is called as ``text_fn(spec, *, length,
tokenizer, seed, depth, tokens_to_generate, options)`` (see :func:`longpos.tasks.base.
generate_sample`). Every task does the same around its own part: build the config from the
options, open the sample's private generator (:func:`~longpos.tasks.base.new_rng`), choose the
generation budget, then fit ``build(size)`` to the target length with
:func:`~longpos.tasks.fitting.fit_text`. This module owns that skeleton:

- :func:`text_task` turns a *plan* function ``plan(job) -> Plan`` into such a ``text_fn``;
  ``job`` (:class:`TextJob`) carries the request, the config and the generator, and the
  returned :class:`Plan` says how to build prompts of a given size and where to search;
- :func:`layout` assembles the common prompt shape ``head context tail prefix`` with a
  :class:`~longpos.tasks.fitting.TextBuilder` and records the context's character span.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from longpos.data.tokenizers import Tokenizer
from longpos.tasks.base import Sample, TaskSpec, TextGen, new_rng
from longpos.tasks.fitting import Rendered, TextBuilder, TooShortError, fit_text

__all__ = ["TextJob", "Plan", "text_task", "layout"]


@dataclass
class TextJob:
    """One text-level request, as a plan function sees it."""

    spec: TaskSpec
    cfg: Any
    """``spec.make_config(options)``."""
    length: int
    tokenizer: Tokenizer
    seed: int
    depth: float | None
    tokens_to_generate: int | None
    """As requested (``None``: the task's default, see :meth:`budget`)."""
    rng: random.Random
    """``new_rng(spec.name, seed)``: the sample's private generator."""

    def budget(self, default: int) -> int:
        """The generation budget: the requested one as an int, else ``default``."""
        return default if self.tokens_to_generate is None else int(self.tokens_to_generate)

    def fresh_rng(self) -> random.Random:
        """A new generator in the state :attr:`rng` started in."""
        return new_rng(self.spec.name, self.seed)


@dataclass
class Plan:
    """How to build a task's prompts: ``build(size)`` and the search range of ``size``."""

    build: Callable[[int], Rendered]
    tokens_to_generate: int
    hi: int
    """First guess of an upper bound on the size (see :func:`~longpos.tasks.fitting.fit_to_length`)."""
    max_size: int = 10_000_000
    fallback: Callable[[], Plan] | None = None
    """A second plan, tried when this one cannot fit the target length (:class:`TooShortError`)."""


def _fit(job: TextJob, plan: Plan) -> Sample:
    return fit_text(
        job.spec,
        plan.build,
        job.tokenizer,
        target_length=job.length,
        tokens_to_generate=plan.tokens_to_generate,
        seed=job.seed,
        config=job.cfg,
        hi=plan.hi,
        max_size=plan.max_size,
    )


def text_task(plan: Callable[[TextJob], Plan]) -> TextGen:
    """The ``TaskSpec.text_fn`` that runs ``plan`` and fits its prompts to the target length."""

    def text_fn(
        spec: TaskSpec,
        *,
        length: int,
        tokenizer: Tokenizer,
        seed: int,
        depth: float | None,
        tokens_to_generate: int | None,
        options: dict[str, Any],
    ) -> Sample:
        cfg = spec.make_config(options)
        rng = new_rng(spec.name, seed)
        job = TextJob(spec, cfg, length, tokenizer, seed, depth, tokens_to_generate, rng)
        p = plan(job)
        try:
            return _fit(job, p)
        except TooShortError:
            if p.fallback is None:
                raise
            return _fit(job, p.fallback())

    text_fn.__name__ = text_fn.__qualname__ = plan.__name__
    text_fn.__module__ = plan.__module__
    text_fn.__doc__ = plan.__doc__
    return text_fn


def layout(
    head: str,
    context: Callable[[TextBuilder], object],
    tail: str,
    prefix: str,
    *,
    answers: list[str],
    answer_prefix: str | None = None,
    depth: float | None = None,
    meta: dict[str, Any],
) -> Rendered:
    """The prompt ``head``, the context ``context(builder)`` adds, ``tail``, then ``prefix``.

    ``context_span`` is the context's character span, ``spans`` the tagged pieces;
    ``answer_prefix`` defaults to ``prefix``.
    """
    b = TextBuilder()
    b.add(head)
    c0 = len(b)
    context(b)
    c1 = len(b)
    b.add(tail)
    b.add(prefix)
    return Rendered(
        prompt=b.text(),
        spans=b.spans,
        answers=answers,
        answer_prefix=prefix if answer_prefix is None else answer_prefix,
        depth=depth,
        context_span=(c0, c1),
        meta=meta,
    )
