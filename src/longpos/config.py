"""Model configuration: the reference decoder's shape, its per-layer position plan, presets.

A *plan* says which position technique each attention layer uses:

- ``rope``: integer positions + RoPE in every layer;
- ``nope``: no positional encoding anywhere;
- ``r2n1`` / ``n2r1``: in each group of three layers, 2 RoPE + 1 NoPE (NoPE at
  l % 3 == 2) or 2 NoPE + 1 RoPE (RoPE at l % 3 == 2);
- ``repo``: RoPE in layers [0, start) and RePo in [start, L), start = L // 3 by default;
- an explicit comma-separated list with one entry per layer, e.g. ``rope,nope,repo,repo``.

Configs are dataclasses that validate themselves (``ValueError`` naming the field and
the allowed range) and round-trip through JSON.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from longpos.memory.placement import MemoryConfig, memory_config_from_dict
from longpos.positions.registry import TECHNIQUES
from longpos.positions.repo import REPO_INITS, REPO_VARIANTS
from longpos.positions.scaling import RopeConfig

PLAN_PRESETS: tuple[str, ...] = ("rope", "nope", "r2n1", "n2r1", "repo")
INIT_SCHEMES: tuple[str, ...] = ("fan_in", "normal")
QK_NORMS: tuple[str, ...] = ("none", "q", "k", "qk")
QK_NORM_LAYOUTS: tuple[str, ...] = ("head", "full")
TEMPERATURE_MODES: tuple[str, ...] = ("static", "dynamic")
TEMPERATURE_PRESETS: dict[str, float] = {
    # DroPE paper, App. C.2: beta = 1 + c ln(s), fitted by perplexity at each s.
    "scratch": 0.412,  # 0.5B DroPE model trained from scratch
    "smollm": 0.103,  # SmolLM-360M-DroPE
}


@dataclass
class TemperatureConfig:
    """DroPE's inference softmax temperature: logits x beta, beta = 1 + c ln(max(1, s)).

    s = length / max_seq_len. ``static``: length = ``target_length`` (fixed for an
    evaluation at one length; cache-consistent). ``dynamic``: length = tokens seen so far
    (cache + new), recomputed each forward for the new queries only, so a full forward and
    incremental decoding differ once past max_seq_len. Never used in training (beta = 1
    whenever s <= 1).
    """

    c: float = 0.0
    """Slope of beta in ln s (>= 0); 0 turns the temperature off. Paper: 0.412 (scratch
    0.5B), 0.103 (SmolLM-360M); see ``TEMPERATURE_PRESETS``."""
    mode: str = "static"
    """static | dynamic (see above)."""
    target_length: int | None = None
    """Evaluation length for ``static`` mode (>= 1); None = beta 1."""

    def __post_init__(self) -> None:
        if self.c < 0:
            raise ValueError(f"temperature.c={self.c} must be >= 0")
        if self.mode not in TEMPERATURE_MODES:
            raise ValueError(
                f"temperature.mode={self.mode!r} is unknown; allowed: {TEMPERATURE_MODES}"
            )
        if self.target_length is not None and self.target_length < 1:
            raise ValueError(f"temperature.target_length={self.target_length} must be >= 1")

    def beta(self, train_length: int, current_length: int) -> float:
        """The logit multiplier for a forward whose context reaches ``current_length``."""
        if self.c == 0:
            return 1.0
        length = current_length if self.mode == "dynamic" else self.target_length
        if length is None or length <= train_length:
            return 1.0
        return 1.0 + self.c * math.log(length / train_length)


@dataclass
class RePoConfig:
    """Options of the RePo position assigner (``spec/repo.md``)."""

    hidden_ratio: int = 8
    """d_p = d_model // hidden_ratio, the SwiGLU width of f_phi (>= 1)."""
    variant: str = "swiglu"
    """Predictor: swiglu (paper) | linear (d -> H_kv) | linear_shared (d -> 1)."""
    init: str = "trunc_normal"
    """trunc_normal (paper: std 0.02, cut at +-3 std) | zero_assign (W_z = 0; ablation)."""
    index_blend: float = 0.0
    """Ablation: z <- (1 - p) z + p * index, p in [0, 1]; 0 (off) in the paper."""
    apply_rope_scaling: bool = True
    """Apply the model's RoPE scaling (e.g. YaRN) to RePo layers too, as the paper's
    evaluation code does; False is the ablation."""
    lr_multiplier: float = 1.0
    """Learning-rate multiplier for the assigner parameters (> 0; 1.0 = paper)."""

    def __post_init__(self) -> None:
        if self.hidden_ratio < 1:
            raise ValueError(f"repo.hidden_ratio={self.hidden_ratio} must be >= 1")
        if self.variant not in REPO_VARIANTS:
            raise ValueError(f"repo.variant={self.variant!r} is unknown; allowed: {REPO_VARIANTS}")
        if self.init not in REPO_INITS:
            raise ValueError(f"repo.init={self.init!r} is unknown; allowed: {REPO_INITS}")
        if not 0.0 <= self.index_blend <= 1.0:
            raise ValueError(f"repo.index_blend={self.index_blend} must be in [0, 1]")
        if not self.lr_multiplier > 0:
            raise ValueError(f"repo.lr_multiplier={self.lr_multiplier} must be > 0")


@dataclass
class ModelConfig:
    """A Llama-style decoder (RMSNorm, SwiGLU, GQA, SDPA) with a per-layer position plan."""

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
    plan: str = "rope"
    """Per-layer positions: rope | nope | r2n1 | n2r1 | repo, or a comma-separated list of
    rope/nope/repo with one entry per layer."""
    repo_start: int | None = None
    """First RePo layer of the ``repo`` plan, in [0, n_layers). None = n_layers // 3."""
    rope: RopeConfig = field(default_factory=RopeConfig)
    """RoPE base and frequency scaling for rotating layers."""
    repo: RePoConfig = field(default_factory=RePoConfig)
    """RePo assigner options."""
    qk_norm: str = "none"
    """RMSNorm on queries and/or keys before the rotation: none | q | k | qk."""
    qk_norm_layout: str = "head"
    """head: one norm over head_dim shared by heads (Qwen3) | full: over all heads
    concatenated (OLMo2; DroPE's reference variant)."""
    temperature: TemperatureConfig = field(default_factory=TemperatureConfig)
    """DroPE's inference softmax temperature (off by default)."""
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
        if isinstance(self.rope, dict):
            self.rope = RopeConfig(**self.rope)
        if isinstance(self.repo, dict):
            self.repo = RePoConfig(**self.repo)
        if isinstance(self.temperature, dict):
            self.temperature = TemperatureConfig(**self.temperature)
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
        if self.repo_start is not None and not 0 <= self.repo_start < self.n_layers:
            raise ValueError(
                f"repo_start={self.repo_start} is out of range: allowed 0..{self.n_layers - 1} "
                f"for n_layers={self.n_layers}"
            )
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

    @property
    def resolved_kv_heads(self) -> int:
        return self.n_kv_heads if self.n_kv_heads is not None else self.n_heads

    @property
    def resolved_ffn_hidden(self) -> int:
        if self.ffn_hidden is not None:
            return self.ffn_hidden
        return -(-(8 * self.d_model // 3) // 32) * 32

    @property
    def resolved_repo_start(self) -> int:
        return self.repo_start if self.repo_start is not None else self.n_layers // 3

    def layer_plan(self) -> list[str]:
        """The technique of every layer, e.g. ``['rope', 'rope', 'repo', 'repo']``."""
        return resolve_plan(self.plan, self.n_layers, self.resolved_repo_start)

    # ----------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.memory == MemoryConfig():  # no memory: the JSON of configs without the field
            del data["memory"]
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig fields {unknown}; known: {sorted(known)}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        return cls.from_dict(json.loads(text))


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
    items = [p.strip() for p in name.split(",")]
    if len(items) == 1:
        raise ValueError(
            f"plan={plan!r} is unknown; allowed: {', '.join(PLAN_PRESETS)}, or a comma-separated "
            f"list of {'/'.join(TECHNIQUES)} with one entry per layer"
        )
    bad = [p for p in items if p not in TECHNIQUES]
    if bad:
        raise ValueError(f"plan entries {bad} are unknown techniques; allowed: {TECHNIQUES}")
    if len(items) != n_layers:
        raise ValueError(
            f"plan lists {len(items)} layers but n_layers={n_layers}: give one entry per layer"
        )
    return items


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
