"""The evaluation runner with fake models: an oracle that reads answers by rule, and a constant."""

import json
import re

import pytest

from longpos.data.tokenizers import ByteTokenizer
from longpos.eval import EvalModel, run_eval
from longpos.tasks.symbolic import ANS, KEY, QUERY, SEP, VAL


class TextOracle:
    """Reads the answer of niah_single_1 / passkey from the prompt text by rule."""

    max_length = 8192

    def __init__(self):
        self.tokenizer = ByteTokenizer()

    def generate_ids(self, prompt_ids, max_new_tokens):
        text = self.tokenizer.decode(prompt_ids)
        m = re.search(r"for (\S+) mentioned in the provided text is$", text)
        if m:
            val = re.search(rf"for {re.escape(m.group(1))} is: (\d+)\.", text).group(1)
        else:
            val = re.search(r"The pass key is (\d+)\.", text).group(1)
        ids = self.tokenizer.encode(f" {val}.")
        return (ids + [self.tokenizer.eos_id, 65, 66])[: max_new_tokens + 3]  # over-long on purpose


class TokenOracle:
    """Token level: copies the value after ``KEY <query key> VAL``."""

    tokenizer = None
    max_length = None

    def generate_ids(self, prompt_ids, max_new_tokens):
        q = len(prompt_ids) - 1 - prompt_ids[::-1].index(QUERY)
        assert prompt_ids[-1] == ANS
        key = prompt_ids[q + 1 : -1]
        for i in range(q):
            if prompt_ids[i] == KEY and prompt_ids[i + 1 : i + 1 + len(key)] == key:
                j = i + 1 + len(key)
                assert prompt_ids[j] == VAL
                return prompt_ids[j + 1 : prompt_ids.index(SEP, j)]
        return []


class Constant:
    def __init__(self, tokenizer, ids):
        self.tokenizer, self.ids, self.max_length = tokenizer, ids, None

    def generate_ids(self, prompt_ids, max_new_tokens):
        return list(self.ids)[:max_new_tokens]


def _read(out):
    recs = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    res = json.loads((out / "results.json").read_text())
    md = (out / "summary.md").read_text()
    return recs, res, md


def test_protocol_is_satisfied():
    assert isinstance(TextOracle(), EvalModel) and isinstance(TokenOracle(), EvalModel)


def test_text_oracle_scores_100_constant_scores_0(tmp_path):
    tasks, lengths = ["niah_single_1", "passkey"], [1024, 2048]
    res = run_eval(TextOracle(), tasks, lengths, samples=3, out_dir=tmp_path / "o", seed=1,
                   depths=[0.0, 0.5, 1.0], tokens_to_generate=16, progress=False)  # fmt: skip
    assert res.scores == {t: {L: 100.0 for L in lengths} for t in tasks}
    assert res.effective_length == 2048
    recs, results, md = _read(tmp_path / "o")
    assert len(recs) == 2 * 2 * 3
    need = {"task", "length", "depth", "prediction", "answers", "score", "seed", "needles"}
    assert all(need <= set(r) for r in recs)
    assert [r["depth"] for r in recs[:3]] == [0.0, 0.5, 1.0]
    assert all(r["sample_length"] <= r["length"] for r in recs)
    assert "A" not in recs[0]["prediction"]  # cut at EOS
    assert results["scores"]["passkey"] == {"1024": 100.0, "2048": 100.0}
    assert results["average"] == {"1024": 100.0, "2048": 100.0}
    assert results["metadata"]["tokenizer"] == "byte" and results["metadata"]["samples"] == 3
    assert "| niah_single_1 | 100.0 | 100.0 |" in md and "| **average** |" in md
    assert not list((tmp_path / "o").glob("*.tmp")) and not list((tmp_path / "o").glob(".*"))

    const = Constant(ByteTokenizer(), ByteTokenizer().encode(" 1234567"))
    res = run_eval(const, tasks, lengths, samples=3, out_dir=tmp_path / "c", seed=1, progress=False)
    assert all(v == 0.0 for row in res.scores.values() for v in row.values())
    assert res.effective_length is None
    _, results, md = _read(tmp_path / "c")
    assert results["effective_length"] is None and "| passkey | 0.0 | 0.0 |" in md


def test_token_level_oracle_and_constant(tmp_path):
    tasks = ["niah_single_1", "niah_multikey_2", "passkey"]
    res = run_eval(TokenOracle(), tasks, [256, 512], samples=2, out_dir=tmp_path / "t",
                   options={"num_symbols": 128}, progress=False)  # fmt: skip
    assert all(v == 100.0 for row in res.scores.values() for v in row.values())
    recs, results, _ = _read(tmp_path / "t")
    assert results["metadata"]["level"] == "token" and recs[0]["level"] == "token"
    assert all(max(r["prediction_ids"], default=0) < 16 + 128 for r in recs)
    res = run_eval(Constant(None, [20, 21, 22]), tasks, [256], samples=2, out_dir=tmp_path / "k",
                   progress=False)  # fmt: skip
    assert all(v == 0.0 for row in res.scores.values() for v in row.values())


def test_skips_too_short_and_validates(tmp_path):
    res = run_eval(TextOracle(), ["niah_single_1", "cwe"], [1024], samples=1,
                   out_dir=tmp_path, progress=False)  # fmt: skip
    assert res.scores["cwe"][1024] is None
    _, results, md = _read(tmp_path)
    assert results["scores"]["cwe"]["1024"] is None and "n/a" in md
    assert any(s.startswith("cwe @ 1024") for s in results["metadata"]["skipped"])
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        run_eval(TextOracle(), ["nope"], [1024], 1, tmp_path, progress=False)
    with pytest.raises(ValueError, match="max_length"):
        run_eval(TextOracle(), ["passkey"], [10_000], 1, tmp_path, progress=False)
    with pytest.raises(ValueError, match="samples"):
        run_eval(TextOracle(), ["passkey"], [1024], 0, tmp_path, progress=False)


def test_same_seed_same_samples(tmp_path):
    kw = dict(tasks=["niah_single_1"], lengths=[1024], samples=2, seed=3, progress=False)
    run_eval(TextOracle(), out_dir=tmp_path / "a", **kw)
    run_eval(TextOracle(), out_dir=tmp_path / "b", **kw)
    a = (tmp_path / "a" / "samples.jsonl").read_text()
    assert a == (tmp_path / "b" / "samples.jsonl").read_text()
