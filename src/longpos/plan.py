"""The position plan: which technique every attention layer uses, and the techniques' options.

One typed object for both back ends. The native :class:`~longpos.config.ModelConfig` *is* a
plan (it extends :class:`PositionPlan`), and a converted Hugging Face model stores the same
fields, serialised by the same :meth:`PositionPlan.plan_dict`, as ``config.longpos_positions``.

Plans:

- ``rope``: integer positions + RoPE in every layer;
- ``nope``: no positional encoding anywhere;
- ``r2n1`` / ``n2r1``: in each group of three layers, 2 RoPE + 1 NoPE (NoPE at
  l % 3 == 2) or 2 NoPE + 1 RoPE (RoPE at l % 3 == 2);
- ``repo``: RoPE in layers [0, start) and RePo in [start, L), start = L // 3 by default;
- ``nope_every_K``: RoPE, with NoPE in every K-th layer (layers K-1, 2K-1, ...; SmolLM3 uses
  K = 4); ``nope_every_K_temp``: the same with Llama 4's log-length query temperature in the
  NoPE layers (technique ``nope_temp``);
- any other registered technique's name: that technique in every layer;
- an explicit comma-separated list with one registered technique per layer, e.g.
  ``rope,nope,repo,repo`` (``longpos.positions.techniques.TECHNIQUE_NAMES``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from longpos.fields import from_known_fields
from longpos.positions.repo import RePoConfig
from longpos.positions.techniques import TECHNIQUE_NAMES
from longpos.positions.temperature import TemperatureConfig

PLAN_PRESETS: tuple[str, ...] = (
    "rope",
    "nope",
    "r2n1",
    "n2r1",
    "repo",
    "nope_every_K",
    "nope_every_K_temp",
)
NOPE_EVERY = re.compile(r"nope_every_(\d+)(_temp)?")
QK_NORMS: tuple[str, ...] = ("none", "q", "k", "qk")
"""RMSNorm on queries and/or keys (a backbone option; DroPE may add them)."""


@dataclass
class PositionPlan:
    """Per-layer position techniques and their options."""

    plan: str = "rope"
    """Per-layer positions: rope | nope | r2n1 | n2r1 | repo, or a comma-separated list of
    techniques with one entry per layer (rope, nope, repo, ...)."""
    repo_start: int | None = None
    """First RePo layer of the ``repo`` plan, in [0, n_layers). None = n_layers // 3."""
    repo: RePoConfig = field(default_factory=RePoConfig)
    """RePo assigner options."""
    temperature: TemperatureConfig = field(default_factory=TemperatureConfig)
    """DroPE's inference softmax temperature (off by default)."""

    def __post_init__(self) -> None:
        if not isinstance(self.plan, str):  # a list of techniques, one per layer
            self.plan = plan_text(self.plan)
        if isinstance(self.repo, dict):
            self.repo = RePoConfig(**self.repo)
        if isinstance(self.temperature, dict):
            self.temperature = TemperatureConfig(**self.temperature)
        start = self.repo_start
        if start is not None and (isinstance(start, bool) or not isinstance(start, int)):
            raise ValueError(f"repo_start={start!r} must be an integer or None")
        if not self.plan.strip():
            raise ValueError(f"plan is empty; allowed: {', '.join(PLAN_PRESETS)}, or a list")

    def layer_plan(self, n_layers: int) -> list[str]:
        """The technique of every layer, e.g. ``['rope', 'rope', 'repo', 'repo']``."""
        start = self.repo_start
        if start is not None and not 0 <= start < n_layers:
            raise ValueError(
                f"repo_start={start} is out of range: allowed 0..{n_layers - 1} "
                f"for n_layers={n_layers}"
            )
        return resolve_plan(self.plan, n_layers, n_layers // 3 if start is None else start)

    def position_plan(self) -> PositionPlan:
        """Just the plan (a copy), e.g. of a :class:`~longpos.config.ModelConfig`."""
        return PositionPlan.plan_from_dict(self.plan_dict())

    def plan_dict(self) -> dict[str, Any]:
        """The plan's fields as JSON data (the same for native and Hugging Face configs)."""
        from dataclasses import asdict

        return {f.name: _jsonable(asdict(self)[f.name]) for f in fields(PositionPlan)}

    @classmethod
    def plan_from_dict(cls, data: dict[str, Any]) -> PositionPlan:
        return from_known_fields(PositionPlan, data, "position-plan")


def _jsonable(value: Any) -> Any:
    return dict(value) if isinstance(value, dict) else value


def plan_text(plan: str | Sequence[str]) -> str:
    """A plan given as a list of techniques, as the comma-separated text the config stores."""
    if isinstance(plan, str):
        return plan
    return ",".join(str(p).strip().lower() for p in plan)


def resolve_plan(plan: str, n_layers: int, repo_start: int) -> list[str]:
    """Expand a plan name or explicit list into one technique per layer."""
    name = plan.strip().lower()
    if name == "rope":
        return ["rope"] * n_layers
    if name == "nope":
        return ["nope"] * n_layers
    if name == "r2n1":
        return ["nope" if i % 3 == 2 else "rope" for i in range(n_layers)]
    if name == "n2r1":
        return ["rope" if i % 3 == 2 else "nope" for i in range(n_layers)]
    if name == "repo":
        return ["rope" if i < repo_start else "repo" for i in range(n_layers)]
    every = NOPE_EVERY.fullmatch(name)
    if every:
        k = int(every.group(1))
        if k < 1:
            raise ValueError(f"plan={plan!r}: K must be >= 1 in nope_every_K")
        nope = "nope_temp" if every.group(2) else "nope"
        return [nope if (i + 1) % k == 0 else "rope" for i in range(n_layers)]
    if name in TECHNIQUE_NAMES:  # any other technique: in every layer
        return [name] * n_layers
    items = [p.strip() for p in name.split(",")]
    if len(items) == 1:
        raise ValueError(
            f"plan={plan!r} is unknown; allowed: {', '.join(PLAN_PRESETS)}, or a comma-separated "
            f"list of {'/'.join(TECHNIQUE_NAMES)} with one entry per layer"
        )
    bad = [p for p in items if p not in TECHNIQUE_NAMES]
    if bad:
        raise ValueError(f"plan entries {bad} are unknown techniques; allowed: {TECHNIQUE_NAMES}")
    if len(items) != n_layers:
        raise ValueError(
            f"plan lists {len(items)} layers but n_layers={n_layers}: give one entry per layer"
        )
    return items
