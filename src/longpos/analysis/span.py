"""Span of learned positions against context length (protocol: longpos).

RePo (arXiv 2512.14391) reports that the span d_{k,h} = max_i z_{i,h} - min_i z_{i,h} of a
head's positions over a context of k tokens grows with k but stays much smaller than k
(``spec/repo.md`` sections 5.3 and 7.2). :func:`position_spans` measures it per layer and
head for several lengths, as mean and standard deviation over samples.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from longpos.analysis.collect import as_batch, collect_positions

__all__ = ["position_spans"]


def position_spans(model: Any, inputs_by_length: Mapping[int, Iterable[Any]]) -> dict[str, Any]:
    """Spans of every learned-position head, for inputs grouped by context length k.

    ``inputs_by_length``: k -> token id sequences (or task samples) of about k tokens.
    Returns ``{"protocol", "lengths", "spans": {k: {"layer/head": {"mean", "std", "n"}}},
    "per_layer": {k: {layer: mean over heads and samples}}}`` (keys as strings, JSON-ready).
    """
    spans: dict[str, dict[str, dict[str, float]]] = {}
    per_layer: dict[str, dict[str, float]] = {}
    for k, items in sorted(inputs_by_length.items()):
        values: dict[tuple[int, int], list[float]] = {}
        for item in items:
            ids = as_batch(getattr(item, "prompt_ids", item))
            for layers in collect_positions(model, ids):
                for layer, lp in enumerate(layers):
                    if not lp.learned:
                        continue
                    z = lp.values.numpy()  # (H_kv, T)
                    for head, d in enumerate((z.max(axis=1) - z.min(axis=1)).tolist()):
                        values.setdefault((layer, head), []).append(float(d))
        if not values:
            continue
        spans[str(k)] = {
            f"{layer}/{head}": {
                "mean": float(np.mean(v)),
                "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0,
                "n": len(v),
            }
            for (layer, head), v in sorted(values.items())
        }
        layer_vals: dict[int, list[float]] = {}
        for (layer, _), v in values.items():
            layer_vals.setdefault(layer, []).extend(v)
        per_layer[str(k)] = {
            str(layer): float(np.mean(v)) for layer, v in sorted(layer_vals.items())
        }
    if not spans:
        raise ValueError("no learned-position (RePo) layer in the model, or no inputs given")
    return {
        "protocol": "longpos",
        "lengths": [int(k) for k in spans],
        "spans": spans,
        "per_layer": per_layer,
    }
