"""The in-place value table of FwPKM (``longpos.memory.value_table``) against plain autograd.

``PlainValueTable`` (``longpos.memory.naive``) is the straightforward version: every write a new table (out-of-place
``index_add``), every read an ``embedding_bag`` that autograd differentiates densely. The layer
run with either must give the same outputs, states and gradients, bit for bit, in every mode
that routes gradients differently (learned initial table, shared memory, truncation, several
calls, iterative passes).
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

import longpos.memory.fwpkm as fwpkm_module
from longpos.memory import FwPKMConfig, FwPKMLayer
from longpos.memory.naive import PlainValueTable
from longpos.memory.value_table import ValueTable


def _config(**overrides: object) -> FwPKMConfig:
    base = dict(d_model=16, d_k=8, d_v=8, sqrt_n=8, topk=4, chunk=8)
    return FwPKMConfig(**{**base, **overrides})  # type: ignore[arg-type]


def _run(
    table_cls: type, monkeypatch: pytest.MonkeyPatch, cfg: FwPKMConfig, calls: int = 1,
    passes: int = 1, retain: bool = False,
) -> dict[str, Tensor]:  # fmt: skip
    """Outputs, final values and every gradient of a layer run with ``table_cls``."""
    monkeypatch.setattr(fwpkm_module, "ValueTable", table_cls)
    layer = FwPKMLayer(cfg, generator=torch.Generator().manual_seed(0))
    x = torch.randn(3, 21, cfg.d_model, generator=torch.Generator().manual_seed(1))
    x.requires_grad_()
    state, ys = None, []
    for piece in x.chunk(calls, dim=1):
        if passes > 1:
            y, state = layer.iterative_forward(piece, state, passes=passes)
        else:
            y, state = layer(piece, state)
        ys.append(y)
    y = torch.cat(ys, 1)
    assert state is not None
    weights = torch.randn(y.shape, generator=torch.Generator().manual_seed(2))
    loss = (y * weights).sum() + state.values.square().sum()  # the final table is used too
    loss.backward(retain_graph=retain)
    if retain:
        loss.backward()
    out = {"y": y.detach(), "values": state.values.detach(), "x.grad": x.grad}
    out.update({f"{n}.grad": p.grad for n, p in layer.named_parameters() if p.grad is not None})
    return out


CASES = {
    "default": {},
    "learned initial table": {"learn_init": True},
    "one memory for the batch": {"share_across_batch": True},
    "truncated every write": {"detach_every": 1},
    "truncated every 2 writes": {"detach_every": 2},
    "paper value step, lr 0.5": {"value_step_scale": "paper", "lr_v": 0.5},
    "two heads, no key write": {"heads": 2, "addr_w": 0.0},
}


@pytest.mark.parametrize("overrides", CASES.values(), ids=CASES.keys())
@pytest.mark.parametrize(
    "calls,passes", [(1, 1), (3, 1), (1, 2)], ids=["1call", "3calls", "2passes"]
)
def test_same_bits_as_plain_autograd(
    monkeypatch: pytest.MonkeyPatch, overrides: dict, calls: int, passes: int
) -> None:
    cfg = _config(**overrides)
    plain = _run(PlainValueTable, monkeypatch, cfg, calls, passes)
    fast = _run(ValueTable, monkeypatch, cfg, calls, passes)
    assert plain.keys() == fast.keys()
    for name in plain:
        assert torch.equal(plain[name], fast[name]), name
    if cfg.learn_init:
        assert "init_values.grad" in fast and fast["init_values.grad"].abs().sum() > 0


def test_repeated_backward_sweeps_accumulate_like_plain(monkeypatch: pytest.MonkeyPatch) -> None:
    plain = _run(PlainValueTable, monkeypatch, _config(learn_init=True), calls=2, retain=True)
    fast = _run(ValueTable, monkeypatch, _config(learn_init=True), calls=2, retain=True)
    for name in plain:
        assert torch.equal(plain[name], fast[name]), name


def test_the_incoming_state_is_never_modified() -> None:
    layer = FwPKMLayer(_config(), generator=torch.Generator().manual_seed(0))
    x = torch.randn(2, 16, 16)
    _, state = layer(x[:, :8])
    before = state.values.clone()
    _, after = layer(x[:, 8:], state)  # one write
    assert after.n_writes == state.n_writes + 1
    assert torch.equal(state.values, before)
    assert not torch.equal(after.values, before)


def test_a_call_without_a_write_copies_nothing() -> None:
    layer = FwPKMLayer(_config(), generator=torch.Generator().manual_seed(0))
    _, state = layer(torch.randn(2, 8, 16))  # exactly one chunk: one write
    _, same = layer(torch.randn(2, 3, 16), state)  # 3 of 8 tokens: no write
    assert same.n_writes == state.n_writes
    assert same.values is state.values


def test_inference_matches_training_forward() -> None:
    layer = FwPKMLayer(_config(), generator=torch.Generator().manual_seed(0))
    x = torch.randn(2, 20, 16)
    y, state = layer(x)
    with torch.no_grad():
        y0, state0 = layer(x)
    assert torch.equal(y, y0) and torch.equal(state.values, state0.values)
    assert not state0.values.requires_grad


def test_double_backward_is_refused() -> None:
    layer = FwPKMLayer(_config(), generator=torch.Generator().manual_seed(0))
    x = torch.randn(2, 20, 16, requires_grad=True)
    y, _ = layer(x)
    (gx,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError):
        gx.sum().backward()


def test_table_alone_gradients_match_dense_reference() -> None:
    """The table on its own: two reads and two writes, gradients of reads, writes, start."""
    gen = torch.Generator().manual_seed(3)
    values = torch.randn(2, 6, 4, generator=gen, requires_grad=True)
    idx = torch.randint(0, 12, (5, 3), generator=gen)
    flat = torch.randint(0, 12, (7,), generator=gen)  # repeated rows included
    grads = []
    for cls in (PlainValueTable, ValueTable):
        w = torch.rand(5, 3, generator=torch.Generator().manual_seed(4), requires_grad=True)
        src = torch.randn(7, 4, generator=torch.Generator().manual_seed(5), requires_grad=True)
        table = cls(values)
        a = table.read(idx, w)
        table.write(flat, src * a.sum(), alpha=-0.7)
        b = table.read(idx.flip(0), w)
        table.write(flat.flip(0), src, alpha=1.0)
        loss = (a * 2).sum() + b.square().sum() + table.result().sin().sum()
        grads.append(torch.autograd.grad(loss, [values, w, src]))
    for plain, fast in zip(*grads, strict=True):
        assert torch.allclose(plain, fast, rtol=1e-6, atol=1e-6)


def test_detach_cuts_the_gradient_to_earlier_writes() -> None:
    values = torch.randn(1, 4, 2, requires_grad=True)
    src = torch.ones(2, 2, requires_grad=True)
    table = ValueTable(values)
    table.write(torch.tensor([0, 1]), src, alpha=1.0)
    table.detach_()
    out = table.read(torch.tensor([[0, 1]]), torch.ones(1, 2, requires_grad=True))
    assert torch.autograd.grad(out.sum(), [values, src], allow_unused=True) == (None, None)
