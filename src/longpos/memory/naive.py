"""Slow loop references for the product-key memories, written straight from the equations.

Papers: PKM, Lample et al. 2019, arXiv 1907.05242; FwPKM, Zhao & Jones, arXiv 2601.00671.

These functions loop over sequences and tokens, score **all** ``N`` slots by brute force (no
product search), and obtain the fast-weight updates from ``torch.autograd.grad`` of the inner
losses (``create_graph=True``, so gradients flow through the writes) instead of the closed
forms used by :mod:`longpos.memory.fwpkm`. They use the slow parameters of a given module, so
``naive_*(module, x)`` must equal ``module(x)``, including all gradients. They are meant for
tests and benchmarks at tiny sizes only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from longpos.memory.fwpkm import FwPKMLayer, FwPKMState, WriteMode, zscore
from longpos.memory.pkm import StaticPKM

__all__ = ["PlainValueTable", "naive_fwpkm_forward", "naive_pkm_forward"]


def _slot_scores(q: Tensor, k1: Tensor, k2: Tensor, score: str, eps: float) -> Tensor:
    """Scores of all ``S*S`` slots for one head: q ``(d_k,)``, k1/k2 ``(S, d_k/2)`` -> ``(S*S,)``.

    Slot ``i*S + j`` has key ``[k1_i ; k2_j]``.
    """
    half = q.shape[0] // 2
    q1, q2 = q[:half], q[half:]
    if score == "dot":
        s1 = k1 @ q1  # (S,)
        s2 = k2 @ q2  # (S,)
    else:  # inverse distance, from the definition
        s1 = -torch.log(eps + ((q1.unsqueeze(0) - k1) ** 2).sum(-1))  # (S,)
        s2 = -torch.log(eps + ((q2.unsqueeze(0) - k2) ** 2).sum(-1))  # (S,)
    return (s1.unsqueeze(1) + s2.unsqueeze(0)).reshape(-1)  # (S*S,)


class PlainValueTable:
    """:class:`~longpos.memory.value_table.ValueTable` written with plain autograd ops: every
    write a new table (out-of-place ``index_add``), every read an ``embedding_bag`` that autograd
    differentiates into a dense gradient. Same interface; the reference its outputs and
    gradients are compared with (tests, ``benchmarks/fwpkm_value_table.py``)."""

    def __init__(self, values: Tensor) -> None:
        self.shape = values.shape
        self.table = values.reshape(-1, values.shape[-1])  # (G*N, d_v)

    def read(self, idx: Tensor, w: Tensor) -> Tensor:
        return F.embedding_bag(idx, self.table, per_sample_weights=w, mode="sum")

    def write(self, flat: Tensor, src: Tensor, alpha: float) -> None:
        self.table = self.table.index_add(0, flat, src, alpha=alpha)

    def detach_(self) -> None:
        self.table = self.table.detach()

    def result(self) -> Tensor:
        return self.table.view(self.shape)


# --------------------------------------------------------------------------------------------
# Static PKM
# --------------------------------------------------------------------------------------------


def naive_pkm_forward(module: StaticPKM, x: Tensor) -> Tensor:
    """Token-by-token, brute-force-search reference of :meth:`StaticPKM.forward`."""
    c = module.config
    if c.query_norm == "batch":
        raise ValueError("the naive reference is per token; query_norm='batch' is not supported")
    B, T, _ = x.shape
    rows = []
    for b in range(B):
        for t in range(T):
            q = module.query_norm(module.query(x[b, t]))  # (H*d_k,)
            m = x.new_zeros(c.value_dim)
            for h in range(c.heads):
                qh = q[h * c.d_k : (h + 1) * c.d_k]
                scores = _slot_scores(qh, module.keys[h, 0], module.keys[h, 1], c.score, c.eps_idw)
                top, idx = scores.topk(c.topk)
                w = torch.softmax(top, dim=0)  # per-head softmax
                for a in range(c.topk):
                    m = m + w[a] * module.values[idx[a]]
            if c.output == "swiglu":
                assert module.gate_proj is not None
                m = m * torch.nn.functional.silu(module.gate_proj(x[b, t]))
            if c.output != "value":
                assert module.out_proj is not None
                m = module.out_proj(m)
            rows.append(m)
    return torch.stack(rows).reshape(B, T, -1)


# --------------------------------------------------------------------------------------------
# FwPKM
# --------------------------------------------------------------------------------------------


def _fw_read(layer: FwPKMLayer, q: Tensor, K: Tensor, V: Tensor) -> tuple[Tensor, list[int]]:
    """Read one query ``(H*d_k,)`` from keys ``(H, 2, S, d_k/2)`` and values ``(N, d_v)``.

    Returns ``(v_hat (d_v,), slot indices of the H*k accesses)``.
    """
    c = layer.config
    tops, idxs = [], []
    for h in range(c.heads):
        qh = q[h * c.d_k : (h + 1) * c.d_k]
        scores = _slot_scores(qh, K[h, 0], K[h, 1], "idw", c.eps_idw)  # (N,) brute force
        top, idx = scores.topk(c.topk)
        tops.append(top)
        idxs.append(idx)
    w = torch.softmax(torch.cat(tops), dim=0)  # (H*k,): joint softmax over heads and top-k
    idx = torch.cat(idxs)
    vhat = V.new_zeros(c.d_v)
    for a in range(idx.numel()):
        vhat = vhat + w[a] * V[idx[a]]
    return vhat, [int(i) for i in idx]


def _write(
    layer: FwPKMLayer, K: Tensor, V: Tensor, pairs: list[tuple[Tensor, Tensor, Tensor]]
) -> tuple[Tensor, Tensor, Tensor]:
    """One write to one memory from ``pairs`` = [(q_r, g_r, target v_{r+L})].

    Returns ``(K_new, V_new, counts (N,))``.
    """
    c = layer.config
    counts = V.new_zeros(c.n_slots)
    if not pairs:
        return K, V, counts
    with torch.enable_grad():
        if not K.requires_grad:
            K = K.detach().requires_grad_(True)
        if not V.requires_grad:
            V = V.detach().requires_grad_(True)
        # value step: L_mem = sum_r 1/2 g_r ||v_hat_r - v_{r+L}||^2, gradient w.r.t. V only
        l_mem = V.new_zeros(())
        for q, g, target in pairs:
            vhat, idx = _fw_read(layer, q, K, V)
            l_mem = l_mem + 0.5 * g * ((vhat - target) ** 2).sum()
            for i in idx:
                counts[i] += 1
        (grad_v,) = torch.autograd.grad(l_mem, V, create_graph=True)
        scale = torch.tensor(
            [c.value_scale / max(float(n), 1.0) for n in counts], dtype=V.dtype, device=V.device
        )  # (N,): declared scale / n_i
        V_new = V - c.lr_v * scale.unsqueeze(-1) * grad_v
        # key step: L_addr = w * sum_halves sum_j p_bar_j log(p_bar_j + eps), p_bar = mean_rows P
        K_new = K
        if c.addr_w > 0 and c.lr_k > 0:
            l_addr = K.new_zeros(())
            for m in range(2):
                p_sum = K.new_zeros(c.sqrt_n)
                n_rows = 0
                for q, _, _ in pairs:
                    for h in range(c.heads):
                        qm = q[h * c.d_k : (h + 1) * c.d_k].reshape(2, -1)[m]  # (d_k/2,)
                        s = -torch.log(c.eps_idw + ((qm.unsqueeze(0) - K[h, m]) ** 2).sum(-1))
                        kth = s.topk(c.topk).values[-1]
                        s = torch.where(s >= kth, s, torch.full_like(s, float("-inf")))
                        p_sum = p_sum + torch.softmax(s, dim=0)
                        n_rows += 1
                p_bar = p_sum / n_rows
                l_addr = l_addr + (p_bar * torch.log(p_bar + c.addr_eps)).sum()
            (grad_k,) = torch.autograd.grad(c.addr_w * l_addr, K, create_graph=True)
            K_new = K - c.lr_k * grad_k
    return K_new, V_new, counts


def naive_fwpkm_forward(
    layer: FwPKMLayer,
    x: Tensor,
    state: FwPKMState | None = None,
    *,
    reset: Tensor | None = None,
    writes: WriteMode = "chunked",
) -> tuple[Tensor, FwPKMState]:
    """Token-by-token reference of :meth:`FwPKMLayer.forward` (same arguments and results)."""
    c = layer.config
    B, T, _ = x.shape
    if state is None:
        state = layer.init_state(B, x.device)
    if reset is not None:
        state = layer.reset_state(state, reset)
    G = state.values.shape[0]
    fdt = state.values.dtype
    K = [state.keys[g] for g in range(G)]  # each (H, 2, S, d_k/2)
    V = [state.values[g] for g in range(G)]  # each (N, d_v)
    counts = [state.access_counts[g] for g in range(G)]
    # queue[b] = list of (q, v, g, valid) in stream order
    queue = [
        [
            (
                state.pend_q[b, r],
                state.pend_v[b, r],
                state.pend_g[b, r],
                bool(state.pend_valid[b, r]),
            )
            for r in range(state.pend_q.shape[1])
        ]
        for b in range(B)
    ]
    n_carry, n_writes = state.n_carry, state.n_writes
    L = c.lookahead

    def write() -> None:
        nonlocal n_carry, n_writes
        for g in range(G):
            members = range(B) if G == 1 and B > 1 else [g]
            pairs = []
            for b in members:
                qb = queue[b]
                for r in range(len(qb) - L):
                    if qb[r][3] and qb[r + L][3]:  # both tokens in the current document
                        pairs.append((qb[r][0], qb[r][2], qb[r + L][1]))
            K[g], V[g], counts[g] = _write(layer, K[g], V[g], pairs)
        n_writes += 1
        if c.detach_every is not None and n_writes % c.detach_every == 0:
            for g in range(G):
                K[g], V[g] = K[g].detach(), V[g].detach()
        for b in range(B):
            queue[b] = queue[b][len(queue[b]) - L :] if L > 0 else []
        n_carry = len(queue[0])

    ys = []
    for t in range(T):
        y_t = []
        for b in range(B):
            h = x[b, t]
            q = layer.q_proj(layer.q_norm(h)).to(fdt)  # (H*d_k,)
            v = zscore(layer.v_proj(layer.v_norm(h)), c.zscore_eps).to(fdt)  # (d_v,)
            g = torch.sigmoid(layer.g_proj(layer.g_norm(h)))[0].to(fdt)  # ()
            gb = 0 if G == 1 else b
            vhat, _ = _fw_read(layer, q, K[gb], V[gb])
            o = g * vhat + (1 - g) * v
            y_t.append(layer.o_proj(layer.o_norm(o.to(x.dtype))))
            if writes != "none":
                queue[b].append((q, v, g, True))
        ys.append(torch.stack(y_t))
        if writes == "chunked" and len(queue[0]) - n_carry == c.chunk:
            write()
    if writes == "end":
        write()
        queue = [[] for _ in range(B)]  # a pass ends: its last token has no successor
        n_carry = 0
    y = torch.stack(ys, 1) if ys else x.new_zeros(B, 0, x.shape[-1])  # (B, T, d_model)

    P = len(queue[0])
    hk = c.heads * c.d_k
    new_state = FwPKMState(
        keys=torch.stack(K),
        values=torch.stack(V),
        pend_q=torch.stack([torch.stack([e[0] for e in qb]) for qb in queue])
        if P
        else state.pend_q.new_zeros(B, 0, hk),
        pend_v=torch.stack([torch.stack([e[1] for e in qb]) for qb in queue])
        if P
        else state.pend_v.new_zeros(B, 0, c.d_v),
        pend_g=torch.stack([torch.stack([e[2] for e in qb]) for qb in queue])
        if P
        else state.pend_g.new_zeros(B, 0),
        pend_valid=torch.tensor([[e[3] for e in qb] for qb in queue], dtype=torch.bool).reshape(
            B, P
        ),
        n_carry=n_carry,
        n_writes=n_writes,
        access_counts=torch.stack(counts).detach(),
        shared=state.shared,
    )
    return y, new_state
