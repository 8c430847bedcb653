"""FwPKM update rules (closed forms vs autograd and finite differences), exact rewrite,
addressing loss, toy recall, iterative reading, persistence and configuration errors."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from fwpkm_helpers import F64, rand_x, tiny_layer

from longpos.memory.fwpkm import (
    FwPKMConfig,
    FwPKMLayer,
    access_stats,
    addressing_key_grad,
    value_write_delta,
)
from longpos.memory.pkm import subkey_scores

# ------------------------------------------------------------------------- closed forms (test 3)


def _value_setup(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    G, R, A, N, d_v = 2, 7, 4, 6, 3  # few slots: many repeated accesses
    idx = torch.randint(0, N, (G, R, A), generator=gen)
    w = torch.rand(G, R, A, generator=gen, dtype=F64).softmax(-1)
    target = torch.randn(G, R, d_v, generator=gen, dtype=F64)
    gate = torch.rand(G, R, generator=gen, dtype=F64)
    mask = torch.rand(G, R, generator=gen) > 0.3
    V = torch.randn(G, N, d_v, generator=gen, dtype=F64)
    return idx, w, target, gate, mask, V


def _l_mem(V, idx, w, target, gate, mask):
    G = V.shape[0]
    vhat = (w.unsqueeze(-1) * V[torch.arange(G).view(G, 1, 1), idx]).sum(2)  # (G, R, d_v)
    return (0.5 * gate * mask * ((vhat - target) ** 2).sum(-1)).sum(), vhat


@pytest.mark.parametrize("scale", [1.0, 4.0])
def test_value_step_equals_scaled_autograd_and_finite_differences(scale: float) -> None:
    idx, w, target, gate, mask, V = _value_setup()
    V = V.requires_grad_(True)
    loss, vhat = _l_mem(V, idx, w, target, gate, mask)
    (grad,) = torch.autograd.grad(loss, V)
    counts = torch.zeros(V.shape[:2], dtype=F64)
    for g in range(idx.shape[0]):
        for r in range(idx.shape[1]):
            if mask[g, r]:
                for a in range(idx.shape[2]):
                    counts[g, idx[g, r, a]] += 1
    delta, n = value_write_delta(idx, w, vhat.detach() - target, gate, mask, V.shape[1], scale)
    torch.testing.assert_close(n, counts)
    torch.testing.assert_close(delta, grad * scale / counts.clamp_min(1).unsqueeze(-1))
    # finite differences of L_mem w.r.t. a few entries of V
    h = 1e-6
    for g, i, d in [(0, 1, 0), (1, 3, 2), (0, 5, 1)]:
        Vp, Vm = V.detach().clone(), V.detach().clone()
        Vp[g, i, d] += h
        Vm[g, i, d] -= h
        fd = _l_mem(Vp, idx, w, target, gate, mask)[0] - _l_mem(Vm, idx, w, target, gate, mask)[0]
        fd = fd / (2 * h)
        assert abs(float(fd) - float(grad[g, i, d])) < 1e-7


def _l_addr(keys, q, mask, topk):
    s, _ = subkey_scores(q, keys, "idw", 1e-3)  # (G, R, H, S)
    thr = s.topk(topk, -1).values[..., -1:]
    P = s.masked_fill(s < thr, float("-inf")).softmax(-1) * mask.view(*mask.shape, 1, 1)
    n = mask.sum(1).to(F64) * s.shape[2]  # (G,)
    p_bar = P.sum(dim=(1, 2)) / n.unsqueeze(-1)  # (G, S)
    return (p_bar * torch.log(p_bar + 1e-8)).sum()


def test_key_step_equals_autograd_and_finite_differences() -> None:
    gen = torch.Generator().manual_seed(3)
    G, R, H, S, D, k = 2, 6, 2, 5, 3, 2
    q = torch.randn(G, R, H, D, generator=gen, dtype=F64)
    keys = torch.randn(G, H, S, D, generator=gen, dtype=F64, requires_grad=True)
    mask = torch.tensor([[1, 1, 0, 1, 1, 1], [1, 0, 1, 1, 1, 1]], dtype=torch.bool)
    (grad,) = torch.autograd.grad(_l_addr(keys, q, mask, k), keys)
    s, d2 = subkey_scores(q, keys.detach(), "idw", 1e-3)
    assert d2 is not None
    closed = addressing_key_grad(s, d2, q, keys.detach(), mask, k, 1e-3, 1e-8)
    torch.testing.assert_close(closed, grad, rtol=1e-9, atol=1e-12)
    assert grad.abs().max() > 1e-3  # not trivially zero
    h = 1e-6
    for idx in [(0, 0, 1, 0), (1, 1, 4, 2), (0, 1, 2, 1)]:
        kp, km = keys.detach().clone(), keys.detach().clone()
        kp[idx] += h
        km[idx] -= h
        fd = (_l_addr(kp, q, mask, k) - _l_addr(km, q, mask, k)) / (2 * h)
        assert abs(float(fd) - float(grad[idx])) < 1e-7


# ------------------------------------------------------------------------- exact rewrite (test 4)


@pytest.mark.parametrize(("heads", "topk"), [(1, 8), (2, 3)])
def test_code_scale_rewrites_exactly_under_uniform_weights(heads: int, topk: int) -> None:
    gen = torch.Generator().manual_seed(0)
    N, d_v, A = 64, 5, heads * topk
    V = torch.randn(1, N, d_v, generator=gen, dtype=F64)
    idx = torch.randperm(N, generator=gen)[:A].view(1, 1, A)  # distinct slots: n_i = 1
    w = torch.full((1, 1, A), 1.0 / A, dtype=F64)  # uniform read weights
    target = torch.randn(1, 1, d_v, generator=gen, dtype=F64)

    def read(V):
        return (w.unsqueeze(-1) * V[0, idx[0]]).sum(2)  # (1, 1, d_v)

    one = torch.ones(1, 1, dtype=F64)
    mask = torch.ones(1, 1, dtype=torch.bool)
    delta, _ = value_write_delta(idx, w, read(V) - target, one, mask, N, float(A))  # scale kH
    torch.testing.assert_close(read(V - delta), target, rtol=0, atol=1e-6)
    # the paper scale (1) moves the read by 1/(kH) of the residual only
    delta_p, _ = value_write_delta(idx, w, read(V) - target, one, mask, N, 1.0)
    torch.testing.assert_close(read(V - delta_p), read(V) - (read(V) - target) / A)


def test_layer_config_scales() -> None:
    assert FwPKMConfig(d_model=4, heads=2, topk=3).value_scale == 6.0
    assert FwPKMConfig(d_model=4, heads=2, topk=3, value_step_scale="paper").value_scale == 1.0


# ------------------------------------------------------------------------- addressing (test 5)


def _coverage_run(addr_w: float, seed: int) -> tuple[float, float]:
    cfg = FwPKMConfig(d_model=16, d_k=8, d_v=8, sqrt_n=8, topk=2, chunk=64, addr_w=addr_w)
    layer = FwPKMLayer(cfg, generator=torch.Generator().manual_seed(seed))
    gen = torch.Generator().manual_seed(seed + 100)
    centres = 3 * torch.randn(4, 16, generator=gen)  # 4 query clusters
    state, cov, col = None, [], []
    with torch.no_grad():
        for i in range(20):
            lab = torch.randint(0, 4, (1, 64), generator=gen)
            x = centres[lab] + torch.randn(1, 64, 16, generator=gen)
            _, state = layer(x, state)
            if i >= 10:
                st = access_stats(state.access_counts)
                cov.append(st["coverage"])
                col.append(st["collision"])
    return sum(cov) / len(cov), sum(col) / len(col)


def test_addressing_loss_spreads_clustered_queries() -> None:
    for seed in range(3):
        cov1, col1 = _coverage_run(1.0, seed)
        cov0, col0 = _coverage_run(0.0, seed)
        assert cov1 > cov0, (seed, cov1, cov0)
        assert col1 <= col0, (seed, col1, col0)


def test_access_stats_values() -> None:
    st = access_stats(torch.tensor([[2.0, 1.0, 0.0, 1.0]]))
    assert st["collision"] == 0.5 and st["coverage"] == 0.75
    uniform = access_stats(torch.ones(1, 8))
    assert uniform["collision"] == 0.0 and abs(uniform["kl"]) < 1e-12


# ------------------------------------------------------------------------- toy recall (test 6)


def _recall(mode: str, seed: int = 0, B: int = 12) -> float:
    """Key->value pairs in random-token noise, one query key at the end; decode the read."""
    cfg = FwPKMConfig(
        d_model=32, d_k=16, d_v=16, sqrt_n=16, topk=4, chunk=1024, gate_bias_init=20.0
    )  # gate ~ 1: the output is the memory read
    layer = FwPKMLayer(cfg, generator=torch.Generator().manual_seed(seed))
    gen = torch.Generator().manual_seed(seed + 1)
    emb = torch.randn(256, 32, generator=gen)
    n_pairs, n_noise = 8, 40
    xs, answers, cands = [], [], []
    for _ in range(B):
        perm = torch.randperm(256, generator=gen)
        keys, vals = perm[:n_pairs], perm[n_pairs : 2 * n_pairs]
        toks = perm[2 * n_pairs : 2 * n_pairs + n_noise].tolist()
        for j, p in enumerate(
            sorted(torch.randperm(n_noise, generator=gen)[:n_pairs].tolist())[::-1]
        ):
            toks[p:p] = [int(keys[j]), int(vals[j])]
        qj = int(torch.randint(0, n_pairs, (1,), generator=gen))
        xs.append(emb[toks + [int(keys[qj])]])
        answers.append(qj)
        cands.append(emb[vals])
    x = torch.stack(xs)  # (B, T, 32); haystack = x[:, :-1]
    with torch.no_grad():
        if mode == "frozen":
            _, st = layer(x[:, :-1], writes="none")
            y, _ = layer(x, st, writes="none")
        else:
            passes = 1 if mode == "1pass" else 2
            st = None
            for _ in range(passes - 1):
                _, st = layer(x[:, :-1], st, writes="end")
            y, _ = layer(x, st, writes="end")
        correct = 0
        for b in range(B):
            cand_y = layer.o_proj(layer.o_norm(layer.project(cands[b][None])[1]))[0]
            correct += int(((cand_y - y[b, -1]) ** 2).sum(-1).argmin() == answers[b])
    return correct / B


def test_toy_recall_two_passes_beat_one_and_writes_beat_frozen() -> None:
    one, two, frozen = _recall("1pass"), _recall("2pass"), _recall("frozen")
    assert two >= one and two >= 0.75, (one, two)
    assert two > frozen + 0.4, (two, frozen)


def test_iterative_forward_equals_manual_passes() -> None:
    layer = tiny_layer()
    x = rand_x(2, 7)
    y, st = layer.iterative_forward(x, passes=3)
    _, s = layer(x, writes="end")
    _, s = layer(x, s, writes="end")
    y2, s2 = layer(x, s)
    torch.testing.assert_close(y, y2, rtol=0, atol=0)
    assert st.n_writes == s2.n_writes == 2 + 7 // layer.config.chunk


def test_flush_writes_the_queue() -> None:
    layer = tiny_layer(chunk=8)
    x = rand_x(1, 5)
    _, st = layer(x)
    assert st.n_writes == 0 and st.pending == 5
    flushed = layer.flush(st)
    _, ref = layer(x, writes="end")
    assert flushed.n_writes == 1 and flushed.pending == 0
    torch.testing.assert_close(flushed.values, ref.values, rtol=0, atol=0)


# ------------------------------------------------------------------------- state handling


def test_persistent_shared_memory_continues_across_calls() -> None:
    layer = tiny_layer(share_across_batch=True, persistent=True)
    ref = tiny_layer(share_across_batch=True)
    x1, x2 = rand_x(2, 8, seed=2), rand_x(2, 8, seed=3)
    _, s1 = layer(x1)
    y2, s2 = layer(x2)  # state=None: starts from the committed fast weights
    _, r1 = ref(x1)
    r1 = dataclasses.replace(r1, pend_q=r1.pend_q[:, :0], pend_v=r1.pend_v[:, :0])
    r1 = dataclasses.replace(
        r1, pend_g=r1.pend_g[:, :0], pend_valid=r1.pend_valid[:, :0], n_carry=0
    )
    y2_ref, _ = ref(x2, r1)
    torch.testing.assert_close(y2, y2_ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(layer.init_values, s2.values[0])
    y2.sum().backward()  # committing the buffers must not break backward


def test_training_backward_float32_default_state() -> None:
    layer = FwPKMLayer(FwPKMConfig(d_model=16, d_k=8, d_v=8, sqrt_n=8, topk=4, chunk=8))
    x = torch.randn(2, 20, 16, requires_grad=True)
    y, st = layer(x)
    assert y.dtype == torch.float32 and st.values.dtype == torch.float32
    y.pow(2).mean().backward()
    assert layer.q_proj.weight.grad is not None and layer.q_proj.weight.grad.abs().sum() > 0
    assert layer.init_values.grad is None  # initial fast weights are fixed buffers
    assert "init_values" not in dict(layer.named_parameters())


def test_generator_makes_init_reproducible() -> None:
    a, b = tiny_layer(seed=5), tiny_layer(seed=5)
    for (n, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(p, q), n
    assert not torch.equal(tiny_layer(seed=6).init_values, a.init_values)


# ------------------------------------------------------------------------- config and errors


def test_config_json_round_trip() -> None:
    cfg = FwPKMConfig(d_model=32, chunk=16, value_step_scale="paper", detach_every=2)
    assert FwPKMConfig(**json.loads(json.dumps(dataclasses.asdict(cfg)))) == cfg


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"d_k": 7}, "d_k"),
        ({"chunk": 0}, "chunk"),
        ({"lookahead": 4, "chunk": 4}, "lookahead"),
        ({"topk": 9, "sqrt_n": 8}, "topk"),
        ({"d_v": 1}, "d_v"),
        ({"eps_idw": -1.0}, "eps_idw"),
        ({"value_step_scale": "both"}, "value_step_scale"),
        ({"persistent": True}, "share_across_batch"),
        ({"detach_every": 0}, "detach_every"),
        ({"lr_v": float("nan")}, "lr_v"),
        ({"chunk": 8.0}, "chunk"),
    ],
)
def test_config_validation_names_the_field(kw: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        FwPKMConfig(d_model=16, **kw)


def test_clear_errors_for_bad_inputs() -> None:
    layer = tiny_layer()
    with pytest.raises(ValueError, match=r"d_model=8"):
        layer(rand_x(2, 3, d=7))
    with pytest.raises(ValueError, match="init_state"):
        layer(rand_x(2, 3), layer.init_state(3))
    with pytest.raises(ValueError, match=r"reset must be a bool tensor of shape \(B,\)"):
        layer(rand_x(2, 3), reset=torch.tensor([True]))
    with pytest.raises(ValueError, match="writes"):
        layer(rand_x(2, 3), writes="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="config"):
        other = tiny_layer(sqrt_n=4)
        layer(rand_x(2, 3), other.init_state(2))
    shared = tiny_layer(share_across_batch=True)
    _, st = shared(rand_x(2, 3))
    with pytest.raises(ValueError, match="all True or all False"):
        shared(rand_x(2, 3), st, reset=torch.tensor([True, False]))
