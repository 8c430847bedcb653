"""Where learned positions put the records and the noise of a token task (protocol: longpos).

For a RePo model (Li et al., arXiv 2512.14391) on the suite's token-level record tasks
(``mqar``, ``table_tokens``, ``graph_tokens``, ``order_tokens``), this says how each learned
head places the context's *records* (the key-value pairs, table rows, edges) and the random
*filler* between them. For one (sample, layer, head) with positions z over the context:

- **span ratio**: (max z - min z) / (number of context tokens - 1), the span of the assigned
  positions against the span of the integer indices (1 = as wide as RoPE's, 0 = collapsed);
- **record order**: each record's mean z, against the order of the records in the text:
  ``collapsed`` when the record means lie within tau = max(0.5, 0.02 * S) of each other (S:
  the head's whole-sequence span, the tolerance of :mod:`longpos.analysis.patterns`);
  otherwise ``ordered`` when the Spearman correlation of record order and mean z is >= 0.5,
  ``reversed`` when it is <= -0.5, ``mixed`` in between;
- **filler offset**: (mean z of filler tokens - mean z of record tokens) / max(S, tau), the
  signed gap between the noise and the records in units of the head's span;
- **filler spread / record spread**: the standard deviation of z over filler tokens and over
  record tokens (are the noise tokens gathered at one position or spread out?).

Records are the spans from a ``KEY`` marker to the next ``SEP`` (table, graph and order
tasks) or the ``num_kv_pairs`` leading key-value pairs (``mqar``); filler is every other
token of the context (BOS and the final question excluded).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from longpos.analysis.collect import as_batch, collect_positions
from longpos.analysis.patterns import tolerance
from longpos.tasks.symbolic import KEY, SEP

__all__ = ["ORDERS", "record_spans", "head_placement", "placement_report"]

ORDERS: tuple[str, ...] = ("ordered", "reversed", "collapsed", "mixed")
ORDER_CORRELATION = 0.5


def record_spans(sample: Any) -> tuple[list[tuple[int, int]], tuple[int, int]]:
    """``(records, context)``: each record's token span (end exclusive) and the context span
    of a token-level eval sample (BOS and the question excluded)."""
    ids = list(sample.prompt_ids)
    meta = getattr(sample, "meta", {}) or {}
    lo, hi = meta.get("context_token_span", (1, len(ids)))
    if sample.task == "mqar":
        n = int(meta["num_kv_pairs"])
        return [(1 + 2 * i, 3 + 2 * i) for i in range(n)], (lo, hi)
    records, start = [], None
    for t in range(lo, hi):
        if ids[t] == KEY:
            start = t
        elif ids[t] == SEP and start is not None:
            records.append((start, t + 1))
            start = None
    if not records:
        raise ValueError(f"{sample.task}: no KEY .. SEP record found in the sample's context")
    return records, (lo, hi)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = float(np.sqrt((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / denom) if denom else 0.0


def head_placement(
    z: np.ndarray, records: list[tuple[int, int]], context: tuple[int, int]
) -> dict[str, Any]:
    """The placement measures of one head's positions ``z`` (T,) (see the module doc)."""
    lo, hi = context
    ctx = np.asarray(z[lo:hi], dtype=np.float64)
    span = float(ctx.max() - ctx.min())
    tau = tolerance(float(np.max(z) - np.min(z)))
    in_record = np.zeros(len(z), dtype=bool)
    for s, e in records:
        in_record[s:e] = True
    filler = ~in_record[lo:hi]
    rec_tokens = ctx[in_record[lo:hi]]
    means = np.array([float(np.mean(z[s:e])) for s, e in records])
    if len(records) < 2 or float(means.max() - means.min()) <= tau:
        order = "collapsed" if len(records) >= 2 else "mixed"
        rho = 0.0
    else:
        rho = _spearman(np.arange(len(records), dtype=np.float64), means)
        order = (
            "ordered"
            if rho >= ORDER_CORRELATION
            else "reversed"
            if rho <= -ORDER_CORRELATION
            else "mixed"
        )
    offset = (
        (float(ctx[filler].mean()) - float(rec_tokens.mean())) / max(span, tau)
        if filler.any()
        else 0.0
    )
    return {
        "span_ratio": span / max(1, hi - lo - 1),
        "order": order,
        "spearman": rho,
        "filler_offset": offset,
        "filler_std": float(ctx[filler].std()) if filler.any() else 0.0,
        "record_std": float(rec_tokens.std()),
    }


def placement_report(model: Any, samples: Iterable[Any]) -> dict[str, Any]:
    """Placement of the records and filler over every learned head and sample.

    Returns ``{"protocol", "n_samples", "heads", "order_shares", "span_ratio",
    "filler_offset", "filler_std", "record_std", "per_layer"}``: means over (sample, layer,
    head), the order labels as shares, and the same per learned layer. Raises ``ValueError``
    when the model has no learned-position layer.
    """
    rows: list[tuple[int, dict[str, Any]]] = []
    n = 0
    for sample in samples:
        n += 1
        records, context = record_spans(sample)
        for layers in collect_positions(model, as_batch(sample.prompt_ids)):
            for layer, lp in enumerate(layers):
                if lp.learned:
                    for z in lp.values.numpy():
                        rows.append((layer, head_placement(z, records, context)))
    if not rows:
        raise ValueError("the model has no learned-position (RePo) layer: nothing to place")

    def summary(entries: list[dict[str, Any]]) -> dict[str, Any]:
        orders = [e["order"] for e in entries]
        out: dict[str, Any] = {
            "heads": len(entries),
            "order_shares": {o: orders.count(o) / len(orders) for o in ORDERS},
        }
        for key in ("span_ratio", "filler_offset", "filler_std", "record_std"):
            out[key] = float(np.mean([e[key] for e in entries]))
        return out

    per_layer: dict[str, Any] = {}
    for layer in sorted({layer for layer, _ in rows}):
        per_layer[str(layer)] = summary([e for lay, e in rows if lay == layer])
    return {
        "protocol": "longpos (analysis/placement.py)",
        "n_samples": n,
        **summary([e for _, e in rows]),
        "per_layer": per_layer,
    }
