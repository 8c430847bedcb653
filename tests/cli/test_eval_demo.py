"""`longpos eval` and `longpos demo` end to end, with the documented files and schemas."""

import json
import shutil

import pytest
import torch

from longpos.checkpoint import save_model
from longpos.cli import main
from longpos.config import ModelConfig
from longpos.model import LongposLM
from longpos.tasks.symbolic import vocab_for

OPTIONS = {"num_symbols": 32, "key_len": 1, "value_len": 1}


def test_eval_writes_samples_results_and_summary(tmp_path):
    vocab = vocab_for("niah_multikey_1", **OPTIONS).vocab_size
    model = LongposLM(ModelConfig(vocab_size=vocab, d_model=32, n_layers=3, n_heads=4,
                                  plan="repo", max_seq_len=64), torch.Generator().manual_seed(0))  # fmt: skip
    save_model(model, tmp_path / "m")
    out = tmp_path / "eval"
    main(["eval", "--model", str(tmp_path / "m"), "--tasks", "niah_multikey_1,passkey",
          "--lengths", "64", "128", "--samples", "3", "--options", json.dumps(OPTIONS),
          "--scaling", "yarn", "--factor", "2", "--out", str(out)])  # fmt: skip
    rows = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 2 * 3
    for row in rows:
        assert {"task", "length", "depth", "prediction", "answers", "score"} <= set(row)
        assert 0.0 <= row["score"] <= 1.0
    results = json.loads((out / "results.json").read_text())
    assert results["metadata"]["scaling"] == "yarn"
    assert "niah_multikey_1" in (out / "summary.md").read_text()


def test_eval_rejects_bad_input(tmp_path, capsys):
    model = LongposLM(ModelConfig(vocab_size=48, d_model=32, n_layers=1, n_heads=4))
    save_model(model, tmp_path / "m")
    for argv, message in [
        (["--tasks", "nosuch"], "unknown task 'nosuch'"),
        (["--lengths", "abc"], "--lengths must be integers"),
        (["--options", "{bad"], "--options is not valid JSON"),
    ]:
        with pytest.raises(SystemExit):
            main(["eval", "--model", str(tmp_path / "m"), "--out", str(tmp_path / "e"), *argv])
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["eval", "--model", str(tmp_path / "missing")])
    assert "does not exist" in capsys.readouterr().err


def check_demo_folder(out, methods):
    results = json.loads((out / "results.json").read_text())
    assert set(results["accuracy"]) == set(methods)
    lengths = results["lengths"]
    assert lengths == [64, 128, 256] and results["train_length"] == 64
    for method in methods:
        for n in lengths:
            cell = results["accuracy"][method][str(n)]
            assert 0.0 <= cell["accuracy"] <= 1.0 and cell["samples"] > 0
            assert cell["ci95"][0] <= cell["accuracy"] <= cell["ci95"][1]
    assert results["setup"]["task"] == "graph_tokens"  # DEFAULT_TASK
    report = (out / "report.md").read_text()
    assert "| method |" in report and all(f"| {m} |" in report for m in methods)
    assert (out / "accuracy_vs_length.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "learning_curves.png").read_bytes()[:4] == b"\x89PNG"
    html = (out / "positions.html").read_text()
    assert "<html" in html.lower() and "http://" not in html and "https://" not in html
    for method in methods:
        assert (out / "runs" / f"{method}-s0" / "model" / "model.safetensors").exists()
        assert (out / "runs" / f"{method}-s0" / "eval" / "samples.jsonl").exists()


def test_needle_distance_uses_the_value_span_else_the_depth():
    from longpos.demo import needle_distance

    row = {"length": 128, "prompt_tokens": 127, "depth": 0.0,
           "needles": [{"role": "key", "token_start": 3}, {"role": "value", "token_start": 4}]}  # fmt: skip
    assert needle_distance(row) == 123.0
    assert needle_distance({"length": 128, "depth": 0.25, "needles": []}) == 96.0
    assert needle_distance({"length": 128, "needles": []}) is None


def test_demo_writes_all_files_on_a_tiny_budget(tmp_path):
    methods = ["rope", "nope", "r2n1", "repo", "drope"]
    main(["demo", "--quick", "--steps", "16", "--samples", "3", "--out", str(tmp_path)])
    check_demo_folder(tmp_path, methods)


@pytest.mark.slow
def test_demo_quick(tmp_path):
    main(["demo", "--quick", "--out", str(tmp_path)])
    check_demo_folder(tmp_path, ["rope", "nope", "r2n1", "repo", "drope"])


def test_demo_chance_levels_follow_each_task():
    from longpos.demo import DEMO_TASKS, chance_levels

    assert set(DEMO_TASKS) == {"mqar", "table_tokens", "graph_tokens", "order_tokens"}
    # mqar: values are the upper half of 64 symbols; 8 pairs to copy from.
    assert chance_levels("mqar") == {"uniform_value": 1 / 32, "copy_any_needle": 1 / 8}
    # 4 rows x 2 columns = 8 cells, values from the upper half.
    # matching the row key alone gives the right row's cell of a random column: 1 / 2
    assert chance_levels("table_tokens") == {
        "uniform_value": 1 / 32, "copy_any_needle": 1 / 8, "row_only": 1 / 2,
    }  # fmt: skip
    # answers are nodes (any of 64 content symbols); 8 edges to copy a target from.
    assert chance_levels("graph_tokens") == {"uniform_value": 1 / 64, "copy_any_needle": 1 / 8}
    # 6 ordered keys of 3 symbols; ignoring order leaves the record and its swapped twin.
    assert chance_levels("order_tokens") == {
        "uniform_value": 1 / 32, "copy_any_needle": 1 / 6, "order_blind": 0.5,
    }  # fmt: skip


def test_job_cost_counts_every_run_a_job_trains():
    from dataclasses import asdict

    from longpos.demo import DemoPlan, job_cost

    plan = asdict(DemoPlan(steps=800, drop_fraction=0.75, cpt_fraction=0.5))
    every = ["rope", "nope", "drope", "repo_cpt", "fwpkm"]
    job = dict(seed=0, root="unused", plan=plan, **{"with": every})
    # RoPE trains its own 800 steps and the derived runs from their starts: 200 + 400.
    assert job_cost({**job, "method": "rope"}) == 800 + 200 + 400
    assert job_cost({**job, "method": "rope", "with": ["rope", "nope"]}) == 800
    assert job_cost({**job, "method": "nope"}) == 800
    assert job_cost({**job, "method": "fwpkm"}) == 2 * 800


def test_demo_plan_rejects_an_unknown_task():
    from longpos.demo import DemoPlan

    with pytest.raises(ValueError, match="table_tokens"):
        DemoPlan(task="passkey")  # type: ignore[arg-type]


@pytest.mark.parametrize("task", ["table_tokens", "graph_tokens", "order_tokens"])
def test_demo_runs_the_structured_tasks(tmp_path, task):
    main(["demo", "--quick", "--steps", "8", "--samples", "2", "--methods", "rope,repo",
          "--plan.task", task, "--out", str(tmp_path)])  # fmt: skip
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["setup"]["task"] == task
    assert results["setup"]["plan"]["task"] == task
    rows = [json.loads(x) for x in (tmp_path / "runs" / "repo-s0" / "eval" / "samples.jsonl")
            .read_text().splitlines() if x.strip()]  # fmt: skip
    assert rows and all(r["task"] == task for r in rows)
    assert f"`{task}`" in (tmp_path / "report.md").read_text()


def test_derived_methods_start_from_the_rope_run_and_leave_it_unchanged(tmp_path):
    from safetensors.torch import load_file

    common = ["demo", "--quick", "--steps", "16", "--samples", "2", "--workers", "1"]
    main([*common, "--methods", "repo_cpt,drope", "--out", str(tmp_path / "derived")])
    main([*common, "--methods", "rope", "--out", str(tmp_path / "plain")])
    runs = tmp_path / "derived" / "runs"
    config = json.loads((runs / "repo_cpt-s0" / "model" / "config.json").read_text())
    assert config["model"]["plan"] == "repo"
    steps = [json.loads(x)["step"] for x in (runs / "repo_cpt-s0" / "metrics.jsonl")
             .read_text().splitlines() if x.strip()]  # fmt: skip
    assert max(steps) == 8  # the other half of the budget: RoPE trained the first 8 steps
    results = json.loads((tmp_path / "derived" / "results.json").read_text())
    assert set(results["accuracy"]) == {"repo_cpt", "drope"}
    # stopping the RoPE run at the snapshots (steps 8 and 14) and resuming changes nothing
    with_stops = load_file(runs / "rope-s0" / "model" / "model.safetensors")
    plain = load_file(tmp_path / "plain" / "runs" / "rope-s0" / "model" / "model.safetensors")
    assert with_stops.keys() == plain.keys()
    for name, tensor in plain.items():
        assert torch.equal(with_stops[name], tensor), name


def test_repo_ablation_methods_build_their_models(tmp_path):
    from longpos.demo import ABLATIONS, ALL_METHODS, DemoPlan, model_config

    plan = DemoPlan()
    assert set(ABLATIONS) <= set(ALL_METHODS)
    assert model_config(plan, "repo", 80).layer_plan() == ["rope", "repo", "repo"]
    assert model_config(plan, "repo_l0", 80).layer_plan() == ["repo"] * 3
    assert model_config(plan, "repo_l2", 80).layer_plan() == ["rope", "rope", "repo"]
    assert model_config(plan, "repo_linear", 80).repo.variant == "linear"
    assert model_config(plan, "repo_linear_shared", 80).repo.variant == "linear_shared"
    main(["demo", "--quick", "--steps", "8", "--samples", "2", "--workers", "1",
          "--methods", "repo_l2,repo_linear_shared", "--out", str(tmp_path)])  # fmt: skip
    config = json.loads((tmp_path / "runs" / "repo_linear_shared-s0" / "model" / "config.json")
                        .read_text())["model"]  # fmt: skip
    assert config["repo"]["variant"] == "linear_shared"


def test_demo_reuses_finished_runs_of_the_same_plan_only(tmp_path, capsys):
    common = ["demo", "--quick", "--steps", "8", "--samples", "2", "--workers", "1"]
    main([*common, "--methods", "rope,drope", "--out", str(tmp_path / "a")])
    main([*common, "--methods", "rope,drope,nope", "--reuse", str(tmp_path / "a"),
          "--out", str(tmp_path / "b")])  # fmt: skip
    a = json.loads((tmp_path / "a" / "results.json").read_text())
    b = json.loads((tmp_path / "b" / "results.json").read_text())
    assert b["setup"]["reused_runs"]["runs"] == ["drope-s0", "rope-s0"]
    assert set(b["accuracy"]) == {"rope", "drope", "nope"}
    for method in ("rope", "drope"):
        assert b["accuracy"][method] == a["accuracy"][method]
    assert (tmp_path / "b" / "runs" / "nope-s0" / "eval" / "samples.jsonl").exists()
    # another plan (steps) is refused, and so is reusing the output folder itself
    capsys.readouterr()
    for argv, message in [
        (["--steps", "9", "--out", str(tmp_path / "c")], "a different plan (steps)"),
        (["--out", str(tmp_path / "a")], "another folder than --out"),
        (
            ["--out", str(tmp_path / "b"), "--reuse", str(tmp_path / "none")],
            "none/results.json is missing",
        ),
    ]:
        with pytest.raises(SystemExit):
            main([*common, "--methods", "rope", "--reuse", str(tmp_path / "a"), *argv])
        assert message in capsys.readouterr().err
    assert (tmp_path / "a" / "runs" / "rope-s0" / "eval").exists()  # left untouched
    assert (tmp_path / "b" / "runs" / "nope-s0" / "eval").exists()  # refused before deleting


def test_demo_resume_keeps_finished_runs_and_trains_the_rest(tmp_path, capsys):
    out = tmp_path / "d"
    common = ["demo", "--quick", "--steps", "8", "--samples", "2", "--workers", "1",
              "--methods", "rope,nope,r2n1", "--out", str(out)]  # fmt: skip
    main(common)
    first = json.loads((out / "results.json").read_text())
    runs = out / "runs"
    assert set(json.loads((runs / "job_seconds.json").read_text())) == {
        "rope-s0", "nope-s0", "r2n1-s0"}  # fmt: skip
    # an interruption: nope never started, r2n1 stopped half-way (no evaluation yet)
    shutil.rmtree(runs / "nope-s0")
    shutil.rmtree(runs / "r2n1-s0" / "eval")
    kept = (runs / "rope-s0" / "metrics.jsonl").stat().st_mtime_ns
    capsys.readouterr()
    main([*common, "--resume"])
    assert "kept 1 finished runs" in capsys.readouterr().out
    again = json.loads((out / "results.json").read_text())
    assert again["setup"]["resumed_runs"] == ["rope-s0"]
    assert again["accuracy"] == first["accuracy"]  # training is deterministic per seed
    assert (runs / "rope-s0" / "metrics.jsonl").stat().st_mtime_ns == kept  # not retrained
    assert "not counting 1 runs kept from an earlier invocation" in (out / "report.md").read_text()
    # another plan is refused before anything is deleted; without --resume all is retrained
    with pytest.raises(SystemExit):
        main([*common, "--resume", "--steps", "9"])
    assert "a different plan (steps)" in capsys.readouterr().err
    assert (runs / "rope-s0" / "eval" / "samples.jsonl").exists()
    main(common)
    assert json.loads((out / "results.json").read_text())["setup"]["resumed_runs"] is None
