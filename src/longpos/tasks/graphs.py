"""Graph reasoning in the style of NLGraph (Wang et al. 2023, "Can Language Models Solve
Graph Problems in Natural Language?", arXiv 2305.10037).

Random graphs are drawn from the sample's seed and written as edge lists; answers are
computed by algorithms: connectivity (BFS), cycle detection (union-find), weighted shortest
path (Dijkstra), topological order (Kahn), maximum flow (Edmonds-Karp). Yes/no answers are
balanced 50/50 by construction. The graph grows with the target length (more nodes, about
the same average degree), so long prompts test reasoning over long structured inputs;
``max_nodes`` caps it at NLGraph's levels (easy 5-10, medium 11-25, hard 26-35 nodes), in
which case the prompt can be shorter than the target. Paths and orders are scored by
checking them against the graph (any optimal path, any valid order), as NLGraph's own
evaluator does. The wording follows NLGraph's prompts; the flow prompt is the library's own.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from longpos.tasks._render import Plan, TextJob, layout, text_task
from longpos.tasks.base import TaskSpec, derive_seed, register_task
from longpos.tasks.fitting import Rendered
from longpos.tasks.metrics import dijkstra

__all__ = [
    "GraphConfig",
    "LEVELS",
    "bfs_connected",
    "has_cycle",
    "shortest_path",
    "topological_order",
    "max_flow",
]

LEVELS = {"easy": (5, 10), "medium": (11, 25), "hard": (26, 35)}


@dataclass
class GraphConfig:
    """Graph task options."""

    min_nodes: int = 5
    max_nodes: int | None = None
    """Cap on the number of nodes (``None``: grow with the target length)."""
    graph_level: str | None = None
    """``easy`` | ``medium`` | ``hard``: sets min/max_nodes to NLGraph's ranges."""
    max_weight: int = 10
    """Edge weights / capacities are uniform in [1, max_weight]."""

    def __post_init__(self) -> None:
        if self.graph_level is not None:
            if self.graph_level not in LEVELS:
                raise ValueError(
                    f"graph_level must be one of {tuple(LEVELS)} or None, got {self.graph_level!r}"
                )
            self.min_nodes, self.max_nodes = LEVELS[self.graph_level]
        if not isinstance(self.min_nodes, int) or not 4 <= self.min_nodes <= 100_000:
            raise ValueError(f"min_nodes must be an int in [4, 100000], got {self.min_nodes!r}")
        if self.max_nodes is not None and not self.min_nodes <= self.max_nodes <= 100_000:
            raise ValueError(
                f"max_nodes must be in [min_nodes={self.min_nodes}, 100000], got {self.max_nodes}"
            )
        if not 1 <= self.max_weight <= 1000:
            raise ValueError(f"max_weight must be in [1, 1000], got {self.max_weight}")


# ---------------------------------------------------------------------------- algorithms


def bfs_connected(n: int, edges: list[tuple[int, int]], s: int, t: int) -> bool:
    """Whether ``s`` reaches ``t`` in an undirected graph (breadth-first search)."""
    adj: list[list[int]] = [[] for _ in range(n)]
    for u, v in edges:
        adj[u].append(v)
        adj[v].append(u)
    seen, todo = {s}, deque([s])
    while todo:
        u = todo.popleft()
        if u == t:
            return True
        for w in adj[u]:
            if w not in seen:
                seen.add(w)
                todo.append(w)
    return False


def has_cycle(n: int, edges: list[tuple[int, int]]) -> bool:
    """Whether an undirected simple graph has a cycle (union-find)."""
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for u, v in edges:
        a, b = find(u), find(v)
        if a == b:
            return True
        parent[a] = b
    return False


def shortest_path(
    n: int, edges: list[tuple[int, int, int]], s: int, t: int
) -> tuple[int, list[int]]:
    """Total weight and one shortest path ``s .. t`` (Dijkstra + predecessor walk)."""
    dist = dijkstra(n, edges, s)
    if dist[t] == float("inf"):
        raise ValueError(f"node {t} is unreachable from {s}")
    w: dict[tuple[int, int], int] = {}
    for u, v, c in edges:
        w[(u, v)] = w[(v, u)] = min(c, w.get((u, v), c))
    path = [t]
    while path[-1] != s:
        x = path[-1]
        prev = min(u for (u, y), c in w.items() if y == x and dist[u] + c == dist[x])
        path.append(prev)
    return int(dist[t]), path[::-1]


def topological_order(n: int, edges: list[tuple[int, int]]) -> list[int] | None:
    """One topological order (Kahn, smallest ready node first), or ``None`` for a cycle."""
    import heapq

    indeg = [0] * n
    out: list[list[int]] = [[] for _ in range(n)]
    for u, v in edges:
        out[u].append(v)
        indeg[v] += 1
    ready = [u for u in range(n) if indeg[u] == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        u = heapq.heappop(ready)
        order.append(u)
        for v in out[u]:
            indeg[v] -= 1
            if indeg[v] == 0:
                heapq.heappush(ready, v)
    return order if len(order) == n else None


def max_flow(n: int, edges: list[tuple[int, int, int]], s: int, t: int) -> int:
    """Maximum s-t flow of a directed graph with capacities (Edmonds-Karp)."""
    cap: dict[tuple[int, int], int] = {}
    adj: list[set[int]] = [set() for _ in range(n)]
    for u, v, c in edges:
        cap[(u, v)] = cap.get((u, v), 0) + c
        cap.setdefault((v, u), 0)
        adj[u].add(v)
        adj[v].add(u)
    flow = 0
    while True:
        prev = {s: s}
        todo = deque([s])
        while todo and t not in prev:
            u = todo.popleft()
            for v in sorted(adj[u]):
                if v not in prev and cap[(u, v)] > 0:
                    prev[v] = u
                    todo.append(v)
        if t not in prev:
            return flow
        aug, v = float("inf"), t
        while v != s:
            aug = min(aug, cap[(prev[v], v)])
            v = prev[v]
        v = t
        while v != s:
            cap[(prev[v], v)] -= int(aug)
            cap[(v, prev[v])] += int(aug)
            v = prev[v]
        flow += int(aug)


# ---------------------------------------------------------------------------- generators


@dataclass
class GraphInstance:
    body: str
    question: str
    answer_prefix: str
    answers: list[str]
    meta: dict[str, Any]


def _random_tree(rng: random.Random, nodes: list[int]) -> list[tuple[int, int]]:
    return [(nodes[i], nodes[rng.randrange(i)]) for i in range(1, len(nodes))]


def _relabel(rng: random.Random, n: int) -> list[int]:
    p = list(range(n))
    rng.shuffle(p)
    return p


def _components(n: int, edges: list[tuple[int, int]]) -> list[int]:
    adj: list[list[int]] = [[] for _ in range(n)]
    for u, v in edges:
        adj[u].append(v)
        adj[v].append(u)
    comp = [-1] * n
    for r in range(n):
        if comp[r] < 0:
            comp[r], todo = r, [r]
            while todo:
                u = todo.pop()
                for w in adj[u]:
                    if comp[w] < 0:
                        comp[w] = r
                        todo.append(w)
    return comp


def _connectivity(rng: random.Random, n: int, cfg: GraphConfig, want: bool) -> GraphInstance:
    for _ in range(100):
        m = max(1, round(0.6 * n))
        pairs: set[tuple[int, int]] = set()
        while len(pairs) < m:
            u, v = rng.sample(range(n), 2)
            pairs.add((min(u, v), max(u, v)))
        edges = sorted(pairs, key=lambda e: rng.random())
        comp = _components(n, edges)
        cands = []
        for _ in range(20 * n):
            s, t = rng.sample(range(n), 2)
            if (comp[s] == comp[t]) == want and (s, t) not in pairs and (t, s) not in pairs:
                cands.append((s, t))
                break
        if cands:
            s, t = rng.choice(cands)
            break
    else:  # pragma: no cover - practically unreachable
        raise RuntimeError("could not draw a balanced connectivity instance")
    body = (
        "Determine if there is a path between two nodes in the graph. Note that (i,j) means that "
        "node i and node j are connected with an undirected edge.\nGraph: "
        + " ".join(f"({u},{v})" for u, v in edges)
    )
    ans = "Yes" if bfs_connected(n, edges, s, t) else "No"
    return GraphInstance(
        body, f"\nQ: Is there a path between node {s} and node {t}?\nA:", " The answer is",
        [ans], {"num_nodes": n, "edges": [list(e) for e in edges], "source": s, "target": t},
    )  # fmt: skip


def _cycle(rng: random.Random, n: int, cfg: GraphConfig, want: bool) -> GraphInstance:
    order = _relabel(rng, n)
    cut = sorted(rng.sample(range(1, n), rng.randint(0, 2)))
    comps = [order[a:b] for a, b in zip([0, *cut], [*cut, n], strict=True)]
    edges = [e for c in comps for e in _random_tree(rng, c)]
    if want:
        present = {frozenset(e) for e in edges}
        big = max(comps, key=len)
        cands = [(u, v) for u in big for v in big if u < v and frozenset((u, v)) not in present]
        edges.append(rng.choice(cands))
    rng.shuffle(edges)
    edges = [(u, v) if rng.random() < 0.5 else (v, u) for u, v in edges]
    ans = "Yes" if has_cycle(n, edges) else "No"
    assert (ans == "Yes") == want
    body = (
        "In an undirected graph, (i,j) means that node i and node j are connected with an "
        f"undirected edge. The nodes are numbered from 0 to {n - 1}, and the edges are: "
        + " ".join(f"({u},{v})" for u, v in edges)
    )
    return GraphInstance(body, "\nQ: Is there a cycle in this graph?\nA:", " The answer is", [ans],
                         {"num_nodes": n, "edges": [list(e) for e in edges]})  # fmt: skip


def _weighted_connected(rng: random.Random, n: int, cfg: GraphConfig) -> list[tuple[int, int, int]]:
    pairs = {frozenset(e) for e in _random_tree(rng, _relabel(rng, n))}
    while len(pairs) < n - 1 + n // 2:
        pairs.add(frozenset(rng.sample(range(n), 2)))
    edges = [tuple(sorted(p)) for p in pairs]
    edges.sort(key=lambda e: rng.random())
    return [(u, v, rng.randint(1, cfg.max_weight)) for u, v in edges]


def _shortest(rng: random.Random, n: int, cfg: GraphConfig, want: bool) -> GraphInstance:
    edges = _weighted_connected(rng, n, cfg)
    s, t = rng.sample(range(n), 2)
    best, path = shortest_path(n, edges, s, t)
    body = (
        "In an undirected graph, the nodes are numbered from 0 to "
        f"{n - 1}, and the edges are:\n"
        + "\n".join(f"an edge between node {u} and node {v} with weight {w}," for u, v, w in edges)
    )
    return GraphInstance(
        body, f"\nQ: Give the shortest path from node {s} to node {t}.\nA:",
        f" The shortest path from node {s} to node {t} is", [",".join(map(str, path))],
        {"num_nodes": n, "edges": [list(e) for e in edges], "source": s, "target": t,
         "optimal_weight": best},
    )  # fmt: skip


def _topo(rng: random.Random, n: int, cfg: GraphConfig, want: bool) -> GraphInstance:
    hidden = _relabel(rng, n)
    pairs: set[tuple[int, int]] = set()
    for i in range(1, n):  # every node has a predecessor -> one connected DAG
        pairs.add((hidden[rng.randrange(i)], hidden[i]))
    while len(pairs) < round(1.5 * n):
        i, j = sorted(rng.sample(range(n), 2))
        pairs.add((hidden[i], hidden[j]))
    edges = sorted(pairs, key=lambda e: rng.random())
    order = topological_order(n, edges)
    assert order is not None
    body = f"In a directed graph with {n} nodes numbered from 0 to {n - 1}:\n" + "\n".join(
        f"node {u} should be visited before node {v}" for u, v in edges
    )
    return GraphInstance(
        body, "\nQ: Can all the nodes be visited? Give the solution.\nA:",
        " Yes. A valid order is", [",".join(map(str, order))],
        {"num_nodes": n, "edges": [list(e) for e in edges]},
    )  # fmt: skip


def _flow(rng: random.Random, n: int, cfg: GraphConfig, want: bool) -> GraphInstance:
    for _ in range(100):
        pairs: set[tuple[int, int]] = set()
        while len(pairs) < 2 * n:
            pairs.add(tuple(rng.sample(range(n), 2)))  # type: ignore[arg-type]
        edges = [
            (u, v, rng.randint(1, cfg.max_weight))
            for u, v in sorted(pairs, key=lambda e: rng.random())
        ]
        s, t = rng.sample(range(n), 2)
        f = max_flow(n, edges, s, t)
        if f > 0:
            break
    body = (
        f"In a directed graph, the nodes are numbered from 0 to {n - 1}, and the edges are:\n"
        + "\n".join(f"an edge from node {u} to node {v} with capacity {c}," for u, v, c in edges)
    )
    return GraphInstance(
        body, f"\nQ: What is the maximum flow from node {s} to node {t}?\nA:",
        f" The maximum flow from node {s} to node {t} is", [str(f)],
        {"num_nodes": n, "edges": [list(e) for e in edges], "source": s, "target": t},
    )  # fmt: skip


GENERATORS: dict[str, tuple[Callable[..., GraphInstance], str, int]] = {
    "graph_connectivity": (_connectivity, "yes_no", 16),
    "graph_cycle": (_cycle, "yes_no", 16),
    "graph_shortest_path": (_shortest, "graph_path", 64),
    "graph_topological_sort": (_topo, "graph_topo", 0),
    "graph_max_flow": (_flow, "graph_number", 16),
}


@text_task
def _graph_text(job: TextJob) -> Plan:
    cfg: GraphConfig = job.cfg
    gen, _, ttg0 = GENERATORS[job.spec.name]
    rng, length, tokens_to_generate = job.rng, job.length, job.tokens_to_generate
    want = rng.random() < 0.5
    base = rng.getrandbits(63)

    def build(extra: int) -> Rendered:
        n = cfg.min_nodes + extra
        g = gen(random.Random(derive_seed(base, n)), n, cfg, want)
        return layout(
            "", lambda b: b.add(g.body), g.question, g.answer_prefix, answers=g.answers, meta=g.meta
        )

    # Topological orders list every node: budget about 3 tokens per node.
    ttg = tokens_to_generate if tokens_to_generate is not None else (ttg0 or max(16, length // 4))
    cap = None if cfg.max_nodes is None else cfg.max_nodes - cfg.min_nodes
    return Plan(build, ttg, hi=max(1, length // 40), max_size=cap if cap is not None else 100_000)


_DESCR = {
    "graph_connectivity": "is there a path between two nodes (BFS)",
    "graph_cycle": "does the undirected graph have a cycle (union-find)",
    "graph_shortest_path": "a minimum-weight path between two nodes (Dijkstra; any optimal path counts)",
    "graph_topological_sort": "an order of all nodes respecting every edge (any valid order counts)",
    "graph_max_flow": "the maximum s-t flow (Edmonds-Karp)",
}
for _name, (_g, _metric, _t) in GENERATORS.items():
    register_task(
        TaskSpec(
            name=_name,
            family="graph",
            metric=_metric,
            config_cls=GraphConfig,
            defaults={},
            text_fn=_graph_text,
            token_fn=None,
            description="NLGraph-like: " + _DESCR[_name],
            ruler_like=True,
        )  # fmt: skip
    )
