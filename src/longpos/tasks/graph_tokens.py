"""Token-level graph following, ``graph_tokens``: a directed edge list over node symbols.

Token level only (for tiny from-scratch models; the text graph tasks are in
:mod:`longpos.tasks.graphs`). It imitates NLGraph-style graph reasoning over a linearised
edge list (arXiv 2305.10037), where RePo (arXiv 2512.14391) reports gains on linearised
graphs, in the dense symbolic style of Zoology's MQAR (arXiv 2312.04927); ``hops=2`` is
multi-hop reasoning (the model must look up the edge of the node it found).

Layout::

    BOS  KEY a b SEP  [filler]  KEY c d SEP ... [filler]  QUERY a ANS b  QUERY c ANS d ...

- an edge ``a -> b`` is ``KEY a b SEP`` (4 tokens; the ``KEY`` marker opens a record); the
  edges are listed in random order;
- the graph is a random functional graph on ``nodes`` distinct content symbols: the nodes are
  split into directed cycles of length >= 3, so every node has exactly one successor (the
  answer is unique) and, with 2 hops, the answer differs from the asked node and its
  successor;
- a question is ``QUERY a ANS`` and its answer is ``succ(a)`` (``hops=1``) or
  ``succ(succ(a))`` (``hops=2``), one token; with ``answer_marker=False`` it is ``QUERY a``
  and the answer follows ``a`` directly (``QUERY a b``), as a value follows its key in MQAR;
- filler is i.i.d. random content symbols; ``filler="between"`` scatters it at random between
  the edges, ``filler="after"`` puts it in one block between the edges and the questions.

Nodes: ``nodes=None`` sizes the edge list to about half the sequence (``((length - 1) // 2)
// 4`` nodes, at least 3, at most ``num_symbols``), so longer sequences get larger graphs;
``nodes=n`` fixes the graph, so a longer eval length adds only filler noise.

Calibration (demo scale: 3 layers, width 64, L = 64, 2,000 steps; measured on RoPE,
``benchmarks/results/calibration-cpu/``): with the ``ANS`` marker no model learned the task
(held-out answer accuracy stayed at the 1 / nodes level of copying some edge's target, with 8
nodes and with 4); without it (``answer_marker=False``) RoPE reached 100%. With ``ANS`` the
asked node sits one token behind the position that predicts the answer, so the lookup needs
the asked node's identity moved forward before it can be matched; without it the asked node
predicts its successor itself, the induction-head form MQAR has. ``answer_marker`` defaults to
``True`` so that old samples stay identical; the demo uses ``False``.

Training (:func:`graph_example`, dense supervision): edges and filler take the first half of
the sequence, questions about random nodes (with replacement) the second half; every answer
token is marked. An eval sample has the same graph size at the same length, filler for the
rest, and one question at the very end (metric ``token_accuracy``); ``depth`` picks where the
first edge used sits in the edge list (0 = first edge, 1 = last edge). Its needles are one
``needle`` span per edge used (in hop order), ``key`` on the asked node as the source of the
first edge and ``value`` on the answer as the target of the last edge.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, ClassVar

from longpos.tasks import _token_records as rec
from longpos.tasks.base import NeedleSpan
from longpos.tasks.symbolic import (
    ANS,
    BOS,
    KEY,
    QUERY,
    SEP,
    check_num_symbols,
)

__all__ = ["GraphTokensConfig", "graph_example", "random_cycles"]

NAME = "graph_tokens"
EDGE_LEN = 4
"""``KEY a b SEP``."""
QA_LEN = 4
"""``QUERY a ANS b`` (``answer_marker=False``: ``QUERY a b``, 3 tokens)."""
MIN_CYCLE = 3


@dataclass
class GraphTokensConfig(rec.RecordsConfig):
    """Options of ``graph_tokens``."""

    QA_LEN: ClassVar[int] = QA_LEN

    nodes: int | None = None
    """Nodes (= edges); ``None``: about half the sequence, ``((length - 1) // 2) // 4`` nodes
    (at least 3, at most ``num_symbols``); an int fixes the graph at every length."""
    hops: int = 1
    """Edges to follow per question: 1 (successor) or 2 (successor of the successor)."""
    filler: str = "between"
    """Where the random-symbol filler goes: ``between`` the edges (scattered at random) or
    ``after`` the edge list (one block before the question)."""

    def __post_init__(self) -> None:
        check_num_symbols(self.num_symbols, 8, NAME)
        if self.nodes is not None and not (
            isinstance(self.nodes, int) and MIN_CYCLE <= self.nodes <= self.num_symbols
        ):
            raise ValueError(
                f"graph_tokens: nodes must be None or an int in [3, num_symbols = "
                f"{self.num_symbols}], got {self.nodes!r}"
            )
        if self.hops not in (1, 2) or isinstance(self.hops, bool):
            raise ValueError(f"graph_tokens: hops must be 1 or 2, got {self.hops!r}")
        self.check_records_options(NAME)

    def nodes_for(self, length: int) -> int:
        if self.nodes is not None:
            return self.nodes
        return rec.default_records(length, EDGE_LEN, MIN_CYCLE, self.num_symbols)


def random_cycles(nodes: list[int], rng: random.Random) -> dict[int, int]:
    """Successor map of a random split of ``nodes`` (>= 3) into directed cycles of length >= 3."""
    order = list(nodes)
    rng.shuffle(order)
    succ: dict[int, int] = {}
    i = 0
    while i < len(order):
        left = len(order) - i
        k = left if left < 2 * MIN_CYCLE else rng.randint(MIN_CYCLE, left - MIN_CYCLE)
        cyc = order[i : i + k]
        for j, a in enumerate(cyc):
            succ[a] = cyc[(j + 1) % k]
        i += k
    return succ


@dataclass
class _Built:
    ids: list[int]
    mask: list[bool]
    starts: dict[int, int]
    """Offset in ``ids`` of the edge leaving each node."""
    last: int
    """The node asked by the last question."""
    filler: int
    num_nodes: int


def _build(
    cfg: GraphTokensConfig, length: int, rng: random.Random, depth: float | None, dense: bool
) -> _Built:
    v = cfg.vocab
    n = cfg.nodes_for(length)
    filler, n_q = rec.budget(NAME, length, n, EDGE_LEN, cfg.qa_len, dense)
    nodes = [v.sym(i) for i in rng.sample(range(v.num_symbols), n)]
    succ = random_cycles(nodes, rng)
    sources = list(nodes)
    rng.shuffle(sources)  # edge order
    edges = [[KEY, a, succ[a], SEP] for a in sources]
    ctx, offs = rec.render(
        edges, rec.gaps(rng, n, filler, cfg.filler), v, rng, cfg.distractor_noise
    )
    starts = {a: o + 1 for a, o in zip(sources, offs, strict=True)}
    ids = [BOS, *ctx]
    mask = [False] * len(ids)
    a = sources[0]
    for _ in range(n_q):
        if not dense and depth is not None:
            a = sources[min(n - 1, round(depth * (n - 1)))]
        else:
            a = rng.choice(sources)
        b = a
        for _ in range(cfg.hops):
            b = succ[b]
        if cfg.answer_marker:
            ids += [QUERY, a, ANS, b]
            mask += [False, False, False, True]
        else:
            ids += [QUERY, a, b]
            mask += [False, False, True]
    return _Built(ids, mask, starts, a, filler, n)


def graph_example(
    length: int, seed: int, cfg: GraphTokensConfig, dense: bool = True
) -> tuple[list[int], list[bool]]:
    """One training sequence ``(ids, mask)`` of exactly ``length`` tokens (see
    :func:`longpos.tasks._token_records.training_example`)."""
    return rec.training_example(_build, NAME, length, seed, cfg, dense)


def _describe(cfg: GraphTokensConfig, b: _Built) -> tuple[float, list[NeedleSpan], dict[str, Any]]:
    path = [b.last]
    for _ in range(cfg.hops):
        path.append(b.ids[b.starts[path[-1]] + 2])
    needles = [
        NeedleSpan("needle", "", -1, -1, b.starts[x], b.starts[x] + EDGE_LEN) for x in path[:-1]
    ]
    first, last = b.starts[path[0]], b.starts[path[-2]]
    needles += [
        NeedleSpan("key", "", -1, -1, first + 1, first + 2),
        NeedleSpan("value", "", -1, -1, last + 2, last + 3),
    ]
    ordered = sorted(b.starts.values())
    meta = {"nodes": b.num_nodes, "hops": cfg.hops, "filler_tokens": b.filler, "path": path}
    return ordered.index(first) / max(1, b.num_nodes - 1), needles, meta


rec.register(
    NAME, "graph", GraphTokensConfig, _build, _describe, graph_example,
    qa_len=lambda cfg: cfg.qa_len,
    description="edge list of a functional graph: QUERY a ANS -> 1- or 2-hop successor "
    "(token level, dense)",
)  # fmt: skip
