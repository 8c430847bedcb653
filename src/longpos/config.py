"""Model configuration: the reference decoder's shape, its per-layer position plan, presets.

:class:`ModelConfig` extends :class:`longpos.plan.PositionPlan` (which technique each attention
layer uses, and their options; see :mod:`longpos.plan`) with the backbone's shape. Configs are
dataclasses that validate themselves (``ValueError`` naming the field and the allowed range)
and round-trip through JSON.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from longpos.fields import from_known_fields
from longpos.memory.placement import MemoryConfig, memory_config_from_dict
from longpos.plan import PLAN_PRESETS, QK_NORMS, PositionPlan, resolve_plan
from longpos.positions.repo import RePoConfig
from longpos.positions.scaling import RopeConfig
from longpos.positions.techniques import LayerShape
from longpos.positions.temperature import TEMPERATURE_PRESETS, TemperatureConfig

__all__ = [
    "PLAN_PRESETS",
    "PRESETS",
    "QK_NORMS",
    "TEMPERATURE_PRESETS",
    "ModelConfig",
    "PositionPlan",
    "RePoConfig",
    "TemperatureConfig",
    "preset",
    "resolve_plan",
]

INIT_SCHEMES: tuple[str, ...] = ("fan_in", "normal")
QK_NORM_LAYOUTS: tuple[str, ...] = ("head", "full")


@dataclass
class ModelConfig(PositionPlan):
    """A Llama-style decoder (RMSNorm, SwiGLU, GQA, SDPA) with a per-layer position plan (the
    fields of :class:`~longpos.plan.PositionPlan`: plan, repo_start, repo, temperature)."""

    vocab_size: int = 512
    """Number of token ids (>= 2)."""
    d_model: int = 128
    """Residual width (>= 8)."""
    n_layers: int = 4
    """Number of decoder blocks (>= 1)."""
    n_heads: int = 4
    """Query heads; must divide d_model unless head_dim is given."""
    n_kv_heads: int | None = None
    """Key-value heads (grouped-query attention); must divide n_heads. None = n_heads."""
    head_dim: int | None = None
    """Per-head width (even). None = d_model // n_heads."""
    ffn_hidden: int | None = None
    """SwiGLU hidden width. None = 8/3 d_model rounded up to a multiple of 32."""
    max_seq_len: int = 256
    """Training context length L (>= 1): the length DroPE's temperature and reports refer to."""
    rope: RopeConfig = field(default_factory=RopeConfig)
    """RoPE base and frequency scaling for rotating layers."""
    qk_norm: str = "none"
    """RMSNorm on queries and/or keys before the rotation: none | q | k | qk."""
    qk_norm_layout: str = "head"
    """head: one norm over head_dim shared by heads (Qwen3) | full: over all heads
    concatenated (OLMo2; DroPE's reference variant)."""
    norm_eps: float = 1e-6
    """RMSNorm epsilon (> 0)."""
    tie_embeddings: bool = False
    """Share the input embedding and the output projection (with ``fan_in`` init, tied unit-std
    embeddings make the first logits large: std ~ sqrt(d_model))."""
    init_scheme: str = "fan_in"
    """Backbone init: fan_in (linears std 1/sqrt(fan_in), embeddings std ``embed_std``; learns
    retrieval far faster at tiny widths) | normal (everything std ``init_std``, GPT-2 / Llama
    style). RePo projections always use the paper's truncated normal, std 0.02."""
    init_std: float = 0.02
    """Std of embeddings and of all linears when init_scheme is normal; > 0."""
    embed_std: float = 1.0
    """Std of the token embeddings when init_scheme is fan_in; > 0. At 1 the token identity is
    as large in the residual stream as the blocks' outputs; at 0.02 it is drowned by them and
    tiny models stay on the copy-any-value plateau of retrieval (README, "How the demo was
    calibrated")."""
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    """Product-key memory layers (FwPKM before the mixer, static PKM in the MLP slot) of chosen
    blocks; none by default (then left out of the JSON). See ``longpos.memory.placement``."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.rope, dict):
            self.rope = RopeConfig.from_dict(self.rope)
        if isinstance(self.memory, dict):
            self.memory = memory_config_from_dict(self.memory)
        if self.qk_norm not in QK_NORMS:
            raise ValueError(f"qk_norm={self.qk_norm!r} is unknown; allowed: {QK_NORMS}")
        if self.qk_norm_layout not in QK_NORM_LAYOUTS:
            raise ValueError(
                f"qk_norm_layout={self.qk_norm_layout!r} is unknown; allowed: {QK_NORM_LAYOUTS}"
            )
        for name, low in (("vocab_size", 2), ("d_model", 8), ("n_layers", 1), ("n_heads", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or value < low:
                raise ValueError(f"{name}={value!r} must be an integer >= {low}")
        if self.head_dim is None and self.d_model % self.n_heads:
            raise ValueError(
                f"n_heads={self.n_heads} must divide d_model={self.d_model} "
                "(or set head_dim explicitly)"
            )
        if self.head_dim is not None and (self.head_dim < 2 or self.head_dim % 2):
            raise ValueError(f"head_dim={self.head_dim} must be an even integer >= 2")
        kv = self.n_kv_heads
        if kv is not None and (kv < 1 or self.n_heads % kv):
            raise ValueError(
                f"n_kv_heads={kv} must be >= 1 and divide n_heads={self.n_heads} "
                f"(allowed: {[d for d in range(1, self.n_heads + 1) if self.n_heads % d == 0]})"
            )
        if self.resolved_head_dim % 2:
            raise ValueError(
                f"head_dim={self.resolved_head_dim} (d_model / n_heads) must be even for RoPE"
            )
        if self.ffn_hidden is not None and self.ffn_hidden < 1:
            raise ValueError(f"ffn_hidden={self.ffn_hidden} must be >= 1")
        if self.max_seq_len < 1:
            raise ValueError(f"max_seq_len={self.max_seq_len} must be >= 1")
        if not self.norm_eps > 0:
            raise ValueError(f"norm_eps={self.norm_eps} must be > 0")
        if self.init_scheme not in INIT_SCHEMES:
            raise ValueError(
                f"init_scheme={self.init_scheme!r} is unknown; allowed: {INIT_SCHEMES}"
            )
        if not self.init_std > 0:
            raise ValueError(f"init_std={self.init_std} must be > 0")
        if not self.embed_std > 0:
            raise ValueError(f"embed_std={self.embed_std} must be > 0")
        self.layer_plan()  # validates the plan
        self.memory.validate(self.d_model, self.n_layers)

    # ----------------------------------------------------------- derived
    @property
    def resolved_head_dim(self) -> int:
        return self.head_dim if self.head_dim is not None else self.d_model // self.n_heads

    def layer_shape(self) -> LayerShape:
        """What a position technique needs to know about this model's attention layers."""
        return LayerShape(
            self.d_model, self.n_heads, self.resolved_kv_heads, self.resolved_head_dim, self.rope,
            self.max_seq_len,
        )  # fmt: skip

    @property
    def resolved_kv_heads(self) -> int:
        return self.n_kv_heads if self.n_kv_heads is not None else self.n_heads

    @property
    def resolved_ffn_hidden(self) -> int:
        if self.ffn_hidden is not None:
            return self.ffn_hidden
        return -(-(8 * self.d_model // 3) // 32) * 32

    def layer_plan(self, n_layers: int | None = None) -> list[str]:
        """The technique of every layer, e.g. ``['rope', 'rope', 'repo', 'repo']``."""
        return super().layer_plan(self.n_layers if n_layers is None else n_layers)

    # ----------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["rope"] = self.rope.to_dict()
        if self.memory == MemoryConfig():  # no memory: the JSON of configs without the field
            del data["memory"]
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        return from_known_fields(cls, data)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        return cls.from_dict(json.loads(text))


PRESETS: dict[str, dict[str, Any]] = {
    # ~0.9M parameters: CPU tests and the demo.
    "tiny": dict(vocab_size=512, d_model=128, n_layers=4, n_heads=4, max_seq_len=256),
    # ~24M parameters: CPU benchmarks, small-scale GPU evidence runs.
    "small": dict(
        vocab_size=512, d_model=512, n_layers=8, n_heads=8, n_kv_heads=4, max_seq_len=1024
    ),
    # A 1B-like shape (d=2048, 16 layers) for GPU overhead measurements.
    "1b": dict(
        vocab_size=32_000,
        d_model=2048,
        n_layers=16,
        n_heads=16,
        n_kv_heads=8,
        ffn_hidden=8192,
        max_seq_len=4096,
        rope=dict(theta=500_000.0),
        tie_embeddings=False,
    ),
}


def preset(name: str, **overrides: Any) -> ModelConfig:
    """A named configuration (``tiny``, ``small``, ``1b``) with optional field overrides."""
    if name not in PRESETS:
        raise ValueError(f"preset={name!r} is unknown; allowed: {', '.join(PRESETS)}")
    data = json.loads(json.dumps(PRESETS[name]))
    data.update(overrides)
    return ModelConfig.from_dict(data)
