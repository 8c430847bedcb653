"""Batched evaluation decodes several prompts at once and predicts exactly what one-by-one
decoding predicts: left padding (masked, positions counting real tokens) for every technique,
length buckets for FwPKM models, on native and Hugging Face models."""

from __future__ import annotations

import json

import pytest
import torch

from longpos.data.tokenizers import load_tokenizer
from longpos.eval.adapter import LongposEvalModel
from longpos.eval.batching import batches, greedy_batch
from longpos.eval.runner import run_eval
from longpos.tasks.symbolic import vocab_for
from model_builders import tiny_native


def records(folder):
    rows = [json.loads(x) for x in (folder / "samples.jsonl").read_text().splitlines()]
    return [(r["task"], r["length"], r["index"], r["prediction_ids"], r["score"]) for r in rows]


def native(plan: str, **cfg):
    vocab = vocab_for("mqar", num_symbols=64).vocab_size
    return LongposEvalModel(tiny_native(plan=plan, vocab_size=max(vocab, 259), **cfg))


MEMORY = {"kind": "fwpkm", "layers": "1", "fwpkm": {"chunk": 8, "d_k": 8, "d_v": 8, "sqrt_n": 8}}


@pytest.mark.parametrize(
    "plan, cfg",
    [("rope", {}), ("repo", {}), ("r2n1", {}), ("nope", {"temperature": {"c": 0.4, "mode": "dynamic"}}),
     ("xpos", {}), ("alibi", {}), ("fire", {}), ("pope", {}), ("stickbreaking", {}), ("cope", {}), ("fox", {}),
     ("repo", {"memory": MEMORY})],
    ids=["rope", "repo", "r2n1", "drope-temperature", "xpos", "alibi", "fire", "pope",
         "stickbreaking", "cope", "fox", "fwpkm"],
)  # fmt: skip
def test_native_batched_predictions_equal_one_by_one(tmp_path, plan, cfg):
    model = native(plan, **cfg)
    common = dict(seed=3, progress=False, options={"num_symbols": 64, "num_kv_pairs": 4})
    one = run_eval(model, ["mqar"], [48, 70], 7, tmp_path / "one", **common)
    many = run_eval(model, ["mqar"], [48, 70], 7, tmp_path / "many", batch_size=4, **common)
    assert records(tmp_path / "one") == records(tmp_path / "many")
    assert one.scores == many.scores


def test_text_prompts_of_different_lengths_are_padded_and_still_equal(tmp_path):
    model = LongposEvalModel(tiny_native(plan="repo", vocab_size=259), load_tokenizer("byte"))
    common = dict(seed=1, progress=False, tokens_to_generate=8)
    run_eval(model, ["niah_single_1", "niah_multikey_1"], [700], 6, tmp_path / "one", **common)
    run_eval(
        model,
        ["niah_single_1", "niah_multikey_1"],
        [700],
        6,
        tmp_path / "many",
        batch_size=6,
        **common,
    )
    assert records(tmp_path / "one") == records(tmp_path / "many")
    prompt_lengths = {
        json.loads(x)["prompt_tokens"]
        for x in (tmp_path / "one" / "samples.jsonl").read_text().splitlines()
    }
    assert len(prompt_lengths) > 1  # the batch really mixed lengths (left padding)


@pytest.mark.parametrize("plan", ["rope", "repo", "fwpkm"])
def test_hf_batched_predictions_equal_one_by_one(tmp_path, plan):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "hf"))
    from hf_helpers import tiny_model

    from longpos.hf import HFEvalModel, apply_longpos
    from longpos.memory.placement import MemoryConfig

    torch.manual_seed(0)
    stock = tiny_model("qwen2", vocab_size=300)
    memory = MemoryConfig(**MEMORY) if plan == "fwpkm" else None
    model = HFEvalModel(apply_longpos(stock, "rope" if plan == "fwpkm" else plan, memory=memory),
                        load_tokenizer("byte"))  # fmt: skip
    assert model.takes_padding == (plan != "fwpkm")
    common = dict(seed=2, progress=False, tokens_to_generate=8)
    run_eval(model, ["niah_single_1"], [600], 5, tmp_path / "one", **common)
    run_eval(model, ["niah_single_1"], [600], 5, tmp_path / "many", batch_size=3, **common)
    assert records(tmp_path / "one") == records(tmp_path / "many")


def test_batches_sort_pad_or_bucket():
    lengths = [5, 3, 5, 4, 3, 5]
    assert batches(lengths, 2, takes_padding=True) == [[1, 4], [3, 0], [2, 5]]
    assert batches(lengths, 2, takes_padding=False) == [[1, 4], [3], [0, 2], [5]]
    with pytest.raises(ValueError, match="batch_size"):
        batches(lengths, 0, True)


def test_greedy_batch_stops_each_row_at_its_eos():
    table = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])  # row 0 -> token 1, row 1 -> eos 2

    def step(ids, mask, positions):
        return table[:, None, :].expand(2, ids.shape[1], 3)

    assert greedy_batch(step, [[1, 1], [1]], 4, eos_ids=[2]) == [[1, 1, 1, 1], []]
    with pytest.raises(ValueError, match="empty"):
        greedy_batch(step, [[1], []], 2)
