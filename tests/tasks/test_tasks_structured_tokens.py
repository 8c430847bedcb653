"""Token-level structured tasks (table_tokens, graph_tokens): answers recomputed by parsing the
generated sequences back, exact lengths, needle spans, masks, mixtures and errors."""

import random

import pytest
import torch

from longpos.tasks import (
    TooShortError,
    generate_sample,
    make_token_batch,
    make_token_example,
    vocab_for,
)
from longpos.tasks.symbolic import ANS, BOS, KEY, NUM_MARKERS, QUERY, SEP
from longpos.train.data import TaskSource

N = 64  # num_symbols used by most tests


def _context(ids: list[int]) -> list[int]:
    """Everything before the first question."""
    return ids[: ids.index(QUERY)] if QUERY in ids else list(ids)


def _records(ids: list[int]) -> list[list[int]]:
    """The ``KEY .. SEP`` records of the context (filler holds content symbols only)."""
    ctx = _context(ids)
    out, i = [], 0
    while i < len(ctx):
        if ctx[i] == KEY:
            j = ctx.index(SEP, i)
            out.append(ctx[i + 1 : j])
            i = j + 1
        else:
            assert ctx[i] >= NUM_MARKERS or (i == 0 and ctx[i] == BOS), (i, ctx[i])
            i += 1
    return out


def _parse_table(ids: list[int], cols: int) -> dict[tuple[int, int], int]:
    cells: dict[tuple[int, int], int] = {}
    keys = []
    for rec in _records(ids):
        assert len(rec) == 1 + 2 * cols
        key, pairs = rec[0], rec[1:]
        keys.append(key)
        assert [pairs[2 * j] for j in range(cols)] == [NUM_MARKERS + j for j in range(cols)]
        for j in range(cols):
            cells[(key, pairs[2 * j])] = pairs[2 * j + 1]
    assert len(set(keys)) == len(keys), "row keys are distinct"
    return cells


def _parse_graph(ids: list[int]) -> dict[int, int]:
    succ: dict[int, int] = {}
    for rec in _records(ids):
        assert len(rec) == 2
        a, b = rec
        assert a not in succ, "out-degree 1"
        succ[a] = b
    assert sorted(succ.values()) == sorted(succ), "every node has in-degree 1 (cycles)"
    return succ


def _questions(ids: list[int], mask: list[bool], q_len: int) -> list[tuple[list[int], int]]:
    """(question tokens between QUERY and ANS, answer) for every masked token."""
    out = []
    for t, m in enumerate(mask):
        if m:
            assert ids[t - 1] == ANS and ids[t - q_len + 1] == QUERY
            out.append((ids[t - q_len + 2 : t - 1], ids[t]))
    return out


# ---------------------------------------------------------------------------- table_tokens


@pytest.mark.parametrize("cols", [1, 2, 5])
@pytest.mark.parametrize("filler", ["between", "after"])
@pytest.mark.parametrize("rows", [None, 2])
def test_table_training_answers_are_the_cells(cols, filler, rows):
    for length, seed in [(64, 0), (128, 1), (257, 2)]:
        ids, mask = make_token_example(
            "table_tokens", length, seed, num_symbols=N, cols=cols, filler=filler, rows=rows
        )
        assert len(ids) == len(mask) == length and ids[0] == BOS
        cells = _parse_table(ids, cols)
        n_rows = len(cells) // cols
        assert n_rows == (rows or min(N // 2 - 8, ((length - 1) // 2) // (3 + 2 * cols)))
        # symbol ranges: keys in [8, N/2), values in [N/2, N), columns s0..s{C-1}
        for (k, c), v in cells.items():
            assert NUM_MARKERS + 8 <= k < NUM_MARKERS + N // 2 <= v < NUM_MARKERS + N
            assert NUM_MARKERS <= c < NUM_MARKERS + cols
        qs = _questions(ids, mask, 5)
        assert len(qs) >= 1
        for (key, col), ans in qs:
            assert cells[(key, col)] == ans
        # the mask marks exactly the tokens right after ANS, and the questions fill the end
        assert [t for t, m in enumerate(mask) if m] == [
            t + 1 for t, i in enumerate(ids) if i == ANS
        ]
        assert mask[-1] and ids[-5] == QUERY
        # the table part is at least half the sequence
        assert ids.index(QUERY) >= (length - 1) // 2


def test_table_eval_sample_length_needles_and_depth():
    for length in (64, 200, 1000):
        for depth in (None, 0.0, 0.5, 1.0):
            s = generate_sample("table_tokens", length, seed=3, depth=depth, num_symbols=N)
            p = s.prompt_ids
            assert s.level == "token" and s.metric == "token_accuracy"
            assert s.length == length == len(p) + 1 and s.tokens_to_generate == 1
            assert p[0] == BOS and p[-4] == QUERY and p[-1] == ANS
            assert p.count(QUERY) == 1
            cells = _parse_table(p, 2)
            key, col = p[-3], p[-2]
            assert s.answer_ids == [[cells[(key, col)]]]
            assert s.answers == [f"s{cells[(key, col)] - NUM_MARKERS}"]
            n = {x.role: x for x in s.needles}
            assert p[n["key"].token_start : n["key"].token_end] == [key]
            assert p[n["value"].token_start : n["value"].token_end] == s.answer_ids[0]
            assert p[n["value"].token_start - 1] == col
            row = p[n["needle"].token_start : n["needle"].token_end]
            assert row[0] == KEY and row[-1] == SEP and row[1] == key
            keys = [r[0] for r in _records(p)]
            if depth is not None:
                assert keys.index(key) == round(depth * (len(keys) - 1))
                assert s.depth == pytest.approx(keys.index(key) / (len(keys) - 1))
            assert vocab_for("table_tokens", num_symbols=N).vocab_size == s.meta["vocab_size"]
            assert max(p) < s.meta["vocab_size"]


def test_table_fixed_rows_longer_eval_adds_filler_only():
    a = generate_sample("table_tokens", 64, seed=1, num_symbols=N, rows=4)
    b = generate_sample("table_tokens", 512, seed=1, num_symbols=N, rows=4)
    assert len(_records(a.prompt_ids)) == len(_records(b.prompt_ids)) == 4
    assert b.meta["filler_tokens"] == a.meta["filler_tokens"] + 512 - 64
    # rows=None grows the table with the length
    c = generate_sample("table_tokens", 512, seed=1, num_symbols=256)
    assert len(_records(c.prompt_ids)) == 255 // 7
    # ... up to the number of distinct row keys, num_symbols // 2 - 8
    c = generate_sample("table_tokens", 512, seed=1, num_symbols=N)
    assert len(_records(c.prompt_ids)) == N // 2 - 8
    # filler="after": all filler between the table and the question
    d = generate_sample("table_tokens", 256, seed=1, num_symbols=N, rows=4, filler="after")
    assert d.prompt_ids[1 : 1 + 4 * 7 : 7] == [KEY] * 4
    assert all(t >= NUM_MARKERS for t in d.prompt_ids[1 + 4 * 7 : -4])


# ---------------------------------------------------------------------------- graph_tokens


@pytest.mark.parametrize("hops", [1, 2])
@pytest.mark.parametrize("filler", ["between", "after"])
@pytest.mark.parametrize("nodes", [None, 3, 7])
def test_graph_training_answers_are_successors(hops, filler, nodes):
    for length, seed in [(64, 0), (128, 5), (301, 9)]:
        ids, mask = make_token_example(
            "graph_tokens", length, seed, num_symbols=N, hops=hops, filler=filler, nodes=nodes
        )
        assert len(ids) == len(mask) == length
        succ = _parse_graph(ids)
        assert len(succ) == (nodes or ((length - 1) // 2) // 4)
        qs = _questions(ids, mask, 4)
        assert qs
        for (a,), ans in qs:
            want = succ[a] if hops == 1 else succ[succ[a]]
            assert ans == want
            if hops == 2:
                assert ans not in (a, succ[a])  # cycles of length >= 3
        assert [t for t, m in enumerate(mask) if m] == [
            t + 1 for t, i in enumerate(ids) if i == ANS
        ]


@pytest.mark.parametrize("hops", [1, 2])
def test_graph_eval_sample_length_and_needles(hops):
    for length in (64, 300, 1024):
        for depth in (None, 0.0, 1.0):
            s = generate_sample(
                "graph_tokens", length, seed=4, depth=depth, num_symbols=N, hops=hops
            )
            p = s.prompt_ids
            assert s.length == length == len(p) + 1 and s.metric == "token_accuracy"
            assert p[-3] == QUERY and p[-1] == ANS and p.count(QUERY) == 1
            succ = _parse_graph(p)
            a = p[-2]
            path = [a]
            for _ in range(hops):
                path.append(succ[path[-1]])
            assert s.answer_ids == [[path[-1]]]
            edges = [x for x in s.needles if x.role == "needle"]
            assert len(edges) == hops
            for x, (u, w) in zip(edges, zip(path[:-1], path[1:], strict=True), strict=True):
                assert p[x.token_start : x.token_end] == [KEY, u, w, SEP]
            n = {x.role: x for x in s.needles if x.role != "needle"}
            assert p[n["key"].token_start : n["key"].token_end] == [a]
            assert p[n["key"].token_start + 1] == succ[a]  # the source of the first edge
            assert p[n["value"].token_start : n["value"].token_end] == [path[-1]]
            sources = [r[0] for r in _records(p)]
            if depth is not None:
                assert sources.index(a) == round(depth * (len(sources) - 1))
                assert s.depth == depth


# ---------------------------------------------------------------------------- shared


@pytest.mark.parametrize("task", ["table_tokens", "graph_tokens"])
def test_determinism_and_seed_sensitivity(task):
    a = make_token_example(task, 128, 7, num_symbols=N)
    assert a == make_token_example(task, 128, 7, num_symbols=N)
    assert a != make_token_example(task, 128, 8, num_symbols=N)
    s = generate_sample(task, 256, seed=7, num_symbols=N)
    assert s.to_dict() == generate_sample(task, 256, seed=7, num_symbols=N).to_dict()
    assert s.prompt_ids != generate_sample(task, 256, seed=8, num_symbols=N).prompt_ids
    # not dense: the eval layout, one question, one target
    ids, mask = make_token_example(task, 128, 7, dense=False, num_symbols=N)
    assert len(ids) == 128 and sum(mask) == 1 and mask[-1] and ids[-2] == ANS


@pytest.mark.parametrize("task", ["table_tokens", "graph_tokens"])
def test_make_token_batch(task):
    ids, mask = make_token_batch(task, 96, 4, random.Random(0), num_symbols=N)
    assert ids.shape == mask.shape == (4, 96) and not mask[:, 0].any()
    assert int(ids.max()) < NUM_MARKERS + N
    again, _ = make_token_batch(task, 96, 4, random.Random(0), num_symbols=N)
    assert torch.equal(ids, again)


def test_mixture_with_mqar_shares_options_and_vocab():
    opts = {"num_symbols": 64, "num_kv_pairs": 8}
    src = TaskSource(["mqar", "table_tokens", "graph_tokens"], opts, seed=0)
    assert src.vocab_size == 16 + 64
    assert src.task_options["table_tokens"] == {"num_symbols": 64}
    assert src.task_options["mqar"] == opts
    ids, mask = src.batch(0, 12, 64)
    assert ids.shape == mask.shape == (12, 64)
    assert mask.any(dim=1).all() and int(ids.max()) < src.vocab_size
    with pytest.raises(ValueError, match=r"unknown option.*'num_rows'"):
        TaskSource(["mqar", "table_tokens"], {"num_rows": 3}, seed=0)


@pytest.mark.parametrize(
    "task, options, match",
    [
        ("table_tokens", {"cols": 9}, r"cols must be an int in \[1, 8\], got 9"),
        ("table_tokens", {"rows": 0}, r"rows must be None or an int in \[1, .*24\], got 0"),
        ("table_tokens", {"rows": 25}, r"rows .* got 25"),
        ("table_tokens", {"num_symbols": 16}, r"num_symbols must be an int in \[32"),
        ("table_tokens", {"filler": "noise"}, r"filler must be one of .*'noise'"),
        ("table_tokens", {"hops": 2}, r"unknown option.*hops"),
        ("graph_tokens", {"hops": 3}, r"hops must be 1 or 2, got 3"),
        ("graph_tokens", {"nodes": 2}, r"nodes must be None or an int in \[3, .*64\], got 2"),
        ("graph_tokens", {"nodes": 65}, r"nodes .* got 65"),
        ("graph_tokens", {"filler": 1}, r"filler must be one of"),
    ],
)
def test_bad_options(task, options, match):
    with pytest.raises(ValueError, match=match):
        generate_sample(task, 128, seed=0, **{"num_symbols": N, **options})
    with pytest.raises(ValueError, match=match):
        make_token_example(task, 128, 0, **{"num_symbols": N, **options})


def test_too_short():
    with pytest.raises(TooShortError, match=r"table_tokens: length 64 cannot hold 10 records"):
        generate_sample("table_tokens", 64, seed=0, num_symbols=N, rows=10)
    with pytest.raises(TooShortError, match="table_tokens"):
        make_token_example("table_tokens", 8, 0, num_symbols=N)
    with pytest.raises(TooShortError, match=r"graph_tokens: length 16 cannot hold 3 records"):
        generate_sample("graph_tokens", 16, seed=0, num_symbols=N)
    with pytest.raises(TooShortError, match="graph_tokens"):
        make_token_example("graph_tokens", 40, 0, num_symbols=N, nodes=10)


class _Oracle:
    """Answers by parsing the prompt back: table lookup, or following ``hops`` edges."""

    tokenizer = None
    max_length = None

    def __init__(self, hops: int) -> None:
        self.hops = hops

    def generate_ids(self, prompt_ids: list[int], max_new_tokens: int) -> list[int]:
        p = prompt_ids
        if p[-4] == QUERY:
            return [_parse_table(p, 2)[(p[-3], p[-2])]]
        if p[-3] == QUERY:
            succ = _parse_graph(p)
            a = p[-2]
            for _ in range(self.hops):
                a = succ[a]
            return [a]
        return [0]


@pytest.mark.parametrize("hops", [1, 2])
def test_run_eval_mixture_options(tmp_path, hops):
    from longpos.eval.runner import run_eval

    res = run_eval(
        _Oracle(hops), ["table_tokens", "graph_tokens", "mqar"], [64, 128], samples=3,
        out_dir=tmp_path, seed=1, options={"num_symbols": N, "num_kv_pairs": 8},
        task_options={"graph_tokens": {"hops": hops}}, progress=False,
    )  # fmt: skip
    assert res.scores["table_tokens"] == {64: 100.0, 128: 100.0}
    assert res.scores["graph_tokens"] == {64: 100.0, 128: 100.0}


def test_table_row_key_per_cell_layout_answers_the_asked_cell():
    from longpos.tasks.base import generate_sample
    from longpos.tasks.symbolic import KEY, QUERY, SEP

    opts = dict(num_symbols=64, rows=4, cols=2, filler="between", answer_marker=False,
                row_key_per_cell=True)  # fmt: skip
    for seed in range(20):
        s = generate_sample("table_tokens", 96, seed=seed, **opts)
        ids = s.prompt_ids
        cells = {}
        for t, tok in enumerate(ids):
            if tok == KEY:
                row = ids[t + 1 : ids.index(SEP, t)]
                assert len(row) == 6 and row[1] == row[4]  # c0 r v0 c1 r v1: one row key
                cells[(row[0], row[1])] = row[2]
                cells[(row[3], row[4])] = row[5]
        assert ids[-3] == QUERY
        assert s.answer_ids == [[cells[(ids[-2], ids[-1])]]]
        value = next(n for n in s.needles if n.role == "value")
        key = next(n for n in s.needles if n.role == "key")
        assert ids[value.token_start] == s.answer_ids[0][0]
        assert key.token_start == value.token_start - 1 and ids[key.token_start] == ids[-1]


def test_table_row_key_per_cell_must_be_a_bool():
    from longpos.tasks.base import generate_sample

    with pytest.raises(ValueError, match="row_key_per_cell"):
        generate_sample("table_tokens", 64, seed=0, num_symbols=64, row_key_per_cell="yes")
