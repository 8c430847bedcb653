"""RoPE frequency scalings: PI, NTK (static and dynamic), YaRN and Llama-3.

Every method is a per-frequency multiplier on the RoPE frequencies
omega_i = theta^(-2i/D), i = 0 .. D/2 - 1, plus an attention factor that multiplies
cos and sin (so the attention logits are scaled by its square), exactly as
transformers 5.x does it.

- PI, Position Interpolation (Chen et al., arXiv 2306.15595): omega_i / s.
- Static NTK-aware scaling (bloc97): theta' = theta * s^(D/(D-2)).
- Dynamic NTK (transformers ``rope_type="dynamic"``): static NTK whose effective factor
  grows with the current length l: s_eff = s*l/L - (s-1) for l > L.
- YaRN (Peng et al., arXiv 2309.00071): NTK-by-parts, keeps high frequencies,
  interpolates low ones, linear ramp between, attention factor 0.1 ln s + 1.
- Llama-3 scaling (transformers ``rope_type="llama3"``): keeps short wavelengths,
  divides long ones by s, blends in between.

Each scaling is one small frozen dataclass (:class:`NoScaling`, :class:`PIScaling`,
:class:`NTKScaling`, :class:`DynamicNTKScaling`, :class:`YarnScaling`,
:class:`Llama3Scaling`) holding only its own options. :class:`RopeConfig` combines the
RoPE base ``theta``, one scaling and the rotated share of the head
(``partial_rotary_factor``); it computes ``(inv_freq, attention_factor)``, converts to
and from the transformers 5.x ``rope_parameters`` dict and to and from JSON.

On the command line (tyro) the scaling is a subcommand::

    --model.rope.theta 1e4 model.rope.scaling:yarn \
        --model.rope.scaling.factor 4 --model.rope.scaling.original-length 64
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Self, TypeAlias, Union

import torch
import tyro


def default_inv_freq(dim: int, theta: float) -> torch.Tensor:
    """Plain RoPE frequencies ``theta^(-2i/dim)``, float32, shape (dim/2,)."""
    exponents = torch.arange(0, dim, 2, dtype=torch.int64).to(torch.float32) / dim
    return 1.0 / (theta**exponents)


def yarn_mscale(scale: float, mscale: float = 1.0) -> float:
    """YaRN's attention factor ``0.1 * mscale * ln(s) + 1`` (1 for s <= 1)."""
    if scale <= 1:
        return 1.0
    return 0.1 * mscale * math.log(scale) + 1.0


# --------------------------------------------------------------------- helpers
_COMMON_HF_KEYS = frozenset({"rope_type", "type", "rope_theta", "partial_rotary_factor"})
"""Keys allowed in every ``rope_parameters`` dict (``type`` is the legacy ``rope_type``)."""


def _number(owner: str, name: str, value: Any, *, integer: bool = False) -> Any:
    """``value`` as float (or int), or a ValueError naming ``rope.scaling.<name>``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{owner}.{name}={value!r} must be {kind}")
    if integer:
        if value != int(value):
            raise ValueError(f"{owner}.{name}={value!r} must be an integer")
        return int(value)
    return float(value)


def _coerce(obj: Any, name: str, *, integer: bool = False, optional: bool = False) -> None:
    """Normalise a numeric field of a frozen dataclass in place (ints to float etc.)."""
    value = getattr(obj, name)
    if optional and value is None:
        return
    object.__setattr__(obj, name, _number("rope.scaling", name, value, integer=integer))


def _check_factor(obj: Any) -> None:
    _coerce(obj, "factor")
    if not obj.factor >= 1:
        raise ValueError(
            f"rope.scaling.factor={obj.factor} must be >= 1 for scaling {obj.name!r} "
            "(it is target length / original length)"
        )


def _check_original_length(obj: Any) -> None:
    if obj.original_length is None:
        raise ValueError(
            f"rope.scaling.original_length is required for scaling {obj.name!r}: "
            "set it to the training context length (an integer >= 1)"
        )
    _coerce(obj, "original_length", integer=True)
    if obj.original_length < 1:
        raise ValueError(f"rope.scaling.original_length={obj.original_length} must be >= 1")


def _check_hf_keys(
    cls: Any, params: dict[str, Any], required: tuple[str, ...], optional: tuple[str, ...]
) -> None:
    """Reject keys of ``params`` that transformers does not define for ``cls.hf_type``."""
    allowed = _COMMON_HF_KEYS | set(required) | set(optional)
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ValueError(
            f"rope_parameters for rope_type {cls.hf_type!r} (longpos scaling {cls.name!r}) "
            f"has unknown key(s) {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )


def _hf_required(cls: Any, params: dict[str, Any], key: str, fallback: Any = None) -> Any:
    value = params.get(key, fallback)
    if value is None:
        raise ValueError(
            f"rope_parameters for rope_type {cls.hf_type!r} is missing the required key {key!r}"
        )
    return value


# -------------------------------------------------------------------- variants
@dataclass(frozen=True)
class NoScaling:
    """Plain RoPE (transformers ``rope_type="default"``)."""

    name: ClassVar[str] = "none"
    hf_type: ClassVar[str] = "default"
    is_dynamic: ClassVar[bool] = False

    def inv_freq(self, dim: int, theta: float, seq_len: int | None = None) -> torch.Tensor:
        """Frequencies float32 (dim/2,) for rotary width ``dim``."""
        return default_inv_freq(dim, theta)

    def effective_attention_factor(self) -> float:
        """Factor on cos and sin (1 except for YaRN)."""
        return 1.0

    def to_hf(self, theta: float, head_dim: int) -> dict[str, Any]:
        """``rope_parameters`` dict; ``head_dim`` is the rotated width."""
        return {"rope_type": "default", "rope_theta": float(theta)}

    @classmethod
    def from_hf(cls, params: dict[str, Any], max_position_embeddings: int | None) -> Self:
        _check_hf_keys(cls, params, (), ())
        return cls()


@dataclass(frozen=True)
class PIScaling:
    """Position Interpolation: every frequency divided by ``factor`` (``"linear"``)."""

    name: ClassVar[str] = "pi"
    hf_type: ClassVar[str] = "linear"
    is_dynamic: ClassVar[bool] = False

    factor: float
    """Extension factor s = target length / original length (>= 1)."""

    def __post_init__(self) -> None:
        _check_factor(self)

    def inv_freq(self, dim: int, theta: float, seq_len: int | None = None) -> torch.Tensor:
        return default_inv_freq(dim, theta) / self.factor

    def effective_attention_factor(self) -> float:
        return 1.0

    def to_hf(self, theta: float, head_dim: int) -> dict[str, Any]:
        return {"rope_type": "linear", "rope_theta": float(theta), "factor": self.factor}

    @classmethod
    def from_hf(cls, params: dict[str, Any], max_position_embeddings: int | None) -> Self:
        _check_hf_keys(cls, params, ("factor",), ())
        return cls(factor=_hf_required(cls, params, "factor"))


@dataclass(frozen=True)
class NTKScaling:
    """Static NTK-aware scaling: a larger base theta * s^(D/(D-2)).

    transformers has no type for it: to_hf writes "default" with the larger rope_theta,
    which reads back as scaling "none" with that theta.
    """

    name: ClassVar[str] = "ntk"
    hf_type: ClassVar[str] = "default"
    is_dynamic: ClassVar[bool] = False

    factor: float
    """Extension factor s = target length / original length (>= 1)."""

    def __post_init__(self) -> None:
        _check_factor(self)

    def ntk_theta(self, dim: int, theta: float) -> float:
        """Static NTK base ``theta * s^(D/(D-2))`` for rotary width ``dim``."""
        return theta * self.factor ** (dim / (dim - 2))

    def inv_freq(self, dim: int, theta: float, seq_len: int | None = None) -> torch.Tensor:
        return default_inv_freq(dim, self.ntk_theta(dim, theta))

    def effective_attention_factor(self) -> float:
        return 1.0

    def to_hf(self, theta: float, head_dim: int) -> dict[str, Any]:
        return {"rope_type": "default", "rope_theta": self.ntk_theta(head_dim, theta)}

    @classmethod
    def from_hf(cls, params: dict[str, Any], max_position_embeddings: int | None) -> Self:
        raise ValueError(
            "static NTK has no transformers rope_type: its rope_parameters are "
            "'default' with a larger rope_theta, which RopeConfig.from_hf reads as "
            "scaling 'none' with that theta"
        )


@dataclass(frozen=True)
class DynamicNTKScaling:
    """Dynamic NTK (``"dynamic"``): static NTK with s_eff = s*l/L - (s-1) for l > L."""

    name: ClassVar[str] = "dynamic_ntk"
    hf_type: ClassVar[str] = "dynamic"
    is_dynamic: ClassVar[bool] = True

    factor: float
    """Extension factor s = target length / original length (>= 1)."""
    original_length: int
    """Original (training) context length L (>= 1); transformers reads it from
    ``config.max_position_embeddings``."""

    def __post_init__(self) -> None:
        _check_factor(self)
        _check_original_length(self)

    def inv_freq(self, dim: int, theta: float, seq_len: int | None = None) -> torch.Tensor:
        """``seq_len`` is the current length ``max(position) + 1`` (None: L)."""
        s = self.factor
        length = max(seq_len or self.original_length, self.original_length)
        s_eff = s * length / self.original_length - (s - 1)
        return default_inv_freq(dim, theta * s_eff ** (dim / (dim - 2)))

    def effective_attention_factor(self) -> float:
        return 1.0

    def to_hf(self, theta: float, head_dim: int) -> dict[str, Any]:
        # transformers reads L from config.max_position_embeddings for this type.
        return {"rope_type": "dynamic", "rope_theta": float(theta), "factor": self.factor}

    @classmethod
    def from_hf(cls, params: dict[str, Any], max_position_embeddings: int | None) -> Self:
        _check_hf_keys(cls, params, ("factor",), ())
        factor = _hf_required(cls, params, "factor")
        if max_position_embeddings is None:
            raise ValueError("rope_type 'dynamic' needs max_position_embeddings (its L)")
        return cls(factor=factor, original_length=max_position_embeddings)


@dataclass(frozen=True)
class YarnScaling:
    """YaRN: NTK-by-parts interpolation with an attention factor (``"yarn"``)."""

    name: ClassVar[str] = "yarn"
    hf_type: ClassVar[str] = "yarn"
    is_dynamic: ClassVar[bool] = False

    factor: float
    """Extension factor s = target length / original length (>= 1)."""
    original_length: int
    """Original (training) context length L (>= 1)."""
    beta_fast: float = 32.0
    """Rotations per original context below which frequencies are interpolated (> 0)."""
    beta_slow: float = 1.0
    """Rotations per original context above which frequencies are kept (> 0)."""
    attention_factor: float | None = None
    """Explicit attention factor on cos/sin (> 0); None derives it from ``factor``."""
    mscale: float | None = None
    """DeepSeek variant: numerator mscale; used with ``mscale_all_dim``."""
    mscale_all_dim: float | None = None
    """DeepSeek variant: denominator mscale; used with ``mscale``."""
    truncate: bool = True
    """Round the correction range to whole dimensions (transformers default)."""

    def __post_init__(self) -> None:
        _check_factor(self)
        _check_original_length(self)
        _coerce(self, "beta_fast")
        _coerce(self, "beta_slow")
        for key in ("attention_factor", "mscale", "mscale_all_dim"):
            _coerce(self, key, optional=True)
        if self.beta_fast <= 0 or self.beta_slow <= 0:
            raise ValueError(
                f"rope.scaling.beta_fast={self.beta_fast} and "
                f"rope.scaling.beta_slow={self.beta_slow} must be > 0"
            )
        if self.attention_factor is not None and self.attention_factor <= 0:
            raise ValueError(f"rope.scaling.attention_factor={self.attention_factor} must be > 0")
        if not isinstance(self.truncate, bool):
            raise ValueError(f"rope.scaling.truncate={self.truncate!r} must be a bool")

    def effective_attention_factor(self) -> float:
        """``attention_factor`` if set, else DeepSeek's mscale ratio, else 0.1 ln s + 1."""
        if self.attention_factor is not None:
            return float(self.attention_factor)
        if self.mscale and self.mscale_all_dim:
            return yarn_mscale(self.factor, self.mscale) / yarn_mscale(
                self.factor, self.mscale_all_dim
            )
        return yarn_mscale(self.factor)

    def yarn_correction_range(self, dim: int, theta: float) -> tuple[float, float]:
        """(low, high) dimension indices of the ramp between kept and interpolated."""

        def dim_for(rotations: float) -> float:
            ratio = self.original_length / (rotations * 2 * math.pi)
            return dim * math.log(ratio) / (2 * math.log(theta))

        low, high = dim_for(self.beta_fast), dim_for(self.beta_slow)
        if self.truncate:
            low, high = math.floor(low), math.ceil(high)
        return max(low, 0), min(high, dim - 1)

    def inv_freq(self, dim: int, theta: float, seq_len: int | None = None) -> torch.Tensor:
        powers = theta ** (torch.arange(0, dim, 2).to(torch.float32) / dim)  # (dim/2,)
        keep = 1.0 / powers
        interpolate = 1.0 / (self.factor * powers)
        low, high = self.yarn_correction_range(dim, theta)
        if low == high:
            high += 0.001  # avoid a zero-width ramp
        ramp = ((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
        kept_share = 1 - ramp  # kappa_i: 1 for high frequencies, 0 for low ones
        return interpolate * (1 - kept_share) + keep * kept_share

    def to_hf(self, theta: float, head_dim: int) -> dict[str, Any]:
        params: dict[str, Any] = {
            "rope_type": "yarn",
            "rope_theta": float(theta),
            "factor": self.factor,
            "original_max_position_embeddings": self.original_length,
            "beta_fast": self.beta_fast,
            "beta_slow": self.beta_slow,
            "truncate": self.truncate,
        }
        for key in ("attention_factor", "mscale", "mscale_all_dim"):
            if getattr(self, key) is not None:
                params[key] = getattr(self, key)
        return params

    @classmethod
    def from_hf(cls, params: dict[str, Any], max_position_embeddings: int | None) -> Self:
        """``max_position_embeddings`` is the default L, and gives the factor when the
        dict has none (DeepSeek-style: factor = max_position_embeddings / L)."""
        optional = (
            "attention_factor",
            "beta_fast",
            "beta_slow",
            "mscale",
            "mscale_all_dim",
            "truncate",
        )
        _check_hf_keys(cls, params, ("factor", "original_max_position_embeddings"), optional)
        original = _hf_required(
            cls, params, "original_max_position_embeddings", max_position_embeddings
        )
        factor = params.get("factor")
        if factor is None:
            if max_position_embeddings is None:
                raise ValueError(
                    "rope_parameters for rope_type 'yarn' is missing the required key "
                    "'factor' (or pass max_position_embeddings to derive it)"
                )
            factor = max_position_embeddings / original
        truncate = params.get("truncate", True)
        return cls(
            factor=factor,
            original_length=original,
            beta_fast=params.get("beta_fast") or 32.0,
            beta_slow=params.get("beta_slow") or 1.0,
            attention_factor=params.get("attention_factor"),
            mscale=params.get("mscale"),
            mscale_all_dim=params.get("mscale_all_dim"),
            truncate=bool(truncate),  # transformers tests its truthiness
        )


@dataclass(frozen=True)
class Llama3Scaling:
    """Llama-3 scaling (``"llama3"``): long wavelengths / s, short kept, blend between."""

    name: ClassVar[str] = "llama3"
    hf_type: ClassVar[str] = "llama3"
    is_dynamic: ClassVar[bool] = False

    factor: float
    """Extension factor s = target length / original length (>= 1)."""
    original_length: int
    """Original (training) context length L (>= 1)."""
    low_freq_factor: float = 1.0
    """Wavelengths above L / low_freq_factor are divided by s (> 0)."""
    high_freq_factor: float = 4.0
    """Wavelengths below L / high_freq_factor are kept (> low_freq_factor)."""

    def __post_init__(self) -> None:
        _check_factor(self)
        _check_original_length(self)
        _coerce(self, "low_freq_factor")
        _coerce(self, "high_freq_factor")
        if self.low_freq_factor <= 0 or self.high_freq_factor <= self.low_freq_factor:
            raise ValueError(
                f"rope.scaling.low_freq_factor={self.low_freq_factor} must be > 0 and "
                f"rope.scaling.high_freq_factor={self.high_freq_factor} must exceed it"
            )

    def inv_freq(self, dim: int, theta: float, seq_len: int | None = None) -> torch.Tensor:
        base = default_inv_freq(dim, theta)
        old_len = self.original_length
        low_wavelen = old_len / self.low_freq_factor
        high_wavelen = old_len / self.high_freq_factor
        wavelen = 2 * math.pi / base
        scaled = torch.where(wavelen > low_wavelen, base / self.factor, base)
        smooth = (old_len / wavelen - self.low_freq_factor) / (
            self.high_freq_factor - self.low_freq_factor
        )
        blended = (1 - smooth) * scaled / self.factor + smooth * scaled
        in_between = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
        return torch.where(in_between, blended, scaled)

    def effective_attention_factor(self) -> float:
        return 1.0

    def to_hf(self, theta: float, head_dim: int) -> dict[str, Any]:
        return {
            "rope_type": "llama3",
            "rope_theta": float(theta),
            "factor": self.factor,
            "original_max_position_embeddings": self.original_length,
            "low_freq_factor": self.low_freq_factor,
            "high_freq_factor": self.high_freq_factor,
        }

    @classmethod
    def from_hf(cls, params: dict[str, Any], max_position_embeddings: int | None) -> Self:
        """``max_position_embeddings`` is L when the dict lacks
        ``original_max_position_embeddings`` (as transformers fills it in)."""
        required = ("factor", "original_max_position_embeddings")
        _check_hf_keys(cls, params, (*required, "low_freq_factor", "high_freq_factor"), ())
        return cls(
            factor=_hf_required(cls, params, "factor"),
            original_length=_hf_required(
                cls, params, "original_max_position_embeddings", max_position_embeddings
            ),
            low_freq_factor=_hf_required(cls, params, "low_freq_factor"),
            high_freq_factor=_hf_required(cls, params, "high_freq_factor"),
        )


@dataclass(frozen=True)
class LongRopeScaling:
    """LongRoPE (Ding et al., arXiv 2402.13753; transformers ``"longrope"``, Phi-3 / Phi-4):
    per-frequency rescale factors found by search, ``short_factor`` up to the original length
    and ``long_factor`` beyond it: inv_freq_i = 1 / (f_i * theta^(2i/D)), and an attention
    factor sqrt(1 + ln(s) / ln(L)) on cos / sin (s = target / original length).

    Dynamic like transformers': a forward whose positions reach past L uses the long factors
    for every token it rotates, so cached keys rotated earlier with the short ones differ from
    a full forward's (the same switch transformers makes; ``spec/baselines.md`` §3)."""

    name: ClassVar[str] = "longrope"
    hf_type: ClassVar[str] = "longrope"
    is_dynamic: ClassVar[bool] = True

    short_factor: tuple[float, ...]
    """Rescale factors (one per frequency, D/2) used up to ``original_length``."""
    long_factor: tuple[float, ...]
    """Rescale factors used once the positions pass ``original_length``."""
    original_length: int
    """Original (pretraining) context length L (>= 1)."""
    factor: float = 1.0
    """Extension factor s = target length / L (>= 1); sets the default attention factor."""
    attention_factor: float | None = None
    """Explicit attention factor on cos / sin; None: sqrt(1 + ln(s) / ln(L)) (1 for s <= 1)."""

    def __post_init__(self) -> None:
        for name in ("short_factor", "long_factor"):
            values = tuple(float(v) for v in getattr(self, name))
            if not values or any(not v > 0 for v in values):
                raise ValueError(f"rope.scaling.{name} must be a non-empty list of numbers > 0")
            object.__setattr__(self, name, values)
        if len(self.short_factor) != len(self.long_factor):
            raise ValueError(
                f"rope.scaling.short_factor ({len(self.short_factor)}) and long_factor "
                f"({len(self.long_factor)}) must have one entry per rotary frequency each"
            )
        _check_factor(self)
        _check_original_length(self)
        if self.attention_factor is not None:
            _coerce(self, "attention_factor")
            if not self.attention_factor > 0:
                raise ValueError(
                    f"rope.scaling.attention_factor={self.attention_factor} must be > 0"
                )

    def inv_freq(self, dim: int, theta: float, seq_len: int | None = None) -> torch.Tensor:
        if len(self.short_factor) != dim // 2:
            raise ValueError(
                f"rope.scaling.short_factor has {len(self.short_factor)} entries but the rotary "
                f"dimension {dim} has {dim // 2} frequencies"
            )
        long = seq_len is not None and seq_len > self.original_length
        factors = torch.tensor(self.long_factor if long else self.short_factor, dtype=torch.float32)
        exponents = torch.arange(0, dim, 2, dtype=torch.int64).to(torch.float32) / dim
        return 1.0 / (factors * theta**exponents)

    def effective_attention_factor(self) -> float:
        if self.attention_factor is not None:
            return float(self.attention_factor)
        if self.factor <= 1.0:
            return 1.0
        return math.sqrt(1 + math.log(self.factor) / math.log(self.original_length))

    def to_hf(self, theta: float, head_dim: int) -> dict[str, Any]:
        params: dict[str, Any] = {
            "rope_type": "longrope",
            "rope_theta": float(theta),
            "short_factor": list(self.short_factor),
            "long_factor": list(self.long_factor),
            "original_max_position_embeddings": self.original_length,
            "factor": self.factor,
        }
        if self.attention_factor is not None:
            params["attention_factor"] = self.attention_factor
        return params

    @classmethod
    def from_hf(cls, params: dict[str, Any], max_position_embeddings: int | None) -> Self:
        """Without ``factor``, s = ``max_position_embeddings`` / original length (Phi-3's rule,
        as transformers applies it)."""
        required = ("short_factor", "long_factor", "original_max_position_embeddings")
        _check_hf_keys(cls, params, required, ("factor", "attention_factor"))
        original = _hf_required(cls, params, "original_max_position_embeddings")
        factor = params.get("factor")
        if factor is None:
            factor = (max_position_embeddings or original) / original
        return cls(
            short_factor=tuple(_hf_required(cls, params, "short_factor")),
            long_factor=tuple(_hf_required(cls, params, "long_factor")),
            original_length=original,
            factor=max(1.0, float(factor)),
            attention_factor=params.get("attention_factor"),
        )


RopeScaling: TypeAlias = (
    NoScaling
    | PIScaling
    | NTKScaling
    | DynamicNTKScaling
    | YarnScaling
    | Llama3Scaling
    | LongRopeScaling
)
"""Any one RoPE scaling variant."""

SCALINGS: dict[str, type[RopeScaling]] = {
    cls.name: cls
    for cls in (NoScaling, PIScaling, NTKScaling, DynamicNTKScaling, YarnScaling, Llama3Scaling)
}
"""longpos scaling name -> variant class: the scalings a user applies by a factor (``scaled``,
``eval --scaling``, the CLI)."""
SCALING_NAMES: tuple[str, ...] = tuple(SCALINGS)
STORED_SCALINGS: dict[str, type[RopeScaling]] = {**SCALINGS, "longrope": LongRopeScaling}
"""Every variant a config can hold: also LongRoPE, read from a checkpoint's rope_parameters
(its factors come from a search, not from one number)."""

HF_ROPE_TYPES: dict[str, type[RopeScaling]] = {
    "default": NoScaling,
    "linear": PIScaling,
    "dynamic": DynamicNTKScaling,
    "yarn": YarnScaling,
    "llama3": Llama3Scaling,
    "longrope": LongRopeScaling,
}
"""transformers ``rope_type`` -> the variant whose ``from_hf`` reads it."""

if TYPE_CHECKING:
    _CliScaling: TypeAlias = RopeScaling
else:
    # tyro turns the union into subcommands named after each variant
    # (``model.rope.scaling:yarn``) instead of the class names.
    _CliScaling = Union[  # noqa: UP007 (a runtime union of Annotated members)
        tuple(Annotated[cls, tyro.conf.subcommand(name=name)] for name, cls in SCALINGS.items())
    ]

_OLD_FLAT_DEFAULTS: dict[str, Any] = {
    "factor": 1.0,
    "original_length": None,
    "beta_fast": 32.0,
    "beta_slow": 1.0,
    "attention_factor": None,
    "mscale": None,
    "mscale_all_dim": None,
    "truncate": True,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
}
"""The flat fields of the pre-variant ``RopeConfig`` (old checkpoints) and their defaults."""


def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def _make_scaling(
    name: str, factor: float, original_length: int | None, options: dict[str, Any]
) -> RopeScaling:
    """The variant ``name`` built from a factor, a length and its own options.

    ``original_length`` is ignored by the variants that do not use it (none, pi, ntk).
    """
    if name not in SCALINGS:
        raise ValueError(f"rope.scaling={name!r} is unknown; allowed: {', '.join(SCALING_NAMES)}")
    cls = SCALINGS[name]
    fields = _field_names(cls)
    unknown = sorted(set(options) - (set(fields) - {"factor", "original_length"}))
    if unknown:
        extra = [f for f in fields if f not in ("factor", "original_length")]
        raise ValueError(
            f"rope.scaling {name!r} has no option(s) {', '.join(map(repr, unknown))}; "
            f"its options: {', '.join(extra) or '(none)'}"
        )
    kwargs = dict(options)
    if "factor" in fields:
        kwargs["factor"] = factor
    elif factor != 1:
        raise ValueError(f"rope.scaling.factor={factor} must be 1 for scaling {name!r}")
    if "original_length" in fields:
        kwargs["original_length"] = original_length
    scaling: RopeScaling = cls(**kwargs)
    return scaling


def _scaling_from_dict(data: dict[str, Any]) -> RopeScaling:
    """A variant from its JSON form ``{"name": ..., <fields>}``."""
    if not isinstance(data, dict) or "name" not in data:
        raise ValueError(f"rope.scaling must be a dict with a 'name' key; got {data!r}")
    name = data["name"]
    if name not in STORED_SCALINGS:
        raise ValueError(f"rope.scaling={name!r} is unknown; allowed: {', '.join(STORED_SCALINGS)}")
    cls = STORED_SCALINGS[name]
    known = _field_names(cls)
    unknown = sorted(set(data) - {"name", *known})
    if unknown:
        raise ValueError(
            f"rope.scaling {name!r} has unknown key(s) {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(['name', *known])}"
        )
    scaling: RopeScaling = cls(**{k: v for k, v in data.items() if k != "name"})
    return scaling


def _scaling_from_flat(name: Any, flat: dict[str, Any]) -> RopeScaling:
    """A variant from the old flat layout (``scaling`` a name, its options beside it)."""
    if name not in SCALINGS:
        raise ValueError(f"rope.scaling={name!r} is unknown; allowed: {', '.join(SCALING_NAMES)}")
    cls = SCALINGS[name]
    own = set(_field_names(cls))
    if name in ("pi", "ntk"):
        # Old configs recorded L beside every scaling (positions.extend did so); it never
        # entered the maths of PI or static NTK.
        own.add("original_length")
    ignored = {k: v for k, v in flat.items() if k not in own}
    clashing = sorted(k for k, v in ignored.items() if v != _OLD_FLAT_DEFAULTS[k])
    if clashing:
        raise ValueError(
            f"rope: field(s) {', '.join(f'{k}={flat[k]!r}' for k in clashing)} do not apply to "
            f"scaling {name!r} (its fields: {', '.join(_field_names(cls)) or '(none)'})"
        )
    kwargs = {k: v for k, v in flat.items() if k in _field_names(cls)}
    scaling: RopeScaling = cls(**kwargs)
    return scaling


# ---------------------------------------------------------------- the config
@dataclass(frozen=True)
class RopeConfig:
    """Rotary position encoding: base, an optional frequency scaling, the rotated share."""

    theta: float = 10_000.0
    """RoPE base (``rope_theta``); > 1."""
    scaling: _CliScaling = NoScaling()
    """Frequency scaling: none | pi | ntk | dynamic_ntk | yarn | llama3, with its options."""
    partial_rotary_factor: float = 1.0
    """Share of head_dim that is rotated, in (0, 1]; the rest passes through unrotated."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "theta", _number("rope", "theta", self.theta))
        prf = _number("rope", "partial_rotary_factor", self.partial_rotary_factor)
        object.__setattr__(self, "partial_rotary_factor", prf)
        if not self.theta > 1:
            raise ValueError(f"rope.theta={self.theta} must be > 1")
        if not 0 < prf <= 1:
            raise ValueError(f"rope.partial_rotary_factor={prf} must be in (0, 1]")
        if not isinstance(self.scaling, tuple(STORED_SCALINGS.values())):
            raise ValueError(
                f"rope.scaling={self.scaling!r} must be one of "
                f"{', '.join(c.__name__ for c in SCALINGS.values())} "
                "(build one with RopeConfig.scaled(name, factor=..., original_length=...) "
                "or RopeConfig.from_dict)"
            )

    # ------------------------------------------------------------------ maths
    @property
    def is_dynamic(self) -> bool:
        """True when the frequencies depend on the current sequence length."""
        return self.scaling.is_dynamic

    def rotary_dim(self, head_dim: int) -> int:
        """Rotated width ``int(head_dim * partial_rotary_factor)`` (even, >= 2)."""
        dim = int(head_dim * self.partial_rotary_factor)
        if dim < 2 or dim % 2:
            raise ValueError(
                f"rotary dim={dim} (head_dim={head_dim} * rope.partial_rotary_factor="
                f"{self.partial_rotary_factor}) must be an even integer >= 2"
            )
        return dim

    def frequencies(self, head_dim: int, seq_len: int | None = None) -> tuple[torch.Tensor, float]:
        """``(inv_freq float32 (rotary_dim/2,), attention_factor)`` for a head of ``head_dim``.

        ``seq_len`` is the current length ``max(position) + 1``; only dynamic NTK uses it.
        """
        dim = self.rotary_dim(head_dim)
        inv_freq = self.scaling.inv_freq(dim, self.theta, seq_len=seq_len)
        return inv_freq, self.scaling.effective_attention_factor()

    # ------------------------------------------------------------- building
    @classmethod
    def scaled(
        cls,
        name: str,
        *,
        theta: float = 10_000.0,
        factor: float,
        original_length: int | None = None,
        **options: Any,
    ) -> RopeConfig:
        """E.g. ``RopeConfig.scaled("yarn", factor=4, original_length=4096, beta_fast=16)``.

        ``original_length`` is ignored by none / pi / ntk, which do not use it.
        """
        return cls(theta=theta, scaling=_make_scaling(name, factor, original_length, options))

    def with_scaling(
        self, name: str, factor: float, original_length: int | None, **options: Any
    ) -> RopeConfig:
        """Same theta and partial_rotary_factor, scaling ``name`` (see :meth:`scaled`)."""
        scaling = _make_scaling(name, factor, original_length, options)
        return dataclasses.replace(self, scaling=scaling)

    # ----------------------------------------------------- transformers interop
    def to_hf(self, head_dim: int) -> dict[str, Any]:
        """The equivalent transformers 5.x ``rope_parameters`` dict.

        Static NTK has no transformers type: it is ``"default"`` with a larger
        ``rope_theta`` (for the rotated width). Dynamic NTK's L is
        ``config.max_position_embeddings`` on the transformers side.
        """
        params = self.scaling.to_hf(self.theta, self.rotary_dim(head_dim))
        if self.partial_rotary_factor != 1:
            params["partial_rotary_factor"] = self.partial_rotary_factor
        return params

    @classmethod
    def from_hf(
        cls,
        params: dict[str, Any],
        max_position_embeddings: int | None = None,
        *,
        partial_rotary_factor: float | None = None,
    ) -> RopeConfig:
        """Build from a transformers ``rope_parameters`` dict.

        ``max_position_embeddings`` supplies L for ``dynamic`` (and the default L of
        ``yarn`` / ``llama3`` when the dict lacks ``original_max_position_embeddings``).
        ``partial_rotary_factor`` is used when the dict has none (configs such as
        Phi-3 keep it on the config itself).
        """
        kind = params.get("rope_type", params.get("type", "default"))
        if kind not in HF_ROPE_TYPES:
            raise ValueError(
                f"rope_type {kind!r} is not supported; supported: {', '.join(HF_ROPE_TYPES)}"
            )
        scaling: RopeScaling = HF_ROPE_TYPES[kind].from_hf(params, max_position_embeddings)
        theta = params.get("rope_theta")
        prf = params.get("partial_rotary_factor", partial_rotary_factor)
        return cls(
            theta=10_000.0 if theta is None else theta,
            scaling=scaling,
            partial_rotary_factor=1.0 if prf is None else prf,
        )

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        """JSON form ``{"theta", "scaling": {"name", <fields>}, "partial_rotary_factor"}``."""
        return {
            "theta": self.theta,
            "scaling": {"name": self.scaling.name, **dataclasses.asdict(self.scaling)},
            "partial_rotary_factor": self.partial_rotary_factor,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RopeConfig:
        """Inverse of :meth:`to_dict`; also reads the old flat layout
        ``{"theta", "scaling": "yarn", "factor", "original_length", "beta_fast", ...}``.

        Old fields that do not belong to the chosen scaling are dropped only when they
        hold the old defaults; otherwise they are a ValueError.
        """
        if not isinstance(data, dict):
            raise ValueError(f"rope must be a dict; got {data!r}")
        known = ("theta", "scaling", "partial_rotary_factor")
        scaling_data = data.get("scaling", {"name": "none"})
        flat = isinstance(scaling_data, str) or any(k in _OLD_FLAT_DEFAULTS for k in data)
        allowed = set(known) | (set(_OLD_FLAT_DEFAULTS) if flat else set())
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ValueError(
                f"rope has unknown key(s) {', '.join(map(repr, unknown))}; "
                f"known: {', '.join(sorted(allowed))}"
            )
        if flat:
            name = scaling_data if isinstance(scaling_data, str) else "none"
            if not isinstance(scaling_data, str) and "scaling" in data:
                raise ValueError(
                    "rope: the old flat fields "
                    f"{', '.join(sorted(set(data) & set(_OLD_FLAT_DEFAULTS)))} "
                    "need 'scaling' to be a name, not a dict"
                )
            options = {k: v for k, v in data.items() if k in _OLD_FLAT_DEFAULTS}
            scaling = _scaling_from_flat(name, {**_OLD_FLAT_DEFAULTS, **options})
        else:
            scaling = _scaling_from_dict(scaling_data)
        return cls(
            theta=data.get("theta", 10_000.0),
            scaling=scaling,
            partial_rotary_factor=data.get("partial_rotary_factor", 1.0),
        )
