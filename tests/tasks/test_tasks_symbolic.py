import random

import pytest
import torch

from longpos.tasks import generate_sample, make_token_batch, make_token_example, vocab_for
from longpos.tasks.symbolic import ANS, BOS, KEY, QUERY, SEP, VAL, SymbolicVocab


def _lookup(ids, key):
    """Rule-based recall: the VAL ids following ``KEY key`` in ``ids`` (first occurrence)."""
    k = len(key)
    for i in range(len(ids) - k - 1):
        if ids[i] == KEY and ids[i + 1 : i + 1 + k] == key and ids[i + 1 + k] == VAL:
            j = i + 2 + k
            out = []
            while ids[j] != SEP:
                out.append(ids[j])
                j += 1
            return out
    raise AssertionError("key not found")


def test_vocab():
    v = SymbolicVocab(32)
    assert v.vocab_size == 48 and v.sym(0) == 16
    assert v.decode([BOS, KEY, 16, VAL, 47]) == "BOS KEY s0 VAL s31"
    with pytest.raises(ValueError, match="num_symbols"):
        SymbolicVocab(2)
    assert vocab_for("niah_single_1", num_symbols=100).vocab_size == 116


@pytest.mark.parametrize("task", ["niah_single_1", "niah_multikey_2", "niah_multivalue", "passkey"])
def test_eval_sample_answer_by_rule(task):
    s = generate_sample(task, 400, seed=4)
    p = s.prompt_ids
    assert p[0] == BOS and p[-1] == ANS
    q = len(p) - 1 - p[::-1].index(QUERY)
    key = p[q + 1 : -1]
    ctx = p[:q]
    if task == "passkey":  # needle KEY s0 VAL p.. SEP, asked as QUERY s0 ANS
        assert key == [16]
    starts = [i for i in range(len(ctx)) if ctx[i] == KEY and ctx[i + 1 : i + 1 + len(key)] == key]
    vals = [_lookup(ctx[i:], key) for i in starts]
    assert sorted(map(tuple, vals)) == sorted(map(tuple, s.answer_ids))
    assert len(vals) == (4 if task == "niah_multivalue" else 1)
    assert (
        s.needles[1].role == "key" and p[s.needles[1].token_start : s.needles[1].token_end] == key
    )


@pytest.mark.parametrize("depth", [0.0, 0.3, 0.7, 1.0])
def test_token_depth(depth):
    s = generate_sample("niah_single_2", 1024, seed=1, depth=depth)
    t0, t1 = s.meta["context_token_span"]
    n = next(n for n in s.needles if n.role == "needle")
    assert abs((n.token_start - t0) / (t1 - t0) - depth) < 0.03


@pytest.mark.parametrize(
    "task", ["niah_multikey_1", "niah_single_3", "vt", "mqar", "cwe", "fwe", "qa_1"]
)
def test_make_token_batch(task):
    ids, mask = make_token_batch(task, 256, 3, random.Random(0), num_symbols=256)
    assert ids.shape == (3, 256) and mask.shape == (3, 256)
    assert ids.dtype == torch.long and mask.dtype == torch.bool
    assert mask.any(dim=1).all() and not mask[:, 0].any()
    assert int(ids.max()) < 16 + 256 and int(ids.min()) >= 0
    again, mask2 = make_token_batch(task, 256, 3, random.Random(0), num_symbols=256)
    assert torch.equal(ids, again) and torch.equal(mask, mask2)
    other, _ = make_token_batch(task, 256, 3, random.Random(1), num_symbols=256)
    assert not torch.equal(ids, other)


def test_dense_niah_training_targets_are_correct():
    ids, mask = make_token_example("niah_multikey_1", 512, seed=3, num_keys=12)
    assert len(ids) == 512 and sum(mask) == 12 * 3  # one 3-symbol value per key
    # every masked block is the value of the key in the preceding QUERY block
    i = 0
    n_q = 0
    while i < len(ids):
        if ids[i] == QUERY:
            j = ids.index(ANS, i)
            key = ids[i + 1 : j]
            val = _lookup(ids[:i], key)
            assert ids[j + 1 : j + 1 + len(val)] == val
            assert all(mask[j + 1 : j + 1 + len(val)]) and not mask[j]
            n_q += 1
            i = j + 1
        else:
            i += 1
    assert n_q == 12


def test_mqar_layout():
    n = 16
    ids, mask = make_token_example("mqar", 256, seed=0, num_kv_pairs=n)
    assert len(ids) == 256 and sum(mask) == n
    kv = {ids[1 + 2 * i]: ids[2 + 2 * i] for i in range(n)}
    for t, m in enumerate(mask):
        if m:
            assert kv[ids[t - 1]] == ids[t]
    with pytest.raises(ValueError, match="num_kv_pairs"):
        make_token_example("mqar", 64, seed=0, num_kv_pairs=32)
    s = generate_sample("mqar", 256, seed=2, num_kv_pairs=n)
    assert s.length == 256 and s.metric == "token_accuracy"
    kv = {s.prompt_ids[1 + 2 * i]: s.prompt_ids[2 + 2 * i] for i in range(n)}
    assert s.answer_ids == [[kv[s.prompt_ids[-1]]]]


def test_token_cwe_fwe_answers_by_count():
    from collections import Counter

    s = generate_sample("cwe", 1024, seed=2)
    c = Counter(t for t in s.prompt_ids if t >= 16)
    top = {t for t, _ in c.most_common(10)}
    assert top == {a[0] for a in s.answer_ids}
    assert min(c[a[0]] for a in s.answer_ids) > max(v for t, v in c.items() if t not in top)
    s = generate_sample("fwe", 1024, seed=2)
    c = Counter(t for t in s.prompt_ids if t >= 16)
    assert {t for t, _ in c.most_common(3)} == {a[0] for a in s.answer_ids}


def test_token_options_validation():
    with pytest.raises(ValueError, match="noise must be one of"):
        generate_sample("niah_single_1", 256, noise="loud")
    with pytest.raises(ValueError, match="key_len"):
        generate_sample("niah_single_1", 256, key_len=0)
    from longpos.tasks import TooShortError

    with pytest.raises(TooShortError, match="too small"):
        generate_sample("niah_multivalue", 16)
