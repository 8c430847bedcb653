"""Metrics: RULER string matching, SQuAD-normalised match, graph answers, token matching.

- ``string_match_all`` (RULER niah / vt / cwe / fwe, arXiv 2404.06654): per sample the
  fraction of gold strings found (case-insensitive substring) in the prediction.
- ``string_match_part`` (RULER qa): 1 if *any* gold string is found. This is NVIDIA's
  definition; lm-evaluation-harness scores the fraction instead.
- ``first_number`` (passkey, arXiv 2305.16300): the first integer generated equals the key.
- ``normalized_em`` (HybridQA, arXiv 2004.07347): a gold answer, SQuAD-normalised (lowercase,
  no punctuation, no articles, collapsed spaces), occurs in the normalised prediction.
- ``yes_no``, ``graph_number``, ``graph_path``, ``graph_topo`` (NLGraph, arXiv 2305.10037):
  answers are parsed and checked against the graph (any optimal path / any valid order).
- ``token_match_all`` / ``token_accuracy``: token-level analogues over symbolic ids.

Predictions are post-processed as RULER does: strip, control characters to newlines, strip.
Scores are in [0, 1]; reports multiply by 100.
"""

from __future__ import annotations

import heapq
import re
import string
from collections.abc import Callable, Sequence
from typing import Any

from longpos.tasks.base import Sample

__all__ = [
    "postprocess",
    "string_match_all",
    "string_match_part",
    "first_number",
    "normalize_answer",
    "normalized_em",
    "parse_yes_no",
    "token_match_all",
    "token_accuracy",
    "METRICS",
    "score_sample",
]

_CTRL = re.compile(r"[\x00-\x1f]")


def postprocess(pred: str) -> str:
    """RULER's post-processing: strip, control characters -> newline, strip."""
    return _CTRL.sub("\n", pred.strip()).strip()


def string_match_all(pred: str, refs: Sequence[str]) -> float:
    """Fraction of ``refs`` contained (case-insensitive) in ``pred``."""
    if not refs:
        raise ValueError("string_match_all needs at least one reference")
    p = postprocess(pred).lower()
    return sum(r.lower() in p for r in refs) / len(refs)


def string_match_part(pred: str, refs: Sequence[str]) -> float:
    """1.0 if any of ``refs`` is contained (case-insensitive) in ``pred``, else 0.0."""
    p = postprocess(pred).lower()
    return float(any(r.lower() in p for r in refs))


_INT = re.compile(r"-?\d+")


def first_number(pred: str, refs: Sequence[str]) -> float:
    """1.0 if the first integer in ``pred`` equals the (single) reference number."""
    m = _INT.search(postprocess(pred))
    return float(m is not None and int(m.group()) == int(refs[0]))


def normalize_answer(s: str) -> str:
    """SQuAD normalisation: lowercase, drop punctuation and articles, collapse whitespace."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def normalized_em(pred: str, refs: Sequence[str]) -> float:
    """1.0 if a normalised reference occurs as a whole-word substring of the normalised pred."""
    p = f" {normalize_answer(postprocess(pred))} "
    return float(any(f" {normalize_answer(r)} " in p for r in refs if normalize_answer(r)))


def parse_yes_no(pred: str) -> bool | None:
    """Yes/no from free text: 'there is no cycle' -> False, 'yes' -> True, unknown -> None."""
    p = normalize_answer(postprocess(pred))
    if re.search(r"\bthere is no\b|\bno path\b|\bnot connected\b|\bno cycle\b", p):
        return False
    if re.search(r"\bthere is (a )?(cycle|path)\b", p):
        return True
    m = re.search(r"\b(yes|no)\b", p)
    return None if m is None else m.group(1) == "yes"


def yes_no(pred: str, refs: Sequence[str]) -> float:
    got = parse_yes_no(pred)
    return float(got is not None and got == (refs[0].strip().lower() == "yes"))


def graph_number(pred: str, refs: Sequence[str]) -> float:
    """The number after 'is' (else the last integer) equals the reference."""
    p = postprocess(pred)
    m = re.search(r"\bis\s*:?\s*(-?\d+)", p)
    nums = [m.group(1)] if m else _INT.findall(p)[-1:]
    return float(bool(nums) and int(nums[0]) == int(refs[0]))


def _parse_node_list(pred: str) -> list[int]:
    p = postprocess(pred).split("\n")[0]
    m = re.search(r"\bis\s*:?\s*(.*)$", p)
    body = m.group(1) if m else p
    return [int(x) for x in re.findall(r"\d+", body)]


def graph_path(pred: str, sample: Sample) -> float:
    """1.0 if the parsed path runs s -> t over existing edges with the optimal total weight."""
    meta = sample.meta
    s, t, best = meta["source"], meta["target"], meta["optimal_weight"]
    w: dict[tuple[int, int], int] = {}
    for u, v, c in meta["edges"]:
        w[(u, v)] = w[(v, u)] = c
    path = _parse_node_list(pred)
    # Drop a leading "from node s to node t" mention if the model repeated it.
    for i in range(len(path)):
        cand = path[i:]
        if len(cand) >= 1 and cand[0] == s and cand[-1] == t and _path_weight(cand, w) == best:
            return 1.0
    return 0.0


def _path_weight(path: list[int], w: dict[tuple[int, int], int]) -> int | None:
    total = 0
    for a, b in zip(path, path[1:], strict=False):
        if (a, b) not in w:
            return None
        total += w[(a, b)]
    return total


def graph_topo(pred: str, sample: Sample) -> float:
    """1.0 if the parsed order is a permutation of the nodes respecting every edge."""
    n, edges = sample.meta["num_nodes"], sample.meta["edges"]
    order = _parse_node_list(pred)
    if sorted(order) != list(range(n)):
        return 0.0
    pos = {v: i for i, v in enumerate(order)}
    return float(all(pos[u] < pos[v] for u, v in edges))


def token_match_all(pred: Sequence[int], answers: Sequence[Sequence[int]]) -> float:
    """Fraction of gold id sequences that occur contiguously in ``pred``."""
    p = list(pred)

    def contains(a: Sequence[int]) -> bool:
        a = list(a)
        return any(p[i : i + len(a)] == a for i in range(len(p) - len(a) + 1))

    return sum(contains(a) for a in answers) / len(answers)


def token_accuracy(pred: Sequence[int], answers: Sequence[Sequence[int]]) -> float:
    """Position-wise accuracy of ``pred`` against the concatenated gold ids."""
    gold = [i for a in answers for i in a]
    return sum(int(i < len(pred) and pred[i] == g) for i, g in enumerate(gold)) / len(gold)


_TEXT: dict[str, Callable[[str, Sequence[str]], float]] = {
    "string_match_all": string_match_all,
    "string_match_part": string_match_part,
    "first_number": first_number,
    "normalized_em": normalized_em,
    "yes_no": yes_no,
    "graph_number": graph_number,
}
_SAMPLE: dict[str, Callable[[str, Sample], float]] = {
    "graph_path": graph_path,
    "graph_topo": graph_topo,
}
_TOKEN: dict[str, Callable[[Sequence[int], Sequence[Sequence[int]]], float]] = {
    "token_match_all": token_match_all,
    "token_accuracy": token_accuracy,
}
METRICS: tuple[str, ...] = tuple(sorted({*_TEXT, *_SAMPLE, *_TOKEN}))


def score_sample(sample: Sample, prediction: Any) -> float:
    """Score a prediction (text, or ids at token level) for ``sample`` in [0, 1]."""
    if sample.level == "token":
        assert sample.answer_ids is not None
        # Token-level tasks all compare ids; answers with an order use token_accuracy.
        fn = _TOKEN.get(sample.metric, token_match_all)
        return fn(list(prediction), sample.answer_ids)
    if sample.metric in _SAMPLE:
        return _SAMPLE[sample.metric](str(prediction), sample)
    if sample.metric not in _TEXT:
        raise ValueError(f"unknown metric {sample.metric!r}; known: {METRICS}")
    return _TEXT[sample.metric](str(prediction), sample.answers)


def dijkstra(n: int, edges: Sequence[Sequence[int]], s: int) -> list[float]:
    """Shortest distances from ``s`` in an undirected weighted graph (used by graph tasks)."""
    adj: list[list[tuple[int, int]]] = [[] for _ in range(n)]
    for u, v, c in edges:
        adj[u].append((v, c))
        adj[v].append((u, c))
    dist = [float("inf")] * n
    dist[s] = 0
    heap = [(0, s)]
    while heap:
        d, u = heapq.heappop(heap)
        if d > dist[u]:
            continue
        for v, c in adj[u]:
            if d + c < dist[v]:
                dist[v] = d + c
                heapq.heappush(heap, (d + c, v))
    return dist
