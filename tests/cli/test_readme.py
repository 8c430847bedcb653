"""The README cannot rot: every command in a code block marked runnable is run.

A block is runnable when the line before its opening fence is ``<!-- runnable -->``. Its
lines are ``longpos ...`` commands (``#`` comments and blank lines are skipped), run in
order through ``longpos.cli.main`` in one temporary folder, so later commands see the
folders earlier ones wrote. Budgets are cut to keep this test short: ``--train.steps``
becomes 30 (added when absent), ``--samples`` 2, a demo runs ``--quick --steps 4
--samples 2 --methods rope,repo``. ``LONGPOS_README_FULL=1`` runs every command exactly as written (slow: the
full recipe trains for minutes).
"""

import os
import re
import shlex
from pathlib import Path

import pytest

from longpos.cli import main

README = Path(__file__).resolve().parents[2] / "README.md"
MARKER = "<!-- runnable -->"
FULL = os.environ.get("LONGPOS_README_FULL") == "1"


def runnable_blocks(text: str) -> list[list[str]]:
    """The command lines of every block whose opening fence follows the marker."""
    blocks: list[list[str]] = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip() != MARKER:
            continue
        assert i + 1 < len(lines) and lines[i + 1].startswith("```"), (
            f"README line {i + 1}: {MARKER} must be followed by a code fence"
        )
        block = []
        for body in lines[i + 2 :]:
            if body.startswith("```"):
                break
            if body.strip() and not body.lstrip().startswith("#"):
                block.append(body.strip())
        blocks.append(block)
    return blocks


def small(argv: list[str]) -> list[str]:
    """``argv`` with the budgets cut (see the module docstring)."""
    if FULL:
        return argv
    out = list(argv)
    for flag, value in (("--train.steps", "30"), ("--samples", "2"), ("--steps", "4")):
        if flag in out:
            out[out.index(flag) + 1] = value
    if out[0] == "train" and "--train.steps" not in out:
        out += ["--train.steps", "30"]
    if out[0] == "train":
        out += ["--train.no-progress"]
    if out[0] == "eval" and "--samples" not in out:
        out += ["--samples", "2"]
    if out[0] == "demo":
        for flag, value in (("--steps", "4"), ("--samples", "2"), ("--methods", "rope,repo")):
            if flag not in out:
                out += [flag, value]
        out += [] if "--quick" in out else ["--quick"]
    return out


def test_the_readme_has_runnable_blocks():
    blocks = runnable_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 2
    for block in blocks:
        assert block and all(line.startswith("longpos ") for line in block), block


@pytest.mark.parametrize("index", range(len(runnable_blocks(README.read_text("utf-8")))))
def test_readme_block_runs(index, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    block = runnable_blocks(README.read_text(encoding="utf-8"))[index]
    for line in block:
        argv = shlex.split(line)[1:]
        try:
            main(small(argv))
        except SystemExit as exc:
            if exc.code not in (0, None):
                err = capsys.readouterr().err
                pytest.fail(f"README command failed: {line}\n{err}")
    assert not re.search(r"Traceback", capsys.readouterr().err)
