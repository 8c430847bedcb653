"""AdamW parameter groups, each with its own learning rate and weight decay.

- ``decay``: matrices of the backbone (weight decay on);
- ``no_decay``: norms, biases and embeddings;
- one group per position-module tag: a module with an ``optim_group`` attribute (RePo's
  assigner: ``repo``) puts its parameters in that group at its ``lr_multiplier`` (RePo:
  ``repo.lr_multiplier``; decayed, as in the paper), in native and Hugging Face models alike;
- modules can add their own groups (e.g. memory values) through ``extra_groups``.

Each group records its peak rate as ``base_lr`` so the schedule scales every group alike.
"""

from __future__ import annotations

import torch
from torch import nn

from longpos.train.config import OptimConfig


def tagged_groups(model: nn.Module) -> dict[str, tuple[list[nn.Parameter], float]]:
    """name -> (parameters, lr multiplier) of every module that tags its own optimiser group
    (``optim_group`` / ``lr_multiplier`` attributes, e.g. RePo assigners)."""
    groups: dict[str, tuple[list[nn.Parameter], float]] = {}
    for module in model.modules():
        tag = getattr(module, "optim_group", None)
        if tag is None:
            continue
        mult = float(getattr(module, "lr_multiplier", 1.0))
        params, have = groups.setdefault(tag, ([], mult))
        if have != mult:
            raise ValueError(f"optimiser group {tag!r} has two learning-rate multipliers")
        params.extend(module.parameters())
    return groups


def param_groups(
    model: nn.Module,
    cfg: OptimConfig,
    extra_groups: dict[str, tuple[list[nn.Parameter], float, float]] | None = None,
) -> list[dict]:
    """Split the trainable parameters into named groups.

    ``extra_groups``: name -> (parameters, lr multiplier, weight decay); those parameters
    are taken out of the default groups.
    """
    taken: set[int] = set()
    groups: list[dict] = []
    tagged = {
        name: (params, mult, cfg.weight_decay)
        for name, (params, mult) in tagged_groups(model).items()
    }
    for name, (params, lr_mult, wd) in {**(extra_groups or {}), **tagged}.items():
        params = [p for p in params if p.requires_grad and id(p) not in taken]
        taken.update(id(p) for p in params)
        if params:
            groups.append(dict(name=name, params=params, lr_mult=lr_mult, weight_decay=wd))
    decay, no_decay = [], []
    seen: set[int] = set()
    for pname, param in model.named_parameters():
        if not param.requires_grad or id(param) in taken or id(param) in seen:
            continue
        seen.add(id(param))
        if param.dim() < 2 or "embed" in pname:
            no_decay.append(param)
        else:
            decay.append(param)
    for name, params, lr_mult, wd in (
        ("decay", decay, 1.0, cfg.weight_decay),
        ("no_decay", no_decay, 1.0, 0.0),
    ):
        if params:
            groups.append(dict(name=name, params=params, lr_mult=lr_mult, weight_decay=wd))
    for group in groups:
        group["base_lr"] = cfg.lr * group["lr_mult"]
        group["lr"] = group["base_lr"]
    return groups


def build_optimizer(groups: list[dict], cfg: OptimConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)


def set_lr(optimizer: torch.optim.Optimizer, multiplier: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * multiplier
