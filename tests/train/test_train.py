"""Training loop: learning, exact resume, schedules, parameter groups, distributed parity."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from copy_source import CopySource

from longpos.checkpoint import load_model
from longpos.config import ModelConfig
from longpos.model import LongposLM
from longpos.train import OptimConfig, TrainConfig, train
from longpos.train.optim import param_groups
from longpos.train.schedule import lr_multiplier

HERE = Path(__file__).parent


def small_model(plan="rope", seed=0, **overrides):
    cfg = ModelConfig(
        vocab_size=32, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, plan=plan, **overrides
    )
    return LongposLM(cfg, torch.Generator().manual_seed(seed))


def metrics(folder):
    return [json.loads(x) for x in (Path(folder) / "metrics.jsonl").read_text().splitlines()]


def test_loss_goes_down_on_a_tiny_task(tmp_path):
    cfg = TrainConfig(steps=150, batch_size=16, seq_len=32, log_every=10, progress=False,
                      optim=OptimConfig(lr=3e-3, warmup_steps=10))  # fmt: skip
    result = train(small_model("rope"), cfg, tmp_path, source=CopySource())
    lines = [m for m in metrics(tmp_path) if "loss" in m]
    assert lines[-1]["answer_loss"] < lines[0]["answer_loss"] / 5
    assert result["eval"]["eval_answer_acc"] > 0.9  # chance is 1/30
    loaded = load_model(tmp_path / "model")
    assert loaded.config.plan == "rope"


def test_stopped_and_resumed_run_matches_uninterrupted_run(tmp_path):
    cfg = TrainConfig(steps=12, batch_size=8, grad_accum=2, seq_len=24, log_every=1,
                      progress=False, z_loss=1e-4,
                      optim=OptimConfig(lr=3e-3, warmup_steps=3))  # fmt: skip
    train(small_model("repo"), cfg, tmp_path / "straight", source=CopySource())
    stopped = train(small_model("repo"), cfg, tmp_path / "resumed", source=CopySource(),
                    stop_after=5)  # fmt: skip
    assert stopped["stopped_at"] == 5
    fresh = small_model("repo", seed=123)  # different init: everything must come from disk
    result = train(fresh, cfg, tmp_path / "resumed", source=CopySource())
    assert result["resumed"]
    a, b = metrics(tmp_path / "straight"), metrics(tmp_path / "resumed")
    assert [m["step"] for m in a] == [m["step"] for m in b]
    for x, y in zip(a, b, strict=True):
        assert x.get("loss") == y.get("loss") and x.get("eval_lm_loss") == y.get("eval_lm_loss")
    wa = load_model(tmp_path / "straight" / "model").state_dict()
    wb = load_model(tmp_path / "resumed" / "model").state_dict()
    assert all(wa[k].equal(wb[k]) for k in wa)


def test_schedules():
    base = dict(lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    cos = OptimConfig(schedule="cosine", **base)
    assert lr_multiplier(0, 100, cos) == pytest.approx(0.1)
    assert lr_multiplier(9, 100, cos) == pytest.approx(1.0)
    assert lr_multiplier(99, 100, cos) == pytest.approx(0.1)
    assert lr_multiplier(54, 100, cos) == pytest.approx(0.55, abs=0.01)
    lin = OptimConfig(schedule="linear", **base)
    assert lr_multiplier(54, 100, lin) == pytest.approx(0.55, abs=0.01)
    wsd = OptimConfig(schedule="wsd", decay_fraction=0.2, **base)
    assert lr_multiplier(79, 100, wsd) == 1.0
    assert lr_multiplier(99, 100, wsd) == pytest.approx(0.1)
    assert lr_multiplier(90, 100, wsd) < 1.0
    assert lr_multiplier(50, 100, OptimConfig(schedule="constant", **base)) == 1.0


def test_parameter_groups():
    model = small_model("repo", repo=dict(lr_multiplier=10.0))
    groups = {g["name"]: g for g in param_groups(model, OptimConfig(lr=1e-3))}
    assert set(groups) == {"decay", "no_decay", "repo"}
    assert groups["repo"]["base_lr"] == pytest.approx(1e-2)
    assert groups["no_decay"]["weight_decay"] == 0.0
    n_repo = sum(p.numel() for p in groups["repo"]["params"])
    assert n_repo == sum(p.numel() for n, p in model.named_parameters() if "assigner" in n)
    assert any(p is model.embed.weight for p in groups["no_decay"]["params"])
    total = sum(p.numel() for g in groups.values() for p in g["params"])
    assert total == model.num_parameters()


def test_bad_values_are_rejected():
    with pytest.raises(ValueError, match="train.batch_size=10 must be divisible"):
        TrainConfig(batch_size=10, grad_accum=3)
    with pytest.raises(ValueError, match="optim.schedule"):
        OptimConfig(schedule="step")
    with pytest.raises(ValueError, match="optim.lr"):
        OptimConfig(lr=0)
    with pytest.raises(ValueError, match="data.options"):
        TrainConfig(data=dict(options="{oops"))
    big = CopySource()
    big.vocab_size = 99
    with pytest.raises(ValueError, match="model.vocab_size"):
        train(small_model(), TrainConfig(steps=1, progress=False), "/tmp/x", source=big)


def free_port() -> int:
    """A TCP port nothing listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_worker(out, parallel="ddp", accum=1, nproc=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable]
    if nproc:
        cmd += ["-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
                "--master_addr", "127.0.0.1", "--master_port", str(free_port())]  # fmt: skip
    cmd += [str(HERE / "dist_worker.py"), str(out), parallel, str(accum)]
    subprocess.run(cmd, check=True, env=env, capture_output=True, timeout=300)
    return metrics(out)


@pytest.mark.slow  # ~11 s each on 2 cores; CI runs the slow tier too
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_process_run_equals_single_process(tmp_path, parallel):
    single = run_worker(tmp_path / "single", accum=2)
    double = run_worker(tmp_path / "double", parallel=parallel, nproc=2)
    assert len(single) == len(double)
    for a, b in zip(single, double, strict=True):
        for key in ("loss", "eval_lm_loss"):
            if key in a:
                assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6)
    wa = load_model(tmp_path / "single" / "model").state_dict()
    wb = load_model(tmp_path / "double" / "model").state_dict()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-4, atol=1e-5)
