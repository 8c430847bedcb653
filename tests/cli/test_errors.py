"""Every user error through the command line: exit status 2, one line, no traceback.

A table of bad inputs a newcomer can type (issue 16), each run through ``longpos.cli.main``
against one small trained run folder.
"""

import time

import pytest

from longpos.checkpoint import save_model
from longpos.cli import main
from longpos.config import ModelConfig
from longpos.model import LongposLM

FAST = ["--train.steps", "2", "--train.batch_size", "4", "--train.no-progress"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run folder of `longpos train --recipe demo` cut to 2 steps, and a bare model."""
    root = tmp_path_factory.mktemp("errors")
    main(["train", "--recipe", "demo", "--out", str(root / "run"), *FAST])
    save_model(LongposLM(ModelConfig(vocab_size=48, d_model=32, n_layers=1, n_heads=4)),
               root / "bare")  # fmt: skip
    save_model(LongposLM(ModelConfig(vocab_size=259, d_model=32, n_layers=1, n_heads=4)),
               root / "bytes")  # fmt: skip
    (root / "notes.txt").write_text("a text file", encoding="utf-8")
    return root


CASES = [
    # (argv with {root} for the fixture folder, a fragment of the message)
    (["eval", "--model", "{root}/run", "--tasks", "mqar"], "pass {root}/run/model"),
    (
        ["viz", "positions", "--model", "{root}/run", "--task", "mqar", "--length", "64"],
        "pass {root}/run/model",
    ),
    (["eval", "--model", "{root}/nothing"], "does not exist"),
    (
        [
            "eval",
            "--model",
            "{root}/bytes",
            "--tokenizer",
            "byte",
            "--tasks",
            "qa_1",
            "--lengths",
            "512",
        ],
        '--options \'{"data_path": "PATH.json"}\'',
    ),
    (["viz", "positions", "--model", "{root}/bytes", "--text", "caf\udcff"], "not valid UTF-8"),
    (["eval", "--model", "{root}/run/model", "--lengths", "10000000"], "lengths up to about"),
    (["eval", "--model", "{root}/run/model", "--lengths", "abc"], "--lengths must be integers"),
    (["eval", "--model", "{root}/run/model", "--lengths", "-5"], "--lengths must be positive"),
    (["eval", "--model", "{root}/run/model", "--tasks", "nosuch"], "unknown task 'nosuch'"),
    (["eval", "--model", "{root}/run/model", "--options", "{bad"], "--options is not valid JSON"),
    (["eval", "--model", "{root}/run/model", "--options", "[1]"], "must be a JSON object"),
    (
        ["eval", "--model", "{root}/run/model", "--options", '{"num_symbols": 500}'],
        "pass --options",
    ),
    (["eval", "--model", "{root}/run/model", "--tokenizer", "byte"], "drop --tokenizer"),
    (
        [
            "eval",
            "--model",
            "{root}/bare",
            "--tasks",
            "mqar",
            "--lengths",
            "20000",
            "--options",
            '{"num_symbols": 32}',
        ],
        "MQAR at length 20000",
    ),
    (["viz", "positions", "--model", "{root}/run/model", "--text", "hello"], "cannot read text"),
    (
        [
            "viz",
            "positions",
            "--model",
            "{root}/run/model",
            "--task",
            "mqar",
            "--length",
            "10000000",
        ],
        "at most",
    ),
    (
        ["viz", "positions", "--model", "{root}/run/model", "--task", "mqar"],
        "--task needs --length",
    ),
    (["viz"], "needs a subcommand"),
    (["train", "--train.data.options", "{bad", *FAST], "data.options is not valid JSON"),
    (["train", "--train.data.tasks", "nosuch", *FAST], "unknown task 'nosuch'"),
    (["train", "--recipe", "huge", *FAST], "recipe='huge' is unknown"),
    (["train", "--model.colour", "red"], "Unrecognized options: --model.colour"),
    (["train", "--train.steps", "abc"], "--train.steps"),
    (["train", "--train.seq_len", "10000000", "--preset", "tiny", *FAST], "--train.batch_size"),
    (["train", "--init-from", "{root}/run", *FAST], "pass {root}/run/model"),
    (["fly"], "Unrecognized options: fly"),
    (["report", "{root}/nothing"], "nothing"),
]


@pytest.mark.parametrize("argv, message", CASES, ids=[" ".join(c[0])[:60] for c in CASES])
def test_user_errors_exit_2_with_one_line(run, capsys, monkeypatch, tmp_path, argv, message):
    monkeypatch.delenv("LONGPOS_SQUAD", raising=False)
    monkeypatch.chdir(tmp_path)  # default --out folders land here
    argv = [a.replace("{root}", str(run)) for a in argv]
    start = time.perf_counter()
    with pytest.raises(SystemExit) as err:
        main(argv)
    assert time.perf_counter() - start < 30  # checked before any work
    assert err.value.code == 2
    lines = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ") and "Traceback" not in lines[0]
    assert message.replace("{root}", str(run)) in lines[0]


def test_non_utf8_text_is_named(run, capsys):
    """A text model refuses non-UTF-8 --text in plain words (a symbolic one refuses text)."""
    from longpos.viz.positions import _text_argument

    with pytest.raises(ValueError, match="not valid UTF-8 \\(byte 0xff"):
        _text_argument("caf\udcff")
    bad = run / "latin1.txt"
    bad.write_bytes("café".encode("latin-1"))
    with pytest.raises(ValueError, match="is not UTF-8 text"):
        _text_argument(str(bad))


def test_text_naming_a_file_reads_it(run, capsys):
    from longpos.viz.positions import _text_argument

    assert _text_argument(str(run / "notes.txt")) == "a text file"
    assert "reading the file" in capsys.readouterr().out
    assert _text_argument("plain words") == "plain words"
