"""Length fitting and prompt assembly with tracked evidence spans.

RULER (arXiv 2404.06654) fits every prompt to a token budget by binary search over the
haystack size. :func:`fit_to_length` is the generic version used by every task here: it
finds the largest haystack size whose prompt, measured in the evaluated model's tokenizer,
plus the generation budget stays within the target length. :class:`TextBuilder` assembles a
prompt piece by piece and records the character spans of needles, keys and values, which
:func:`finish_text_sample` turns into token spans.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from longpos.data.tokenizers import Tokenizer
from longpos.tasks.base import NeedleSpan, Sample, TaskSpec

__all__ = ["fit_to_length", "TextBuilder", "Rendered", "finish_text_sample", "TooShortError"]

R = TypeVar("R")


class TooShortError(ValueError):
    """The target length cannot hold even the smallest prompt of a task."""


def fit_to_length(
    build: Callable[[int], R],
    measure: Callable[[R], int],
    budget: int,
    *,
    lo: int = 0,
    hi: int | None = None,
    max_size: int = 10_000_000,
    scan: int = 3,
    what: str = "task",
) -> tuple[int, R, int]:
    """Largest ``size >= lo`` with ``measure(build(size)) <= budget``.

    ``hi`` is a first guess of an upper bound; it is doubled until the prompt overflows, then
    the size is found by binary search, and finally up to ``scan`` larger sizes are tried (for
    generators whose length is not perfectly monotone in the size).

    Returns ``(size, built, measured)``. Raises :class:`TooShortError` when ``build(lo)``
    already overflows.
    """
    best = build(lo)
    m = measure(best)
    if m > budget:
        raise TooShortError(
            f"target length too small for {what}: the smallest prompt needs {m} tokens "
            f"(including the generation budget) but only {budget} are allowed; use a larger "
            "length, fewer tokens_to_generate, fewer needles, or the token level"
        )
    best_size, best_m = lo, m
    hi = max(lo + 1, hi if hi is not None else 2 * lo + 16)
    # Exponential search for an overflowing size.
    while True:
        r = build(hi)
        mh = measure(r)
        if mh > budget:
            break
        best_size, best, best_m = hi, r, mh
        if hi >= max_size:
            return best_size, best, best_m
        hi = min(max_size, hi * 2)
    left, right = best_size, hi  # left fits, right overflows
    while right - left > 1:
        mid = (left + right) // 2
        r = build(mid)
        mm = measure(r)
        if mm <= budget:
            left, best, best_m = mid, r, mm
        else:
            right = mid
    best_size = left
    for s in range(left + 1, min(left + scan, max_size) + 1):
        r = build(s)
        mm = measure(r)
        if mm <= budget:
            best_size, best, best_m = s, r, mm
    return best_size, best, best_m


class TextBuilder:
    """Concatenates text pieces and remembers the character spans of tagged pieces."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._n = 0
        self.spans: list[tuple[str, int, int, str]] = []

    def add(self, text: str, role: str | None = None) -> int:
        """Append ``text``; tag its span with ``role`` if given. Returns its start offset."""
        start = self._n
        self._parts.append(text)
        self._n += len(text)
        if role is not None:
            self.spans.append((role, start, self._n, text))
        return start

    def add_tagged(self, pieces: list[tuple[str, str | None]], role: str | None = None) -> None:
        """Append several pieces (each optionally tagged), and tag the whole as ``role``."""
        start = self._n
        for text, r in pieces:
            self.add(text, r)
        if role is not None:
            self.spans.append((role, start, self._n, "".join(t for t, _ in pieces)))

    def __len__(self) -> int:
        return self._n

    def text(self) -> str:
        return "".join(self._parts)


@dataclass
class Rendered:
    """A prompt ready to be measured: text, tagged spans, gold answers."""

    prompt: str
    spans: list[tuple[str, int, int, str]]
    answers: list[str]
    answer_prefix: str = ""
    depth: float | None = None
    context_span: tuple[int, int] = (0, 0)
    """Character span of the haystack/context inside the prompt."""
    meta: dict[str, Any] = field(default_factory=dict)


def token_offset(tokenizer: Tokenizer, text: str, char_pos: int) -> int:
    """Number of tokens of ``text[:char_pos]`` (exact for bytes, approximate for subwords)."""
    return len(tokenizer.encode(text[:char_pos])) if char_pos > 0 else 0


def finish_text_sample(
    spec: TaskSpec,
    r: Rendered,
    tokenizer: Tokenizer,
    *,
    target_length: int,
    tokens_to_generate: int,
    seed: int,
    config: Any,
    prompt_ids: list[int] | None = None,
) -> Sample:
    """Encode the prompt, turn character spans into token spans and build the :class:`Sample`."""
    ids = tokenizer.encode(r.prompt) if prompt_ids is None else prompt_ids
    if len(ids) + tokens_to_generate > target_length:  # fitting guarantees this never happens
        raise AssertionError("internal error: fitted prompt is longer than the target")
    needles = [
        NeedleSpan(
            role=role,
            text=text,
            char_start=cs,
            char_end=ce,
            token_start=token_offset(tokenizer, r.prompt, cs),
            token_end=token_offset(tokenizer, r.prompt, ce),
        )
        for role, cs, ce, text in r.spans
    ]
    cs, ce = r.context_span
    meta = {
        "family": spec.family,
        "ruler_like": spec.ruler_like,
        "config": _config_dict(config),
        "context_char_span": [cs, ce],
        "context_token_span": [
            token_offset(tokenizer, r.prompt, cs),
            token_offset(tokenizer, r.prompt, ce),
        ],
        **r.meta,
    }
    return Sample(
        task=spec.name,
        level="text",
        seed=seed,
        target_length=target_length,
        prompt_ids=ids,
        answers=r.answers,
        metric=spec.metric,
        tokens_to_generate=tokens_to_generate,
        prompt=r.prompt,
        answer_prefix=r.answer_prefix,
        depth=r.depth,
        needles=needles,
        tokenizer=getattr(tokenizer, "name", type(tokenizer).__name__),
        meta=meta,
    )


def _config_dict(config: Any) -> dict[str, Any]:
    import dataclasses

    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        d = {k: v for k, v in dataclasses.asdict(config).items() if _jsonable(v)}
        return json.loads(json.dumps(d))  # tuples -> lists, as after a JSON round trip
    return {}


def _jsonable(v: Any) -> bool:
    return isinstance(v, str | int | float | bool | type(None) | list | tuple | dict)


def fit_text(
    spec: TaskSpec,
    build: Callable[[int], Rendered],
    tokenizer: Tokenizer,
    *,
    target_length: int,
    tokens_to_generate: int,
    seed: int,
    config: Any,
    lo: int = 0,
    hi: int | None = None,
    max_size: int = 10_000_000,
) -> Sample:
    """Fit ``build(size)`` to ``target_length`` tokens and finish the sample."""
    if tokens_to_generate < 1 or tokens_to_generate >= target_length:
        raise ValueError(
            f"tokens_to_generate must be in [1, length - 1] = [1, {target_length - 1}], "
            f"got {tokens_to_generate}"
        )
    cache: dict[int, list[int]] = {}

    def measure(r: Rendered) -> int:
        ids = tokenizer.encode(r.prompt)
        cache[id(r)] = ids
        return len(ids) + tokens_to_generate

    _, r, _ = fit_to_length(
        build,
        measure,
        target_length,
        lo=lo,
        hi=hi if hi is not None else max(lo + 1, target_length // 2),
        max_size=max_size,
        what=f"task {spec.name!r} with tokenizer {getattr(tokenizer, 'name', '?')!r}",
    )
    return finish_text_sample(
        spec,
        r,
        tokenizer,
        target_length=target_length,
        tokens_to_generate=tokens_to_generate,
        seed=seed,
        config=config,
        prompt_ids=cache.get(id(r)),
    )
