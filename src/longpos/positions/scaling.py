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

Each scaling is described by a :class:`RopeConfig` (theta + method + factors), which
computes ``(inv_freq, attention_factor)`` and converts to and from the transformers 5.x
``rope_parameters`` dict.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch

ScalingName = Literal["none", "pi", "ntk", "dynamic_ntk", "yarn", "llama3"]
SCALING_NAMES: tuple[str, ...] = ("none", "pi", "ntk", "dynamic_ntk", "yarn", "llama3")


def default_inv_freq(dim: int, theta: float) -> torch.Tensor:
    """Plain RoPE frequencies ``theta^(-2i/dim)``, float32, shape (dim/2,)."""
    exponents = torch.arange(0, dim, 2, dtype=torch.int64).to(torch.float32) / dim
    return 1.0 / (theta**exponents)


def yarn_mscale(scale: float, mscale: float = 1.0) -> float:
    """YaRN's attention factor ``0.1 * mscale * ln(s) + 1`` (1 for s <= 1)."""
    if scale <= 1:
        return 1.0
    return 0.1 * mscale * math.log(scale) + 1.0


@dataclass
class RopeConfig:
    """Rotary position encoding: base, and an optional frequency scaling."""

    theta: float = 10_000.0
    """RoPE base (``rope_theta``); > 1."""
    scaling: str = "none"
    """Frequency scaling: none | pi | ntk | dynamic_ntk | yarn | llama3."""
    factor: float = 1.0
    """Extension factor s = target length / original length; >= 1 for scalings, 1 for none."""
    original_length: int | None = None
    """Original (training) context length L. Needed by dynamic_ntk, yarn and llama3."""
    beta_fast: float = 32.0
    """YaRN: rotations per original context below which frequencies are interpolated (> 0)."""
    beta_slow: float = 1.0
    """YaRN: rotations per original context above which frequencies are kept (> 0)."""
    attention_factor: float | None = None
    """YaRN: explicit attention factor on cos/sin; None derives it from ``factor``."""
    mscale: float | None = None
    """YaRN (DeepSeek variant): numerator mscale; used with ``mscale_all_dim``."""
    mscale_all_dim: float | None = None
    """YaRN (DeepSeek variant): denominator mscale; used with ``mscale``."""
    truncate: bool = True
    """YaRN: round the correction range to whole dimensions (transformers default)."""
    low_freq_factor: float = 1.0
    """Llama-3: wavelengths above L / low_freq_factor are divided by s (> 0)."""
    high_freq_factor: float = 4.0
    """Llama-3: wavelengths below L / high_freq_factor are kept (> low_freq_factor)."""

    def __post_init__(self) -> None:
        if self.scaling not in SCALING_NAMES:
            raise ValueError(
                f"rope.scaling={self.scaling!r} is unknown; allowed: {', '.join(SCALING_NAMES)}"
            )
        if not self.theta > 1:
            raise ValueError(f"rope.theta={self.theta} must be > 1")
        if not self.factor > 0:
            raise ValueError(f"rope.factor={self.factor} must be > 0 (and >= 1 for a scaling)")
        if self.scaling != "none" and self.factor < 1:
            raise ValueError(
                f"rope.factor={self.factor} must be >= 1 for scaling {self.scaling!r} "
                "(it is target length / original length)"
            )
        if self.scaling in ("dynamic_ntk", "yarn", "llama3") and self.original_length is None:
            raise ValueError(
                f"rope.original_length is required for scaling {self.scaling!r}: "
                "set it to the training context length (an integer >= 1)"
            )
        if self.original_length is not None and self.original_length < 1:
            raise ValueError(f"rope.original_length={self.original_length} must be >= 1")
        if self.beta_fast <= 0 or self.beta_slow <= 0:
            raise ValueError(
                f"rope.beta_fast={self.beta_fast} and rope.beta_slow={self.beta_slow} must be > 0"
            )
        if self.attention_factor is not None and self.attention_factor <= 0:
            raise ValueError(f"rope.attention_factor={self.attention_factor} must be > 0")
        if self.low_freq_factor <= 0 or self.high_freq_factor <= self.low_freq_factor:
            raise ValueError(
                f"rope.low_freq_factor={self.low_freq_factor} must be > 0 and "
                f"rope.high_freq_factor={self.high_freq_factor} must exceed it"
            )

    # ------------------------------------------------------------------ maths
    @property
    def is_dynamic(self) -> bool:
        """True when the frequencies depend on the current sequence length."""
        return self.scaling == "dynamic_ntk"

    def frequencies(self, dim: int, seq_len: int | None = None) -> tuple[torch.Tensor, float]:
        """Return ``(inv_freq float32 (dim/2,), attention_factor)`` for rotary dim ``dim``.

        ``seq_len`` is the current length ``max(position) + 1``; only dynamic NTK uses it.
        """
        if dim < 2 or dim % 2:
            raise ValueError(f"rotary dim={dim} must be an even integer >= 2")
        base = default_inv_freq(dim, self.theta)
        s = float(self.factor)
        if self.scaling == "none":
            return base, 1.0
        if self.scaling == "pi":
            return base / s, 1.0
        if self.scaling == "ntk":
            return default_inv_freq(dim, self.ntk_theta(dim)), 1.0
        if self.scaling == "dynamic_ntk":
            assert self.original_length is not None
            length = max(seq_len or self.original_length, self.original_length)
            s_eff = s * length / self.original_length - (s - 1)
            theta = self.theta * s_eff ** (dim / (dim - 2))
            return default_inv_freq(dim, theta), 1.0
        if self.scaling == "yarn":
            return self._yarn(dim)
        return self._llama3(dim), 1.0

    def ntk_theta(self, dim: int) -> float:
        """Static NTK base ``theta * s^(D/(D-2))``."""
        return self.theta * self.factor ** (dim / (dim - 2))

    def yarn_attention_factor(self) -> float:
        if self.attention_factor is not None:
            return float(self.attention_factor)
        if self.mscale and self.mscale_all_dim:
            return yarn_mscale(self.factor, self.mscale) / yarn_mscale(
                self.factor, self.mscale_all_dim
            )
        return yarn_mscale(self.factor)

    def yarn_correction_range(self, dim: int) -> tuple[float, float]:
        """YaRN's (low, high) dimension indices of the ramp between kept and interpolated."""
        assert self.original_length is not None

        def dim_for(rotations: float) -> float:
            ratio = self.original_length / (rotations * 2 * math.pi)  # type: ignore[operator]
            return dim * math.log(ratio) / (2 * math.log(self.theta))

        low, high = dim_for(self.beta_fast), dim_for(self.beta_slow)
        if self.truncate:
            low, high = math.floor(low), math.ceil(high)
        return max(low, 0), min(high, dim - 1)

    def _yarn(self, dim: int) -> tuple[torch.Tensor, float]:
        powers = self.theta ** (torch.arange(0, dim, 2).to(torch.float32) / dim)  # (dim/2,)
        keep = 1.0 / powers
        interpolate = 1.0 / (self.factor * powers)
        low, high = self.yarn_correction_range(dim)
        if low == high:
            high += 0.001  # avoid a zero-width ramp
        ramp = ((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
        kept_share = 1 - ramp  # kappa_i: 1 for high frequencies, 0 for low ones
        inv_freq = interpolate * (1 - kept_share) + keep * kept_share
        return inv_freq, self.yarn_attention_factor()

    def _llama3(self, dim: int) -> torch.Tensor:
        assert self.original_length is not None
        base = default_inv_freq(dim, self.theta)
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

    # ----------------------------------------------------- transformers interop
    def to_hf(self, head_dim: int | None = None) -> dict[str, Any]:
        """The equivalent transformers 5.x ``rope_parameters`` dict.

        Static NTK has no transformers type: it is ``"default"`` with a larger
        ``rope_theta``, which needs ``head_dim``.
        """
        if self.scaling == "none":
            return {"rope_type": "default", "rope_theta": self.theta}
        if self.scaling == "pi":
            return {"rope_type": "linear", "rope_theta": self.theta, "factor": self.factor}
        if self.scaling == "ntk":
            if head_dim is None:
                raise ValueError("static NTK maps to a new rope_theta, which needs head_dim")
            return {"rope_type": "default", "rope_theta": self.ntk_theta(head_dim)}
        if self.scaling == "dynamic_ntk":
            # transformers reads L from config.max_position_embeddings for this type.
            return {"rope_type": "dynamic", "rope_theta": self.theta, "factor": self.factor}
        if self.scaling == "yarn":
            params: dict[str, Any] = {
                "rope_type": "yarn",
                "rope_theta": self.theta,
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
        return {
            "rope_type": "llama3",
            "rope_theta": self.theta,
            "factor": self.factor,
            "original_max_position_embeddings": self.original_length,
            "low_freq_factor": self.low_freq_factor,
            "high_freq_factor": self.high_freq_factor,
        }

    @classmethod
    def from_hf(
        cls, params: dict[str, Any], max_position_embeddings: int | None = None
    ) -> RopeConfig:
        """Build from a transformers ``rope_parameters`` dict.

        ``max_position_embeddings`` supplies L for ``dynamic`` (and the default L of
        ``yarn`` / ``llama3`` when the dict lacks ``original_max_position_embeddings``).
        """
        kind = params.get("rope_type", params.get("type", "default"))
        theta = float(params.get("rope_theta", 10_000.0))
        original = params.get("original_max_position_embeddings", max_position_embeddings)
        if kind == "default":
            return cls(theta=theta)
        if kind == "linear":
            return cls(theta=theta, scaling="pi", factor=float(params["factor"]))
        if kind == "dynamic":
            if max_position_embeddings is None:
                raise ValueError("rope_type 'dynamic' needs max_position_embeddings (its L)")
            return cls(
                theta=theta,
                scaling="dynamic_ntk",
                factor=float(params["factor"]),
                original_length=max_position_embeddings,
            )
        if kind == "yarn":
            factor = params.get("factor")
            if factor is None:
                if max_position_embeddings is None or original is None:
                    raise ValueError("yarn without factor needs max_position_embeddings")
                factor = max_position_embeddings / original
            return cls(
                theta=theta,
                scaling="yarn",
                factor=float(factor),
                original_length=original,
                beta_fast=float(params.get("beta_fast") or 32.0),
                beta_slow=float(params.get("beta_slow") or 1.0),
                attention_factor=params.get("attention_factor"),
                mscale=params.get("mscale"),
                mscale_all_dim=params.get("mscale_all_dim"),
                truncate=bool(params.get("truncate", True)),
            )
        if kind == "llama3":
            return cls(
                theta=theta,
                scaling="llama3",
                factor=float(params["factor"]),
                original_length=original,
                low_freq_factor=float(params["low_freq_factor"]),
                high_freq_factor=float(params["high_freq_factor"]),
            )
        raise ValueError(
            f"rope_type {kind!r} is not supported; supported: default, linear, dynamic, yarn, llama3"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
