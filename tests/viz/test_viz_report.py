import json
import math

import pytest
from viz_helpers import tiny_model

from longpos.eval.adapter import LongposEvalModel
from longpos.eval.runner import run_eval
from longpos.io import atomic_write_json, atomic_write_text
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
    """A results.json in the runner's layout (scores in percent unless ``scale``)."""
    meta = {"model": name, "train_length": 64, "samples": 2,
            "families": {"niah_single_1": "niah", "vt": "vt"}}  # fmt: skip
    if scale:
        meta["score_scale"] = scale
    atomic_write_json(folder / "results.json", {"scores": scores, "metadata": meta})
    if samples is not None:
        atomic_write_text(folder / "samples.jsonl", "".join(json.dumps(s) + "\n" for s in samples))
    return folder


def test_load_run_formats(tmp_path):
    run = write_run(tmp_path / "a", "rope", {"niah_single_1": {"64": 50.0, "128": None}})
    r = load_run(run)
    assert r.name == "rope" and r.scores == {"niah_single_1": {64: 50.0}}  # null = skipped
    assert r.counts == {"niah_single_1": {64: 2}}
    low = write_run(tmp_path / "b", "x", {"vt": {"64": 1.0, "128": 0.0}})
    assert load_run(low).scores == {"vt": {64: 1.0, 128: 0.0}}  # percent, never rescaled
    frac = write_run(tmp_path / "e", "x", {"vt": {"64": {"score": 0.25, "n": 4}}}, scale="fraction")
    assert load_run(frac).scores == {"vt": {64: 25.0}} and load_run(frac).counts == {"vt": {64: 4}}
    records = tmp_path / "c"
    atomic_write_json(records / "results.json",
                      {"rows": [{"task": "vt", "length": 64, "score": 50.0}],
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


def eval_run(folder, plan, name):
    """A real (tiny) evaluation run: the runner's own files for a tiny token-level model."""
    model = LongposEvalModel(tiny_model(plan, vocab_size=600))
    run_eval(model, ["niah_single_1", "vt"], [48, 96], 2, folder, progress=False,
             model_name=name, metadata={"train_length": 64})  # fmt: skip
    return folder


def test_report_from_tiny_runs(tmp_path):
    runs = [
        eval_run(tmp_path / "rope", "rope", "rope"),
        eval_run(tmp_path / "repo", "repo", "repo"),
    ]
    rope = load_run(runs[0])
    runner = json.loads((runs[0] / "results.json").read_text())
    assert rope.name == "rope" and rope.counts["niah_single_1"][96] == 2
    for task, row in runner["scores"].items():  # the runner's cells, in percent, as read
        assert {int(n): v for n, v in row.items() if v is not None} == rope.scores.get(task, {})
    out = tmp_path / "report"
    md_path = write_report(runs, out)
    assert md_path == out / "report.md"
    md = md_path.read_text(encoding="utf-8")
    for section in ("## Runs", "## Average over tasks", "## By task family",
                    "## Per model: task x length", "### rope", "### repo"):  # fmt: skip
        assert section in md
    families = {task_family(t) for t in rope.tasks}
    images = [line.split("(")[1].rstrip(")") for line in md.splitlines() if line.startswith("![")]
    expected = {"accuracy_vs_length_all.png", "heatmap_rope.png", "heatmap_repo.png"}
    expected |= {f"accuracy_vs_length_{f}.png" for f in families}
    assert set(images) == expected
    for img in images:
        assert (out / img).read_bytes()[:8] == PNG
    report = json.loads((out / "report.json").read_text())
    assert report["train_length"] == 64
    assert report["lengths"] == sorted({n for r in runs for n in load_run(r).lengths})
    avg = average_by_length(rope.scores)
    for n, v in avg.items():
        assert math.isclose(report["average"]["rope"][str(n)], v)
        if runner["average"][str(n)] is not None:  # the runner's own per-length average
            assert round(v, 2) == pytest.approx(runner["average"][str(n)])
    cells = " | ".join(f"{avg[n]:.1f}" if n in avg else "-" for n in report["lengths"])
    assert f"| rope | {cells} |" in md
    assert "Training length: 64 tokens." in md


def test_report_from_fake_runs_by_family(tmp_path):
    a = write_run(tmp_path / "a", "rope", {"niah_single_1": {"64": 80.0, "128": 40.0},
                                           "vt": {"64": 50.0, "128": 0.0}})  # fmt: skip
    b = write_run(tmp_path / "b", "repo", {"niah_single_1": {"64": 90.0, "128": 70.0},
                                           "vt": {"64": 60.0}})  # fmt: skip
    md = write_report([a, b], tmp_path / "out").read_text(encoding="utf-8")
    assert "### niah" in md and "### vt" in md
    assert "| rope | 65.0 | 20.0 | 42.5 |" in md  # average over the two tasks, then mean
    assert "| repo | 75.0 | 70.0 | 72.5 |" in md  # vt missing at 128: left out of that mean
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["families"]["vt"]["curves"]["repo"] == {"64": 60.0}


def test_report_names_are_unique(tmp_path):
    a = write_run(tmp_path / "x" / "run", "same", {"vt": {"64": 1.0}})
    b = write_run(tmp_path / "y" / "run", "same", {"vt": {"64": 0.0}})
    write_report([a, b], tmp_path / "out")
    heatmaps = sorted(p.name for p in (tmp_path / "out").glob("heatmap_*.png"))
    assert len(heatmaps) == 2
    with pytest.raises(ValueError, match="no run"):
        write_report([], tmp_path / "out2")
