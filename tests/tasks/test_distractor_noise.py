"""distractor_noise: filler tokens that copy the records' symbols (the noisy-context axis)."""

from __future__ import annotations

import pytest

from longpos.analysis.placement import record_spans
from longpos.tasks.base import generate_sample
from longpos.tasks.symbolic import NUM_MARKERS

TASKS = {
    "graph_tokens": dict(num_symbols=64, nodes=8, filler="between", answer_marker=False),
    "order_tokens": dict(num_symbols=64, key_symbols=3, filler="between", answer_marker=False),
    "table_tokens": dict(num_symbols=64, rows=4, cols=2, filler="between"),
}


def filler_and_records(sample):
    records, (lo, hi) = record_spans(sample)
    inside = {t for a, b in records for t in range(a, b)}
    ids = sample.prompt_ids
    filler = [ids[t] for t in range(lo, hi) if t not in inside]
    symbols = {ids[t] for t in inside if ids[t] >= NUM_MARKERS}
    return filler, symbols


@pytest.mark.parametrize("task", sorted(TASKS))
def test_share_one_makes_every_filler_token_a_record_symbol(task):
    for seed in range(5):
        s = generate_sample(task, 128, seed=seed, **TASKS[task], distractor_noise=1.0)
        filler, symbols = filler_and_records(s)
        assert filler and all(t in symbols for t in filler)


@pytest.mark.parametrize("task", sorted(TASKS))
def test_default_filler_is_mostly_other_symbols(task):
    hits = total = 0
    for seed in range(10):
        s = generate_sample(task, 128, seed=seed, **TASKS[task])
        filler, symbols = filler_and_records(s)
        hits += sum(t in symbols for t in filler)
        total += len(filler)
    assert hits / total < 0.5  # random symbols of 64: the records hold far fewer than half


def test_default_is_the_unchanged_sample():
    a = generate_sample("graph_tokens", 128, seed=3, **TASKS["graph_tokens"])
    b = generate_sample("graph_tokens", 128, seed=3, **TASKS["graph_tokens"], distractor_noise=0)
    assert a.prompt_ids == b.prompt_ids


@pytest.mark.parametrize("bad", [-0.1, 1.5, "half", True])
def test_bad_share_is_refused(bad):
    with pytest.raises(ValueError, match="distractor_noise"):
        generate_sample("graph_tokens", 64, seed=0, **TASKS["graph_tokens"], distractor_noise=bad)


def test_mqar_distractor_noise_fills_the_non_query_slots_with_pair_symbols():
    opts = dict(num_symbols=64, num_kv_pairs=8)
    clean = generate_sample("mqar", 128, seed=2, **opts)
    assert clean.prompt_ids == generate_sample("mqar", 128, seed=2, **opts,
                                               distractor_noise=0.0).prompt_ids  # fmt: skip
    s = generate_sample("mqar", 128, seed=2, **opts, distractor_noise=1.0)
    pairs = set(s.prompt_ids[1:17])
    assert all(t in pairs for t in s.prompt_ids[17:])  # queries and noise: pair symbols only
    assert sum(t in pairs for t in clean.prompt_ids[17:]) < len(clean.prompt_ids[17:])
    with pytest.raises(ValueError, match="distractor_noise"):
        generate_sample("mqar", 64, seed=0, **opts, distractor_noise=2)
