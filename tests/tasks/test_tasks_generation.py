import json

import pytest

from longpos.data.tokenizers import ByteTokenizer
from longpos.tasks import (
    RULER_TASKS,
    MissingDataError,
    Sample,
    TooShortError,
    generate_sample,
    get_task,
    list_tasks,
)

TEXT_TASKS = [t for t in list_tasks() if not t.startswith("qa") and get_task(t).text_fn]
RETRIEVAL = [t for t in TEXT_TASKS if t.startswith(("niah", "passkey", "vt", "cwe", "fwe"))]
TOL = 0.03  # samples are within 3% (or one long word) of the target


def _check_length(s: Sample, target: int, unit: int) -> None:
    assert s.length == len(s.prompt_ids) + s.tokens_to_generate
    assert s.length <= target
    assert target - s.length <= max(TOL * target, unit), (s.task, target, s.length)


@pytest.mark.parametrize("task", TEXT_TASKS)
def test_text_lengths_byte(task):
    tok = ByteTokenizer()
    for target in (2048, 6000):
        s = generate_sample(task, target, tokenizer=tok, seed=7)
        assert s.prompt_ids == tok.encode(s.prompt)
        # structured tasks grow by one table row / graph node (up to ~100 bytes)
        _check_length(s, target, unit=100 if task.startswith(("graph", "table")) else 48)


@pytest.mark.parametrize("task", TEXT_TASKS)
def test_text_lengths_sentencepiece(task, sp_tok):
    for target in (1000, 3000):
        s = generate_sample(task, target, tokenizer=sp_tok, seed=11)
        assert s.prompt_ids == sp_tok.encode(s.prompt)
        _check_length(s, target, unit=40)


def test_ruler_has_thirteen_tasks():
    assert len(RULER_TASKS) == 13 and set(RULER_TASKS) <= set(list_tasks())


@pytest.mark.parametrize(
    "task", ["niah_single_2", "vt", "cwe", "graph_shortest_path", "table_count"]
)
def test_determinism_and_seed_sensitivity(task):
    a = generate_sample(task, 3000, tokenizer="byte", seed=5)
    b = generate_sample(task, 3000, tokenizer="byte", seed=5)
    c = generate_sample(task, 3000, tokenizer="byte", seed=6)
    assert a.to_dict() == b.to_dict()
    assert a.prompt != c.prompt


def test_token_level_determinism():
    for task in ("niah_multikey_1", "mqar", "cwe"):
        a = generate_sample(task, 512, seed=1)
        assert a.to_dict() == generate_sample(task, 512, seed=1).to_dict()
        assert a.prompt_ids != generate_sample(task, 512, seed=2).prompt_ids


@pytest.mark.parametrize("task", RETRIEVAL)
def test_answers_present_in_context(task):
    s = generate_sample(task, 3000, tokenizer="byte", seed=3)
    c0, c1 = s.meta["context_char_span"]
    context = s.prompt[c0:c1]
    for a in s.answers:
        assert a in context, (task, a)


@pytest.mark.parametrize(
    "task", ["niah_single_1", "niah_single_2", "niah_multikey_2", "passkey", "vt"]
)
@pytest.mark.parametrize("depth", [0.0, 0.25, 0.5, 0.8, 1.0])
def test_needle_at_requested_depth(task, depth):
    tok = ByteTokenizer()
    s = generate_sample(task, 4000, tokenizer=tok, seed=9, depth=depth)
    assert s.depth == depth
    t0, t1 = s.meta["context_token_span"]
    needle = next(n for n in s.needles if n.role == "needle")
    rel = (needle.token_start - t0) / (t1 - t0)
    assert abs(rel - depth) < 0.06, (rel, depth)
    # token spans point at the value text
    val = next(n for n in s.needles if n.role == "value")
    assert tok.decode(s.prompt_ids[val.token_start : val.token_end]) == val.text
    assert s.prompt[val.char_start : val.char_end] == val.text


def test_needle_spans_sentencepiece(sp_tok):
    s = generate_sample("niah_single_1", 2000, tokenizer=sp_tok, seed=2, depth=0.5)
    val = next(n for n in s.needles if n.role == "value")
    assert val.text in sp_tok.decode(s.prompt_ids[val.token_start - 1 : val.token_end + 1])


def test_niah_structure_multi():
    s = generate_sample("niah_multivalue", 3000, tokenizer="byte", seed=4)
    assert len(s.answers) == 4 and "numbers" in s.answer_prefix
    s = generate_sample("niah_multiquery", 3000, tokenizer="byte", seed=4)
    assert len(s.answers) == 4 and ", and " in s.answer_prefix
    s = generate_sample("niah_single_1", 3000, tokenizer="byte", seed=4)
    assert s.prompt.startswith("A special magic number is hidden")
    assert s.answer_prefix.endswith("mentioned in the provided text is")
    assert s.answers[0].isdigit() and len(s.answers[0]) == 7
    s = generate_sample("niah_multikey_3", 3000, tokenizer="byte", seed=4)
    assert s.prompt.count("One of the special magic uuids for") > 10  # distractor needles
    assert len(s.answers[0]) == 36


def test_sample_json_roundtrip():
    s = generate_sample("niah_multikey_1", 1200, tokenizer="byte", seed=1)
    d = json.loads(s.to_json())
    assert Sample.from_dict(d) == s
    t = generate_sample("niah_multikey_1", 300, seed=1)
    assert Sample.from_dict(json.loads(t.to_json())) == t


@pytest.mark.parametrize("task", [t for t in list_tasks() if not t.startswith(("graph", "table"))])
@pytest.mark.parametrize("length", [256, 1024])
def test_token_level_exact_length(task, length):
    s = generate_sample(task, length, seed=0)
    assert s.level == "token" and s.prompt is None
    assert s.length == length
    vs = s.meta["vocab_size"]
    assert all(0 <= i < vs for i in s.prompt_ids)
    assert s.tokens_to_generate == sum(len(a) for a in s.answer_ids) or s.task in ("cwe", "fwe")


def test_unknown_task_and_bad_options():
    with pytest.raises(ValueError, match="unknown task 'niah_single_9'.*niah_single_1"):
        generate_sample("niah_single_9", 1000, tokenizer="byte")
    with pytest.raises(ValueError, match="unknown option.*num_needles"):
        generate_sample("niah_single_1", 1000, tokenizer="byte", num_needles=3)
    with pytest.raises(ValueError, match="num_keys"):
        generate_sample("niah_single_1", 1000, tokenizer="byte", num_keys=0)
    with pytest.raises(ValueError, match="haystack must be one of"):
        generate_sample("niah_single_1", 1000, tokenizer="byte", haystack="hay")
    with pytest.raises(ValueError, match="depth"):
        generate_sample("niah_single_1", 1000, tokenizer="byte", depth=1.5)
    with pytest.raises(ValueError, match="only at token level"):
        generate_sample("mqar", 1000, tokenizer="byte")
    with pytest.raises(TooShortError, match="too small"):
        generate_sample("cwe", 300, tokenizer="byte")


@pytest.mark.parametrize("task,what", [("qa_1", "SQuAD"), ("qa_2", "HotpotQA")])
def test_qa_missing_file(task, what, tmp_path, monkeypatch):
    monkeypatch.delenv("LONGPOS_SQUAD", raising=False)
    monkeypatch.delenv("LONGPOS_HOTPOTQA", raising=False)
    with pytest.raises(MissingDataError, match=f"{what}.*data_path"):
        generate_sample(task, 2000, tokenizer="byte")
    with pytest.raises(MissingDataError, match="does not exist"):
        generate_sample(task, 2000, tokenizer="byte", data_path=str(tmp_path / "nope.json"))


def _squad(tmp_path):
    data = {"version": "v2.0", "data": []}
    for a in range(6):
        paras = []
        for p in range(4):
            ctx = (
                f"Paragraph {p} of article {a} says the river number {a}{p} is called Riv{a}x{p}. "
                * 3
            )
            qas = [
                {"id": f"{a}{p}", "question": f"What is river {a}{p} called?",
                 "answers": [{"text": f"Riv{a}x{p}", "answer_start": 0}], "is_impossible": False},
                {"id": f"{a}{p}i", "question": "Unanswerable?", "answers": [], "is_impossible": True},
            ]  # fmt: skip
            paras.append({"context": ctx, "qas": qas})
        data["data"].append({"title": f"A{a}", "paragraphs": paras})
    path = tmp_path / "dev-v2.0.json"
    path.write_text(json.dumps(data))
    return path


def _hotpot(tmp_path):
    exs = []
    for i in range(10):
        ctx = [
            [f"T{i}_{j}", [f"Title {i} {j} is a place. ", f"It has code C{i}{j}."]]
            for j in range(4)
        ]
        exs.append({"_id": str(i), "question": f"Which code has T{i}_1?", "answer": f"C{i}1",
                    "context": ctx, "supporting_facts": [[f"T{i}_1", 1], [f"T{i}_2", 0]]})  # fmt: skip
    path = tmp_path / "hotpot.json"
    path.write_text(json.dumps(exs))
    return path


def test_qa_with_local_files(tmp_path):
    tok = ByteTokenizer()
    s = generate_sample("qa_1", 2500, tokenizer=tok, seed=3, data_path=str(_squad(tmp_path)))
    assert s.metric == "string_match_part" and s.length <= 2500
    assert s.answers[0] in s.prompt and "Document 1:" in s.prompt
    q = s.meta["question"]
    assert q.startswith("What is river") and s.answers[0] == "Riv{}x{}".format(*q.split()[3][:2])
    h = generate_sample("qa_2", 2500, tokenizer=tok, seed=3, data_path=str(_hotpot(tmp_path)))
    assert h.answers[0] in h.prompt and h.length <= 2500
    assert sum(n.role == "needle" for n in h.needles) == 2  # both supporting documents
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"nothing": 1}))
    with pytest.raises(ValueError, match="layout"):
        generate_sample("qa_1", 2500, tokenizer=tok, data_path=str(bad))


def test_same_seed_same_sample_across_processes():
    """No dependence on hash randomisation or global state: fresh interpreters agree."""
    import os
    import subprocess
    import sys

    code = (
        "import hashlib\n"
        "from longpos.tasks import generate_sample\n"
        "for t in ['niah_multikey_3', 'cwe', 'graph_shortest_path', 'table_multihop', 'vt']:\n"
        "    s = generate_sample(t, 3000, tokenizer='byte', seed=42)\n"
        "    print(hashlib.sha256(s.to_json().encode()).hexdigest())\n"
        "print(generate_sample('niah_multiquery', 512, seed=42).prompt_ids[-20:])\n"
    )
    outs = []
    for hs in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hs}
        outs.append(
            subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
            ).stdout
        )
    assert outs[0] == outs[1] and len(outs[0].splitlines()) == 6
