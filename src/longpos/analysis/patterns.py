"""Position-pattern classification of learned RePo positions (protocol: longpos).

RePo (Li et al., arXiv 2512.14391) reports that the learned positions of a head, read in
chunks, are mostly *constant*, *monotonic* or a *hybrid* of the two (about 22% / 4% / 70%
in the paper, whose protocol is unpublished). The rules below are the library's own
(``spec/repo.md`` section 7.1); reports say "protocol: longpos" and are not comparable in
absolute value with the paper's numbers.

For one (sample, layer, head), z (length T) is cut into consecutive chunks of ``c`` tokens
(default 32; a trailing remainder shorter than ``c`` is ignored unless ``keep_partial``).
With

- S = max z - min z over the **whole** sequence of that head (its span),
- tolerance tau = max(0.5, 0.02 * S),

a segment v_0..v_{n-1} (a chunk, or a run inside one) with steps d_t = v_{t+1} - v_t and
range r = max v - min v is

- **constant** if r <= tau;
- **monotonic** if r > tau, every d_t >= -eps (or every d_t <= eps), and at most 25% of the
  n - 1 steps are flat (|d_t| <= eps), where eps = 0.25 * r / (n - 1) is a quarter of the mean
  step needed to cover the range.

A chunk is labelled

- ``constant`` / ``monotonic`` by the rules above applied to the whole chunk;
- ``hybrid`` otherwise, if a greedy left-to-right segmentation into runs that are each
  constant or monotonic (same tau; each run's eps from its own range and length) needs at
  most 4 runs. Greedy: from the current start, take the **longest** valid run; every run
  has at least 3 tokens, except the last, which may be shorter (1-2 leftover tokens always
  form a valid run);
- ``irregular`` otherwise.

Shares are reported over all chunks, layers and heads (and per layer), with c and the tau
and eps rules recorded in the output.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from longpos.analysis.collect import as_batch, collect_positions

__all__ = [
    "CLASSES",
    "DEFAULT_CHUNK",
    "MAX_RUNS",
    "MIN_RUN",
    "PatternReport",
    "tolerance",
    "segment_kind",
    "classify_chunk",
    "classify_sequence",
    "pattern_report",
    "analyze_patterns",
]

CLASSES: tuple[str, ...] = ("constant", "monotonic", "hybrid", "irregular")
DEFAULT_CHUNK = 32
MIN_RUN = 3
MAX_RUNS = 4
FLAT_SHARE = 0.25
TAU_MIN = 0.5
TAU_SPAN_SHARE = 0.02

RULES = {
    "chunk": "consecutive chunks of c tokens; a trailing remainder < c is dropped",
    "tau": "tau = max(0.5, 0.02 * S), S = max z - min z over the whole sequence of the head",
    "eps": "eps = 0.25 * r / (n - 1), r = max - min of the segment, n = its length",
    "constant": "r <= tau",
    "monotonic": "r > tau; all steps >= -eps (or all <= eps); at most 25% of steps |d| <= eps",
    "hybrid": "greedy longest runs (>= 3 tokens, last may be shorter), each constant or "
    "monotonic with the same tau, at most 4 runs",
    "irregular": "none of the above",
}


def tolerance(span: float) -> float:
    """tau = max(0.5, 0.02 * S) for a head whose whole-sequence span is S."""
    return max(TAU_MIN, TAU_SPAN_SHARE * float(span))


def segment_kind(values: Sequence[float] | np.ndarray, tau: float) -> str | None:
    """``"constant"``, ``"monotonic"`` or ``None`` for one segment (rules in the module doc)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise ValueError("cannot classify an empty segment")
    r = float(v.max() - v.min())
    if r <= tau:
        return "constant"
    steps = np.diff(v)
    eps = 0.25 * r / (v.size - 1)
    if not (bool(np.all(steps >= -eps)) or bool(np.all(steps <= eps))):
        return None
    flat = int(np.count_nonzero(np.abs(steps) <= eps))
    return "monotonic" if flat <= FLAT_SHARE * steps.size else None


def _valid_prefix_lengths(v: np.ndarray, tau: float) -> np.ndarray:
    """valid[m] is True when ``v[:m]`` (m >= 1) is constant or monotonic; vectorised over m."""
    n = v.size
    m = np.arange(1, n + 1)
    r = np.maximum.accumulate(v) - np.minimum.accumulate(v)  # (n,) range of v[:m]
    valid = r <= tau  # constant
    if n >= 2:
        steps = np.diff(v)  # (n - 1,)
        eps = np.zeros(n)
        eps[1:] = 0.25 * r[1:] / (m[1:] - 1)
        min_step = np.concatenate([[np.inf], np.minimum.accumulate(steps)])  # over v[:m]
        max_step = np.concatenate([[-np.inf], np.maximum.accumulate(steps)])
        direction = (min_step >= -eps) | (max_step <= eps)
        # flat[m] = #{t < m - 1 : |d_t| <= eps(m)}: an (n, n - 1) comparison, masked by t
        flat_mat = np.abs(steps)[None, :] <= eps[:, None]  # (n, n - 1)
        flat_mat &= np.arange(n - 1)[None, :] < (m - 1)[:, None]
        flat = flat_mat.sum(axis=1)
        mono = (r > tau) & direction & (flat <= FLAT_SHARE * (m - 1))
        mono[0] = False
        valid |= mono
    return np.concatenate([[False], valid])  # index by length m


def greedy_runs(values: Sequence[float] | np.ndarray, tau: float, max_runs: int | None = None):
    """Greedy left-to-right segmentation into the longest constant/monotonic runs.

    Returns the list of ``(start, end)`` runs (end exclusive), or ``None`` when some run
    would be shorter than 3 tokens without reaching the end, or when more than
    ``max_runs`` runs would be needed (the search stops early then).
    """
    v = np.asarray(values, dtype=np.float64)
    runs: list[tuple[int, int]] = []
    start = 0
    while start < v.size:
        if max_runs is not None and len(runs) >= max_runs:
            return None
        rest = v[start:]
        if rest.size < MIN_RUN:  # the last run may be shorter; 1-2 tokens are always valid
            runs.append((start, v.size))
            break
        valid = _valid_prefix_lengths(rest, tau)
        lengths = np.flatnonzero(valid[MIN_RUN:]) + MIN_RUN
        if lengths.size == 0:
            return None
        end = start + int(lengths[-1])
        runs.append((start, end))
        start = end
    return runs


def classify_chunk(values: Sequence[float] | np.ndarray, tau: float) -> str:
    """One of :data:`CLASSES` for a chunk, given the head's tolerance ``tau``."""
    kind = segment_kind(values, tau)
    if kind is not None:
        return kind
    return "hybrid" if greedy_runs(values, tau, MAX_RUNS) is not None else "irregular"


def classify_sequence(
    z: Sequence[float] | np.ndarray | torch.Tensor,
    chunk: int = DEFAULT_CHUNK,
    keep_partial: bool = False,
) -> list[str]:
    """Labels of the consecutive chunks of one head's positions ``z`` (T,)."""
    if chunk < 2:
        raise ValueError(f"chunk must be >= 2 tokens, got {chunk}")
    v = np.asarray(torch.as_tensor(z, dtype=torch.float64).cpu(), dtype=np.float64).ravel()
    if v.size == 0:
        return []
    tau = tolerance(float(v.max() - v.min()))
    labels = []
    for s in range(0, v.size, chunk):
        part = v[s : s + chunk]
        if part.size < chunk and not (keep_partial and part.size >= 2):
            continue
        labels.append(classify_chunk(part, tau))
    return labels


def _shares(counts: Counter) -> dict[str, float]:
    total = sum(counts[c] for c in CLASSES)
    return {c: (counts[c] / total if total else 0.0) for c in CLASSES}


@dataclass
class PatternReport:
    """Chunk-class counts and shares over samples, learned layers and heads."""

    chunk: int
    counts: dict[str, int]
    per_layer: dict[int, dict[str, int]]
    per_head: dict[tuple[int, int], dict[str, int]] = field(default_factory=dict)
    n_samples: int = 0
    techniques: list[str] = field(default_factory=list)

    @property
    def shares(self) -> dict[str, float]:
        return _shares(Counter(self.counts))

    def layer_shares(self) -> dict[int, dict[str, float]]:
        return {layer: _shares(Counter(c)) for layer, c in sorted(self.per_layer.items())}

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (layer keys as strings; head keys as "layer/head")."""
        return {
            "protocol": "longpos",
            "chunk": self.chunk,
            "rules": RULES,
            "n_samples": self.n_samples,
            "n_chunks": sum(self.counts.values()),
            "counts": dict(self.counts),
            "shares": self.shares,
            "per_layer": {
                str(layer): {"counts": dict(self.per_layer[layer]), "shares": shares}
                for layer, shares in self.layer_shares().items()
            },
            "per_head": {f"{lh[0]}/{lh[1]}": dict(c) for lh, c in sorted(self.per_head.items())},
            "techniques": list(self.techniques),
        }

    def to_markdown(self) -> str:
        """A Markdown section: overall and per-layer shares (percent) with the rules."""
        from longpos.viz.markdown import markdown_table

        def pct(x: float) -> str:
            return f"{100 * x:.1f}"

        rows = [
            [str(layer), str(sum(self.per_layer[layer].values()))] + [pct(s[c]) for c in CLASSES]
            for layer, s in self.layer_shares().items()
        ]
        overall = self.shares
        rows.append(["all", str(sum(self.counts.values()))] + [pct(overall[c]) for c in CLASSES])
        head = ["layer", "chunks"] + [f"{c} %" for c in CLASSES]
        lines = [
            "### Position patterns (protocol: longpos)",
            "",
            f"Chunks of c = {self.chunk} tokens over {self.n_samples} sample(s), every head of "
            "every learned-position layer. The paper reports about 22% constant, 4% monotonic, "
            "70% hybrid with an unpublished protocol; these numbers are not comparable in "
            "absolute value.",
            "",
            markdown_table(head, rows, align="l" + "r" * (len(head) - 1)),
            "",
            "Rules: " + "; ".join(f"{k}: {v}" for k, v in RULES.items()) + ".",
            "",
        ]
        return "\n".join(lines)


def pattern_report(
    samples: Iterable[Sequence[Any]],
    chunk: int = DEFAULT_CHUNK,
    layers: Sequence[int] | None = None,
    keep_partial: bool = False,
) -> PatternReport:
    """Classify precomputed positions.

    ``samples``: per sample, a per-layer list of either :class:`LayerPositions` or arrays of
    shape (H, T) (a (T,) array is one head). With ``layers=None`` only learned layers
    (``LayerPositions.learned``) are used, or every layer when plain arrays are given.
    """
    counts: Counter = Counter()
    per_layer: dict[int, Counter] = {}
    per_head: dict[tuple[int, int], Counter] = {}
    n = 0
    techniques: list[str] = []
    for sample in samples:
        n += 1
        for layer, entry in enumerate(sample):
            learned = getattr(entry, "learned", True)
            if (layers is None and not learned) or (layers is not None and layer not in layers):
                continue
            values = getattr(entry, "values", entry)
            arr = np.asarray(torch.as_tensor(values, dtype=torch.float64), dtype=np.float64)
            if arr.ndim == 1:
                arr = arr[None]  # (1, T)
            if not techniques and hasattr(entry, "technique"):
                techniques = [getattr(e, "technique", "?") for e in sample]
            for head, z in enumerate(arr):
                labels = Counter(classify_sequence(z, chunk, keep_partial))
                counts.update(labels)
                per_layer.setdefault(layer, Counter()).update(labels)
                per_head.setdefault((layer, head), Counter()).update(labels)
    return PatternReport(
        chunk=chunk,
        counts={c: counts[c] for c in CLASSES},
        per_layer={k: {c: v[c] for c in CLASSES} for k, v in per_layer.items()},
        per_head={k: {c: v[c] for c in CLASSES} for k, v in per_head.items()},
        n_samples=n,
        techniques=techniques,
    )


def analyze_patterns(
    model: Any,
    inputs: Iterable[Any],
    chunk: int = DEFAULT_CHUNK,
    layers: Sequence[int] | None = None,
) -> PatternReport:
    """Run ``model`` on each input (token id sequences, or objects with ``prompt_ids`` such as
    task samples) and classify every learned-position head (see the module doc)."""

    def positions() -> Iterable[list[Any]]:
        for item in inputs:
            ids = getattr(item, "prompt_ids", item)
            yield from collect_positions(model, as_batch(ids))

    report = pattern_report(positions(), chunk=chunk, layers=layers)
    if sum(report.counts.values()) == 0:
        raise ValueError(
            "no chunk was classified: the model has no learned-position (RePo) layer, or every "
            f"input is shorter than chunk={chunk} tokens"
        )
    return report
