"""Shared layout of the token-level structured tasks (:mod:`~longpos.tasks.table_tokens`,
:mod:`~longpos.tasks.graph_tokens`).

A sequence is ``[BOS] context questions``: the context is a list of equal-length *records*
(table rows, graph edges) that each start with a marker and end with ``SEP``, with
random-symbol filler between or after them; every question is ``QUERY .. ANS`` followed by a
one-token answer.

Token budget of a sequence of ``length`` tokens (``body = length - 1`` after ``BOS``):

- training (``dense=True``): the questions take the second half of the body (as many whole
  questions as fit in ``body - body // 2`` tokens, fewer if the records need more than half),
  the records and the filler the rest;
- eval (``dense=False``): exactly one question at the very end; the records and the filler
  take everything else.

So at the same length an eval context has the records of a training context plus about half
a sequence more filler.
"""

from __future__ import annotations

import random

from longpos.tasks.fitting import TooShortError
from longpos.tasks.symbolic import SymbolicVocab

FILLER_MODES = ("between", "after")


def budget(
    task: str, length: int, num_records: int, record_len: int, qa_len: int, dense: bool
) -> tuple[int, int]:
    """``(filler tokens, number of questions)`` for a sequence of exactly ``length`` tokens.

    Raises :class:`TooShortError` when the records and one question do not fit.
    """
    body = length - 1
    records = num_records * record_len
    n_q = min(body - records, body - body // 2) // qa_len if dense else 1
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
    records: list[list[int]], gap_sizes: list[int], vocab: SymbolicVocab, rng: random.Random
) -> tuple[list[int], list[int]]:
    """The context ids and the offset of each record in it; filler is i.i.d. random symbols."""
    out: list[int] = []
    starts: list[int] = []
    for rec, g in zip(records, gap_sizes[:-1], strict=True):
        out += [vocab.any_sym(rng) for _ in range(g)]
        starts.append(len(out))
        out += rec
    out += [vocab.any_sym(rng) for _ in range(gap_sizes[-1])]
    return out, starts
