"""`longpos export-lm-eval`: the task suite as an lm-evaluation-harness task folder, and
lm-eval's stock `hf` model scoring a converted folder by path with the numbers `longpos eval`
reports on the same samples."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from longpos.eval.lm_eval_export import (
    GROUP,
    ExportLMEvalArgs,
    export_lm_eval_tasks,
    run,
    task_name,
)
from longpos.tasks.base import derive_seed, generate_sample


class _Loader(yaml.SafeLoader):
    """lm-eval's YAML dialect: ``!function module.name`` (kept as a string here)."""


_Loader.add_constructor("!function", lambda loader, node: f"!function {node.value}")


def _load_yaml(path: Path) -> dict:
    return yaml.load(path.read_text(), Loader=_Loader)


def _utils(folder: Path):
    spec = importlib.util.spec_from_file_location("exported_utils", folder / "utils.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_exported_folder_is_an_lm_eval_task_folder(tmp_path):
    out = tmp_path / "tasks"
    names = export_lm_eval_tasks(
        ["niah_single_1", "graph_shortest_path"], [1024], 3, 7, "byte", out
    )
    assert names == [task_name("niah_single_1", 1024), task_name("graph_shortest_path", 1024)]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{n}.{ext}" for n in names for ext in ("yaml", "jsonl")] + ["utils.py", f"{GROUP}.yaml"]
    )
    group = _load_yaml(out / f"{GROUP}.yaml")
    assert group["group"] == GROUP and group["task"] == names
    assert group["aggregate_metric_list"][0]["aggregation"] == "mean"
    utils = _utils(out)
    for name, task in zip(names, ["niah_single_1", "graph_shortest_path"], strict=True):
        cfg = _load_yaml(out / f"{name}.yaml")
        data = Path(cfg["dataset_kwargs"]["data_files"]["test"])
        assert data.is_absolute() and data == (out / f"{name}.jsonl").resolve()
        assert cfg["task"] == name and cfg["output_type"] == "generate_until"
        assert cfg["dataset_path"] == "json" and cfg["test_split"] == "test"
        assert cfg["doc_to_text"] == "prompt" and cfg["target_delimiter"] == ""
        assert cfg["process_results"] == "!function utils.process_results"
        assert cfg["metric_list"] == [
            {"metric": "score", "aggregation": "mean", "higher_is_better": True}
        ]
        gen = cfg["generation_kwargs"]
        assert gen["do_sample"] is False and gen["until"] == []
        rows = [json.loads(x) for x in data.read_text().splitlines()]
        assert len(rows) == 3
        for i, row in enumerate(rows):
            # the sample `longpos eval --seed 7 --tokenizer byte` makes
            s = generate_sample(task, 1024, tokenizer="byte", seed=derive_seed(7, task, 1024, i))
            assert row["seed"] == s.seed and row["prompt"] == s.prompt
            assert row["answers"] == s.answers and row["prompt_tokens"] == len(s.prompt_ids)
            assert gen["max_gen_toks"] == row["tokens_to_generate"] == s.tokens_to_generate
            right = " ".join(s.answers)  # a path: "The shortest path is 7,3,0,1"
            if task == "graph_shortest_path":
                right = f"The shortest path is {s.answers[0]}."
            assert utils.process_results(row, [right]) == {"score": 1.0}
            assert utils.process_results(row, ["I do not know."]) == {"score": 0.0}


def test_export_refuses_token_level_tasks_and_skips_lengths_too_short(tmp_path, capsys):
    with pytest.raises(ValueError, match="token level"):
        export_lm_eval_tasks(["mqar"], [256], 1, 0, "byte", tmp_path)
    with pytest.raises(ValueError, match="unknown task"):
        export_lm_eval_tasks(["nope"], [256], 1, 0, "byte", tmp_path)
    names = run(ExportLMEvalArgs(tasks=("niah_single_1",), lengths=("256,1024",),
                                 tokenizer="byte", samples=1, out=str(tmp_path / "o")))  # fmt: skip
    assert names == [task_name("niah_single_1", 1024)]
    printed = capsys.readouterr().out
    assert "skipped" in printed and task_name("niah_single_1", 256) in printed
    assert "add_bos_token=False,max_length=1024" in printed


# ---------------------------------------------------------------------------------------------
# lm-eval itself on a converted model folder, loaded by path

LENGTH, SAMPLES, TASK = 512, 3, "niah_single_1"

LM_EVAL = """
import json, sys
import lm_eval
from lm_eval.models.huggingface import HFLM

folder, include, out, length, name = sys.argv[1:6]
seen = {}
original = HFLM.__init__
def init(self, *args, **kwargs):  # the model loads by path, before anything imports longpos
    seen.setdefault("longpos imported before the model", "longpos" in sys.modules)
    original(self, *args, **kwargs)
HFLM.__init__ = init

def evaluate(extra):
    results = lm_eval.simple_evaluate(
        model="hf",
        model_args=f"pretrained={folder},trust_remote_code=True,dtype=float32,max_length={length}"
                   + extra,
        tasks=[name], task_manager=lm_eval.tasks.TaskManager(include_path=include),
        device="cpu", batch_size=1, log_samples=True,
    )
    rows = sorted(results["samples"][name], key=lambda r: r["doc"]["index"])
    return results["results"][name]["score,none"], rows

mean, rows = evaluate(",add_bos_token=False")
_, with_bos = evaluate("")  # lm-eval's default: this tokenizer prepends BOS
json.dump({
    **seen,
    "mean": mean,
    "scores": [r["score"] for r in rows],
    "generations": [r["filtered_resps"][0] for r in rows],
    "generations with BOS": [r["filtered_resps"][0] for r in with_bos],
}, open(out, "w"))
"""


def tiny_converted_folder(folder: Path) -> None:
    """A random tiny Llama with RePo layers, saved portable, and a byte-level BPE tokenizer
    that (like Llama's) prepends BOS by default."""
    tokenizers = pytest.importorskip("tokenizers")
    transformers = pytest.importorskip("transformers")
    import torch

    from longpos.data.corpus import english_corpus
    from longpos.hf import apply_longpos

    bpe = tokenizers.Tokenizer(tokenizers.models.BPE(unk_token=None))
    bpe.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<eos>", "<bos>"],
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
    )  # fmt: skip
    bpe.train_from_iterator([english_corpus()[:20000]], trainer)
    bpe.post_processor = tokenizers.processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", bpe.token_to_id("<bos>"))]
    )
    tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<eos>", bos_token="<bos>"
    )
    cfg = transformers.LlamaConfig(
        vocab_size=bpe.get_vocab_size(), hidden_size=32, intermediate_size=64,
        num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=128, eos_token_id=tok.eos_token_id,
        bos_token_id=tok.bos_token_id, pad_token_id=None,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg)
    apply_longpos(model, "repo")
    model.save_pretrained(folder)
    tok.save_pretrained(folder)


@pytest.mark.slow
def test_lm_eval_scores_a_converted_folder_as_longpos_eval_does(tmp_path):
    pytest.importorskip("lm_eval")
    pytest.importorskip("accelerate")
    from longpos.eval.command import EvalArgs
    from longpos.eval.command import run as run_eval_command

    folder = tmp_path / "model"
    tiny_converted_folder(folder)
    names = export_lm_eval_tasks([TASK], [LENGTH], SAMPLES, 3, str(folder), tmp_path / "tasks")
    name = task_name(TASK, LENGTH)
    assert names == [name]

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf-home"), "TOKENIZERS_PARALLELISM": "false"}  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-c", LM_EVAL, str(folder), str(tmp_path / "tasks"),
         str(tmp_path / "lm_eval.json"), str(LENGTH), name],
        capture_output=True, text=True, timeout=900, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    got = json.loads((tmp_path / "lm_eval.json").read_text())
    assert got["longpos imported before the model"] is False

    run_eval_command(EvalArgs(model=str(folder), tasks=(TASK,), lengths=(str(LENGTH),),
                              samples=SAMPLES, seed=3, out=str(tmp_path / "eval")))  # fmt: skip
    ours = [json.loads(x) for x in (tmp_path / "eval" / "samples.jsonl").read_text().splitlines()]
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert [r["prediction"] for r in ours] == got["generations"]
    # what add_bos_token=False is for: with lm-eval's default the model reads <bos> first
    assert all(a != b for a, b in zip(got["generations"], got["generations with BOS"], strict=True))
    assert [r["score"] for r in ours] == got["scores"]
    assert results["scores"][TASK][str(LENGTH)] == pytest.approx(100 * got["mean"], abs=0.01)
