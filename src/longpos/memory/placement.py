"""Memory layers inside the reference model: which blocks get them, their shape, optimiser groups.

FwPKM (Zhao & Jones, arXiv 2601.00671) is a residual sub-block placed **before** the attention
mixer of the chosen blocks (``h = h + fwpkm(h)``, gated inside the layer); a static PKM
(Lample et al., arXiv 1907.05242) replaces the MLP of the chosen blocks or is added next to it
(``h = h + mlp(norm(h)) + pkm(norm(h))``). The paper's layouts at 12 layers are FwPKM at
``2,6,10`` (``layers="every:4:2"``) or FwPKM at ``2,10`` with a static PKM replacing layer 6's
MLP (``kind="fwpkm+pkm"``, ``layers="2,10"``, ``pkm_layers="6"``).

:class:`MemoryConfig` is the ``memory`` field of :class:`longpos.config.ModelConfig`; its default
(``kind="none"``) builds no module and is left out of the config's JSON, so configs and
checkpoints of models without memory are exactly as before.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from longpos.fields import check_known_fields, from_known_fields, prefixed_errors
from longpos.memory.fwpkm import FwPKMConfig, FwPKMLayer
from longpos.memory.pkm import PKMConfig, StaticPKM, pkm_value_parameters

__all__ = [
    "MEMORY_KINDS",
    "PKM_PLACEMENTS",
    "MemoryConfig",
    "memory_config_from_dict",
    "init_memory_layer",
    "memory_param_groups",
    "resolve_layers",
]

MEMORY_KINDS: tuple[str, ...] = ("none", "fwpkm", "pkm", "fwpkm+pkm")
PKM_PLACEMENTS: tuple[str, ...] = ("replace", "add")


def _swiglu_pkm() -> PKMConfig:
    return PKMConfig(output="swiglu")


@dataclass
class MemoryConfig:
    """Product-key memory layers of a :class:`~longpos.model.LongposLM` (none by default).

    Layer rules (``layers``, ``pkm_layers``): comma-separated indices (negative ones count from
    the end), ``middle`` ((n_layers - 1) // 2), ``all``, or ``every:K[:O]`` (layers i with
    i % K == O, O = 0 by default).
    """

    kind: str = "none"
    """none | fwpkm (FwPKM before the mixer of ``layers``) | pkm (static PKM in the MLP slot of
    ``layers``) | fwpkm+pkm (FwPKM at ``layers`` and static PKM at ``pkm_layers``)."""
    layers: str = "middle"
    """Blocks that get the memory of ``kind`` (the FwPKM blocks for fwpkm+pkm)."""
    pkm_layers: str = "middle"
    """Static PKM blocks when kind is fwpkm+pkm (ignored otherwise)."""
    pkm_placement: str = "replace"
    """replace: the PKM replaces the block's MLP | add: PKM and MLP in parallel on one norm."""
    fwpkm: FwPKMConfig = field(default_factory=FwPKMConfig)
    """FwPKM layer options (``d_model`` left None: the model's width; one memory per sequence:
    ``share_across_batch`` and ``persistent`` must stay off)."""
    pkm: PKMConfig = field(default_factory=_swiglu_pkm)
    """Static PKM layer options (``d_model`` left None: the model's width). Default output:
    Memory+-style SwiGLU."""
    pswa_prob: float = 0.0
    """Training only: probability per forward that every attention layer becomes sliding-window
    (the paper's pSWA, 0.9 with full attention, so the model does not learn to ignore FwPKM);
    0 = off. Evaluation and generation always use full attention. Drawn from the model's own
    generator, seeded with ``pswa_seed`` (the trainer checkpoints it for exact resume)."""
    pswa_seed: int = 0
    """Seed of the model's pSWA generator."""
    pswa_window: int | None = None
    """Window of pSWA in tokens (>= 1); None = the FwPKM chunk."""

    def __post_init__(self) -> None:
        if isinstance(self.fwpkm, dict):
            check_known_fields(FwPKMConfig, self.fwpkm, "memory.fwpkm")
            self.fwpkm = prefixed_errors("memory.fwpkm.", FwPKMConfig, **self.fwpkm)
        if isinstance(self.pkm, dict):
            check_known_fields(PKMConfig, self.pkm, "memory.pkm")
            data = {"output": "swiglu", **self.pkm}  # the field's default, not PKMConfig's
            self.pkm = prefixed_errors("memory.pkm.", PKMConfig, **data)
        if self.kind not in MEMORY_KINDS:
            raise ValueError(f"memory.kind={self.kind!r} is unknown; allowed: {MEMORY_KINDS}")
        if self.pkm_placement not in PKM_PLACEMENTS:
            raise ValueError(
                f"memory.pkm_placement={self.pkm_placement!r} is unknown; allowed: {PKM_PLACEMENTS}"
            )
        p = self.pswa_prob
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0.0 <= p <= 1.0:
            raise ValueError(f"memory.pswa_prob={p!r} must be a number in [0, 1]")
        w = self.pswa_window
        if w is not None and (isinstance(w, bool) or not isinstance(w, int) or w < 1):
            raise ValueError(f"memory.pswa_window={w!r} must be None or an integer >= 1")

    # ------------------------------------------------------------------ derived
    @property
    def enabled(self) -> bool:
        return self.kind != "none"

    def validate(self, d_model: int, n_layers: int) -> None:
        """Check the options against a model shape (called by ``ModelConfig``)."""
        if not self.enabled:
            return
        self.fwpkm_layers(n_layers)
        self.pkm_layers_of(n_layers)
        if self.kind in ("fwpkm", "fwpkm+pkm"):
            self.fwpkm_config(d_model)
        if self.kind in ("pkm", "fwpkm+pkm"):
            self.pkm_config(d_model)

    def fwpkm_config(self, d_model: int) -> FwPKMConfig:
        """The FwPKM layer config for a model of width ``d_model`` (validated)."""
        fw = self.fwpkm
        if fw.d_model not in (None, d_model):
            raise ValueError(f"memory.fwpkm.d_model={fw.d_model} must be None or {d_model}")
        if fw.share_across_batch or fw.persistent:
            raise ValueError(
                "memory.fwpkm.share_across_batch / persistent are off in models: each sequence "
                "has its own memory"
            )
        return prefixed_errors("memory.fwpkm.", fw.for_width, d_model)  # type: ignore[no-any-return]

    def pkm_config(self, d_model: int) -> PKMConfig:
        """The static PKM layer config for a model of width ``d_model`` (validated)."""
        pkm = self.pkm
        if pkm.d_model not in (None, d_model):
            raise ValueError(f"memory.pkm.d_model={pkm.d_model} must be None or {d_model}")
        if pkm.query_norm == "batch":
            raise ValueError(
                "memory.pkm.query_norm='batch' leaks future tokens in a causal model; "
                "allowed: rms, layer, none"
            )
        return prefixed_errors("memory.pkm.", pkm.for_width, d_model)  # type: ignore[no-any-return]

    def fwpkm_layers(self, n_layers: int) -> list[int]:
        """Sorted indices of the blocks with an FwPKM sub-block."""
        if self.kind in ("fwpkm", "fwpkm+pkm"):
            return resolve_layers(self.layers, n_layers, "memory.layers")
        return []

    def pkm_layers_of(self, n_layers: int) -> list[int]:
        """Sorted indices of the blocks with a static PKM."""
        if self.kind == "pkm":
            return resolve_layers(self.layers, n_layers, "memory.layers")
        if self.kind == "fwpkm+pkm":
            return resolve_layers(self.pkm_layers, n_layers, "memory.pkm_layers")
        return []

    @property
    def window(self) -> int:
        """The pSWA window in tokens."""
        return self.pswa_window if self.pswa_window is not None else self.fwpkm.chunk

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_layers(rule: str, n_layers: int, name: str = "layers") -> list[int]:
    """Expand a layer rule (see :class:`MemoryConfig`) into sorted block indices."""
    text = str(rule).strip().lower()
    if text == "middle":
        return [(n_layers - 1) // 2]
    if text == "all":
        return list(range(n_layers))
    if text.startswith("every:"):
        parts = text.split(":")[1:]
        try:
            step = int(parts[0])
            offset = int(parts[1]) if len(parts) > 1 else 0
        except (ValueError, IndexError):
            step, offset = 0, -1
        if len(parts) > 2 or step < 1 or not 0 <= offset < step:
            raise ValueError(
                f"{name}={rule!r}: write every:K or every:K:O with K >= 1 and 0 <= O < K"
            )
        out = [i for i in range(n_layers) if i % step == offset]
    else:
        try:
            raw = [int(p) for p in text.split(",") if p.strip()]
        except ValueError:
            raise ValueError(
                f"{name}={rule!r} is not a layer rule; allowed: comma-separated indices, "
                "middle, all, every:K[:O]"
            ) from None
        bad = [i for i in raw if not -n_layers <= i < n_layers]
        if bad:
            raise ValueError(
                f"{name}={rule!r}: indices {bad} are out of range; allowed "
                f"{-n_layers}..{n_layers - 1} for n_layers={n_layers}"
            )
        out = sorted({i % n_layers for i in raw})
        if len(out) != len(raw):
            raise ValueError(f"{name}={rule!r} lists a layer twice")
    if not out:
        raise ValueError(f"{name}={rule!r} selects no layer of n_layers={n_layers}")
    return out


def memory_config_from_dict(data: dict[str, Any]) -> MemoryConfig:
    """Build a :class:`MemoryConfig` from JSON data, rejecting unknown fields (``ValueError``)."""
    return from_known_fields(MemoryConfig, data, "memory")


@torch.no_grad()
def init_memory_layer(
    module: FwPKMLayer | StaticPKM, n_layers: int, generator: torch.Generator | None = None
) -> None:
    """A memory layer's init inside a model of ``n_layers`` blocks, the same in both back
    ends: its own ``reset_parameters``, then its residual output projection divided by
    sqrt(2 n_layers) like every residual branch of the model."""
    module.reset_parameters(generator)
    out = module.o_proj if isinstance(module, FwPKMLayer) else module.out_proj
    if out is not None:
        out.weight.div_(math.sqrt(2 * n_layers))
        if out.bias is not None:
            out.bias.div_(math.sqrt(2 * n_layers))


def memory_param_groups(
    model: nn.Module, lr: float
) -> dict[str, tuple[list[nn.Parameter], float, float]]:
    """Extra optimiser groups for the memory layers of ``model`` (``{}`` when it has none).

    In the format of ``Trainer(..., extra_groups=...)``: name -> (parameters, lr multiplier,
    weight decay), the multiplier relative to the base rate ``lr``.

    * ``pkm_values``: the static PKM value tables, peak rate ``PKMConfig.value_lr``, no weight
      decay (XLM / Memory Layers at Scale). Unlike those codes the rate follows the trainer's
      schedule (warmup and decay), like every other group.
    * ``fwpkm_init``: learned initial fast weights (``learn_init=True`` only), no weight decay.

    FwPKM's slow weights (projections, norms, gate) stay in the default groups; its fast weights
    are per-sequence state, written by the layer itself, not by the optimiser.
    """
    if not lr > 0:
        raise ValueError(f"lr={lr} must be > 0")
    groups: dict[str, tuple[list[nn.Parameter], float, float]] = {}
    values = [p for p in pkm_value_parameters(model) if p.requires_grad]
    if values:
        first = next(m for m in model.modules() if isinstance(m, StaticPKM))
        groups["pkm_values"] = (values, first.config.value_lr / lr, 0.0)
    init = [
        p
        for m in model.modules()
        if isinstance(m, FwPKMLayer) and m.config.learn_init
        for p in (m.init_keys, m.init_values)
        if isinstance(p, nn.Parameter) and p.requires_grad
    ]
    if init:
        groups["fwpkm_init"] = (init, 1.0, 0.0)
    return groups
