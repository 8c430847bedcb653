"""Shared builders for the FwPKM tests (tiny float64 layers)."""

from __future__ import annotations

from typing import Any

import torch

from longpos.memory.fwpkm import FwPKMConfig, FwPKMLayer, FwPKMState

F64 = torch.float64


def tiny_layer(seed: int = 0, **kw: Any) -> FwPKMLayer:
    base: dict[str, Any] = dict(d_model=8, d_k=6, d_v=5, sqrt_n=5, heads=2, topk=3, chunk=4)
    base.update(kw)
    layer = FwPKMLayer(FwPKMConfig(**base), generator=torch.Generator().manual_seed(seed))
    return layer.double()


def rand_x(B: int, T: int, d: int = 8, seed: int = 1, grad: bool = False) -> torch.Tensor:
    x = torch.randn(B, T, d, generator=torch.Generator().manual_seed(seed), dtype=F64)
    return x.requires_grad_(grad)


def assert_states_close(a: FwPKMState, b: FwPKMState, atol: float = 1e-10) -> None:
    assert a.n_carry == b.n_carry and a.n_writes == b.n_writes and a.shared == b.shared
    for name in ("keys", "values", "pend_q", "pend_v", "pend_g", "access_counts"):
        ta, tb = getattr(a, name), getattr(b, name)
        assert ta.shape == tb.shape, (name, ta.shape, tb.shape)
        torch.testing.assert_close(ta, tb, rtol=0, atol=atol, msg=name)
    assert torch.equal(a.pend_valid, b.pend_valid)


def state_loss(state: FwPKMState, seed: int = 7) -> torch.Tensor:
    """A random linear functional of the final fast weights and queue (for gradient tests)."""
    gen = torch.Generator().manual_seed(seed)
    total = torch.zeros((), dtype=F64)
    for t in (state.keys, state.values, state.pend_q, state.pend_v, state.pend_g):
        total = total + (t * torch.randn(t.shape, generator=gen, dtype=F64)).sum()
    return total
