"""The viewer and the analyses on converted Hugging Face models (tiny random configs)."""

import json
import re

import pytest
import torch
from viz_helpers import token_sample

transformers = pytest.importorskip("transformers", reason="the hf extra is not installed")
hf = pytest.importorskip("longpos.hf")

from longpos.analysis.attention import analyze_attention  # noqa: E402
from longpos.analysis.patterns import analyze_patterns  # noqa: E402
from longpos.viz.positions import viewer_data, viz_positions_command  # noqa: E402


def tiny_llama(plan: str = "repo", attn: str = "eager"):
    cfg = transformers.LlamaConfig(
        vocab_size=600, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=256,
        bos_token_id=None, eos_token_id=None, pad_token_id=None, attn_implementation=attn,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg).eval()
    return hf.apply_longpos(model, plan)


def test_viewer_data_from_a_converted_llama():
    model = tiny_llama()
    sample = token_sample(48)
    data = viewer_data(model, sample)
    plan = hf.layer_plan(model)
    assert [lay["technique"] for lay in data["layers"]] == plan
    z, learned = hf.assigned_positions(model, torch.tensor([sample.prompt_ids]))
    for i, lay in enumerate(data["layers"]):
        assert lay["learned"] == learned[i]
        if learned[i]:
            got = torch.tensor(lay["heads"], dtype=torch.float64)
            assert torch.allclose(got, z[i, 0].double(), rtol=1e-5, atol=1e-12)
        else:
            assert lay["heads"] is None  # the integer index
    assert data["default_layer"] == learned.index(True)


def test_analyses_on_a_converted_llama():
    model = tiny_llama()
    samples = [token_sample(48), token_sample(40)]
    rep = analyze_attention(model, samples, name="hf-repo")
    assert rep.layers == [i for i, t in enumerate(hf.layer_plan(model)) if t == "repo"]
    assert rep.rho.shape == (2, 3, 4)
    pats = analyze_patterns(model, samples, chunk=16)
    assert sorted(pats.per_layer) == rep.layers


def test_command_on_a_saved_hf_folder(tmp_path):
    folder = tmp_path / "llama-repo"
    tiny_llama(attn="sdpa").save_pretrained(folder)
    out = viz_positions_command(str(folder), str(tmp_path / "hf.html"), task="niah_single_1",
                                length=96)  # fmt: skip
    html = out.read_text(encoding="utf-8")
    data = json.loads(re.search(r'id="viewer-data">(.*?)</script>', html, re.S).group(1))
    assert data["task"]["level"] == "token" and "Hugging Face" in data["subtitle"]
    assert any(lay["learned"] for lay in data["layers"])
    with pytest.raises(ValueError, match="no tokenizer.*--task"):
        viz_positions_command(str(folder), str(tmp_path / "t.html"), text="hello")
