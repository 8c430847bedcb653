"""Static product-key memory (PKM).

Paper: Lample et al. 2019, "Large Memory Layers with Product Keys", arXiv 1907.05242
(with the Memory+ output of Berges et al. 2024, "Memory Layers at Scale", arXiv 2412.09764).

A PKM layer holds ``N = sqrt_n**2`` value rows but never scores ``N`` keys. Each head's query is
split in two halves; each half is scored against its own set of ``sqrt_n`` sub-keys, the top-k of
each half are combined into ``k*k`` candidate pairs whose score is the *sum* of the two sub-scores,
and the top-k pairs are kept. Because the score is additive this search is exact (it equals the
top-k over all ``N`` keys). The selected rows of one value table shared by all heads are mixed
with per-head softmax weights and summed over heads.

This module also holds the product-key helpers shared with :mod:`longpos.memory.fwpkm`:
:func:`subkey_scores` (dot-product or inverse-distance scores) and :func:`product_topk`.

Library choices (see ``spec/fwpkm.md`` §1):

* the query normalisation is per token (RMSNorm by default) so that no statistic crosses time;
  BatchNorm (``query_norm="batch"``) is offered only as a non-causal ablation;
* the value table gets its own optimiser group (:func:`pkm_param_groups`), with a constant, higher
  learning rate (``PKMConfig.value_lr``) and no weight decay, as in the XLM / Meta code.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "PKMConfig",
    "StaticPKM",
    "brute_force_topk",
    "pkm_param_groups",
    "pkm_value_parameters",
    "product_topk",
    "subkey_scores",
]

ScoreKind = Literal["dot", "idw"]


# --------------------------------------------------------------------------------------------
# Shared product-key helpers
# --------------------------------------------------------------------------------------------


def subkey_scores(
    q: Tensor, keys: Tensor, score: ScoreKind = "dot", eps: float = 1e-3
) -> tuple[Tensor, Tensor | None]:
    """Score half-queries against one sub-key set.

    Args:
        q: half queries ``(G, R, H, D)``: G memory groups, R rows (tokens), H heads.
        keys: sub-keys ``(G, H, S, D)`` (one set of S sub-keys per group and head).
        score: ``"dot"`` for ``<q, K>`` (classic PKM) or ``"idw"`` for the inverse-distance score
            ``-log(eps + ||q - K||^2)`` of FwPKM.
        eps: the IDW epsilon.

    Returns:
        ``(scores, d2)``: scores ``(G, R, H, S)`` and, for IDW, the squared distances
        ``(G, R, H, S)`` (``None`` for dot scores).
    """
    dot = torch.einsum("grhd,ghsd->grhs", q, keys)  # (G, R, H, S)
    if score == "dot":
        return dot, None
    if score != "idw":
        raise ValueError(f"score must be 'dot' or 'idw', got {score!r}")
    q2 = (q * q).sum(-1).unsqueeze(-1)  # (G, R, H, 1)
    k2 = (keys * keys).sum(-1).unsqueeze(1)  # (G, 1, H, S)
    d2 = (q2 + k2 - 2.0 * dot).clamp_min(0.0)  # (G, R, H, S)
    return -torch.log(eps + d2), d2


def product_topk(s1: Tensor, s2: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Exact top-k over the ``S*S`` additive pair scores ``s1[i] + s2[j]``.

    Args:
        s1: first-half sub-scores ``(..., S)``.
        s2: second-half sub-scores ``(..., S)``.
        k: how many pairs to keep (``1 <= k <= S``).

    Returns:
        ``(scores, index)``, both ``(..., k)``, sorted by decreasing score; the flat slot index is
        ``i * S + j`` (0-based). Gradients flow to ``s1`` and ``s2`` through ``scores``.
    """
    S = s1.shape[-1]
    if s2.shape[-1] != S:
        raise ValueError(
            f"both halves need the same number of sub-keys, got {S} and {s2.shape[-1]}"
        )
    if not 1 <= k <= S:
        raise ValueError(f"top-k must lie in [1, sqrt_n={S}], got {k}")
    v1, i1 = s1.topk(k, dim=-1)  # (..., k) each
    v2, i2 = s2.topk(k, dim=-1)
    cand = v1.unsqueeze(-1) + v2.unsqueeze(-2)  # (..., k, k): candidate pair scores
    best, pos = cand.flatten(-2).topk(k, dim=-1)  # (..., k): positions in the k*k grid
    ii = i1.gather(-1, torch.div(pos, k, rounding_mode="floor"))  # (..., k) first-half index
    jj = i2.gather(-1, pos % k)  # (..., k) second-half index
    return best, ii * S + jj


def brute_force_topk(s1: Tensor, s2: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Reference for :func:`product_topk`: build all ``S*S`` pair scores and take their top-k."""
    full = (s1.unsqueeze(-1) + s2.unsqueeze(-2)).flatten(-2)  # (..., S*S), flat index i*S + j
    return full.topk(k, dim=-1)


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------


def _check_int(name: str, value: Any, lo: int, hi: int | None = None) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < lo
        or (hi is not None and value > hi)
    ):
        rng = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise ValueError(f"{name} must be an integer {rng}, got {value!r}")


def _check_memory_shape(d_model: int | None, d_k: int) -> None:
    """The checks every product-key memory config shares: its width (None: the model's) and
    an even query / key size (two halves for the product keys)."""
    if d_model is not None:
        _check_int("d_model", d_model, 1)
    _check_int("d_k", d_k, 2)
    if d_k % 2:
        raise ValueError(f"d_k must be even (it is split in two halves), got {d_k}")


def _check_float(name: str, value: Any, lo: float, *, strict: bool = False) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = value > lo if strict else value >= lo
    if not ok:
        rel = ">" if strict else ">="
        raise ValueError(f"{name} must be a finite number {rel} {lo}, got {value!r}")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


@dataclass
class PKMConfig:
    """Configuration of a static product-key memory layer (:class:`StaticPKM`).

    Round-trips through JSON: ``PKMConfig(**json.loads(json.dumps(asdict(cfg))))``.
    """

    d_model: int | None = None
    """Width of the residual stream (input and output feature size); None inside a model's
    ``MemoryConfig`` (the model's width), required to build a layer (:meth:`for_width`)."""
    d_k: int = 64
    """Query / key size per head; must be even (split into two halves of ``d_k // 2``)."""
    d_v: int | None = None
    """Value row size; ``None`` means ``d_model``."""
    sqrt_n: int = 64
    """Sub-keys per half (per head); the memory has ``N = sqrt_n**2`` value rows."""
    heads: int = 4
    """Number of query heads; each has its own sub-keys, all share the value table."""
    topk: int = 16
    """Slots read per head (``1 <= topk <= sqrt_n``)."""
    query_norm: Literal["rms", "layer", "batch", "none"] = "rms"
    """Normalisation of the projected query, per token (``rms``/``layer``), none, or
    ``batch``: BatchNorm1d over batch x time as in the 2019 paper. ``batch`` leaks statistics of
    future tokens in a causal LM and is only meant as an ablation."""
    score: Literal["dot", "idw"] = "dot"
    """Sub-key score: dot product (classic PKM) or FwPKM's inverse distance."""
    eps_idw: float = 1e-3
    """Epsilon of the IDW score ``-log(eps + ||q - k||^2)``."""
    output: Literal["value", "linear", "swiglu"] = "value"
    """``value``: return the memory read (needs ``d_v == d_model``); ``linear``: a Linear from
    ``d_v`` to ``d_model``; ``swiglu``: Memory+ output ``W2(m * SiLU(W1 x))``."""
    value_lr: float = 1e-3
    """Constant learning rate of the value table in its own optimiser group."""
    norm_eps: float = 1e-6
    """Epsilon of the query normalisation."""

    def __post_init__(self) -> None:
        _check_memory_shape(self.d_model, self.d_k)
        if self.d_v is not None:
            _check_int("d_v", self.d_v, 1)
        _check_int("sqrt_n", self.sqrt_n, 1)
        _check_int("heads", self.heads, 1)
        _check_int("topk", self.topk, 1, self.sqrt_n)
        _check_choice("query_norm", self.query_norm, ("rms", "layer", "batch", "none"))
        _check_choice("score", self.score, ("dot", "idw"))
        _check_float("eps_idw", self.eps_idw, 0.0, strict=True)
        _check_choice("output", self.output, ("value", "linear", "swiglu"))
        if self.d_model is not None and self.output == "value" and self.value_dim != self.d_model:
            raise ValueError(
                f"output='value' needs d_v == d_model ({self.d_model}), got d_v={self.value_dim}; "
                "set d_v=None or output='linear'"
            )
        _check_float("value_lr", self.value_lr, 0.0)
        _check_float("norm_eps", self.norm_eps, 0.0, strict=True)

    @property
    def value_dim(self) -> int:
        """The effective value size (``d_v`` or ``d_model``)."""
        if self.d_v is not None:
            return self.d_v
        if self.d_model is None:
            raise ValueError("PKMConfig.d_model is needed for the value size (see for_width)")
        return self.d_model

    def for_width(self, d_model: int) -> PKMConfig:
        """This config for a model of width ``d_model``."""
        return dataclasses.replace(self, d_model=d_model)

    @property
    def n_slots(self) -> int:
        """Number of memory slots ``N = sqrt_n**2``."""
        return self.sqrt_n * self.sqrt_n

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``dataclasses.asdict``)."""
        return asdict(self)


# --------------------------------------------------------------------------------------------
# Module
# --------------------------------------------------------------------------------------------


def _uniform_(t: Tensor, bound: float, generator: torch.Generator | None) -> None:
    with torch.no_grad():
        r = torch.rand(t.shape, generator=generator, dtype=torch.float64)
        t.copy_((r * 2 - 1) * bound)


def _normal_(t: Tensor, std: float, generator: torch.Generator | None) -> None:
    with torch.no_grad():
        t.copy_(torch.randn(t.shape, generator=generator, dtype=torch.float64) * std)


def init_linear_(lin: nn.Linear, generator: torch.Generator | None) -> None:
    """PyTorch's default Linear init, U(+-1/sqrt(fan_in)) for weight and bias, from ``generator``."""
    bound = 1.0 / math.sqrt(lin.in_features)
    _uniform_(lin.weight, bound, generator)
    if lin.bias is not None:
        _uniform_(lin.bias, bound, generator)


class StaticPKM(nn.Module):
    """Static product-key memory layer (Lample et al. 2019, arXiv 1907.05242).

    ``forward(x (B, T, d_model)) -> (B, T, d_model)``. It is a drop-in MLP replacement (or an
    addition to it): the caller adds the residual, ``h = h + pkm(norm(h))``.

    Parameters: ``query`` (Linear ``d_model -> heads*d_k`` with bias), ``query_norm``,
    ``keys`` ``(heads, 2, sqrt_n, d_k/2)`` and ``values`` ``(N, d_v)`` (use
    :func:`pkm_param_groups` to give the values their own learning rate), and the output layers.
    """

    def __init__(self, config: PKMConfig, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if config.d_model is None:
            raise ValueError("PKMConfig.d_model is needed to build a layer (see for_width)")
        self.config = config
        self.d_model: int = config.d_model
        c = config
        hd = c.heads * c.d_k
        self.query = nn.Linear(self.d_model, hd, bias=True)
        if c.query_norm == "rms":
            self.query_norm: nn.Module = nn.RMSNorm(hd, eps=c.norm_eps)
        elif c.query_norm == "layer":
            self.query_norm = nn.LayerNorm(hd, eps=c.norm_eps)
        elif c.query_norm == "batch":
            self.query_norm = nn.BatchNorm1d(hd, eps=c.norm_eps)
        else:
            self.query_norm = nn.Identity()
        self.keys = nn.Parameter(torch.empty(c.heads, 2, c.sqrt_n, c.d_k // 2))
        self.values = nn.Parameter(torch.empty(c.n_slots, c.value_dim))
        self.out_proj: nn.Linear | None = None
        self.gate_proj: nn.Linear | None = None
        if c.output in ("linear", "swiglu"):
            self.out_proj = nn.Linear(c.value_dim, self.d_model, bias=False)
        if c.output == "swiglu":
            self.gate_proj = nn.Linear(self.d_model, c.value_dim, bias=False)
        self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """(Re)initialise every parameter from ``generator`` (the default RNG when ``None``).

        Keys U(+-1/sqrt(d_k)), values N(0, std=d_v**-0.5), Linears U(+-1/sqrt(fan_in)),
        norms to identity.
        """
        c = self.config
        init_linear_(self.query, generator)
        for m in (self.out_proj, self.gate_proj):
            if m is not None:
                init_linear_(m, generator)
        if isinstance(self.query_norm, nn.RMSNorm | nn.LayerNorm | nn.BatchNorm1d):
            self.query_norm.reset_parameters()
        _uniform_(self.keys, 1.0 / math.sqrt(c.d_k), generator)
        _normal_(self.values, c.value_dim**-0.5, generator)

    def lookup(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Return ``(read, weights, index)`` for ``x (B, T, d_model)``.

        ``read`` is ``(B, T, d_v)``; ``weights`` and ``index`` are ``(B, T, heads, topk)`` (per-head
        softmax weights and flat slot indices ``i * sqrt_n + j``).
        """
        c = self.config
        B, T, D = x.shape
        q = self.query(x)  # (B, T, H*d_k)
        if c.query_norm == "batch":
            q = self.query_norm(q.reshape(B * T, -1)).reshape(B, T, -1)  # BN over (B*T)
        else:
            q = self.query_norm(q)  # per token
        q = q.reshape(1, B * T, c.heads, c.d_k)  # (G=1, R=B*T, H, d_k)
        half = c.d_k // 2
        keys = self.keys.to(q.dtype)
        s1, _ = subkey_scores(q[..., :half], keys[None, :, 0], c.score, c.eps_idw)  # (1,R,H,S)
        s2, _ = subkey_scores(q[..., half:], keys[None, :, 1], c.score, c.eps_idw)  # (1,R,H,S)
        scores, idx = product_topk(s1, s2, c.topk)  # (1, R, H, k) each
        w = scores.softmax(dim=-1)  # (1, R, H, k): per-head softmax
        read = F.embedding_bag(
            idx.reshape(B * T, c.heads * c.topk),  # (B*T, H*k): one bag per token
            self.values.to(q.dtype),
            per_sample_weights=w.reshape(B * T, c.heads * c.topk),
            mode="sum",
        )  # (B*T, d_v): heads summed
        return (
            read.reshape(B, T, -1),
            w.reshape(B, T, c.heads, c.topk),
            idx.reshape(B, T, c.heads, c.topk),
        )

    def forward(self, x: Tensor) -> Tensor:
        """``x (B, T, d_model) -> (B, T, d_model)``; the caller adds the residual."""
        if x.dim() != 3 or x.shape[-1] != self.config.d_model:
            raise ValueError(
                f"StaticPKM expects x of shape (B, T, d_model={self.config.d_model}), "
                f"got {tuple(x.shape)}"
            )
        m, _, _ = self.lookup(x)  # (B, T, d_v)
        if self.config.output == "value":
            return m
        assert self.out_proj is not None
        if self.config.output == "swiglu":
            assert self.gate_proj is not None
            m = m * F.silu(self.gate_proj(x))  # (B, T, d_v)
        return self.out_proj(m)  # (B, T, d_model)


# --------------------------------------------------------------------------------------------
# Optimiser groups
# --------------------------------------------------------------------------------------------


def pkm_value_parameters(module: nn.Module) -> Iterator[nn.Parameter]:
    """Yield the value tables of every :class:`StaticPKM` inside ``module`` (itself included)."""
    seen: set[int] = set()
    for m in module.modules():
        if isinstance(m, StaticPKM) and id(m.values) not in seen:
            seen.add(id(m.values))
            yield m.values


def pkm_param_groups(
    module: nn.Module,
    lr: float,
    weight_decay: float = 0.0,
    value_lr: float | None = None,
    extra: Iterable[nn.Parameter] = (),
) -> list[dict[str, Any]]:
    """Optimiser groups: every trainable parameter, with PKM value tables in their own group.

    The value group uses ``value_lr`` (default: the first PKM's ``config.value_lr``) and no weight
    decay; give it a constant schedule in the trainer (the group carries ``"pkm_values": True``).
    ``extra`` parameters are excluded from both groups (e.g. parameters the caller handles).
    """
    values = list(pkm_value_parameters(module))
    skip = {id(p) for p in values} | {id(p) for p in extra}
    base = [p for p in module.parameters() if p.requires_grad and id(p) not in skip]
    groups: list[dict[str, Any]] = [{"params": base, "lr": lr, "weight_decay": weight_decay}]
    if values:
        if value_lr is None:
            first = next(m for m in module.modules() if isinstance(m, StaticPKM))
            value_lr = first.config.value_lr
        groups.append({"params": values, "lr": value_lr, "weight_decay": 0.0, "pkm_values": True})
    return groups
