"""``answer_marker=False`` of table_tokens / graph_tokens / order_tokens: the answer follows the
question directly (no ``ANS``), the answers are still right, and the default is unchanged."""

import pytest

from longpos.tasks import generate_sample, make_token_example
from longpos.tasks.symbolic import ANS, KEY, QUERY, SEP

N = 64
TASKS = {
    "table_tokens": {"rows": 4, "cols": 2},
    "graph_tokens": {"nodes": 8},
    "order_tokens": {"key_symbols": 3},
}


def _lookup(task: str, ids: list[int]) -> dict[tuple[int, ...], int]:
    """Question tokens -> answer, parsed from the records of the context."""
    ctx = ids[: ids.index(QUERY)]
    out: dict[tuple[int, ...], int] = {}
    i = 0
    while i < len(ctx):
        if ctx[i] != KEY:
            i += 1
            continue
        j = ctx.index(SEP, i)
        rec = ctx[i + 1 : j]
        if task == "table_tokens":
            for c in range(1, len(rec), 2):
                out[(rec[0], rec[c])] = rec[c + 1]
        elif task == "graph_tokens":
            out[(rec[0],)] = rec[1]
        else:
            out[(rec[0], rec[1])] = rec[2]
        i = j + 1
    return out


@pytest.mark.parametrize("task", list(TASKS))
def test_no_answer_marker_training_answers(task):
    q = {"table_tokens": 2, "graph_tokens": 1, "order_tokens": 2}[task]
    for seed in range(5):
        ids, mask = make_token_example(
            task, 64, seed, num_symbols=N, answer_marker=False, **TASKS[task]
        )
        assert len(ids) == 64 and ANS not in ids
        table = _lookup(task, ids)
        answered = [t for t, m in enumerate(mask) if m]
        assert answered and len(answered) == ids.count(QUERY)
        for t in answered:
            assert ids[t - q - 1] == QUERY
            assert ids[t] == table[tuple(ids[t - q : t])]


@pytest.mark.parametrize("task", list(TASKS))
def test_no_answer_marker_eval_sample(task):
    q = {"table_tokens": 2, "graph_tokens": 1, "order_tokens": 2}[task]
    for length in (64, 256):
        s = generate_sample(task, length, seed=2, num_symbols=N, answer_marker=False, **TASKS[task])
        p = s.prompt_ids
        assert len(p) + 1 == length and ANS not in p and p[-q - 1] == QUERY
        assert s.answer_ids == [[_lookup(task, p)[tuple(p[-q:])]]]
        assert s.meta["context_token_span"] == [1, length - 2 - q]  # ends at QUERY


@pytest.mark.parametrize("task", ["table_tokens", "graph_tokens"])
def test_default_keeps_the_answer_marker(task):
    a = make_token_example(task, 64, 3, num_symbols=N, **TASKS[task])
    b = make_token_example(task, 64, 3, num_symbols=N, answer_marker=True, **TASKS[task])
    assert a == b and ANS in a[0]
    s = generate_sample(task, 128, seed=3, num_symbols=N, **TASKS[task])
    assert s.prompt_ids[-1] == ANS


@pytest.mark.parametrize("task", list(TASKS))
def test_answer_marker_must_be_a_bool(task):
    with pytest.raises(ValueError, match="answer_marker"):
        generate_sample(task, 128, seed=0, num_symbols=N, answer_marker=1, **TASKS[task])
