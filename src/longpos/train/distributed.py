"""The same training loop on one device or many, under ``torchrun``.

``torchrun --nproc_per_node N -m longpos train ...`` sets RANK / WORLD_SIZE; the process
group uses gloo on CPU and NCCL on CUDA. ``ddp`` replicates the model; ``fsdp`` shards
parameters, gradients and optimiser state (FSDP2 ``fully_shard`` per block), for models
that do not fit one device. Checkpoints always hold full (unsharded) states.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import cast

import torch
import torch.distributed as dist
from torch import nn

PARALLEL_MODES: tuple[str, ...] = ("ddp", "fsdp")


@dataclass
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    mode: str = "single"

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(preference: str, local_rank: int = 0) -> torch.device:
    if preference == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if preference.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={preference!r} was requested but CUDA is not available")
    if preference == "cuda":
        return torch.device(f"cuda:{local_rank}")
    return torch.device(preference)


def setup(device: str = "auto") -> DistContext:
    """Join the process group when launched by torchrun; a single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
    return DistContext(rank, world, local, dev)


def wrap(model: nn.Module, ctx: DistContext, parallel: str = "ddp") -> nn.Module:
    if parallel not in PARALLEL_MODES:
        raise ValueError(f"parallel={parallel!r} is unknown; allowed: {PARALLEL_MODES}")
    if ctx.world_size == 1:
        return model
    ctx.mode = parallel
    if parallel == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)
    from torch.distributed.fsdp import fully_shard

    for block in getattr(model, "blocks", []):
        fully_shard(block)
    fully_shard(model)
    return model


def rank_rows(batch: int, ctx: DistContext) -> slice:
    """This rank's contiguous share of the global batch's rows."""
    if batch % ctx.world_size:
        raise ValueError(f"global batch {batch} is not divisible by world size {ctx.world_size}")
    per = batch // ctx.world_size
    return slice(ctx.rank * per, (ctx.rank + 1) * per)


@contextlib.contextmanager
def maybe_no_sync(model: nn.Module, ctx: DistContext, sync: bool) -> Iterator[None]:
    """Skip the gradient all-reduce on micro-batches before the last one."""
    if ctx.mode == "ddp" and not sync:
        with model.no_sync():  # type: ignore[operator]
            yield
        return
    if ctx.mode == "fsdp":
        model.set_requires_gradient_sync(sync)  # type: ignore[operator]
    yield


def clip_grad_norm(model: nn.Module, max_norm: float) -> torch.Tensor:
    params = [p for p in model.parameters() if p.grad is not None]
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm > 0 else float("inf"))
    return norm.full_tensor() if hasattr(norm, "full_tensor") else norm


def all_reduce_sum(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    if ctx.world_size > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def _inner(model: nn.Module) -> nn.Module:
    return cast(nn.Module, model.module) if hasattr(model, "module") else model


def full_model_state(model: nn.Module, ctx: DistContext) -> dict[str, torch.Tensor]:
    """Unsharded CPU copy of the weights (every rank must call it under FSDP)."""
    if ctx.mode == "fsdp":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        state = get_model_state_dict(
            model, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
        )
        return cast("dict[str, torch.Tensor]", state)
    return {k: v.detach().cpu().clone() for k, v in _inner(model).state_dict().items()}


def full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, ctx: DistContext):
    if ctx.mode == "fsdp":
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_optimizer_state_dict,
        )

        return get_optimizer_state_dict(
            model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
        )
    return optimizer.state_dict()


def load_full_model_state(model: nn.Module, state: dict, ctx: DistContext) -> None:
    if ctx.mode == "fsdp":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True))
        return
    _inner(model).load_state_dict(state)


def load_full_optimizer_state(
    model: nn.Module, optimizer: torch.optim.Optimizer, state: dict, ctx: DistContext
) -> None:
    if ctx.mode == "fsdp":
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_optimizer_state_dict,
        )

        set_optimizer_state_dict(
            model, optimizer, state, options=StateDictOptions(full_state_dict=True)
        )
        return
    optimizer.load_state_dict(state)
