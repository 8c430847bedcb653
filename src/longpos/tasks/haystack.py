"""Text haystacks (RULER, arXiv 2404.06654): noise, essay, distractor needles, repetition.

A haystack is an endless, seeded stream of *units* (the places between units are where
needles can go), each unit a list of *pieces* (the granularity of length fitting):

- ``noise``: RULER's block "The grass is green. The sky is blue. ..." (unit = block,
  piece = word), blocks joined by newlines;
- ``essay``: sentences of the offline English corpus (:mod:`longpos.data.corpus`), starting
  at a seeded sentence and wrapping around (unit = sentence, piece = word), joined by spaces;
- ``needle``: distractor needles with fresh keys and values (unit = piece = a needle);
- ``repeat``: one sentence repeated (unit = sentence, piece = word).

Taking ``n`` pieces gives a prefix of the stream, so the prompt grows monotonically with
``n``; the last unit may be cut at a word boundary.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from longpos.data.corpus import corpus_sentences

__all__ = ["NOISE_BLOCK", "HaystackStream", "noise_stream", "essay_stream", "repeat_stream"]

NOISE_BLOCK = (
    "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
)


class HaystackStream:
    """Lazily generated units; ``take(n)`` returns the units covering the first ``n`` pieces."""

    def __init__(
        self,
        next_unit: Callable[[], list[str]],
        joiner: str,
        atomic: bool = False,
        kind: str = "",
    ) -> None:
        self._next_unit = next_unit
        self._units: list[list[str]] = []
        self.joiner = joiner
        self.atomic = atomic
        self.kind = kind

    def _ensure(self, n_pieces: int) -> None:
        total = sum(len(u) for u in self._units)
        while total < n_pieces:
            u = self._next_unit()
            if not u:
                raise RuntimeError("haystack unit generator returned an empty unit")
            self._units.append(u)
            total += len(u)

    def take(self, n_pieces: int) -> list[str]:
        """Unit strings (pieces joined by spaces) covering exactly ``n_pieces`` pieces."""
        self._ensure(n_pieces)
        out: list[str] = []
        left = n_pieces
        for u in self._units:
            if left <= 0:
                break
            if len(u) <= left:
                out.append(" ".join(u))
                left -= len(u)
            else:
                out.append(" ".join(u[:left]))
                left = 0
        return out


def noise_stream() -> HaystackStream:
    words = NOISE_BLOCK.split()
    return HaystackStream(lambda: list(words), "\n", kind="noise")


def repeat_stream(sentence: str) -> HaystackStream:
    words = sentence.split()
    if not words:
        raise ValueError("repeat haystack: the sentence must not be empty")
    return HaystackStream(lambda: list(words), " ", kind="repeat")


def essay_stream(rng: random.Random) -> HaystackStream:
    sents = corpus_sentences()
    pos = [rng.randrange(len(sents))]

    def nxt() -> list[str]:
        s = sents[pos[0] % len(sents)]
        pos[0] += 1
        return s.split()

    return HaystackStream(nxt, " ", kind="essay")


def insert_units(
    units: list[str], needles: list[tuple[float, object]]
) -> list[tuple[str, object | None]]:
    """Place each ``(depth, payload)`` at boundary ``round(depth * len(units))``.

    Returns the interleaved sequence of ``(unit_text, None)`` and ``("", payload)`` items;
    needles at the same boundary keep their given order.
    """
    k = len(units)
    at: dict[int, list[object]] = {}
    for d, payload in needles:
        at.setdefault(min(k, max(0, round(d * k))), []).append(payload)
    out: list[tuple[str, object | None]] = []
    for i in range(k + 1):
        for p in at.get(i, []):
            out.append(("", p))
        if i < k:
            out.append((units[i], None))
    return out
