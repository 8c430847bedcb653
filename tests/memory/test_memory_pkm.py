"""Static PKM: fast path equals the naive loop reference (outputs and gradients), causality,
config validation and optimiser groups."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch import nn

from longpos.memory.naive import naive_pkm_forward
from longpos.memory.pkm import PKMConfig, StaticPKM, pkm_param_groups, pkm_value_parameters


def _make(seed: int = 0, **kw) -> StaticPKM:
    base = dict(d_model=8, d_k=6, sqrt_n=5, heads=2, topk=3)
    base.update(kw)
    return StaticPKM(PKMConfig(**base), generator=torch.Generator().manual_seed(seed)).double()


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"score": "idw"},
        {"output": "linear", "d_v": 5},
        {"output": "swiglu", "d_v": 7, "query_norm": "layer"},
        {"query_norm": "none", "heads": 1, "topk": 5},
    ],
)
def test_pkm_matches_naive_outputs_and_gradients(kw: dict) -> None:
    pkm = _make(**kw)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 5, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    y = pkm(x)
    y_ref = naive_pkm_forward(pkm, x)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-12)
    w = torch.randn(y.shape, generator=gen, dtype=torch.float64)
    params = [x, *pkm.parameters()]
    g_fast = torch.autograd.grad((y * w).sum(), params)
    g_ref = torch.autograd.grad((y_ref * w).sum(), params)
    for a, b in zip(g_fast, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)
    assert g_fast[0].abs().sum() > 0  # the gradient is real


def test_pkm_reads_per_head_softmax_and_shared_values() -> None:
    pkm = _make()
    x = torch.randn(1, 3, 8, dtype=torch.float64)
    read, w, idx = pkm.lookup(x)
    torch.testing.assert_close(w.sum(-1), torch.ones(1, 3, 2, dtype=torch.float64))
    manual = (w.unsqueeze(-1) * pkm.values[idx]).sum(dim=(2, 3))  # sum over heads and top-k
    torch.testing.assert_close(read, manual)


def test_pkm_gradcheck() -> None:
    pkm = _make(d_model=4, d_k=4, sqrt_n=3, heads=2, topk=2)
    x = torch.randn(1, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(pkm, (x,))


@pytest.mark.parametrize("query_norm", ["rms", "layer", "none"])
def test_pkm_is_causal(query_norm: str) -> None:
    pkm = _make(query_norm=query_norm)
    x = torch.randn(2, 6, 8, dtype=torch.float64)
    y = pkm(x)
    x2 = x.clone()
    x2[:, 3] += torch.randn(2, 8, dtype=torch.float64)
    y2 = pkm(x2)
    torch.testing.assert_close(y[:, :3], y2[:, :3], rtol=0, atol=0)
    torch.testing.assert_close(y[:, 4:], y2[:, 4:], rtol=0, atol=0)
    assert not torch.allclose(y[:, 3], y2[:, 3])


def test_batchnorm_query_leaks_the_future_as_documented() -> None:
    pkm = _make(query_norm="batch").train()
    x = torch.randn(1, 6, 8, dtype=torch.float64)
    x2 = x.clone()
    x2[:, 5] += 5.0
    assert not torch.allclose(pkm(x)[:, 0], pkm(x2)[:, 0])


def test_pkm_config_json_round_trip() -> None:
    cfg = PKMConfig(d_model=16, d_v=8, output="swiglu", score="idw")
    again = PKMConfig(**json.loads(json.dumps(dataclasses.asdict(cfg))))
    assert again == cfg


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"d_k": 5}, "d_k"),
        ({"topk": 9, "sqrt_n": 8}, "topk"),
        ({"heads": 0}, "heads"),
        ({"query_norm": "bn"}, "query_norm"),
        ({"d_v": 4}, "d_v"),
        ({"eps_idw": 0.0}, "eps_idw"),
        ({"sqrt_n": 2.5}, "sqrt_n"),
    ],
)
def test_pkm_config_validation_names_the_field(kw: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        PKMConfig(d_model=16, **kw)


def test_pkm_rejects_bad_input_shape() -> None:
    pkm = _make()
    with pytest.raises(ValueError, match="d_model=8"):
        pkm(torch.randn(2, 3, 7, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"\(B, T, d_model"):
        pkm(torch.randn(3, 8, dtype=torch.float64))


def test_param_groups_separate_values() -> None:
    model = nn.Sequential(nn.Linear(8, 8), _make(value_lr=0.01), _make(seed=1))
    values = list(pkm_value_parameters(model))
    assert len(values) == 2 and all(v.shape == (25, 8) for v in values)
    groups = pkm_param_groups(model, lr=3e-4, weight_decay=0.1)
    assert groups[1]["lr"] == 0.01 and groups[1]["weight_decay"] == 0.0
    ids0 = {id(p) for p in groups[0]["params"]}
    ids1 = {id(p) for p in groups[1]["params"]}
    assert not ids0 & ids1
    assert ids0 | ids1 == {id(p) for p in model.parameters()}
    torch.optim.AdamW(groups)  # accepted by an optimiser


def test_reset_parameters_uses_the_generator() -> None:
    a, b, c = _make(seed=3), _make(seed=3), _make(seed=4)
    assert torch.equal(a.values, b.values) and torch.equal(a.keys, b.keys)
    assert not torch.equal(a.values, c.values)
    assert a.keys.abs().max() <= 1 / 6**0.5
