"""``benchmarks/gpu_run.py --device cpu --smoke``: the GPU run's code on tiny CPU shapes, so the
script the device machine runs cannot rot (issue 17). It must finish, write every part, and
record no error anywhere; the CUDA-only measurements say "not available on cpu"."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_run.py"


def errors(node, path=""):
    """Every ``{"status": "error"}`` record below ``node``, with its path."""
    found = []
    if isinstance(node, dict):
        if node.get("status") == "error":
            found.append(f"{path}: {node.get('error')}")
        for key, value in node.items():
            found += errors(value, f"{path}/{key}")
    return found


def test_gpu_run_smoke_on_cpu(tmp_path):
    out = tmp_path / "gpu"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--smoke", "--out", str(out)],
        capture_output=True, text=True, timeout=240, cwd=ROOT, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    parts = results["parts"]
    assert list(parts) == ["env", "correctness", "speed", "evidence"]
    assert errors(results) == []
    assert all(part["status"] == "ok" for part in parts.values())
    for name in parts:  # each part also in its own file, and the Markdown summary
        assert json.loads((out / f"{name}.json").read_text())["status"] == "ok"
    summary = (out / "summary.md").read_text()
    assert "Cached decoding vs full forward: native" in summary
    assert "- native_repo_vs_rope: RePo/RoPE median per-round ratio" in summary
    assert "- FwPKM / no memory training throughput:" in summary
    assert "- compile_repo: skipped (" in summary  # no compiler backend on the CPU smoke run

    corr = parts["correctness"]
    plans = ["rope", "nope", "r2n1", "repo", "drope", "yarn", "fwpkm"]
    for backend in ("native", "hf"):
        assert list(corr[backend]) == plans
        for plan, row in corr[backend].items():
            # float32 on the CPU: cached decoding equals the full forward to rounding
            assert row["greedy_agreement"] == 1.0, (backend, plan)
            assert row["max_abs_diff"] < 1e-4 * max(1.0, row["logit_scale"]), (backend, plan)
            assert row["finite"]
    assert corr["long_positions"]["native"]["logits_finite"]
    assert corr["sdpa"]["native_train_step"]["backends_alone"]["math"] == "ok"

    speed = parts["speed"]
    assert speed["native_repo_vs_rope"]["peak_memory_gib"] == "not available on cpu"
    assert speed["native_repo_vs_rope"]["ratio_spread"]["min"] > 0
    assert speed["hf_repo_vs_stock"]["median_ratio"] > 0
    assert speed["fwpkm_throughput"]["tokens_per_s"]["fwpkm"] > 0
    assert speed["compile_repo"]["status"] == "skipped"
    evaluation = speed["eval_batched_vs_unbatched"]
    assert evaluation["status"] == "ok" and evaluation["identical_predictions"]
    assert evaluation["samples_per_s"]["1"] > 0

    evidence = parts["evidence"]
    runs = {name for job in evidence["jobs"].values() for name in job["accuracy"]}
    assert runs == {"rope-s0", "drope-s0", "repo-s0"}
    assert evidence["tokens_per_model"] == evidence["steps"] * evidence["batch"] * 40
    # the part timings are printed as they finish
    for name in parts:
        assert f"[gpu_run] {name}: ok in" in proc.stdout


def test_a_failing_part_is_recorded_and_the_next_part_runs(tmp_path, monkeypatch):
    sys.path.insert(0, str(SCRIPT.parent))
    import gpu_run

    def broken(ctx):
        raise RuntimeError("boom")

    parts = tuple((name, broken if name == "env" else fn, needs)
                  for name, fn, needs in gpu_run.PARTS)  # fmt: skip
    monkeypatch.setattr(gpu_run, "PARTS", parts)
    results = gpu_run.main(["--device", "cpu", "--smoke", "--parts", "env,speed",
                            "--out", str(tmp_path / "gpu")])  # fmt: skip
    env = results["parts"]["env"]
    assert env["status"] == "error" and env["error"] == "RuntimeError: boom"
    assert "Traceback" in env["traceback"]
    assert results["parts"]["speed"]["status"] == "ok"
    on_disk = json.loads((tmp_path / "gpu" / "env.json").read_text())
    assert on_disk["error"] == "RuntimeError: boom"
