import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from longpos.analysis.attention import (
    AttentionSpans,
    analyze_attention,
    attention_markdown,
    attention_mass,
    compare_attention,
    mean_ci,
    niah_spans,
)
from longpos.config import ModelConfig
from longpos.model import LongposLM
from longpos.tasks.base import NeedleSpan, Sample

# Query row (i* = 7, so 8 visible keys) of head 0: the needle (tokens 3, 4) gets half.
ROW0 = [0.0625, 0.0625, 0.125, 0.25, 0.25, 0.0625, 0.0625, 0.125]
UNIFORM = [0.125] * 8


def causal_matrix(last_rows: list[list[float]]) -> torch.Tensor:
    """(H, 8, 8) causal attention whose last row per head is given; other rows uniform."""
    heads = []
    for row in last_rows:
        a = torch.zeros(8, 8, dtype=torch.float64)
        for i in range(8):
            a[i, : i + 1] = 1.0 / (i + 1)
        a[7] = torch.tensor(row, dtype=torch.float64)
        heads.append(a)
    return torch.stack(heads)


def spans() -> AttentionSpans:
    return AttentionSpans(query_index=7, needle=[3, 4], recent=[5, 6, 7], distractor=[5])


def test_masses_are_exact_on_a_hand_built_matrix():
    m = attention_mass(causal_matrix([ROW0, UNIFORM]), spans())
    assert m.m_needle.tolist() == [0.5, 0.25]
    assert m.m_recent.tolist() == [0.25, 0.375]
    assert m.m_distractor.tolist() == [0.0625, 0.125]
    # rho = m_N / (|N| / (i* + 1)) = m_N / 0.25
    assert m.rho.tolist() == [2.0, 1.0]
    assert m.rho_distractor.tolist() == [0.5, 1.0]
    # The query row alone gives the same numbers.
    row_only = attention_mass(causal_matrix([ROW0, UNIFORM])[:, 7, :], spans())
    assert row_only.rho.tolist() == [2.0, 1.0]


def test_spans_must_be_visible_and_needle_non_empty():
    with pytest.raises(ValueError, match="not visible"):
        AttentionSpans(query_index=5, needle=[6], recent=[5])
    with pytest.raises(ValueError, match="needle span is empty"):
        AttentionSpans(query_index=5, needle=[], recent=[5])


def make_sample(n: int = 60, depth: float = 0.25) -> Sample:
    ids = [1] + [16 + (i % 20) for i in range(n - 5)] + [5, 17, 18, 6]
    return Sample(
        task="niah_single_1", level="token", seed=0, target_length=n + 2, prompt_ids=ids,
        answers=["s30 s31"], metric="token_match_all", tokens_to_generate=2, depth=depth,
        needles=[
            NeedleSpan("distractor", "", -1, -1, 30, 36),
            NeedleSpan("needle", "", -1, -1, 10, 16),
            NeedleSpan("value", "", -1, -1, 13, 15),
            NeedleSpan("key", "", -1, -1, 11, 13),
        ],
        meta={"context_token_span": [1, n - 4], "num_symbols": 32},
    )  # fmt: skip


def test_niah_spans_from_a_sample():
    s = niah_spans(make_sample(60), recent=32)
    assert s.query_index == 59
    assert s.needle == [13, 14]
    assert s.distractor == [30, 31, 32, 33, 34, 35]
    assert s.recent == list(range(28, 60))
    assert s.depth == 0.25
    assert niah_spans(make_sample(20), recent=32).recent == list(range(20))  # clipped at 0
    no_value = make_sample()
    no_value.needles = [n for n in no_value.needles if n.role != "value"]
    with pytest.raises(ValueError, match="no needle value span"):
        niah_spans(no_value)


class FakeModel:
    """Duck-typed longpos model returning fixed attention per prompt length."""

    def __init__(self, by_length: dict[int, list[torch.Tensor]]):
        self.by_length = by_length
        self.blocks = [None] * 3
        self.config = SimpleNamespace(layer_plan=lambda: ["rope", "repo", "repo"], n_layers=3)

    def parameters(self):
        return iter([torch.zeros(1)])

    def eval(self):
        return self

    def __call__(self, ids, return_attention=False):
        assert return_attention
        return SimpleNamespace(attentions=[a[None] for a in self.by_length[ids.shape[1]]])


def test_aggregation_over_heads_layers_and_samples_is_exact():
    a = Sample("niah", "token", 0, 10, list(range(8)), ["x"], "token_match_all", 2,
               depth=0.5, needles=[NeedleSpan("value", "", -1, -1, 3, 5)])  # fmt: skip
    b = Sample("niah", "token", 1, 11, list(range(9)), ["x"], "token_match_all", 2,
               depth=0.0, needles=[NeedleSpan("value", "", -1, -1, 0, 3)])  # fmt: skip
    uniform9 = torch.full((2, 9, 9), 1 / 9, dtype=torch.float64)
    model = FakeModel({
        8: [causal_matrix([UNIFORM, UNIFORM]), causal_matrix([ROW0, UNIFORM]),
            causal_matrix([ROW0, ROW0])],
        9: [uniform9, uniform9, uniform9],
    })  # fmt: skip
    rep = analyze_attention(model, [a, b], name="fake", recent=3)
    assert rep.layers == [1, 2]  # the model's RePo layers
    per = rep.per_sample()
    # sample a: rho per layer (head mean) 1, 1.5, 2 -> mean over layers 1, 2 = 1.75
    # sample b: uniform -> rho = 1 everywhere
    assert per["rho"].tolist() == pytest.approx([1.75, 1.0], abs=1e-12)
    # m_N summed over heads: a: 0.75, 1.0 -> 0.875; b: 2 heads x 3/9 -> 2/3
    assert per["m_needle"].tolist() == pytest.approx([0.875, 2 / 3], abs=1e-12)
    # m_R (last 3 tokens) of a: layer 1: 0.25 + 0.375, layer 2: 0.25 + 0.25
    assert per["m_recent"][0] == pytest.approx((0.625 + 0.5) / 2, abs=1e-12)
    s = rep.summary()
    assert s["rho"] == pytest.approx(1.375, abs=1e-12)
    assert s["rho_ci95"] == pytest.approx(1.96 * 0.375, abs=1e-12)
    assert s["n_samples"] == 2
    curves = rep.per_layer()
    assert curves["rho"] == pytest.approx([1.0, 1.25, 1.5], abs=1e-12)
    d = rep.to_dict()
    assert d["protocol"] == "longpos" and d["depths"] == [0.5, 0.0] and d["lengths"] == [8, 9]
    # an explicit range overrides the model's
    assert analyze_attention(model, [a], layers=[0], recent=3).summary()["rho"] == 1.0


def test_mean_ci():
    assert mean_ci([1.0, 3.0]) == pytest.approx((2.0, 1.96 * math.sqrt(2) / math.sqrt(2)))
    m, ci = mean_ci([4.0])
    assert m == 4.0 and math.isnan(ci)


def tiny(plan: str) -> LongposLM:
    cfg = ModelConfig(vocab_size=64, d_model=32, n_layers=3, n_heads=4, max_seq_len=64, plan=plan)
    return LongposLM(cfg, torch.Generator().manual_seed(0)).eval()


def test_rope_vs_repo_side_by_side(tmp_path):
    models = {"rope": tiny("rope"), "repo": tiny("repo")}
    samples = [make_sample(60, 0.2), make_sample(48, 0.7)]
    out = tmp_path / "attn.png"
    reports = compare_attention(models, samples, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert reports["rope"].layers == reports["repo"].layers == [1, 2]  # same range for both
    for rep in reports.values():
        assert rep.rho.shape == (2, 3, 4)  # samples, layers, heads
        assert np.all(rep.m_needle >= 0) and np.all(rep.m_needle + rep.m_distractor <= 1 + 1e-9)
    # the numbers are those of the model's own attention probabilities
    with torch.no_grad():
        att = models["repo"](torch.tensor([samples[0].prompt_ids]), return_attention=True)
    row = att.attentions[2][0, :, 59, :].double()  # (H, T)
    assert reports["repo"].m_needle[0, 2] == pytest.approx(row[:, 13:15].sum(-1).numpy())
    md = attention_markdown(reports)
    assert md.startswith("| model | samples | layers | rho |") and "| repo | 2 | 1-2 |" in md


@pytest.mark.parametrize("task", ["niah_single_1", "niah_multikey_1", "niah_multivalue", "passkey"])
def test_needle_tokens_of_generated_samples_are_the_answer(task):
    from longpos.tasks.base import generate_sample

    s = generate_sample(task, 128, seed=3)  # token level
    spans = niah_spans(s)
    needle_ids = sorted(s.prompt_ids[j] for j in spans.needle)
    assert needle_ids == sorted(i for ans in s.answer_ids for i in ans)
    assert spans.query_index == len(s.prompt_ids) - 1 and spans.depth == s.depth
    if task == "niah_multikey_1":
        assert spans.distractor and not set(spans.distractor) & set(spans.needle)
