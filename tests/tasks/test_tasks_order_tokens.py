"""``order_tokens``: every ordered pair of K key symbols is a record, the swapped key is always
present with another value, and the answers are recomputed by parsing the sequences back."""

import random

import pytest

from longpos.tasks import TooShortError, generate_sample, make_token_batch, make_token_example
from longpos.tasks.symbolic import ANS, BOS, KEY, NUM_MARKERS, QUERY, SEP
from longpos.train.data import TaskSource

N = 64


def _records(ids: list[int]) -> list[list[int]]:
    """The ``KEY a b v SEP`` records before the first question (filler: content symbols only)."""
    ctx = ids[: ids.index(QUERY)] if QUERY in ids else list(ids)
    out, i = [], 0
    while i < len(ctx):
        if ctx[i] == KEY:
            assert ctx[i + 4] == SEP
            out.append(ctx[i + 1 : i + 4])
            i += 5
        else:
            assert ctx[i] >= NUM_MARKERS or (i == 0 and ctx[i] == BOS), (i, ctx[i])
            i += 1
    return out


def _table(ids: list[int], k: int) -> dict[tuple[int, int], int]:
    recs = _records(ids)
    assert len(recs) == k * (k - 1)
    table = {(a, b): v for a, b, v in recs}
    assert len(table) == len(recs), "ordered keys are distinct"
    syms = {a for a, _ in table}
    assert len(syms) == k and {b for _, b in table} == syms
    assert set(table) == {(a, b) for a in syms for b in syms if a != b}, "all ordered pairs"
    assert all(NUM_MARKERS <= a < NUM_MARKERS + N // 2 for a in syms), "keys from the key half"
    values = list(table.values())
    assert len(set(values)) == len(values), "values are distinct"
    assert all(v >= NUM_MARKERS + N // 2 for v in values), "values from the value half"
    for (a, b), v in table.items():
        assert table[(b, a)] != v, "the swapped key has another value"
    return table


@pytest.mark.parametrize("k", [2, 3, 4])
@pytest.mark.parametrize("filler", ["between", "after"])
def test_training_answers_are_the_ordered_records(k, filler):
    for seed in range(5):
        ids, mask = make_token_example(
            "order_tokens", 96, seed, num_symbols=N, key_symbols=k, filler=filler
        )
        assert len(ids) == len(mask) == 96 and ids[0] == BOS
        table = _table(ids, k)
        n_answers = 0
        for t, m in enumerate(mask):
            if m:
                assert ids[t - 4] == QUERY and ids[t - 1] == ANS
                a, b = ids[t - 3], ids[t - 2]
                assert ids[t] == table[(a, b)]
                assert ids[t] != table[(b, a)]
                n_answers += 1
        assert n_answers >= 1 and n_answers == ids.count(QUERY)


def test_eval_sample_answer_needles_and_swapped_distractor():
    for length in (64, 128, 256):
        for depth in (None, 0.0, 0.5, 1.0):
            s = generate_sample("order_tokens", length, seed=3, depth=depth, num_symbols=N)
            p = s.prompt_ids
            assert s.level == "token" and s.metric == "token_accuracy"
            assert s.length == length == len(p) + 1 and s.tokens_to_generate == 1
            assert p[0] == BOS and p[-4] == QUERY and p[-1] == ANS and p.count(QUERY) == 1
            table = _table(p, 3)
            a, b = p[-3], p[-2]
            assert s.answer_ids == [[table[(a, b)]]]
            assert s.meta["swapped_value"] == table[(b, a)] != table[(a, b)]
            n = {x.role: x for x in s.needles}
            assert p[n["key"].token_start : n["key"].token_end] == [a, b]
            assert p[n["value"].token_start : n["value"].token_end] == s.answer_ids[0]
            assert p[n["distractor"].token_start : n["distractor"].token_end] == [
                KEY, b, a, table[(b, a)], SEP,
            ]  # fmt: skip
            keys = [(r[0], r[1]) for r in _records(p)]
            if depth is not None:
                assert keys.index((a, b)) == round(depth * (len(keys) - 1))
            assert max(p) < s.meta["vocab_size"] == NUM_MARKERS + N


def test_order_is_necessary_set_and_single_symbol_matches_are_ambiguous():
    """Each unordered key and each single key symbol (in either slot) fits several records."""
    ids, _ = make_token_example("order_tokens", 64, 0, num_symbols=N)
    table = _table(ids, 3)
    for a, b in table:
        assert sum({x, y} == {a, b} for x, y in table) == 2
        assert sum(x == a for x, _ in table) == 2 and sum(y == b for _, y in table) == 2


def test_longer_eval_adds_filler_not_records():
    a = generate_sample("order_tokens", 64, seed=1, num_symbols=N)
    b = generate_sample("order_tokens", 512, seed=1, num_symbols=N)
    assert len(_records(a.prompt_ids)) == len(_records(b.prompt_ids)) == 6
    assert b.meta["filler_tokens"] == a.meta["filler_tokens"] + 512 - 64


def test_determinism_and_seed_sensitivity():
    s = generate_sample("order_tokens", 256, seed=7, num_symbols=N)
    assert s.to_dict() == generate_sample("order_tokens", 256, seed=7, num_symbols=N).to_dict()
    assert s.prompt_ids != generate_sample("order_tokens", 256, seed=8, num_symbols=N).prompt_ids
    x = make_token_example("order_tokens", 64, 5, num_symbols=N)
    assert x == make_token_example("order_tokens", 64, 5, num_symbols=N)
    ids, mask = make_token_batch("order_tokens", 96, 4, random.Random(0), num_symbols=N)
    assert ids.shape == mask.shape == (4, 96)
    again, _ = make_token_batch("order_tokens", 96, 4, random.Random(0), num_symbols=N)
    assert (ids == again).all()


def test_mixture_source():
    src = TaskSource(["mqar", "order_tokens"], {"num_symbols": N, "num_kv_pairs": 4}, seed=0)
    assert src.vocab_size == NUM_MARKERS + N
    ids, mask = src.batch(0, 8, 64)
    assert ids.shape == (8, 64) and mask is not None and mask.any()


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"key_symbols": 1}, "key_symbols"),
        ({"key_symbols": 9}, "key_symbols"),
        ({"key_symbols": True}, "key_symbols"),
        ({"filler": "middle"}, "filler"),
        ({"num_symbols": 8}, "num_symbols"),
        ({"num_symbols": 16, "key_symbols": 5}, "distinct values"),
    ],
)
def test_bad_options(options, match):
    with pytest.raises(ValueError, match=match):
        generate_sample("order_tokens", 128, seed=0, **{"num_symbols": N, **options})


def test_too_short():
    with pytest.raises(TooShortError, match="order_tokens"):
        generate_sample("order_tokens", 32, seed=0, num_symbols=N)


def test_max_questions_leaves_more_filler():
    full, _ = make_token_example("order_tokens", 64, 4, num_symbols=N, answer_marker=False)
    ids, mask = make_token_example(
        "order_tokens", 64, 4, num_symbols=N, answer_marker=False, max_questions=2
    )
    assert len(ids) == 64 and sum(mask) == ids.count(QUERY) == 2 < full.count(QUERY)
    table = _table(ids, 3)
    for t, m in enumerate(mask):
        if m:
            assert ids[t - 3] == QUERY and ids[t] == table[(ids[t - 2], ids[t - 1])]
    with pytest.raises(ValueError, match="max_questions"):
        generate_sample("order_tokens", 64, seed=0, num_symbols=N, max_questions=0)
