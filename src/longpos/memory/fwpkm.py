"""Fast-weight product-key memory (FwPKM).

Paper: Zhao & Jones (Sakana AI), "Fast-weight Product Key Memory", arXiv 2601.00671.

FwPKM keeps the sparse product-key read of PKM (Lample et al., arXiv 1907.05242), but the keys
``K1, K2`` and the value table ``V`` are *fast weights*: per sequence state rewritten by one
closed-form gradient step per chunk of ``C`` tokens, during training and at inference.

* **Read** (token t): ``q_t = Linear_q(RMSNorm(h_t))``; sub-key scores are inverse distances
  ``-log(eps + ||q - K||^2)``; product top-k; one softmax jointly over the ``heads*topk``
  selected scores; ``v_hat_t = sum_i w_i V_i``.
* **Value target**: ``v_t = zscore(Linear_v(RMSNorm(h_t)))``; the write for query ``t`` uses the
  target of token ``t + lookahead`` (the *next* token by default).
* **Gate**: ``g_t = sigmoid(Linear_g(RMSNorm(h_t)))`` mixes ``o_t = g v_hat + (1 - g) v_t`` and
  weights the write; the layer returns ``Linear_o(RMSNorm(o_t))``.
* **Value write** (after the chunk's reads): a gated, per-slot averaged delta rule
  ``V_i <- V_i - lr_v * (scale / n_i) * sum_t g_t w_{t,i} (v_hat_t - v_{t+L})``.
* **Key write**: one SGD step on the addressing loss ``-H(p1_bar) - H(p2_bar)`` (entropy of the
  chunk's marginal sub-key usage), which spreads reads over the slots.

Every token of chunk ``c`` reads the state written after chunk ``c-1`` (causal). The writes are
plain differentiable tensor ops, so the LM loss backpropagates through all of them (the
meta-gradient of the paper, second-order terms included).

Input needed: only the layer input ``x (B, T, d_model)``. The value target of token ``t`` is the
layer's own projection of ``x`` at position ``t + lookahead``; no token ids or labels are needed.
Tokens whose target has not arrived yet stay in a queue inside :class:`FwPKMState` until the
next call, so streaming in pieces equals one whole-sequence pass.

Choices where the spec (``spec/fwpkm.md`` §4.1) marks the sources as unclear, each a config field:

* A1 ``value_step_scale``: ``"code"`` (default) multiplies the value step by ``topk*heads``
  (the released code; an exact rewrite under uniform read weights), ``"paper"`` omits it. The
  code's extra ``C/(C-1)`` factor (from averaging over ``C-1`` but scaling by ``C`` samples) is
  not reproduced.
* A2 ``share_across_batch``: default ``False`` = one memory per sequence, reset at document start
  (``reset`` mask). ``True`` = one memory for the whole batch, reads pooled, as in the code;
  with ``persistent=True`` the final fast weights are also written back into the module so the
  next call starts from them (the code's behaviour, never reset).
* A3 ``learn_init``: initial fast weights are fixed buffers by default (the code does not train
  them); ``True`` makes them parameters.
* A4/A5: queue semantics everywhere: the last ``lookahead`` tokens of a chunk are carried and
  paired with the first targets of the next chunk; at write time these carried queries are
  re-read with the current (pre-write) state, exactly like the chunk's own tokens.
* A6: one softmax jointly over all ``heads*topk`` selected scores (FwPKM; PKM is per head).
* A7: ``n_i`` (reads per slot) and the addressing-loss marginal count only the queries of pairs
  that are written (the code also counts the chunk's last token, which has no target).
* The addressing marginal pools over heads and tokens (as the code; per sequence unless shared).
* A9/A10: ``forward(..., writes="end")`` is one complete pass: one write over everything queued
  at the end of the call, after which the queue is emptied (iterative reading,
  :meth:`FwPKMLayer.iterative_forward`: every pass restarts the sequence at token 0, so the last
  token of a pass has no successor and no pair crosses a pass boundary);
  :meth:`FwPKMLayer.flush` writes the queue now and keeps the carried tokens (mid-stream);
  ``writes="none"`` reads a frozen memory.
* A11 ``gate_bias_init``: 0 (g about 0.5 at start) by default.
* A12: fast weights and the inner loop are float32 (``init_state(dtype=...)``).

Within one call the value table is written in place (:class:`~longpos.memory.value_table.ValueTable`:
one copy per call, a sparse backward); the state passed in is never modified. Inference memory
is ``N*d_v + heads*sqrt_n*d_k`` floats per stream plus a queue of at most ``chunk + lookahead``
tokens: it does not grow with the context length.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from longpos.memory.pkm import (
    _check_choice,
    _check_float,
    _check_int,
    _check_memory_shape,
    _normal_,
    _uniform_,
    init_linear_,
    product_topk,
    subkey_scores,
)
from longpos.memory.value_table import ValueTable

__all__ = [
    "FwPKMConfig",
    "FwPKMLayer",
    "FwPKMState",
    "access_stats",
    "addressing_key_grad",
    "value_write_delta",
    "zscore",
]

WriteMode = Literal["chunked", "end", "none"]


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------


@dataclass
class FwPKMConfig:
    """Configuration of a fast-weight product-key memory layer (:class:`FwPKMLayer`).

    Round-trips through JSON: ``FwPKMConfig(**json.loads(json.dumps(asdict(cfg))))``.
    Defaults are the spec's CPU-scale proposal (§4.3); the paper uses ``sqrt_n=512,
    d_k=d_v=512, chunk=512``.
    """

    d_model: int | None = None
    """Width of the residual stream (input and output feature size); None inside a model's
    ``MemoryConfig`` (the model's width), required to build a layer (:meth:`for_width`)."""
    d_k: int = 64
    """Query / key size per head; even (two halves of ``d_k // 2``)."""
    d_v: int = 64
    """Value (and value-target) size; at least 2 (the target is z-scored over features)."""
    sqrt_n: int = 64
    """Sub-keys per half and head; the memory has ``N = sqrt_n**2`` value rows."""
    heads: int = 1
    """Query heads; each has its own fast sub-keys, all share the fast value table."""
    topk: int = 8
    """Slots read per head (``1 <= topk <= sqrt_n``)."""
    chunk: int = 64
    """Write chunk size C: one fast-weight update after every C tokens (>= 1)."""
    eps_idw: float = 1e-3
    """Epsilon of the inverse-distance score ``-log(eps + ||q - k||^2)`` (> 0)."""
    lookahead: int = 1
    """The query of token t is written with the value target of token ``t + lookahead``
    (0 = its own value, the paper's "no lookahead" ablation); ``0 <= lookahead < chunk``."""
    lr_v: float = 1.0
    """Inner learning rate of the value step (>= 0)."""
    lr_k: float = 1.0
    """Inner learning rate of the key step (>= 0)."""
    addr_w: float = 1.0
    """Weight of the addressing (marginal-entropy) loss; 0 disables the key write (>= 0)."""
    value_step_scale: Literal["code", "paper"] = "code"
    """``code``: value step scaled by ``topk*heads/n_i`` (released code); ``paper``: ``1/n_i``."""
    share_across_batch: bool = False
    """One memory shared by the whole batch (reads and write statistics pooled), as in the
    released code; default is one memory per sequence."""
    persistent: bool = False
    """Write the final fast weights back into the module's initial fast weights after each
    forward, so the next call with ``state=None`` continues from them (the code's behaviour).
    Needs ``share_across_batch=True`` and ``learn_init=False``."""
    learn_init: bool = False
    """Learn the initial fast weights (parameters) instead of keeping them as fixed buffers."""
    gate_bias_init: float = 0.0
    """Initial bias of the gate Linear (0 gives g about 0.5; -2 starts the memory nearly off)."""
    detach_every: int | None = None
    """Truncate backpropagation through the fast weights every this many writes (None: never)."""
    norm_eps: float = 1e-6
    """Epsilon of the RMSNorms."""
    zscore_eps: float = 1e-6
    """Epsilon of the target z-score ``(x - mean) / (std + eps)`` (unbiased std)."""
    addr_eps: float = 1e-8
    """Epsilon inside the entropy ``-sum p log(p + eps)`` of the addressing loss."""
    read_passes: int = 1
    """Default reading passes (the paper's n-iter, >= 1): of :meth:`FwPKMLayer.iterative_forward`
    and, in a model, of ``generate`` over the prompt."""

    def __post_init__(self) -> None:
        _check_memory_shape(self.d_model, self.d_k)
        _check_int("d_v", self.d_v, 2)
        _check_int("sqrt_n", self.sqrt_n, 1)
        _check_int("heads", self.heads, 1)
        _check_int("topk", self.topk, 1, self.sqrt_n)
        _check_int("chunk", self.chunk, 1)
        _check_float("eps_idw", self.eps_idw, 0.0, strict=True)
        _check_int("lookahead", self.lookahead, 0, self.chunk - 1)
        _check_float("lr_v", self.lr_v, 0.0)
        _check_float("lr_k", self.lr_k, 0.0)
        _check_float("addr_w", self.addr_w, 0.0)
        _check_choice("value_step_scale", self.value_step_scale, ("code", "paper"))
        for name in ("share_across_batch", "persistent", "learn_init"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if self.persistent and not self.share_across_batch:
            raise ValueError("persistent=True needs share_across_batch=True (one shared memory)")
        if self.persistent and self.learn_init:
            raise ValueError("persistent=True cannot be combined with learn_init=True")
        _check_float("gate_bias_init", self.gate_bias_init, -math.inf)
        if self.detach_every is not None:
            _check_int("detach_every", self.detach_every, 1)
        _check_float("norm_eps", self.norm_eps, 0.0, strict=True)
        _check_float("zscore_eps", self.zscore_eps, 0.0, strict=True)
        _check_float("addr_eps", self.addr_eps, 0.0, strict=True)
        _check_int("read_passes", self.read_passes, 1)

    @property
    def n_slots(self) -> int:
        """Number of memory slots ``N = sqrt_n**2``."""
        return self.sqrt_n * self.sqrt_n

    def for_width(self, d_model: int) -> FwPKMConfig:
        """This config for a model of width ``d_model``."""
        return dataclasses.replace(self, d_model=d_model)

    @property
    def value_scale(self) -> float:
        """The declared value-step factor: ``topk*heads`` ("code") or 1 ("paper")."""
        return float(self.topk * self.heads) if self.value_step_scale == "code" else 1.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``dataclasses.asdict``)."""
        return asdict(self)


# --------------------------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------------------------


@dataclass
class FwPKMState:
    """Fast-weight memory state of one :class:`FwPKMLayer` (functional: never mutated).

    ``G`` is the number of memories: the batch size ``B``, or 1 with ``share_across_batch``.
    ``P`` is the queue length: ``n_carry`` tokens carried over the last write (their targets
    arrive later) followed by the tokens received since the last write.
    """

    keys: Tensor
    """Fast sub-keys ``(G, H, 2, sqrt_n, d_k/2)``."""
    values: Tensor
    """Fast value table ``(G, N, d_v)``."""
    pend_q: Tensor
    """Queued queries ``(B, P, H*d_k)``."""
    pend_v: Tensor
    """Queued value targets (z-scored) ``(B, P, d_v)``."""
    pend_g: Tensor
    """Queued gates ``(B, P)``."""
    pend_valid: Tensor
    """Queued-token validity ``(B, P)`` bool (False for tokens before a reset)."""
    n_carry: int
    """How many leading queue entries were carried over the last write."""
    n_writes: int
    """Writes applied since the state was created."""
    access_counts: Tensor
    """Reads per slot ``n_i`` of the last write ``(G, N)`` (monitoring, no gradient)."""
    shared: bool = False
    """True when one memory serves the whole batch (``share_across_batch``; G = 1)."""

    @property
    def batch_size(self) -> int:
        return self.pend_q.shape[0]

    @property
    def pending(self) -> int:
        """Tokens received since the last write (queue length minus carried tokens)."""
        return self.pend_q.shape[1] - self.n_carry

    def detach(self) -> FwPKMState:
        """A copy with every tensor detached (truncated backpropagation)."""
        return dataclasses.replace(
            self,
            keys=self.keys.detach(),
            values=self.values.detach(),
            pend_q=self.pend_q.detach(),
            pend_v=self.pend_v.detach(),
            pend_g=self.pend_g.detach(),
        )

    def select(self, index: Tensor) -> FwPKMState:
        """Reorder / pick sequences ``index (B',)`` of the batch (beam search, cache reorder).

        A shared memory (one group) is kept as is; only the queue is indexed.
        """
        index = index.to(self.pend_q.device)
        pick = (lambda t: t) if self.shared else (lambda t: t.index_select(0, index))
        return dataclasses.replace(
            self,
            keys=pick(self.keys),
            values=pick(self.values),
            access_counts=pick(self.access_counts),
            pend_q=self.pend_q.index_select(0, index),
            pend_v=self.pend_v.index_select(0, index),
            pend_g=self.pend_g.index_select(0, index),
            pend_valid=self.pend_valid.index_select(0, index),
        )

    def to(self, device: torch.device | str | None = None) -> FwPKMState:
        """Move every tensor to ``device``."""
        return dataclasses.replace(
            self,
            **{
                f.name: getattr(self, f.name).to(device)
                for f in dataclasses.fields(self)
                if isinstance(getattr(self, f.name), Tensor)
            },
        )


# --------------------------------------------------------------------------------------------
# Functional pieces (closed forms; also used by tests)
# --------------------------------------------------------------------------------------------


def zscore(x: Tensor, eps: float = 1e-6) -> Tensor:
    """``(x - mean) / (std + eps)`` over the last dim, unbiased std (the FwPKM value target)."""
    mean = x.mean(-1, keepdim=True)
    std = x.std(-1, keepdim=True, unbiased=True)
    return (x - mean) / (std + eps)


def _value_write_terms(
    idx: Tensor, w: Tensor, resid: Tensor, gate: Tensor, mask: Tensor, n_slots: int, scale: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-access terms of the value step: ``(flat index (M,), scaled terms (M, d_v), counts)``.

    ``M = G*R*A``; term ``(r, a)`` is ``scale / n_i * gate_r * mask_r * w_ra * resid_r`` for
    ``i = idx_ra``, so that ``index_add`` of the terms gives the step; counts ``(G*N,)``.
    """
    G, R, A = idx.shape
    d_v = resid.shape[-1]
    offs = (torch.arange(G, device=idx.device) * n_slots).view(G, 1, 1)
    flat = (idx + offs).reshape(-1)  # (G*R*A,) global slot index
    used = mask.to(resid.dtype)  # (G, R)
    counts = resid.new_zeros(G * n_slots).index_add(
        0, flat, used.unsqueeze(-1).expand(G, R, A).reshape(-1)
    )  # (G*N,): n_i, reads of each slot by written rows
    per_access = (scale / counts.clamp_min(1.0))[flat].view(G, R, A)  # scale / n_i per access
    coef = (gate * used).unsqueeze(-1) * w * per_access  # (G, R, A)
    src = coef.unsqueeze(-1) * resid.unsqueeze(2)  # (G, R, A, d_v)
    return flat, src.reshape(-1, d_v), counts


def value_write_delta(
    idx: Tensor,
    w: Tensor,
    resid: Tensor,
    gate: Tensor,
    mask: Tensor,
    n_slots: int,
    scale: float,
) -> tuple[Tensor, Tensor]:
    """Closed-form value step (spec §2.3): the quantity subtracted from ``V`` (before ``lr_v``).

    ``delta_i = (scale / max(n_i, 1)) * sum_r gate_r mask_r * sum_{a: idx_ra = i} w_ra * resid_r``

    Args:
        idx: slot indices ``(G, R, A)`` (A = heads*topk accesses per row).
        w: read weights ``(G, R, A)``.
        resid: ``v_hat - target`` ``(G, R, d_v)``.
        gate: per-row gate ``(G, R)``.
        mask: ``(G, R)`` bool, rows that are written (pairs inside one document).
        n_slots: N.
        scale: ``topk*heads`` ("code") or 1 ("paper").

    Returns:
        ``(delta (G, N, d_v), counts (G, N))`` where ``counts`` are the reads ``n_i`` of each slot
        by the masked rows (every head and top-k access counts once).
    """
    G, d_v = idx.shape[0], resid.shape[-1]
    flat, src, counts = _value_write_terms(idx, w, resid, gate, mask, n_slots, scale)
    delta = resid.new_zeros(G * n_slots, d_v).index_add(0, flat, src)  # (G*N, d_v)
    return delta.view(G, n_slots, d_v), counts.view(G, n_slots)


def addressing_key_grad(
    s: Tensor,
    d2: Tensor,
    q: Tensor,
    keys: Tensor,
    row_mask: Tensor,
    topk: int,
    eps_idw: float,
    addr_eps: float,
) -> Tensor:
    """Closed-form gradient of ``L = sum_j p_bar_j log(p_bar_j + addr_eps)`` w.r.t. one half's keys.

    ``P_r = softmax`` of row r's top-k sub-scores (others -inf); ``p_bar = mean_r P_r`` over the
    masked rows and the heads of each group (spec §2.4).

    Args:
        s: IDW sub-scores ``(G, R, H, S)``; d2: their squared distances ``(G, R, H, S)``.
        q: half queries ``(G, R, H, D)``; keys: ``(G, H, S, D)``.
        row_mask: ``(G, R)`` rows that count (pair queries).

    Returns:
        ``dL/dK`` ``(G, H, S, D)``.
    """
    thr = s.topk(topk, dim=-1).values[..., -1:]  # (G, R, H, 1): k-th best score per row
    P = s.masked_fill(s < thr, float("-inf")).softmax(-1)  # (G, R, H, S)
    m = row_mask.to(s.dtype).view(*row_mask.shape, 1, 1)  # (G, R, 1, 1)
    P = P * m
    n_rows = (m.sum(dim=(1, 2, 3)) * s.shape[2]).clamp_min(1.0)  # (G,): rows x heads
    p_bar = P.sum(dim=(1, 2)) / n_rows.unsqueeze(-1)  # (G, S)
    a = torch.log(p_bar + addr_eps) + p_bar / (p_bar + addr_eps)  # (G, S): dL/dp_bar
    a_ = a.view(a.shape[0], 1, 1, -1)  # (G, 1, 1, S)
    dL_ds = P * (a_ - (P * a_).sum(-1, keepdim=True)) / n_rows.view(-1, 1, 1, 1)  # (G,R,H,S)
    c = dL_ds / (eps_idw + d2)  # (G, R, H, S); ds/dK = 2 (q - K) / (eps + d2)
    cq = torch.einsum("grhs,grhd->ghsd", c, q)  # (G, H, S, D)
    return 2.0 * (cq - c.sum(1).unsqueeze(-1) * keys)


def access_stats(counts: Tensor) -> dict[str, float]:
    """Slot-usage statistics of access counts ``(..., N)`` (pooled over leading dims).

    ``collision``: share of reads that hit a slot read more than once; ``coverage``: share of
    slots read at least once; ``kl``: KL(access histogram || uniform).
    """
    c = counts.detach().reshape(-1, counts.shape[-1]).sum(0).double()  # (N,)
    total = float(c.sum())
    N = c.numel()
    if total == 0:
        return {"collision": 0.0, "coverage": 0.0, "kl": 0.0}
    p = c / total
    nz = p > 0
    kl = float((p[nz] * torch.log(p[nz] * N)).sum())
    return {
        "collision": float(c[c > 1].sum()) / total,
        "coverage": float(nz.sum()) / N,
        "kl": kl,
    }


# --------------------------------------------------------------------------------------------
# Layer
# --------------------------------------------------------------------------------------------


@dataclass
class _Read:
    vhat: Tensor  # (B, R, d_v)
    w: Tensor  # (B, R, H*k) joint softmax weights
    idx: Tensor  # (B, R, H*k) local slot indices
    s: tuple[Tensor, Tensor]  # per half (B, R, H, S) IDW sub-scores
    d2: tuple[Tensor, Tensor]  # per half (B, R, H, S) squared distances
    qh: tuple[Tensor, Tensor]  # per half (B, R, H, d_k/2) queries


class FwPKMLayer(nn.Module):
    """Fast-weight product-key memory layer (Zhao & Jones, arXiv 2601.00671).

    A residual sub-block, placed before the token mixer of a decoder layer and fed the *raw*
    residual stream (it normalises its own inputs)::

        y, state = fwpkm(h, state, reset=reset)
        h = h + y

    ``forward(x (B, T, d_model), state=None, *, reset=None, writes="chunked")`` returns
    ``(y (B, T, d_model), new_state)``. See the module docstring for the maths and choices.
    """

    init_keys: Tensor
    init_values: Tensor

    def __init__(self, config: FwPKMConfig, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if config.d_model is None:
            raise ValueError("FwPKMConfig.d_model is needed to build a layer (see for_width)")
        self.config = c = config
        self.d_model: int = config.d_model
        self.q_norm = nn.RMSNorm(self.d_model, eps=c.norm_eps)
        self.v_norm = nn.RMSNorm(self.d_model, eps=c.norm_eps)
        self.g_norm = nn.RMSNorm(self.d_model, eps=c.norm_eps)
        self.o_norm = nn.RMSNorm(c.d_v, eps=c.norm_eps)
        self.q_proj = nn.Linear(self.d_model, c.heads * c.d_k, bias=True)
        self.v_proj = nn.Linear(self.d_model, c.d_v, bias=True)
        self.g_proj = nn.Linear(self.d_model, 1, bias=True)
        self.o_proj = nn.Linear(c.d_v, self.d_model, bias=True)
        k_shape = (c.heads, 2, c.sqrt_n, c.d_k // 2)
        v_shape = (c.n_slots, c.d_v)
        if c.learn_init:
            self.init_keys = nn.Parameter(torch.empty(k_shape))  # type: ignore[assignment]
            self.init_values = nn.Parameter(torch.empty(v_shape))  # type: ignore[assignment]
        else:
            self.register_buffer("init_keys", torch.empty(k_shape))
            self.register_buffer("init_values", torch.empty(v_shape))
        self.reset_parameters(generator)

    # ---------------------------------------------------------------- init / state

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """(Re)initialise slow weights and initial fast weights from ``generator``.

        Linears U(+-1/sqrt(fan_in)); gate bias ``gate_bias_init``; norms to identity; fast keys
        U(+-1/sqrt(d_k)); fast values N(0, std=d_v**-0.5).
        """
        c = self.config
        for lin in (self.q_proj, self.v_proj, self.g_proj, self.o_proj):
            init_linear_(lin, generator)
        with torch.no_grad():
            self.g_proj.bias.fill_(c.gate_bias_init)
        for norm in (self.q_norm, self.v_norm, self.g_norm, self.o_norm):
            norm.reset_parameters()
        _uniform_(self.init_keys, 1.0 / math.sqrt(c.d_k), generator)
        _normal_(self.init_values, c.d_v**-0.5, generator)

    def init_state(
        self,
        batch_size: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> FwPKMState:
        """A fresh state for ``batch_size`` sequences: initial fast weights, empty queue.

        ``dtype`` defaults to float32, or float64 when the layer was cast to float64 (tests).
        """
        c = self.config
        _check_int("batch_size", batch_size, 1)
        device = self.init_values.device if device is None else torch.device(device)
        if dtype is None:
            dtype = torch.promote_types(torch.float32, self.init_values.dtype)
        G = 1 if c.share_across_batch else batch_size
        keys = self.init_keys.to(device=device, dtype=dtype).unsqueeze(0)  # (1, H, 2, S, D/2)
        values = self.init_values.to(device=device, dtype=dtype).unsqueeze(0)  # (1, N, d_v)
        if c.persistent:  # commit_state rewrites the buffers in place: do not alias them
            keys, values = keys.clone(), values.clone()
        return FwPKMState(
            keys=keys.expand(G, *keys.shape[1:]),  # (G, H, 2, S, D/2)
            values=values.expand(G, *values.shape[1:]),  # (G, N, d_v)
            pend_q=torch.zeros(batch_size, 0, c.heads * c.d_k, device=device, dtype=dtype),
            pend_v=torch.zeros(batch_size, 0, c.d_v, device=device, dtype=dtype),
            pend_g=torch.zeros(batch_size, 0, device=device, dtype=dtype),
            pend_valid=torch.zeros(batch_size, 0, device=device, dtype=torch.bool),
            n_carry=0,
            n_writes=0,
            access_counts=torch.zeros(G, c.n_slots, device=device, dtype=dtype),
            shared=c.share_across_batch,
        )

    def reset_state(self, state: FwPKMState, reset: Tensor) -> FwPKMState:
        """Reset the sequences where ``reset (B,)`` is True to the initial fast weights.

        Their queued tokens are marked invalid (no pair crosses a document start). When every
        sequence is reset the result equals :meth:`init_state`. With ``share_across_batch``
        the mask must be all True or all False. The write grid (every ``chunk`` tokens) is
        shared by the batch, so a sequence reset while others are mid-chunk gets a shorter
        first chunk; resetting at a chunk boundary (or all at once) matches a fresh memory.
        """
        B = state.batch_size
        if reset.shape != (B,):
            raise ValueError(
                f"reset must be a bool tensor of shape (B,)=({B},), got {tuple(reset.shape)}"
            )
        reset = reset.to(device=state.pend_q.device, dtype=torch.bool)
        n_reset = int(reset.sum())
        if n_reset == 0:
            return state
        if n_reset == B:
            return self.init_state(B, state.pend_q.device, state.values.dtype)
        if self.config.share_across_batch:
            raise ValueError(
                "share_across_batch=True has one memory for the whole batch: reset must be all "
                "True or all False; use share_across_batch=False for per-sequence resets"
            )
        fresh = self.init_state(B, state.pend_q.device, state.values.dtype)
        rk = reset.view(B, 1, 1, 1, 1)
        rv = reset.view(B, 1, 1)
        return dataclasses.replace(
            state,
            keys=torch.where(rk, fresh.keys, state.keys),
            values=torch.where(rv, fresh.values, state.values),
            pend_valid=state.pend_valid & ~reset.view(B, 1),
            access_counts=torch.where(reset.view(B, 1), 0.0, state.access_counts),
        )

    @torch.no_grad()
    def commit_state(self, state: FwPKMState) -> None:
        """Copy a shared state's fast weights into the initial fast weights (``persistent``)."""
        if state.keys.shape[0] != 1:
            raise ValueError("commit_state needs a shared state (share_across_batch=True)")
        self.init_keys.copy_(state.keys[0].detach())
        self.init_values.copy_(state.values[0].detach())

    # ---------------------------------------------------------------- projections

    def project(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Queries ``(B, T, H*d_k)``, z-scored value targets ``(B, T, d_v)``, gates ``(B, T)``."""
        c = self.config
        q = self.q_proj(self.q_norm(x))  # (B, T, H*d_k)
        v = zscore(self.v_proj(self.v_norm(x)), c.zscore_eps)  # (B, T, d_v)
        g = torch.sigmoid(self.g_proj(self.g_norm(x))).squeeze(-1)  # (B, T)
        return q, v, g

    # ---------------------------------------------------------------- read / write

    def _read(self, q: Tensor, state: FwPKMState, table: ValueTable) -> _Read:
        """Read rows ``q (B, R, H*d_k)`` from the memory (no state change): the keys of
        ``state``, the values of ``table`` (the call's value table as written so far)."""
        c = self.config
        B, R, _ = q.shape
        G = state.values.shape[0]
        H, half = c.heads, c.d_k // 2
        qh = q.reshape(B, R, H, c.d_k)  # (B, R, H, d_k)
        keys = state.keys.expand(B, *state.keys.shape[1:]) if G != B else state.keys
        q1, q2 = qh[..., :half], qh[..., half:]  # (B, R, H, d_k/2) each
        s1, d21 = subkey_scores(q1, keys[:, :, 0], "idw", c.eps_idw)  # (B, R, H, S)
        s2, d22 = subkey_scores(q2, keys[:, :, 1], "idw", c.eps_idw)  # (B, R, H, S)
        scores, idx = product_topk(s1, s2, c.topk)  # (B, R, H, k)
        w = scores.reshape(B, R, H * c.topk).softmax(-1)  # (B, R, H*k): joint softmax
        idx = idx.reshape(B, R, H * c.topk)  # (B, R, H*k)
        if G == B:
            offs = (torch.arange(B, device=q.device) * c.n_slots).view(B, 1, 1)
            gidx = idx + offs  # (B, R, H*k) index into the (B*N, d_v) table
        else:
            gidx = idx
        bags = gidx.reshape(B * R, H * c.topk)  # (B*R, H*k): one bag per row
        vhat = table.read(bags, w.reshape(B * R, H * c.topk)).reshape(B, R, c.d_v)  # (B, R, d_v)
        assert d21 is not None and d22 is not None
        return _Read(vhat, w, idx, (s1, s2), (d21, d22), (q1, q2))

    def _write(
        self, state: FwPKMState, table: ValueTable, rd: _Read, v: Tensor, g: Tensor, valid: Tensor
    ) -> FwPKMState:
        """One fast-weight update from queue rows read with the current state: the values in
        ``table`` (in place), the keys in the returned state.

        ``rd`` covers the R rows (carried + new tokens); ``v (B, R, d_v)``, ``g (B, R)``,
        ``valid (B, R)``. Pairs: query row r with target row ``r + lookahead``.
        """
        c = self.config
        B, R, _ = v.shape
        L = c.lookahead
        Rp = max(R - L, 0)  # number of (query, target) pairs per sequence
        G = state.values.shape[0]

        def grp(t: Tensor) -> Tensor:
            # (B, Rp, ...) -> (G, Rp', ...): pool the batch into one memory group when shared
            return t.reshape(G, -1, *t.shape[2:]) if G != B else t

        mask = valid[:, :Rp] & valid[:, L : L + Rp]  # (B, Rp): both ends in this document
        resid = rd.vhat[:, :Rp] - v[:, L : L + Rp]  # (B, Rp, d_v)
        flat, src, counts = _value_write_terms(
            grp(rd.idx[:, :Rp]),
            grp(rd.w[:, :Rp]),
            grp(resid),
            grp(g[:, :Rp]),
            grp(mask),
            c.n_slots,
            c.value_scale,
        )  # (M,), (M, d_v), (G*N,)
        table.write(flat, src, alpha=-c.lr_v)  # V <- V - lr_v * delta
        counts = counts.view(G, c.n_slots)  # (G, N)
        keys = state.keys
        if c.addr_w > 0 and c.lr_k > 0 and Rp > 0:
            grads = [
                addressing_key_grad(
                    grp(rd.s[m][:, :Rp]),
                    grp(rd.d2[m][:, :Rp]),
                    grp(rd.qh[m][:, :Rp]),
                    keys[:, :, m],
                    grp(mask),
                    c.topk,
                    c.eps_idw,
                    c.addr_eps,
                )
                for m in (0, 1)
            ]  # each (G, H, S, d_k/2)
            keys = keys - (c.lr_k * c.addr_w) * torch.stack(grads, dim=2)  # (G, H, 2, S, d_k/2)
        n_writes = state.n_writes + 1
        if c.detach_every is not None and n_writes % c.detach_every == 0:
            keys = keys.detach()
            table.detach_()
        n_carry = min(L, R)
        return dataclasses.replace(
            state,
            keys=keys,
            n_carry=n_carry,
            n_writes=n_writes,
            access_counts=counts.detach(),
        )

    def _queue(self, state: FwPKMState, rows: tuple[Tensor, ...], keep: int) -> FwPKMState:
        """Set the queue to the last ``keep`` entries of ``rows`` (q, v, g, valid)."""
        q, v, g, valid = rows
        R = q.shape[1]
        return dataclasses.replace(
            state,
            pend_q=q[:, R - keep :],
            pend_v=v[:, R - keep :],
            pend_g=g[:, R - keep :],
            pend_valid=valid[:, R - keep :],
        )

    def _advance(
        self, state: FwPKMState, table: ValueTable, q: Tensor, v: Tensor, g: Tensor, write: bool
    ) -> tuple[Tensor, FwPKMState]:
        """Read ``q (B, n, H*d_k)`` with ``state`` and ``table``; queue the tokens; write if
        ``write``."""
        B, n, _ = q.shape
        valid = torch.ones(B, n, dtype=torch.bool, device=q.device)
        P = state.pend_q.shape[1]
        rows = (
            torch.cat([state.pend_q, q], 1),  # (B, P+n, H*d_k)
            torch.cat([state.pend_v, v], 1),  # (B, P+n, d_v)
            torch.cat([state.pend_g, g], 1),  # (B, P+n)
            torch.cat([state.pend_valid, valid], 1),  # (B, P+n)
        )
        if not write:
            vhat = self._read(q, state, table).vhat if n else v.new_zeros(B, 0, v.shape[-1])
            return vhat, self._queue(state, rows, P + n)
        rd = self._read(rows[0], state, table)  # queue re-read with the pre-write state (A5)
        new = self._write(state, table, rd, rows[1], rows[2], rows[3])
        R = P + n
        return rd.vhat[:, P:], self._queue(new, rows, min(self.config.lookahead, R))

    # ---------------------------------------------------------------- public API

    def _check_state(self, state: FwPKMState, B: int) -> None:
        c = self.config
        G = 1 if c.share_across_batch else B
        if state.batch_size != B or state.values.shape[0] != G:
            raise ValueError(
                f"state is for batch size {state.batch_size} (memories: {state.values.shape[0]}), "
                f"input has batch size {B}; call init_state({B}) or pass the matching state"
            )
        if state.values.shape[1:] != (c.n_slots, c.d_v) or state.keys.shape[1:] != (
            c.heads,
            2,
            c.sqrt_n,
            c.d_k // 2,
        ):
            raise ValueError(
                "state does not match this layer's config (sqrt_n, d_k, d_v, heads); "
                "create it with this layer's init_state"
            )

    def forward(
        self,
        x: Tensor,
        state: FwPKMState | None = None,
        *,
        reset: Tensor | None = None,
        writes: WriteMode = "chunked",
    ) -> tuple[Tensor, FwPKMState]:
        """Read, mix and write for ``x (B, T, d_model)``.

        Args:
            x: the raw residual stream ``(B, T, d_model)`` (the layer normalises it itself).
            state: the memory from the previous call; ``None`` = :meth:`init_state`.
            reset: bool ``(B,)``: sequences that start a new document at ``x[:, 0]`` get fresh
                fast weights before the first token (see :meth:`reset_state`).
            writes: ``"chunked"``: a write whenever ``chunk`` tokens have been received since
                the last write (the grid follows the stream, so splitting a sequence into
                calls changes nothing); ``"end"``: the call is one complete pass (iterative
                reading): no write inside it, one write over the whole queue after its last
                token, and that last token is then dropped from the queue instead of waiting
                for a successor (a pass ends its sequence; the next pass starts again at
                token 0, so no pair may cross the pass boundary, see :meth:`end_pass`);
                ``"none"``: frozen memory, nothing written or queued.

        Returns:
            ``(y, state)``: the residual branch ``y (B, T, d_model)`` (add it to ``x``) and the
            new state.
        """
        c = self.config
        if x.dim() != 3 or x.shape[-1] != c.d_model:
            raise ValueError(
                f"FwPKMLayer expects x of shape (B, T, d_model={c.d_model}), got {tuple(x.shape)}"
            )
        _check_choice("writes", writes, ("chunked", "end", "none"))
        B, T, _ = x.shape
        if state is None:
            state = self.init_state(B, x.device)
        self._check_state(state, B)
        if reset is not None:
            state = self.reset_state(state, reset)
        fdt = state.values.dtype
        q, v, g = self.project(x)
        q, v, g = q.to(fdt), v.to(fdt), g.to(fdt)  # fast-weight precision (A12)
        start_state = state
        if writes == "none":
            vhat = self._read(q, state, ValueTable(state.values)).vhat if T else v[..., :0]
        else:
            pieces = []
            t0 = 0
            table = ValueTable(state.values)  # the call's values, written in place
            while t0 < T or (writes == "end" and t0 == 0):
                if writes == "chunked":
                    take = min(T - t0, c.chunk - state.pending)
                    write = state.pending + take == c.chunk
                else:
                    take, write = T, True
                sl = slice(t0, t0 + take)
                vh, state = self._advance(state, table, q[:, sl], v[:, sl], g[:, sl], write)
                pieces.append(vh)
                t0 += take
                if writes == "end":
                    state = self.end_pass(state)
                    break
            state = dataclasses.replace(state, values=table.result())
            vhat = torch.cat(pieces, 1) if pieces else v[..., :0]  # (B, T, d_v)
        o = g.unsqueeze(-1) * vhat + (1 - g.unsqueeze(-1)) * v  # (B, T, d_v) gated mix
        y = self.o_proj(self.o_norm(o.to(x.dtype)))  # (B, T, d_model)
        if c.persistent and state is not start_state:
            self.commit_state(state)
        return y, state

    @staticmethod
    def end_pass(state: FwPKMState) -> FwPKMState:
        """Drop the queue after the write that ends a pass (``writes="end"``).

        After a write the queue keeps the last ``lookahead`` tokens so that, in a stream, they
        are paired with the targets of the tokens that follow them. A reading pass has no
        following tokens: the next pass (or the real one) starts again from token 0. Keeping
        them would write the pair (last token of the pass -> first token of the next pass),
        two tokens that are never adjacent; with the question at the end of a prompt that
        pair overwrites exactly the slots the question reads. The paper's NIAH script keeps
        its queue across passes too, but its pre-passes never contain the question.
        """
        return dataclasses.replace(
            state,
            pend_q=state.pend_q[:, :0],
            pend_v=state.pend_v[:, :0],
            pend_g=state.pend_g[:, :0],
            pend_valid=state.pend_valid[:, :0],
            n_carry=0,
        )

    def flush(self, state: FwPKMState) -> FwPKMState:
        """Write everything queued now (one step), e.g. after a prefill before decoding (A10)."""
        empty = (state.pend_q[:, :0], state.pend_v[:, :0], state.pend_g[:, :0])
        table = ValueTable(state.values)
        _, new = self._advance(state, table, *empty, True)
        return dataclasses.replace(new, values=table.result())

    def iterative_forward(
        self,
        x: Tensor,
        state: FwPKMState | None = None,
        *,
        passes: int | None = None,
        reset: Tensor | None = None,
    ) -> tuple[Tensor, FwPKMState]:
        """Iterative reading (paper's n-iter) for this layer alone.

        ``passes - 1`` passes over ``x`` each end with one write over the whole queue
        (``writes="end"``), then a final ``"chunked"`` pass produces the output. A model with
        several layers repeats the whole stack instead, calling ``forward(..., writes="end")``.
        """
        n = self.config.read_passes if passes is None else passes
        _check_int("passes", n, 1)
        if state is None:
            state = self.init_state(x.shape[0], x.device)
        if reset is not None:
            state = self.reset_state(state, reset)
        for _ in range(n - 1):
            _, state = self(x, state, writes="end")
        return self(x, state)
