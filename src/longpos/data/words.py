"""Offline word lists: the lists bundled in the ``wonderwords`` package (MIT).

RULER (arXiv 2404.06654) draws its ``words`` keys from adjective-noun pairs of wonderwords
and its common-words vocabulary from wonderwords nouns + adjectives + verbs. The bundled
text files are read through ``importlib.resources`` (never through private functions), so
the key space is fixed by the installed wonderwords version (3.x: 6,782 nouns, 912
adjectives, 1,042 verbs in the files).
"""

from __future__ import annotations

import functools
import random
from importlib import resources

__all__ = ["nouns", "adjectives", "verbs", "common_vocabulary", "random_adjective_noun"]


@functools.cache
def _read(name: str) -> tuple[str, ...]:
    try:
        text = resources.files("wonderwords.assets").joinpath(name).read_text(encoding="utf-8")
    except ModuleNotFoundError as e:  # pragma: no cover - wonderwords is a core dependency
        raise ImportError(
            "word lists come from the 'wonderwords' package: pip install wonderwords"
        ) from e
    words = {w.strip().lower() for w in text.splitlines()}
    return tuple(sorted(w for w in words if w and w.isascii() and " " not in w))


def nouns() -> tuple[str, ...]:
    """Sorted, deduplicated lower-case nouns."""
    return _read("nounlist.txt")


def adjectives() -> tuple[str, ...]:
    """Sorted, deduplicated lower-case adjectives."""
    return _read("adjectivelist.txt")


def verbs() -> tuple[str, ...]:
    """Sorted, deduplicated lower-case verbs."""
    return _read("verblist.txt")


@functools.cache
def common_vocabulary() -> tuple[str, ...]:
    """Nouns + adjectives + verbs, deduplicated and sorted (RULER's CWE vocabulary)."""
    return tuple(sorted(set(nouns()) | set(adjectives()) | set(verbs())))


def random_adjective_noun(rng: random.Random) -> str:
    """One ``adjective-noun`` pair, uniform over the sorted adjective x noun product."""
    adj, nn = adjectives(), nouns()
    i = rng.randrange(len(adj) * len(nn))
    return f"{adj[i // len(nn)]}-{nn[i % len(nn)]}"
