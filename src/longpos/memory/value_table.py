"""The fast value table of one FwPKM call, written in place, with a sparse backward.

A call of :class:`~longpos.memory.fwpkm.FwPKMLayer` alternates reads of its value table
``V (G*N, d_v)`` (a weighted sum of ``heads*topk`` rows per token) and writes (``V <- V + alpha *
index_add(flat, src)``, touching at most ``G*R*heads*topk`` rows). Written with plain autograd
ops, every write makes a new dense table and the backward a dense gradient per read and per
write: at the demo's size (32 memories of 1024 x 32) that is 4 MB copied, zeroed and added
several times per step for a few hundred changed rows, the largest part of FwPKM's step cost.

:class:`ValueTable` keeps one buffer per call instead, cloned from the state's table when the
call starts and updated in place by each write. Its backward sweeps the call's reads and writes
in reverse with one dense accumulator ``A``: a read adds its rows' gradients into ``A``, a write
gathers ``A`` at the rows it changed (exactly the gradient of its ``src``: ``V`` after a write is
``V`` before plus ``alpha`` times the scattered ``src``, so the write's ``src`` receives ``alpha``
times the gradient of every later read of those rows), and the start hands ``A`` to the
incoming table. The forward values are bit-for-bit those of the out-of-place ops (``index_add``
is ``clone`` + ``index_add_``; the reads are the same ``embedding_bag``), and so are the
gradients: a read's backward calls the kernels ``embedding_bag``'s own backward calls, on the
rows it read (``tests/memory/test_memory_fwpkm_value_table.py`` compares every gradient with plain autograd).

Autograd runs the sweep in the right order by itself: each read and write takes the previous
node's *token* (an empty tensor) as an input, and a read's output feeds the next write's
``src``, so a write's backward runs after every later read's and before its own chunk's read.
A backward sweep is recognised by its first node (the highest sequence number so far), which
clears ``A``, so ``retain_graph`` and repeated sweeps work. Double backward is not supported.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = ["ValueTable"]


class _Sweep:
    """The accumulator shared by one table's autograd nodes (see the module docstring)."""

    def __init__(self, buf: Tensor) -> None:
        self.shape = buf.shape
        self.dtype = buf.dtype
        self.device = buf.device
        self.grad: Tensor | None = None
        self.last: int | None = None

    def visit(self, seq: int) -> Tensor:
        """The accumulator for node ``seq``, cleared when ``seq`` starts a new backward sweep."""
        if self.last is None or seq >= self.last or self.grad is None:
            self.grad = torch.zeros(self.shape, dtype=self.dtype, device=self.device)
        self.last = seq
        return self.grad


def _token(like: Tensor) -> Tensor:
    return like.new_empty(0)


class _Start(torch.autograd.Function):
    """Token 0 of a table; its backward hands the accumulated gradient to the incoming table."""

    @staticmethod
    def forward(ctx: Any, values: Tensor, sweep: _Sweep) -> Tensor:
        ctx.sweep = sweep
        ctx.shape = values.shape
        return _token(values)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, _grad: Tensor) -> tuple[Tensor, None]:
        grad = ctx.sweep.visit(0)
        ctx.sweep.grad = None
        return grad.view(ctx.shape), None


class _Read(torch.autograd.Function):
    """``vhat = embedding_bag(idx, V, w)`` with ``V`` the buffer as it is now."""

    @staticmethod
    def forward(
        ctx: Any, token: Tensor, w: Tensor, buf: Tensor, idx: Tensor, sweep: _Sweep, seq: int
    ) -> Tensor:
        out = F.embedding_bag(idx, buf, per_sample_weights=w, mode="sum")  # (bags, d_v)
        rows = F.embedding(idx, buf) if ctx.needs_input_grad[1] else None  # (bags, A, d_v)
        ctx.save_for_backward(w, idx, rows)
        ctx.sweep, ctx.seq = sweep, seq
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Any, ...]:
        w, idx, rows = ctx.saved_tensors
        acc = ctx.sweep.visit(ctx.seq)
        bags, per_bag = idx.shape
        flat_w = w.reshape(-1)
        bag_of = torch.arange(bags, device=idx.device).repeat_interleave(per_bag)
        slots, where = torch.unique(idx.reshape(-1), return_inverse=True)
        # the gradient embedding_bag gives its table, on the slots read only (same kernel,
        # same summation order: equal bits); then added to the later reads' gradients
        sizes = torch.full((bags,), per_bag, dtype=idx.dtype, device=idx.device)
        # args: bag sizes, max indices (unused in sum mode), slots, no freq scaling, sum, weights
        slots_grad = torch.ops.aten._embedding_bag_dense_backward(
            grad, where, bag_of, sizes, sizes, slots.numel(), False, 0, flat_w, -1,
        )  # fmt: skip
        acc.index_add_(0, slots, slots_grad)
        grad_w = None
        if rows is not None:  # the per-sample-weights gradient, with the rows read as table
            offsets = torch.arange(0, bags * per_bag, per_bag, device=idx.device)
            grad_w = torch.ops.aten._embedding_bag_per_sample_weights_backward(
                grad, rows.reshape(-1, rows.shape[-1]), torch.arange(bags * per_bag,
                device=idx.device), offsets, bag_of, 0, -1,
            ).view(bags, per_bag)  # fmt: skip
        return _token(grad), grad_w, None, None, None, None


class _Write(torch.autograd.Function):
    """``V[flat] += alpha * src`` in place (rows repeated in ``flat`` are summed)."""

    @staticmethod
    def forward(
        ctx: Any,
        token: Tensor,
        src: Tensor,
        buf: Tensor,
        flat: Tensor,
        alpha: float,
        sweep: _Sweep,
        seq: int,
    ) -> Tensor:
        buf.index_add_(0, flat, src, alpha=alpha)
        ctx.save_for_backward(flat)
        ctx.alpha, ctx.sweep, ctx.seq = alpha, sweep, seq
        return _token(src)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, _grad: Tensor) -> tuple[Any, ...]:
        (flat,) = ctx.saved_tensors
        acc = ctx.sweep.visit(ctx.seq)
        grad_src = acc.index_select(0, flat)
        if ctx.alpha != 1.0:
            grad_src = grad_src * ctx.alpha
        return _token(grad_src), grad_src, None, None, None, None, None


class _Finish(torch.autograd.Function):
    """The table at the end of the call (the buffer itself: nothing writes it afterwards)."""

    @staticmethod
    def forward(ctx: Any, token: Tensor, buf: Tensor, sweep: _Sweep, seq: int) -> Tensor:
        ctx.sweep, ctx.seq = sweep, seq
        return buf.view_as(buf)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Any, ...]:
        ctx.sweep.visit(ctx.seq).add_(grad)
        return _token(grad), None, None, None


class ValueTable:
    """One call's fast value table ``(G*N, d_v)``: :meth:`read`, :meth:`write`, :meth:`result`.

    ``values`` is the state's table ``(G, N, d_v)``; it is never modified: the first write
    copies it (a call that only reads copies nothing, unless ``values`` is an expanded view).
    With autograd off (inference) the reads and writes are the plain ops on the buffer.
    """

    def __init__(self, values: Tensor) -> None:
        self.values = values
        flat = values.detach().reshape(-1, values.shape[-1])  # (G*N, d_v)
        self.owned = flat.untyped_storage().data_ptr() != values.untyped_storage().data_ptr()
        self.buf = flat
        self.written = False
        self.tracked = torch.is_grad_enabled()
        self.sweep = _Sweep(flat)
        self.seq = 0
        if self.tracked and values.requires_grad:
            self.token = _Start.apply(values, self.sweep)
        else:
            self.token = _token(flat)

    def _next(self) -> int:
        self.seq += 1
        return self.seq

    def read(self, idx: Tensor, w: Tensor) -> Tensor:
        """``sum_a w[b, a] * V[idx[b, a]]`` for ``idx, w (bags, A)``: ``(bags, d_v)``."""
        if not (self.tracked and (w.requires_grad or self.token.requires_grad)):
            return F.embedding_bag(idx, self.buf, per_sample_weights=w, mode="sum")
        return _Read.apply(self.token, w, self.buf, idx, self.sweep, self._next())

    def write(self, flat: Tensor, src: Tensor, alpha: float) -> None:
        """``V[flat] += alpha * src`` for ``flat (M,)``, ``src (M, d_v)``."""
        if not self.owned:
            self.buf = self.buf.clone()
            self.owned = True
        self.written = True
        if not (self.tracked and (src.requires_grad or self.token.requires_grad)):
            self.buf.index_add_(0, flat, src.detach(), alpha=alpha)
            return
        self.token = _Write.apply(self.token, src, self.buf, flat, alpha, self.sweep, self._next())

    def detach_(self) -> None:
        """Cut the gradient here (truncated backpropagation): later reads do not reach the
        writes so far nor the incoming table."""
        self.sweep = _Sweep(self.buf)
        self.token = _token(self.buf)

    def result(self) -> Tensor:
        """The table now ``(G, N, d_v)`` (``values`` itself when nothing was written); the
        table must not be read or written afterwards."""
        if not self.written:
            return self.values
        if self.token.requires_grad:
            out = _Finish.apply(self.token, self.buf, self.sweep, self._next())
        else:
            out = self.buf
        return out.view(self.values.shape)
