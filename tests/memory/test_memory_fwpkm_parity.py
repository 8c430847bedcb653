"""FwPKM fast path against the naive loop reference, gradcheck, causality, streaming, reset."""

from __future__ import annotations

import pytest
import torch
from fwpkm_helpers import F64, assert_states_close, rand_x, state_loss, tiny_layer

from longpos.memory.naive import naive_fwpkm_forward

CASES = [
    {},
    {"heads": 1, "lookahead": 0},
    {"lookahead": 2, "chunk": 3},
    {"share_across_batch": True},
    {"value_step_scale": "paper", "lr_v": 0.5, "lr_k": 2.0, "addr_w": 0.3},
    {"learn_init": True, "detach_every": 2, "chunk": 2},
    {"addr_w": 0.0, "gate_bias_init": -2.0},
]


def _grads(layer, x, y, state):
    w = torch.randn(y.shape, generator=torch.Generator().manual_seed(5), dtype=F64)
    loss = (y * w).sum() + state_loss(state)
    params = [x, *layer.parameters()]
    return torch.autograd.grad(loss, params, allow_unused=True)


@pytest.mark.parametrize("kw", CASES)
def test_fast_equals_naive_outputs_state_and_gradients(kw: dict) -> None:
    layer = tiny_layer(**kw)
    x = rand_x(2, 11, grad=True)  # 11 tokens, chunk 4: writes after 4 and 8, 3 queued at the end
    y, st = layer(x)
    y_ref, st_ref = naive_fwpkm_forward(layer, x)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-10)
    assert_states_close(st, st_ref)
    assert st.n_writes == 11 // layer.config.chunk
    g_fast = _grads(layer, x, y, st)
    g_ref = _grads(layer, x, y_ref, st_ref)
    names = ["x", *[n for n, _ in layer.named_parameters()]]
    for name, a, b in zip(names, g_fast, g_ref, strict=True):
        if a is None or b is None:
            assert a is None and b is None or (a if a is not None else b).abs().max() == 0, name
            continue
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10, msg=name)
    assert g_fast[0].abs().sum() > 0


@pytest.mark.parametrize("writes", ["end", "none"])
def test_write_modes_equal_naive(writes: str) -> None:
    layer = tiny_layer()
    x1, x2 = rand_x(2, 6, seed=2), rand_x(2, 5, seed=3)
    _, st = layer(x1)  # a non-trivial starting state with a queue
    y, st_fast = layer(x2, st, writes=writes)
    y_ref, st_ref = naive_fwpkm_forward(layer, x2, st, writes=writes)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-10)
    assert_states_close(st_fast, st_ref)
    if writes == "none":
        assert st_fast is st or torch.equal(st_fast.values, st.values)
        assert st_fast.pend_q.shape == st.pend_q.shape


def test_partial_reset_equals_naive() -> None:
    layer = tiny_layer()
    _, st = layer(rand_x(3, 6, seed=2))
    reset = torch.tensor([False, True, False])
    x = rand_x(3, 7, seed=4)
    y, st_fast = layer(x, st, reset=reset)
    y_ref, st_ref = naive_fwpkm_forward(layer, x, st, reset=reset)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-10)
    assert_states_close(st_fast, st_ref)


def test_gradcheck_float64() -> None:
    layer = tiny_layer(d_model=4, d_k=4, d_v=3, sqrt_n=3, heads=1, topk=2, chunk=2)
    names = ["q_proj.weight", "v_proj.weight", "g_proj.weight", "g_proj.bias"]
    params = dict(layer.named_parameters())
    x = rand_x(1, 5, d=4, grad=True)
    inputs = (x, *[params[n].detach().clone().requires_grad_(True) for n in names])

    def f(x, *ps):
        out, st = torch.func.functional_call(layer, dict(zip(names, ps, strict=True)), (x,))
        return out, st.values, st.keys

    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-6)


def test_causality_within_and_across_chunks() -> None:
    layer = tiny_layer(chunk=4)
    x = rand_x(2, 12)
    y, _ = layer(x)
    t = 5  # inside chunk 1 (tokens 4..7)
    x2 = x.clone()
    x2[:, t] += torch.randn(2, 8, dtype=F64)
    y2, _ = layer(x2)
    torch.testing.assert_close(y[:, :t], y2[:, :t], rtol=0, atol=0)  # the past
    # every token of chunk 1 reads the state written after chunk 0: the rest of the chunk too
    torch.testing.assert_close(y[:, t + 1 : 8], y2[:, t + 1 : 8], rtol=0, atol=0)
    assert not torch.allclose(y[:, t], y2[:, t])
    assert not torch.allclose(y[:, 8:], y2[:, 8:])  # the next chunk reads what t wrote


@pytest.mark.parametrize("share", [False, True])
def test_streaming_equals_whole_sequence(share: bool) -> None:
    layer = tiny_layer(share_across_batch=share, lookahead=2, chunk=3)
    x = rand_x(2, 13)
    y, st = layer(x)
    for splits in ([1] * 13, [5, 1, 4, 3], [3, 3, 3, 4], [13]):
        state = None
        ys = []
        t0 = 0
        for n in splits:
            y_part, state = layer(x[:, t0 : t0 + n], state)
            ys.append(y_part)
            t0 += n
        torch.testing.assert_close(torch.cat(ys, 1), y, rtol=0, atol=1e-12)
        assert_states_close(state, st, atol=1e-12)


def test_streaming_memory_does_not_grow() -> None:
    layer = tiny_layer(chunk=4, lookahead=1)
    state = layer.init_state(1, dtype=F64)
    sizes = set()
    with torch.no_grad():
        for i in range(40):
            _, state = layer(rand_x(1, 3, seed=i), state)
            sizes.add((state.values.numel(), state.keys.numel()))
            assert state.pend_q.shape[1] <= layer.config.chunk + layer.config.lookahead
    assert len(sizes) == 1 and state.n_writes == 30


def test_reset_gives_a_fresh_memory() -> None:
    layer = tiny_layer()
    x_old, x_new = rand_x(2, 9, seed=2), rand_x(2, 7, seed=3)
    _, st = layer(x_old)
    assert not torch.equal(st.values, layer.init_state(2, dtype=F64).values)
    y_reset, st_reset = layer(x_new, st, reset=torch.tensor([True, True]))
    y_fresh, st_fresh = layer(x_new)
    torch.testing.assert_close(y_reset, y_fresh, rtol=0, atol=0)
    assert_states_close(st_reset, st_fresh, atol=0)
    # per-sequence reset: sequence 1 forgets everything, sequence 0 keeps its memory
    part = layer.reset_state(st, torch.tensor([False, True]))
    fresh = layer.init_state(2, dtype=F64)
    assert torch.equal(part.values[1], fresh.values[1]) and torch.equal(part.keys[1], fresh.keys[1])
    assert torch.equal(part.values[0], st.values[0])
    assert part.pend_valid[1].sum() == 0 and part.pend_valid[0].all()


def test_reset_mask_has_no_effect_when_false() -> None:
    layer = tiny_layer()
    _, st = layer(rand_x(2, 6, seed=2))
    x = rand_x(2, 5, seed=3)
    y0, s0 = layer(x, st)
    y1, s1 = layer(x, st, reset=torch.tensor([False, False]))
    torch.testing.assert_close(y0, y1, rtol=0, atol=0)
    assert_states_close(s0, s1, atol=0)


def test_gradient_checkpointing_gives_the_same_gradients() -> None:
    from torch.utils.checkpoint import checkpoint

    layer = tiny_layer()
    _, st0 = layer(rand_x(2, 6, seed=2))
    st0 = st0.detach()  # a carried state (e.g. from a cache), queue of 2 tokens
    x = rand_x(2, 9, grad=True)
    y, st = layer(x, st0)
    g_ref = torch.autograd.grad(y.sum() + state_loss(st), [x, *layer.parameters()])
    y_c, st_c = checkpoint(layer, x, st0, use_reentrant=False)
    g_c = torch.autograd.grad(y_c.sum() + state_loss(st_c), [x, *layer.parameters()])
    for a, b in zip(g_ref, g_c, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_inference_mode_and_bfloat16_inputs() -> None:
    layer = tiny_layer().to(torch.bfloat16)
    x = rand_x(2, 9).to(torch.bfloat16)
    with torch.inference_mode():
        y, st = layer(x)
    assert y.dtype == torch.bfloat16 and st.values.dtype == torch.float32  # fp32 fast weights
    assert torch.isfinite(y.float()).all() and st.n_writes == 2


def test_state_select_reorders_sequences() -> None:
    layer = tiny_layer()
    x = rand_x(3, 6, seed=2)
    _, st = layer(x)
    idx = torch.tensor([2, 0])
    sel = st.select(idx)
    x_more = rand_x(3, 5, seed=3)
    y_all, st_all = layer(x_more, st)
    y_sel, st_sel = layer(x_more[idx], sel)
    torch.testing.assert_close(y_sel, y_all[idx], rtol=0, atol=1e-12)
    assert_states_close(st_sel, st_all.select(idx), atol=1e-12)
    # beam expansion of a single sequence, per-sequence and shared memories
    for share in (False, True):
        lay = tiny_layer(share_across_batch=share)
        _, one = lay(rand_x(1, 6, seed=4))
        two = one.select(torch.tensor([0, 0]))
        y2, _ = lay(rand_x(2, 3, seed=5), two)
        assert y2.shape[:2] == (2, 3)
