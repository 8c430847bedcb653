"""The paths a newcomer takes after the demo: train, resume, eval, viz and report with no
extra options (issue 16)."""

import json

import pytest

from longpos.cli import main
from longpos.config import ModelConfig
from longpos.model import LongposLM
from longpos.train import train
from longpos.train.recipes import recipe

FAST = ["--train.steps", "4", "--train.batch_size", "4", "--train.no-progress"]


def lines(path):
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_vocabulary_follows_the_data(tmp_path, capsys):
    main(["train", "--preset", "tiny", "--out", str(tmp_path / "a"), *FAST,
          "--train.seq_len", "64"])  # fmt: skip
    assert "model.vocab_size = 528" in capsys.readouterr().out
    assert json.loads((tmp_path / "a" / "config.json").read_text())["model"]["vocab_size"] == 528
    main(["train", "--preset", "tiny", "--model.vocab_size", "600", "--out", str(tmp_path / "b"),
          *FAST, "--train.seq_len", "64"])  # fmt: skip
    assert json.loads((tmp_path / "b" / "config.json").read_text())["model"]["vocab_size"] == 600


def test_resume_says_so_refuses_other_options_and_never_repeats(tmp_path, capsys):
    out = tmp_path / "run"
    model_cfg, train_cfg = recipe("demo")
    train_cfg.steps, train_cfg.batch_size, train_cfg.progress = 4, 4, False
    train(LongposLM(model_cfg), train_cfg, out, stop_after=2)  # an interrupted run
    argv = ["train", "--recipe", "demo", "--out", str(out), *FAST]
    main(argv)
    assert "resuming from step 2 of 4" in capsys.readouterr().out
    before = (out / "metrics.jsonl").read_text()
    main(argv)  # finished: nothing is trained or logged again
    assert "already finished (4 of 4 steps)" in capsys.readouterr().out
    assert (out / "metrics.jsonl").read_text() == before
    assert sum("eval_lm_loss" in r for r in lines(out / "metrics.jsonl")) == 1
    with pytest.raises(SystemExit) as err:
        main([*argv, "--train.steps", "6"])
    assert err.value.code == 2
    msg = capsys.readouterr().err
    assert "train.steps=4" in msg and "train.steps=6" in msg and "--no-resume" in msg
    assert "--init-from" in msg
    assert json.loads((out / "config.json").read_text())["train"]["steps"] == 4  # untouched
    main([*argv, "--train.steps", "6", "--no-resume"])  # starting over on purpose
    assert lines(out / "metrics.jsonl")[-1]["step"] == 6


def test_eval_viz_report_need_no_options_for_a_trained_model(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(["train", "--recipe", "demo", "--out", "runs/repo", "--model.plan", "repo", *FAST])
    meta = json.loads((tmp_path / "runs/repo/model/config.json").read_text())
    trained = meta["extra"]["trained_on"]
    assert trained["tasks"] == ["graph_tokens"] and trained["options"]["nodes"] == 8
    main(["eval", "--model", "runs/repo/model", "--samples", "2", "--out", "eval/repo"])
    printed = capsys.readouterr().out
    assert "graph_tokens" in printed and "256" in printed  # the table: 1x, 2x, 4x of L = 64
    results = json.loads((tmp_path / "eval/repo/results.json").read_text())
    assert results["metadata"]["train_length"] == 64
    assert results["metadata"]["task_options"]["graph_tokens"]["num_symbols"] == 64
    main(["viz", "positions", "--model", "runs/repo/model", "--task", "graph_tokens", "--length", "128",
          "--out", "positions.html"])  # fmt: skip
    page = (tmp_path / "positions.html").read_text()
    assert '"query":[125,126]' in page  # QUERY a and '"train_length":64' in page
    main(["report", "eval/repo", "--out", "report"])
    assert "Training length: 64 tokens." in (tmp_path / "report/report.md").read_text()


def test_old_demo_models_are_read_through_their_run_folder(tmp_path):
    """Models saved before the metadata existed: the run's config.json says what they saw."""
    from longpos.checkpoint import save_model, trained_on

    run = tmp_path / "rope-s0"
    cfg = ModelConfig(vocab_size=80, d_model=32, n_layers=1, n_heads=4)
    save_model(LongposLM(cfg), run / "model")
    data = {"kind": "task", "tasks": "mqar", "options": '{"num_symbols": 64, "num_kv_pairs": 8}'}
    (run / "config.json").write_text(json.dumps({"train": {"seq_len": 64, "data": data}}))
    info = trained_on(run / "model")
    assert info == {"kind": "task", "tasks": ["mqar"], "seq_len": 64,
                    "options": {"num_symbols": 64, "num_kv_pairs": 8}}  # fmt: skip
