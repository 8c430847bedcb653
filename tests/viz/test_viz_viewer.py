import json
import re

import pytest
import torch
from viz_helpers import tiny_model, token_sample

from longpos.checkpoint import save_model
from longpos.io import atomic_write_json
from longpos.viz.positions import (
    model_vocabulary,
    plot_positions_png,
    render_viewer_html,
    sample_marks,
    viewer_data,
    viz_positions_command,
    write_position_viewer,
)


def page_data(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="viewer-data">(.*?)</script>', html, re.S)
    assert m is not None
    return json.loads(m.group(1))


def test_viewer_data_matches_the_model(model, sample):
    data = viewer_data(model, sample)
    assert [lay["technique"] for lay in data["layers"]] == ["rope", "repo", "repo"]
    assert data["layers"][0]["heads"] is None  # integer index, rebuilt in the page
    assert data["default_layer"] == 1
    with torch.no_grad():
        out = model(torch.tensor([sample.prompt_ids]), return_positions=True)
    for layer in (1, 2):
        z = out.positions[layer][0]  # (H_kv, T)
        got = torch.tensor(data["layers"][layer]["heads"], dtype=torch.float64)
        assert got.shape == (2, len(sample.prompt_ids))
        assert torch.allclose(got, z.double(), rtol=1e-5, atol=1e-12)
    assert data["tokens"][:3] == ["BOS", "s" + str((0 * 7) % 40), "s7"]
    assert data["tokens"][-4:] == ["QUERY", "s1", "s2", "ANS"]
    assert data["marks"]["value"] == [13, 14]
    assert data["marks"]["query"] == list(range(44, 48))
    assert data["task"]["depth"] == 0.3


def test_marks_and_text_override(model):
    ids = list(range(20))
    data = viewer_data(model, ids, tokens_text=[f"t{i}" for i in ids],
                       marks={"needle": [(2, 5)], "query": [18, 19, 99]})  # fmt: skip
    assert data["marks"] == {"needle": [2, 3, 4], "query": [18, 19]}
    assert data["tokens"][5] == "t5"
    with pytest.raises(ValueError, match="tokens_text"):
        viewer_data(model, ids, tokens_text=["a"])
    with pytest.raises(ValueError, match="max_tokens"):
        viewer_data(model, ids, max_tokens=10)


def test_sample_marks(sample):
    marks = sample_marks(sample)
    assert marks["needle"] == list(range(10, 16)) and marks["key"] == [11, 12]
    assert marks["distractor"] == list(range(25, 31)) and marks["query"] == [44, 45, 46, 47]


def test_page_is_self_contained_and_escapes_its_data(tmp_path):
    text = "a </script><script>alert(1)</script> & <!-- \u2028 é"
    with pytest.raises(ValueError, match="vocab_size=64"):
        write_position_viewer(tiny_model(vocab_size=64), text, tmp_path / "x.html")
    out = write_position_viewer(tiny_model(vocab_size=259), text, tmp_path / "v.html", tokenizer="byte",
                                title="t <b>")  # fmt: skip
    html = out.read_text(encoding="utf-8")
    assert '<meta name="viewport"' in html
    assert "<title>t &lt;b&gt;</title>" in html
    assert html.count("</script>") == 2  # the data block and the code, nothing injected
    assert not re.search(r"<(script|link|img|iframe)[^>]*\s(src|href)=", html, re.I)
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", html))
    assert urls <= {"http://www.w3.org/2000/svg"}
    data = page_data(html)
    assert "".join(data["tokens"]).startswith("a </script>")
    assert data["tokens"][-2:] == ["é", "\u00b7"]  # a 2-byte character on its first byte


def test_render_accepts_any_title_and_data():
    data = {"title": "__DATA__", "tokens": ["__TITLE__"], "layers": [], "marks": {}}
    html = render_viewer_html(data)
    assert page_data(html)["tokens"] == ["__TITLE__"]
    assert "<title>__DATA__</title>" in html


def test_position_png(model, sample, tmp_path):
    out = plot_positions_png(model, sample, tmp_path / "p.png")
    assert out.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="out of range"):
        plot_positions_png(model, sample, tmp_path / "q.png", layer=7)


def save_run(tmp_path, model, data: dict | None):
    """A training-run layout: run/config.json (train config) and run/model/."""
    run = tmp_path / "run"
    save_model(model, run / "model")
    if data is not None:
        atomic_write_json(run / "config.json", {"model": {}, "train": {"data": data}})
    return run / "model"


def test_model_vocabulary_lookup(tmp_path):
    m = tiny_model(vocab_size=300)
    path = save_run(tmp_path, m, {"kind": "task", "options": '{"num_symbols": 64}'})
    assert model_vocabulary(path, 300)["kind"] == "symbolic"
    assert model_vocabulary(path, 300)["options"] == {"num_symbols": 64}
    atomic_write_json(path.parent / "config.json",
                      {"train": {"data": {"kind": "text", "tokenizer": "byte"}}})  # fmt: skip
    assert model_vocabulary(path, 300) == {"kind": "text", "tokenizer": "byte",
                                           "source": str(path.parent / "config.json")}  # fmt: skip
    (path.parent / "config.json").unlink()
    assert model_vocabulary(path, 259)["kind"] == "text"
    assert model_vocabulary(path, 300)["kind"] == "symbolic"


def test_command_with_text(tmp_path):
    path = save_run(tmp_path, tiny_model(vocab_size=300), {"kind": "text", "tokenizer": "byte"})
    out = viz_positions_command(str(path), str(tmp_path / "text.html"), text="Hello, world")
    data = page_data(out.read_text(encoding="utf-8"))
    assert "".join(data["tokens"]) == "Hello, world"
    assert len(data["layers"]) == 3
    short = viz_positions_command(str(path), str(tmp_path / "cut.html"), text="x" * 50,
                                  max_tokens=20)  # fmt: skip
    assert len(page_data(short.read_text(encoding="utf-8"))["tokens"]) == 20


def test_command_errors(tmp_path):
    path = save_run(tmp_path, tiny_model(vocab_size=300), {"kind": "task", "options": "{}"})
    with pytest.raises(ValueError, match="symbolic task vocabulary.*--task"):
        viz_positions_command(str(path), str(tmp_path / "a.html"), text="hi")
    with pytest.raises(ValueError, match="exactly one"):
        viz_positions_command(str(path), str(tmp_path / "a.html"))
    with pytest.raises(ValueError, match="--length"):
        viz_positions_command(str(path), str(tmp_path / "a.html"), task="niah_single_1")
    with pytest.raises(ValueError, match=".html"):
        viz_positions_command(str(path), str(tmp_path / "a.png"), text="hi")
    with pytest.raises(ValueError, match="no such folder"):
        viz_positions_command(str(tmp_path / "nope"), str(tmp_path / "a.html"), text="hi")
    small = save_run(tmp_path / "s", tiny_model(vocab_size=64), {"kind": "text"})
    with pytest.raises(ValueError, match="vocab_size=64"):
        viz_positions_command(str(small), str(tmp_path / "b.html"), text="hi")
    assert not list(tmp_path.glob("*.html"))  # nothing half-written


def test_command_with_a_task(tmp_path):
    task = "niah_single_1"
    path = save_run(tmp_path, tiny_model(vocab_size=600), {"kind": "task", "options": "{}"})
    out = viz_positions_command(str(path), str(tmp_path / "task.html"), task=task, length=96)
    data = page_data(out.read_text(encoding="utf-8"))
    assert data["task"]["name"] == task and data["task"]["level"] == "token"
    assert len(data["tokens"]) <= 96 and data["tokens"][0] == "BOS"
    assert data["marks"]["value"] and data["tokens"][-1] == "ANS"
    assert data["marks"]["query"][-1] == len(data["tokens"]) - 1
    # a model trained on byte text gets the text rendering of the task
    text_model = save_run(tmp_path / "t", tiny_model(vocab_size=300),
                          {"kind": "text", "tokenizer": "byte"})  # fmt: skip
    out = viz_positions_command(str(text_model), str(tmp_path / "text.html"), task=task,
                                length=640, seed=1)  # fmt: skip
    data = page_data(out.read_text(encoding="utf-8"))
    assert data["task"]["level"] == "text" and data["task"]["seed"] == 1
    value = "".join(data["tokens"][i] for i in data["marks"]["value"])
    assert value in data["task"]["answers"]


def test_hf_style_duck_typing(sample):
    """A model exposing collect_positions(input_ids) works without a longpos config."""

    class Duck:
        def collect_positions(self, ids):
            t = ids.shape[1]
            return [
                torch.arange(t)[None],
                torch.stack([torch.arange(t) * 0.5, -torch.ones(t)])[None],
            ]

    data = viewer_data(Duck(), token_sample())
    assert [lay["technique"] for lay in data["layers"]] == ["index", "repo"]
    assert data["layers"][1]["heads"][1][:2] == [-1, -1]
