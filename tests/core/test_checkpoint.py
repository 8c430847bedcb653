"""Checkpoints: exact round trip, clear errors for missing, corrupt or mismatched folders."""

import json

import pytest
import torch

from longpos.checkpoint import CheckpointError, load_model, save_model


@pytest.mark.parametrize("overrides", [dict(plan="repo", n_kv_heads=2), dict(tie_embeddings=False)])
def test_round_trip_reproduces_logits_exactly(tmp_path, make_model, overrides):
    model = make_model(seed=3, **overrides)
    save_model(model, tmp_path / "ckpt")
    loaded = load_model(tmp_path / "ckpt").eval()
    assert loaded.config == model.config
    x = torch.randint(0, 61, (2, 11))
    assert loaded(x).logits.equal(model(x).logits)
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [
        "config.json",
        "model.safetensors",
    ]


def test_missing_folder_and_files(tmp_path, make_model):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="config.json is missing"):
        load_model(tmp_path / "empty")
    save_model(make_model(), tmp_path / "c")
    (tmp_path / "c" / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors is missing"):
        load_model(tmp_path / "c")


def test_truncated_weights(tmp_path, make_model):
    save_model(make_model(), tmp_path / "c")
    weights = tmp_path / "c" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="model.safetensors.*truncated"):
        load_model(tmp_path / "c")


def test_corrupt_weights_with_matching_size(tmp_path, make_model):
    save_model(make_model(), tmp_path / "c")
    weights = tmp_path / "c" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[:8] = b"\xff" * 8  # header length field
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="model.safetensors is corrupt"):
        load_model(tmp_path / "c")


def test_corrupt_config(tmp_path, make_model):
    save_model(make_model(), tmp_path / "c")
    (tmp_path / "c" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json is not valid JSON"):
        load_model(tmp_path / "c")


def test_incompatible_config(tmp_path, make_model):
    save_model(make_model(), tmp_path / "c")
    path = tmp_path / "c" / "config.json"
    meta = json.loads(path.read_text())
    meta["model"]["n_heads"] = 5
    path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="incompatible model config.*n_heads"):
        load_model(tmp_path / "c")


def test_weights_from_another_config(tmp_path, make_model):
    save_model(make_model(plan="rope"), tmp_path / "rope")
    save_model(make_model(plan="repo"), tmp_path / "repo")
    # swap in RePo weights (extra tensors) under the RoPE config
    meta = json.loads((tmp_path / "rope" / "config.json").read_text())
    (tmp_path / "repo" / "config.json").write_text(
        json.dumps(
            {
                **meta,
                "weights": json.loads((tmp_path / "repo" / "config.json").read_text())["weights"],
            }
        )
    )
    with pytest.raises(CheckpointError, match="unexpected tensors.*assigner"):
        load_model(tmp_path / "repo")


def test_continued_pretraining_reports_new_modules(tmp_path, make_model):
    rope = make_model(plan="rope")
    save_model(rope, tmp_path / "rope")
    cfg = rope.config.__class__.from_dict({**rope.config.to_dict(), "plan": "repo"})
    with pytest.raises(CheckpointError, match="missing tensors"):
        load_model(tmp_path / "rope", config=cfg)
    repo = load_model(tmp_path / "rope", config=cfg, allow_missing=True)
    assert repo.missing_weights and all(".assigner." in n for n in repo.missing_weights)
    assert repo.embed.weight.equal(rope.embed.weight)


def test_no_temporary_files_left(tmp_path, make_model):
    save_model(make_model(), tmp_path / "c")
    save_model(make_model(seed=1), tmp_path / "c")  # overwrite in place
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [
        "config.json",
        "model.safetensors",
    ]
