import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from longpos.analysis.patterns import (
    CLASSES,
    _valid_prefix_lengths,
    analyze_patterns,
    classify_chunk,
    classify_sequence,
    greedy_runs,
    pattern_report,
    segment_kind,
    tolerance,
)
from longpos.config import ModelConfig
from longpos.model import LongposLM

C = 32


def test_tolerance_rule():
    assert tolerance(0.0) == 0.5
    assert tolerance(10.0) == 0.5
    assert tolerance(25.0) == 0.5
    assert tolerance(100.0) == pytest.approx(2.0)


def test_flat_line_is_constant():
    assert classify_sequence(np.full(2 * C, 3.7), C) == ["constant", "constant"]
    # Wiggles within tau = max(0.5, 0.02 S) are still constant.
    rng = np.random.default_rng(0)
    z = 1.0 + rng.uniform(-0.2, 0.2, size=C)
    assert classify_sequence(z, C) == ["constant"]


def test_ramp_is_monotonic_both_directions():
    ramp = np.arange(2 * C, dtype=float)
    assert classify_sequence(ramp, C) == ["monotonic", "monotonic"]
    assert classify_sequence(-0.5 * ramp, C) == ["monotonic", "monotonic"]
    # A ramp with small backward jitter (|d| well below eps) stays monotonic.
    rng = np.random.default_rng(1)
    z = np.arange(C, dtype=float) * 2 + rng.uniform(-0.05, 0.05, size=C)
    assert classify_sequence(z, C) == ["monotonic"]


def test_flat_then_ramp_is_hybrid():
    z = np.concatenate([np.zeros(12), np.arange(1, 21, dtype=float)])
    assert classify_sequence(z, C) == ["hybrid"]
    assert greedy_runs(z, tolerance(z.max() - z.min())) == [(0, 12), (12, 32)]
    # ramp, plateau, ramp, plateau: four runs is still hybrid
    z = np.concatenate([np.arange(8.0), np.full(8, 8.0), np.arange(9.0, 17.0), np.full(8, 17.0)])
    assert classify_sequence(z, C) == ["hybrid"]


def test_noise_is_irregular():
    rng = np.random.default_rng(2)
    z = rng.normal(0.0, 20.0, size=4 * C)  # amplitude far above tau
    assert classify_sequence(z, C) == ["irregular"] * 4


def test_more_than_four_runs_is_irregular():
    tooth = [0.0, 4.0, 8.0, 12.0, 8.0, 4.0]  # up 4 tokens, down 2: > 4 runs per chunk
    z = np.array((tooth * 6)[:C])
    assert greedy_runs(z, tolerance(z.max() - z.min())) is not None  # segmentable ...
    assert len(greedy_runs(z, tolerance(12.0))) > 4  # ... but needs too many runs
    assert classify_sequence(z, C) == ["irregular"]


def test_staircase_with_many_flat_steps_is_not_monotonic():
    # Every other step flat: 50% flat steps > 25%, so not monotonic as a whole.
    z = np.repeat(np.arange(16, dtype=float), 2)
    assert segment_kind(z, tolerance(15.0)) is None
    assert classify_chunk(z, tolerance(15.0)) in ("hybrid", "irregular")


def test_chunks_and_partial_remainder():
    z = np.arange(70, dtype=float)
    assert len(classify_sequence(z, C)) == 2  # 6 trailing tokens dropped
    assert len(classify_sequence(z, C, keep_partial=True)) == 3
    assert classify_sequence([], C) == []
    with pytest.raises(ValueError, match="chunk"):
        classify_sequence(z, 1)


def test_span_uses_the_whole_sequence():
    # A 0.6-high bump is above tau = 0.5 on its own, but the whole head spans 100, so
    # tau = 2 and the chunk is constant.
    z = np.concatenate([np.zeros(C), np.linspace(0, 0.6, C), np.full(C, 100.0)])
    assert classify_sequence(z, C)[1] == "constant"
    assert classify_sequence(np.linspace(0, 0.6, C), C) == ["monotonic"]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(-50, 50, allow_nan=False), min_size=1, max_size=24),
    st.floats(0.05, 5.0),
)
def test_vectorised_prefixes_match_the_direct_rule(values, tau):
    v = np.array(values)
    valid = _valid_prefix_lengths(v, tau)
    for m in range(1, v.size + 1):
        assert valid[m] == (segment_kind(v[:m], tau) is not None)


def test_report_over_arrays_counts_and_shares():
    flat, ramp = np.zeros(2 * C), np.arange(2 * C, dtype=float)
    sample = [np.stack([flat, ramp]), np.stack([ramp, ramp])]  # 2 layers x 2 heads
    rep = pattern_report([sample, sample], chunk=C)
    assert rep.counts == {"constant": 4, "monotonic": 12, "hybrid": 0, "irregular": 0}
    assert rep.shares["monotonic"] == pytest.approx(0.75)
    assert rep.per_layer[0] == {"constant": 4, "monotonic": 4, "hybrid": 0, "irregular": 0}
    d = rep.to_dict()
    assert d["protocol"] == "longpos" and d["chunk"] == C and d["n_chunks"] == 16
    assert set(d["rules"]) >= {"tau", "eps", "constant", "monotonic", "hybrid"}
    md = rep.to_markdown()
    assert "protocol: longpos" in md and "| all | 16 | 25.0 | 75.0 | 0.0 | 0.0 |" in md


def test_analyze_patterns_on_a_tiny_repo_model():
    cfg = ModelConfig(vocab_size=40, d_model=32, n_layers=3, n_heads=4, n_kv_heads=2,
                      max_seq_len=64, plan="repo")  # fmt: skip
    model = LongposLM(cfg, torch.Generator().manual_seed(0)).eval()
    g = torch.Generator().manual_seed(1)
    inputs = [torch.randint(0, 40, (70,), generator=g) for _ in range(2)]
    rep = analyze_patterns(model, inputs, chunk=C)
    repo_layers = [i for i, t in enumerate(cfg.layer_plan()) if t == "repo"]
    assert sorted(rep.per_layer) == repo_layers
    # 2 samples x 2 repo layers x 2 kv heads x 2 full chunks
    assert sum(rep.counts.values()) == 2 * len(repo_layers) * 2 * 2
    assert sum(rep.shares.values()) == pytest.approx(1.0)
    assert set(rep.counts) == set(CLASSES)


def test_analyze_patterns_needs_learned_positions():
    model = LongposLM(ModelConfig(vocab_size=40, d_model=32, n_layers=2, n_heads=4)).eval()
    with pytest.raises(ValueError, match="no learned-position"):
        analyze_patterns(model, [list(range(40))], chunk=C)


def test_position_spans_per_length():
    from longpos.analysis.span import position_spans

    cfg = ModelConfig(vocab_size=40, d_model=32, n_layers=3, n_heads=4, max_seq_len=64, plan="repo")
    model = LongposLM(cfg, torch.Generator().manual_seed(0)).eval()
    g = torch.Generator().manual_seed(3)
    inputs = {k: [torch.randint(0, 40, (k,), generator=g) for _ in range(3)] for k in (16, 48)}
    res = position_spans(model, inputs)
    assert res["protocol"] == "longpos" and res["lengths"] == [16, 48]
    assert set(res["per_layer"]["16"]) == {"1", "2"}
    spans_48 = []
    for ids in inputs[48]:
        with torch.no_grad():
            zz = model(ids[None], return_positions=True).positions[2][0, 3]
        spans_48.append(float(zz.max() - zz.min()))
    cell = res["spans"]["48"]["2/3"]
    assert cell["n"] == 3 and cell["mean"] == pytest.approx(np.mean(spans_48), rel=1e-6)
    assert cell["std"] == pytest.approx(np.std(spans_48, ddof=1), rel=1e-5)
