"""Offline English prose: a deterministic substitute for RULER's Paul Graham essays.

RULER (arXiv 2404.06654) fills its ``essay`` haystack with Paul Graham essays, which are not
shipped in any package. The library uses the reference prose bundled with every CPython
installation instead: the ``pydoc_data.topics`` module (79 topics of the language reference,
about 465K characters in Python 3.11). It is present on any clean ``python:3.11`` machine, needs
no download and no dependency. The text is cleaned deterministically: reST headings, grammar
productions and indented code blocks are dropped, paragraphs are re-flowed into single lines,
and markup quotes are kept as they are. Its register is technical, so tasks built on it are
labelled "RULER-like".

The exact text depends on the Python minor version (topics are edited between releases);
:func:`corpus_fingerprint` records which text a result was computed on.
"""

from __future__ import annotations

import functools
import hashlib
import re

__all__ = ["english_corpus", "corpus_sentences", "split_sentences", "corpus_fingerprint"]

_SENT_RE = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")


def split_sentences(text: str) -> list[str]:
    """Split on ``.``, ``!`` or ``?`` followed by whitespace and a capital (no nltk needed)."""
    return [s.strip() for s in _SENT_RE.split(text) if s.strip()]


def _clean_topic(raw: str) -> list[str]:
    paragraphs: list[str] = []
    for block in re.split(r"\n\s*\n", raw):
        lines = block.split("\n")
        if not lines or lines[0].startswith((" ", "\t")):
            continue  # code samples, grammar productions, quoted blocks
        if any(re.fullmatch(r"[*=\-~^\"#+]{3,}", ln.strip()) for ln in lines):
            continue  # headings
        text = " ".join(ln.strip() for ln in lines)
        text = re.sub(r"\s+", " ", text).strip()
        if len(text.split()) < 8 or not text[0].isupper() or text[-1] not in ".!?":
            continue  # fragments, list items, footnote marks
        if "::=" in text or text.startswith(("Note:", "See also:", "Changed in", "New in")):
            continue
        paragraphs.append(text)
    return paragraphs


@functools.cache
def english_corpus() -> str:
    """The whole cleaned corpus: paragraphs (one per line), in sorted topic order."""
    from pydoc_data.topics import topics

    paragraphs: list[str] = []
    for key in sorted(topics):
        paragraphs.extend(_clean_topic(topics[key]))
    return "\n".join(paragraphs)


@functools.cache
def corpus_sentences() -> tuple[str, ...]:
    """The corpus split into sentences (about 4K sentences / 60K words on Python 3.11)."""
    out: list[str] = []
    for para in english_corpus().split("\n"):
        out.extend(split_sentences(para))
    return tuple(out)


def corpus_fingerprint() -> str:
    """Short SHA-256 of the corpus text, to record which text a haystack came from."""
    return hashlib.sha256(english_corpus().encode("utf-8")).hexdigest()[:16]
