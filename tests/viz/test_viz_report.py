import json
import math

import pytest
from viz_helpers import tiny_model, token_sample

from longpos.eval.adapter import LongposEvalModel
from longpos.io import atomic_write_json, atomic_write_text
from longpos.tasks.metrics import score_sample
from longpos.viz.markdown import format_number, markdown_table
from longpos.viz.plots import plot_accuracy_vs_length, plot_heatmap
from longpos.viz.report import (
    average_by_length,
    effective_length,
    load_run,
    task_family,
    write_report,
)

PNG = b"\x89PNG\r\n\x1a\n"


def test_markdown_table():
    md = markdown_table(["model", "256", "512"], [["rope", 91.25, None], ["a|b", 3, float("nan")]])
    assert md.splitlines() == [
        "| model | 256 | 512 |",
        "| :--- | ---: | ---: |",
        "| rope | 91.2 | - |",
        "| a\\|b | 3 | - |",
    ]
    assert markdown_table(["x"], [[0.123456]], align="c", digits=3).endswith("| 0.123 |")
    with pytest.raises(ValueError, match="row 0"):
        markdown_table(["a", "b"], [["only one"]])
    with pytest.raises(ValueError, match="align"):
        markdown_table(["a"], [], align="x")
    assert format_number(None) == "-" and format_number(True) == "True"


def test_plots_write_pngs(tmp_path):
    out = plot_accuracy_vs_length({"rope": {256: 90.0, 512: 40.0}, "repo": {256: 88.0, 512: 60.0}},
                                  tmp_path / "a.png", "niah", train_length=256)  # fmt: skip
    assert out.read_bytes()[:8] == PNG
    out = plot_heatmap({"niah": {256: 90.0, 512: 40.0}, "vt": {256: 10.0}}, tmp_path / "h.png", "m")
    assert out.read_bytes()[:8] == PNG
    with pytest.raises(ValueError):
        plot_accuracy_vs_length({}, tmp_path / "x.png", "empty")
    assert not (tmp_path / "x.png").exists()


def test_averages_and_effective_length():
    scores = {"a": {256: 100.0, 512: 80.0}, "b": {256: 80.0, 512: 60.0, 1024: 10.0}}
    assert average_by_length(scores) == {256: 90.0, 512: 70.0, 1024: 10.0}
    assert average_by_length(scores, ["a"]) == {256: 100.0, 512: 80.0}
    assert effective_length({256: 90.0, 512: 70.0}) == 256
    assert effective_length({256: 85.6}) is None


def test_task_family_fallbacks():
    assert task_family("niah_multikey_2", {"families": {"niah_multikey_2": "niah"}}) == "niah"
    assert task_family("zz_unknown_task") == "zz"


def write_run(folder, name, scores, samples=None, scale=None):
    meta = {"model": name, "train_length": 64,
            "families": {"niah_single_1": "niah", "vt": "vt"}}  # fmt: skip
    if scale:
        meta["score_scale"] = scale
    atomic_write_json(folder / "results.json", {"scores": scores, "metadata": meta})
    if samples is not None:
        atomic_write_text(folder / "samples.jsonl", "".join(json.dumps(s) + "\n" for s in samples))
    return folder


def test_load_run_formats(tmp_path):
    run = write_run(
        tmp_path / "a", "rope", {"niah_single_1": {"64": 0.5, "128": {"score": 0.25, "n": 4}}}
    )
    r = load_run(run)
    assert r.name == "rope" and r.scores == {"niah_single_1": {64: 50.0, 128: 25.0}}
    assert r.counts == {"niah_single_1": {128: 4}}
    percent = write_run(tmp_path / "b", "x", {"vt": {"64": 50.0}})
    assert load_run(percent).scores == {"vt": {64: 50.0}}
    records = tmp_path / "c"
    atomic_write_json(records / "results.json",
                      {"rows": [{"task": "vt", "length": 64, "score": 0.5}],
                       "model": {"name": "m"}})  # fmt: skip
    assert load_run(records).scores == {"vt": {64: 50.0}} and load_run(records).name == "m"
    only_samples = tmp_path / "d"
    atomic_write_text(only_samples / "samples.jsonl",
                      '{"task": "vt", "length": 64, "score": 1.0}\n'
                      '{"task": "vt", "length": 64, "score": 0.0}\n')  # fmt: skip
    r = load_run(only_samples)
    assert r.scores == {"vt": {64: 50.0}} and r.counts == {"vt": {64: 2}} and r.name == "d"
    with pytest.raises(ValueError, match="neither"):
        load_run(tmp_path / "a" / "..")
    with pytest.raises(ValueError, match="does not exist"):
        load_run(tmp_path / "zzz")


def tiny_eval_run(folder, model, name, lengths=(32, 48)):
    """Evaluate a tiny model on hand-built token samples; write the runner's files."""
    ev = LongposEvalModel(model)
    samples, scores = [], {}
    for n in lengths:
        for seed in range(2):
            s = token_sample(n)
            s.seed = seed
            pred = ev.generate_ids(s.prompt_ids, s.tokens_to_generate)
            score = score_sample(s, pred)
            samples.append({"task": s.task, "length": n, "depth": s.depth, "seed": seed,
                            "prediction": pred, "answer": s.answers, "score": score})  # fmt: skip
            scores.setdefault(s.task, {}).setdefault(str(n), []).append(score)
    # a second task so that there are two families
    for n in lengths:
        scores.setdefault("vt", {})[str(n)] = [0.5 if n == lengths[0] else 0.0]
    table = {t: {n: sum(v) / len(v) for n, v in row.items()} for t, row in scores.items()}
    return write_run(folder, name, table, samples, scale="fraction")


def test_report_from_tiny_runs(tmp_path):
    runs = [
        tiny_eval_run(tmp_path / "rope", tiny_model("rope"), "rope"),
        tiny_eval_run(tmp_path / "repo", tiny_model("repo"), "repo"),
    ]
    out = tmp_path / "report"
    md_path = write_report(runs, out)
    assert md_path == out / "report.md"
    md = md_path.read_text(encoding="utf-8")
    for section in ("## Runs", "## Average over tasks", "## By task family", "### niah",
                    "### vt", "## Per model: task x length", "### rope", "### repo"):  # fmt: skip
        assert section in md
    images = [line.split("(")[1].rstrip(")") for line in md.splitlines() if line.startswith("![")]
    assert set(images) == {
        "accuracy_vs_length_all.png",
        "accuracy_vs_length_niah.png",
        "accuracy_vs_length_vt.png",
        "heatmap_rope.png",
        "heatmap_repo.png",
    }
    for img in images:
        assert (out / img).read_bytes()[:8] == PNG
    report = json.loads((out / "report.json").read_text())
    assert report["train_length"] == 64 and report["lengths"] == [32, 48]
    vt = report["families"]["vt"]["curves"]["rope"]
    assert vt == {"32": 50.0, "48": 0.0}
    rope = load_run(runs[0])
    avg = average_by_length(rope.scores)
    assert math.isclose(report["average"]["rope"]["32"], avg[32])
    assert f"| rope | {avg[32]:.1f} | {avg[48]:.1f} |" in md
    assert "Training length: 64 tokens." in md


def test_report_names_are_unique(tmp_path):
    a = write_run(tmp_path / "x" / "run", "same", {"vt": {"64": 1.0}})
    b = write_run(tmp_path / "y" / "run", "same", {"vt": {"64": 0.0}})
    write_report([a, b], tmp_path / "out")
    heatmaps = sorted(p.name for p in (tmp_path / "out").glob("heatmap_*.png"))
    assert len(heatmaps) == 2
    with pytest.raises(ValueError, match="no run"):
        write_report([], tmp_path / "out2")
