"""A converted folder opens with the standard Auto classes in a process that never imported
longpos (how lm-evaluation-harness, RULER's scripts and other tools load models by path)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from hf_helpers import tiny_model, token_ids

from longpos.hf import apply_longpos, drop_positions
from longpos.memory.placement import MemoryConfig

LOAD_AND_SCORE = """
import sys, torch
from transformers import AutoModelForCausalLM
assert "longpos" not in sys.modules
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
ids = torch.load(sys.argv[2])
with torch.no_grad():
    torch.save(model(input_ids=ids, use_cache=False).logits, sys.argv[3])
print(type(model).__name__)
"""


@pytest.mark.parametrize(
    "family, convert",
    [
        ("llama", lambda m: apply_longpos(m, "repo")),
        ("qwen3", lambda m: drop_positions(m)),
        (
            "mistral",
            lambda m: apply_longpos(m, "r2n1", memory=MemoryConfig(kind="pkm", layers="1")),
        ),
    ],
)
def test_converted_folder_loads_without_importing_longpos(tmp_path, family, convert):
    torch.manual_seed(0)
    model = convert(tiny_model(family)).eval()
    model.save_pretrained(tmp_path / "model")
    assert (tmp_path / "model" / "longpos_auto.py").is_file()
    ids = token_ids()
    torch.save(ids, tmp_path / "ids.pt")
    run = subprocess.run(
        [sys.executable, "-c", LOAD_AND_SCORE, str(tmp_path / "model"), str(tmp_path / "ids.pt"),
         str(tmp_path / "logits.pt")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().endswith(type(model).__name__)
    with torch.no_grad():
        expected = model(input_ids=ids, use_cache=False).logits
    assert torch.equal(torch.load(tmp_path / "logits.pt"), expected)
