"""Record / filler placement of learned positions: designed positions give the known labels,
and a real RePo model on real task samples gives a well-formed report."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from longpos.analysis.placement import ORDERS, head_placement, placement_report, record_spans
from longpos.config import ModelConfig
from longpos.model import LongposLM
from longpos.tasks.base import generate_sample
from longpos.tasks.symbolic import KEY, SEP

GRAPH = dict(num_symbols=64, nodes=8, hops=1, filler="between", answer_marker=False)


def graph_sample(seed: int = 0, length: int = 64):
    return generate_sample("graph_tokens", length=length, seed=seed, level="token", **GRAPH)


def test_record_spans_are_the_key_to_sep_runs():
    s = graph_sample()
    records, (lo, hi) = record_spans(s)
    assert len(records) == 8
    for a, b in records:
        assert s.prompt_ids[a] == KEY and s.prompt_ids[b - 1] == SEP
        assert lo <= a < b <= hi
    assert all(r1[1] <= r2[0] for r1, r2 in zip(records, records[1:], strict=False))


def test_mqar_records_are_the_leading_pairs():
    s = generate_sample("mqar", length=64, seed=1, level="token",
                        num_symbols=64, num_kv_pairs=8)  # fmt: skip
    records, _ = record_spans(s)
    assert records[0] == (1, 3) and records[-1] == (15, 17)


def designed(kind: str, records, length: int) -> np.ndarray:
    z = np.zeros(length)
    for r, (a, b) in enumerate(records):
        if kind == "ordered":
            z[a:b] = 10.0 * r
        elif kind == "reversed":
            z[a:b] = -10.0 * r
        elif kind == "collapsed":
            z[a:b] = 3.0
    return z


@pytest.mark.parametrize("kind", ["ordered", "reversed", "collapsed"])
def test_designed_positions_get_their_label(kind):
    s = graph_sample()
    records, context = record_spans(s)
    z = designed(kind, records, len(s.prompt_ids))
    out = head_placement(z, records, context)
    assert out["order"] == kind
    if kind == "collapsed":  # records at 3, filler at 0: filler below the records
        assert out["filler_offset"] < 0 and out["record_std"] == pytest.approx(0.0)


def test_identity_positions_span_the_indices_and_are_ordered():
    s = graph_sample()
    records, context = record_spans(s)
    z = np.arange(len(s.prompt_ids), dtype=np.float64)
    out = head_placement(z, records, context)
    assert out["order"] == "ordered" and out["spearman"] == pytest.approx(1.0)
    assert out["span_ratio"] == pytest.approx(1.0)


def test_report_of_a_real_repo_model():
    cfg = ModelConfig(vocab_size=80, d_model=32, n_layers=3, n_heads=2, max_seq_len=64,
                      plan="repo")  # fmt: skip
    model = LongposLM(cfg, torch.Generator().manual_seed(0))
    report = placement_report(model, [graph_sample(i) for i in range(3)])
    assert report["n_samples"] == 3
    assert report["heads"] == 3 * 2 * 2  # samples x RePo layers (1, 2) x heads
    assert set(report["per_layer"]) == {"1", "2"}
    assert sum(report["order_shares"].values()) == pytest.approx(1.0)
    assert set(report["order_shares"]) == set(ORDERS)
    assert report["span_ratio"] >= 0


def test_rope_model_has_nothing_to_place():
    cfg = ModelConfig(vocab_size=80, d_model=32, n_layers=2, n_heads=2, max_seq_len=64)
    with pytest.raises(ValueError, match="no learned-position"):
        placement_report(LongposLM(cfg), [graph_sample()])
