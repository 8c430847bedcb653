"""The command line: options generated from the dataclasses, rejection of bad input, train."""

import json

import pytest

from longpos.cli import main

FAST = ["--train.steps", "2", "--train.data.kind", "text", "--train.seq_len", "32",
        "--train.batch_size", "2", "--train.no-progress"]  # fmt: skip


def test_info_json(capsys):
    main(["info", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert data["torch"].startswith("2.") and data["cpu_count"] >= 1


def test_unknown_option_is_rejected(capsys):
    with pytest.raises(SystemExit) as err:
        main(["train", "--model.colour", "red"])
    assert err.value.code != 0
    assert "--model.colour" in capsys.readouterr().err


def test_unknown_command_is_rejected(capsys):
    with pytest.raises(SystemExit) as err:
        main(["fly"])
    assert err.value.code != 0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--model.n_heads", "3"], "n_heads=3 must divide d_model=128"),
        (["--model.plan", "warp"], "plan='warp' is unknown"),
        (["--train.optim.lr", "-1"], "optim.lr=-1.0 must be > 0"),
        (["--preset", "huge"], "preset='huge' is unknown"),
        (["--drope"], "--drope needs --init-from"),
    ],
)
def test_bad_values_are_rejected_with_a_message(capsys, argv, message):
    with pytest.raises(SystemExit) as err:
        main(["train", *argv, *FAST])
    assert err.value.code != 0
    captured = capsys.readouterr()
    text = " ".join((captured.err + captured.out).replace("│", " ").split())  # unwrap boxes
    assert message in text


def test_train_writes_resolved_config_and_continues_with_new_modules(tmp_path, capsys):
    main(
        ["train", "--preset", "tiny", "--model.n_layers", "3", "--out", str(tmp_path / "a"), *FAST]
    )
    saved = json.loads((tmp_path / "a" / "config.json").read_text())
    assert saved["model"]["n_layers"] == 3 and saved["model"]["d_model"] == 128
    assert saved["train"]["steps"] == 2
    assert (tmp_path / "a" / "model" / "model.safetensors").exists()
    main(["train", "--init-from", str(tmp_path / "a" / "model"), "--model.plan", "repo",
          "--out", str(tmp_path / "b"), *FAST])  # fmt: skip
    out = capsys.readouterr().out
    assert "initialised 6 new weight tensors" in out  # gate/content/assign in layers 1, 2
    assert json.loads((tmp_path / "b" / "config.json").read_text())["model"]["plan"] == "repo"
    main(["train", "--init-from", str(tmp_path / "a" / "model"), "--drope",
          "--out", str(tmp_path / "c"), *FAST])  # fmt: skip
    assert json.loads((tmp_path / "c" / "config.json").read_text())["model"]["plan"] == "nope"
