"""DroPE's inference softmax temperature: attention logits x beta, beta = 1 + c ln(s).

Gelberg, Eguchi, Akiba, Cetin, "Extending the Context of Pretrained LLMs by Dropping Their
Positional Embeddings", arXiv 2512.12167, App. C.2 (``spec/drope.md`` §3). With
s = length / training length, clamped at >= 1, beta is exactly 1 at or below the training
length, so it never acts in training. The paper's fitted constants are the presets
``scratch`` (c = 0.412, a 0.5B model trained from scratch) and ``smollm`` (c = 0.103,
SmolLM-360M-DroPE).

One meaning for every back end:

- ``static``: s = ``target_length`` / train length, one beta for every query (an evaluation
  at a fixed length);
- ``dynamic``: per query, s = (that query's position + 1) / train length, so a full forward
  equals token-by-token decoding (a new token at position p sees s = (p + 1) / L).

beta multiplies the queries (equivalently the logits); cached keys are unaffected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

TEMPERATURE_MODES: tuple[str, ...] = ("static", "dynamic")
TEMPERATURE_PRESETS: dict[str, float] = {
    # DroPE paper, App. C.2: beta = 1 + c ln(s), fitted by perplexity at each s.
    "scratch": 0.412,  # 0.5B DroPE model trained from scratch
    "smollm": 0.103,  # SmolLM-360M-DroPE
}


@dataclass
class TemperatureConfig:
    """DroPE's inference softmax temperature (off while ``c`` is 0)."""

    c: float = 0.0
    """Slope of beta in ln s (>= 0); 0 turns the temperature off. Paper: 0.412 (scratch 0.5B),
    0.103 (SmolLM-360M); see ``TEMPERATURE_PRESETS``."""
    mode: str = "static"
    """static: s from ``target_length`` | dynamic: s from each query's own position."""
    target_length: int | None = None
    """Evaluation length of ``static`` mode (>= 1); None = beta 1."""
    train_length: int | None = None
    """Training length L of s = length / L (>= 1); None = the model's training length
    (``max_seq_len`` of a native model; a Hugging Face model must be given it)."""

    def __post_init__(self) -> None:
        if isinstance(self.c, bool) or not isinstance(self.c, int | float) or self.c < 0:
            raise ValueError(f"temperature.c={self.c!r} must be a number >= 0")
        if self.mode not in TEMPERATURE_MODES:
            raise ValueError(
                f"temperature.mode={self.mode!r} is unknown; allowed: {TEMPERATURE_MODES}"
            )
        for name in ("target_length", "train_length"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"temperature.{name}={value!r} must be an integer >= 1")

    @property
    def enabled(self) -> bool:
        return self.c > 0

    def resolved_train_length(self, default: int | None) -> int:
        length = self.train_length if self.train_length is not None else default
        if length is None:
            raise ValueError(
                "temperature.train_length is needed for this model (the length it was trained "
                "or recalibrated at)"
            )
        return length

    def static_beta(self, train_length: int) -> float:
        """beta of ``static`` mode: 1 + c ln(max(1, target_length / train_length))."""
        if not self.enabled or self.target_length is None:
            return 1.0
        return drope_beta(self.c, self.target_length, train_length)

    def scale_queries(
        self, q: torch.Tensor, index: torch.Tensor, train_length: int
    ) -> tuple[torch.Tensor, float]:
        """Apply beta to ``q (B, H, T, D)`` whose tokens sit at integer ``index (B, T)``.

        Returns ``(q, scalar)``: in ``static`` mode q unchanged and beta as the scalar to fold
        into the softmax scale; in ``dynamic`` mode q multiplied by each query's beta and 1.
        """
        if not self.enabled:
            return q, 1.0
        if self.mode == "static":
            return q, self.static_beta(train_length)
        ratio = (index.to(torch.float32) + 1) / float(train_length)  # (B, T)
        beta = 1 + self.c * torch.log(ratio.clamp(min=1.0))  # (B, T)
        return q * beta[:, None, :, None].to(q.dtype), 1.0  # (B, H, T, D)


def drope_beta(c: float, eval_length: int, train_length: int) -> float:
    """``beta = 1 + c ln(s)``, ``s = eval_length / train_length`` (1 when s <= 1)."""
    if train_length < 1 or eval_length < 1:
        raise ValueError(f"eval_length={eval_length} and train_length={train_length} must be >= 1")
    s = eval_length / train_length
    return 1.0 + c * math.log(s) if s > 1 else 1.0


def temperature(
    c: float | str,
    target_length: int | None = None,
    mode: str = "static",
    train_length: int | None = None,
) -> TemperatureConfig:
    """A temperature config; ``c`` is a number or a preset name (``scratch``, ``smollm``)."""
    if isinstance(c, str):
        if c not in TEMPERATURE_PRESETS:
            raise ValueError(
                f"temperature preset {c!r} is unknown; allowed: {', '.join(TEMPERATURE_PRESETS)}"
            )
        c = TEMPERATURE_PRESETS[c]
    return TemperatureConfig(
        c=float(c), mode=mode, target_length=target_length, train_length=train_length
    )
