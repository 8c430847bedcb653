"""Training configuration: optimiser, schedule, data and loop options (validated dataclasses)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from longpos.fields import parse_json_object

SCHEDULES: tuple[str, ...] = ("cosine", "linear", "wsd", "constant")
DATA_KINDS: tuple[str, ...] = ("task", "text")


@dataclass
class OptimConfig:
    """AdamW with warmup and a decay schedule."""

    lr: float = 3e-3
    """Peak learning rate (> 0)."""
    weight_decay: float = 0.1
    """Decoupled weight decay on matrices (>= 0); norms, biases and embeddings get none."""
    beta1: float = 0.9
    """Adam beta1 in [0, 1)."""
    beta2: float = 0.95
    """Adam beta2 in [0, 1)."""
    eps: float = 1e-8
    """Adam epsilon (> 0)."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this (> 0); 0 disables clipping."""
    schedule: str = "cosine"
    """cosine | linear | wsd (warmup-stable-decay) | constant, all after a linear warmup."""
    warmup_steps: int = 50
    """Linear warmup from 0 to the peak (>= 0)."""
    min_lr_ratio: float = 0.1
    """Final learning rate as a share of the peak, in [0, 1]."""
    decay_fraction: float = 0.2
    """wsd: share of the steps spent decaying at the end, in (0, 1]."""

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ValueError(f"optim.lr={self.lr} must be > 0")
        if self.weight_decay < 0:
            raise ValueError(f"optim.weight_decay={self.weight_decay} must be >= 0")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"optim.{name}={getattr(self, name)} must be in [0, 1)")
        if not self.eps > 0:
            raise ValueError(f"optim.eps={self.eps} must be > 0")
        if self.grad_clip < 0:
            raise ValueError(f"optim.grad_clip={self.grad_clip} must be >= 0 (0 = off)")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"optim.schedule={self.schedule!r} is unknown; allowed: {SCHEDULES}")
        if self.warmup_steps < 0:
            raise ValueError(f"optim.warmup_steps={self.warmup_steps} must be >= 0")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"optim.min_lr_ratio={self.min_lr_ratio} must be in [0, 1]")
        if not 0 < self.decay_fraction <= 1:
            raise ValueError(f"optim.decay_fraction={self.decay_fraction} must be in (0, 1]")


@dataclass
class DataConfig:
    """What the model trains on: token-level tasks from the suite, or packed text."""

    kind: str = "task"
    """task (token-level task mixture, symbolic vocabulary) | text (packed English prose)."""
    tasks: str = "mqar"
    """task: comma-separated task names, sampled uniformly per sequence."""
    options: str = "{}"
    """task: JSON object of task options, e.g. '{"num_symbols": 256}'."""
    tokenizer: str = "byte"
    """text: tokenizer name (byte, or a mistral-common SentencePiece model name)."""
    answer_weight: float = 1.0
    """task: weight of the loss on answer tokens (>= 0)."""
    lm_weight: float = 0.5
    """Weight of the next-token loss on every position (>= 0); text data always uses 1."""

    def __post_init__(self) -> None:

        if self.kind not in DATA_KINDS:
            raise ValueError(f"data.kind={self.kind!r} is unknown; allowed: {DATA_KINDS}")
        parse_json_object(self.options, "data.options", '{"num_symbols": 256}')
        if self.answer_weight < 0 or self.lm_weight < 0:
            raise ValueError("data.answer_weight and data.lm_weight must be >= 0")
        if self.answer_weight == 0 and self.lm_weight == 0:
            raise ValueError("data.answer_weight and data.lm_weight cannot both be 0")

    def task_options(self) -> dict[str, Any]:
        import json

        return json.loads(self.options)


@dataclass
class TrainConfig:
    """The training loop."""

    steps: int = 1000
    """Optimizer steps (>= 1)."""
    batch_size: int = 16
    """Global batch in sequences per optimizer step (>= 1; divisible by world size x grad_accum)."""
    grad_accum: int = 1
    """Micro-batches per optimizer step (>= 1)."""
    seq_len: int = 256
    """Training sequence length in tokens (>= 8)."""
    short_fraction: float = 0.0
    """Curriculum: the first share of steps trains at ``short_len`` (in [0, 1))."""
    short_len: int | None = None
    """Curriculum length (>= 8, < seq_len); None = seq_len // 2."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    z_loss: float = 0.0
    """Weight of the z-loss (log Z)^2 that keeps logits bounded (>= 0; paper RePo: 1e-5)."""
    bf16: bool = True
    """bf16 autocast on CUDA (ignored on CPU)."""
    seed: int = 0
    """Seed of the data stream (and of the model init when training from scratch)."""
    log_every: int = 10
    """Write a metrics line every this many steps (>= 1)."""
    eval_every: int = 0
    """Evaluate on held-out batches every this many steps (0 = only at the end)."""
    eval_batches: int = 4
    """Held-out batches per evaluation (>= 1)."""
    save_every: int = 0
    """Write a resumable checkpoint every this many steps (0 = only at the end)."""
    device: str = "auto"
    """auto (cuda if available) | cpu | cuda | cuda:N."""
    threads: int = 0
    """CPU threads for torch (0 = torch's default); tiny models run faster on 1."""
    progress: bool = True
    """Show a progress bar: the next-token loss on all positions (nats; ln(vocab) at chance),
    the answer accuracy on training batches (task data) and tokens per second. The loss the
    optimiser minimises (``loss`` in metrics.jsonl) adds the weighted answer loss and z-loss."""

    def __post_init__(self) -> None:
        if isinstance(self.optim, dict):
            self.optim = OptimConfig(**self.optim)
        if isinstance(self.data, dict):
            self.data = DataConfig(**self.data)
        for name, low in (("steps", 1), ("batch_size", 1), ("grad_accum", 1), ("seq_len", 8),
                          ("log_every", 1), ("eval_batches", 1)):  # fmt: skip
            if getattr(self, name) < low:
                raise ValueError(f"train.{name}={getattr(self, name)} must be >= {low}")
        for name in ("eval_every", "save_every", "threads"):
            if getattr(self, name) < 0:
                raise ValueError(f"train.{name}={getattr(self, name)} must be >= 0")
        if self.batch_size % self.grad_accum:
            raise ValueError(
                f"train.batch_size={self.batch_size} must be divisible by "
                f"train.grad_accum={self.grad_accum}"
            )
        if not 0 <= self.short_fraction < 1:
            raise ValueError(f"train.short_fraction={self.short_fraction} must be in [0, 1)")
        if self.short_len is not None and not 8 <= self.short_len < self.seq_len:
            raise ValueError(f"train.short_len={self.short_len} must be in [8, {self.seq_len})")
        if self.z_loss < 0:
            raise ValueError(f"train.z_loss={self.z_loss} must be >= 0")

    def length_at(self, step: int) -> int:
        """Sequence length used at ``step`` (the curriculum)."""
        if step < int(self.short_fraction * self.steps):
            return self.short_len or self.seq_len // 2
        return self.seq_len

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
