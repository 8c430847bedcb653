"""benchmarks/reproduce.py end to end on a tiny budget: the tables, the noisy-context
evaluation and RePo's learned positions for every RePo run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "reproduce.py"


@pytest.mark.slow
def test_reproduce_runs_every_part(tmp_path):
    out = tmp_path / "rep"
    cmd = [sys.executable, str(SCRIPT), "--out", str(out), "--tasks", "graph_tokens:8",
           "--seeds", "3", "--samples", "2", "--methods", "rope,repo,repo_cpt,fwpkm", "--workers", "1"]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
    results = json.loads((out / "results.json").read_text())["graph_tokens"]
    noisy = results["noisy_context"]
    assert set(noisy["accuracy"]) == {"rope", "repo", "repo_cpt", "fwpkm"}
    long = results["memory_lengths"]
    assert long["lengths"] == [1024, 2048] and set(long["accuracy"]) == {"fwpkm", "rope"}
    assert all(len(v["64"]) == 3 for v in noisy["accuracy"].values())
    runs = {r["run"] for r in results["repo_learned"]}
    assert runs == {f"{m}-s{s}" for m in ("repo", "repo_cpt") for s in range(3)}
    report = (out / "reproduce.md").read_text()
    assert "Noisy context" in report and "What RePo learned" in report
    assert "--methods rope,repo,repo_cpt,fwpkm" in report and "Beyond 8L" in report
    assert "## The papers' claims at this scale" in report
    claims = json.loads((out / "claims.json").read_text())
    assert {c["paper"].split()[0] for c in claims} == {"RePo", "FwPKM"}  # no DroPE run
    assert all(r["verdict"] in ("held", "not held", "cannot tell") for c in claims
               for r in c["rows"])  # fmt: skip
    # --report-only rebuilds the same report from the finished runs
    subprocess.run([*cmd, "--report-only"], check=True, capture_output=True, timeout=600)
    assert (out / "reproduce.md").read_text() == report
    # --resume keeps a finished task as it is
    proc = subprocess.run([*cmd, "--resume"], check=True, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert "graph_tokens: finished earlier with the same plan, kept" in proc.stdout
    assert (out / "reproduce.md").read_text() == report


def test_too_few_seeds_are_refused():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--seeds", "2"], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2 and "--seeds must be >= 3" in proc.stderr


def test_a_missing_reuse_folder_is_refused(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--reuse", str(tmp_path / "none")],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2 and "none is not a folder" in proc.stderr


def seeded(path: Path) -> list[dict]:
    """A run's metrics or predictions without the fields that measure time."""
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    return [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in rows]


@pytest.mark.slow
def test_tasks_share_one_pool_and_keep_their_results(tmp_path):
    """Two tasks trained by one pool give each task the accuracies it gets when run alone."""
    base = [sys.executable, str(SCRIPT), "--seeds", "3", "--samples", "2",
            "--methods", "rope,nope", "--workers", "2"]  # fmt: skip
    both, alone = tmp_path / "both", tmp_path / "alone"
    run = dict(check=True, capture_output=True, text=True, timeout=600)
    subprocess.run([*base, "--out", str(both), "--tasks", "mqar:6", "graph_tokens:6"], **run)
    subprocess.run([*base, "--out", str(alone), "--tasks", "graph_tokens:6"], **run)
    shared = json.loads((both / "results.json").read_text())
    single = json.loads((alone / "results.json").read_text())["graph_tokens"]
    for task in ("mqar", "graph_tokens"):
        setup = shared[task]["setup"]
        assert setup["pool_tasks"] == ["mqar", "graph_tokens"]
        assert setup["wall_seconds"] == shared["mqar"]["setup"]["wall_seconds"]
        assert set(shared[task]["job_seconds"]) == {f"{m}-s{s}" for m in ("rope", "nope")
                                                    for s in range(3)}  # fmt: skip
    assert single["setup"]["pool_tasks"] is None
    assert shared["graph_tokens"]["accuracy"] == single["accuracy"]
    for name in shared["graph_tokens"]["job_seconds"]:  # losses and predictions, not only 0%s
        for file in ("metrics.jsonl", "eval/samples.jsonl"):
            ours = both / "graph_tokens" / "runs" / name / file
            theirs = alone / "graph_tokens" / "runs" / name / file
            assert seeded(ours) == seeded(theirs)
    assert shared["graph_tokens"]["noisy_context"] == single["noisy_context"]
    for task in ("mqar", "graph_tokens"):  # one pool of analyses too, its wall counted once
        assert shared[task]["analysis_tasks"] == ["mqar", "graph_tokens"]
        assert shared[task]["analysis_wall_seconds"] == shared["mqar"]["analysis_wall_seconds"]
    report = (both / "reproduce.md").read_text()
    assert "one pool for the runs of mqar, graph_tokens" in report
    assert "wall for the analyses of mqar, graph_tokens" in report


def test_an_unknown_method_is_refused_without_a_traceback(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "rep"),
                           "--tasks", "mqar:5", "--methods", "rope,nah"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2 and "unknown entries ['nah']" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_refused_task_leaves_every_tasks_runs_alone(tmp_path):
    """Every task is checked before any task's runs are deleted: a later task's bad --reuse
    folder does not cost an earlier task its runs."""
    out, earlier = tmp_path / "rep", tmp_path / "earlier"
    (earlier / "graph_tokens").mkdir(parents=True)  # not a finished demo folder
    run = out / "mqar" / "runs" / "rope-s0"
    run.mkdir(parents=True)
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), "--tasks", "mqar:5",
                           "graph_tokens:5", "--reuse", str(earlier)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2 and "results.json is missing" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert run.is_dir()
