"""Memory estimates checked before any work: training steps and evaluation prompts.

The estimates are deliberately simple (bytes per token from the model's shape) and on the
generous side of what the reference decoder needs on a CPU with SDPA (memory linear in the
length): a length that cannot fit fails in seconds with a message saying what fits, instead
of an out-of-memory error after minutes of work. They are not a promise that a length
below the bound runs fast: attention time still grows with the square of the length.
"""

from __future__ import annotations

import os
from typing import Any

FLOAT = 4  # bytes; estimates assume float32 activations
PYTHON_BYTES_PER_TOKEN = 240
"""A task sample in Python (ids, text, offsets) costs about this much per token (measured:
~200 bytes per token for a byte-level passkey prompt)."""
HEADROOM = 0.8
"""Share of the available memory a run may plan to use."""


def available_memory() -> int | None:
    """Bytes of memory available now (``MemAvailable`` on Linux), or None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def _shape(config: Any) -> dict[str, int]:
    """Widths that set memory per token, from a native ModelConfig or an HF config."""
    d = int(getattr(config, "d_model", None) or getattr(config, "hidden_size", 0) or 0)
    layers = int(getattr(config, "n_layers", None) or getattr(config, "num_hidden_layers", 1) or 1)
    heads = int(getattr(config, "n_heads", None) or getattr(config, "num_attention_heads", 1) or 1)
    kv = getattr(config, "n_kv_heads", None) or getattr(config, "num_key_value_heads", None)
    head_dim = getattr(config, "head_dim", None) or (d // max(1, heads))
    ffn = getattr(config, "ffn_hidden", None) or getattr(config, "intermediate_size", None)
    return {
        "d": d, "layers": layers, "heads": heads, "kv": int(kv or heads),
        "head_dim": int(head_dim), "ffn": int(ffn or 3 * d),
        "vocab": int(getattr(config, "vocab_size", 0) or 0),
    }  # fmt: skip


def eval_bytes_per_token(config: Any, text: bool) -> int:
    """Bytes per prompt token of one greedy evaluation: logits of the whole prompt, the KV
    cache, one layer's transient activations, the sample itself."""
    s = _shape(config)
    logits = 2 * s["vocab"] * FLOAT  # float logits + their argmax / softmax copy
    cache = 2 * s["layers"] * s["kv"] * s["head_dim"] * FLOAT
    transient = (8 * s["d"] + 3 * s["ffn"] + 2 * s["heads"] * s["head_dim"]) * FLOAT
    sample = PYTHON_BYTES_PER_TOKEN if text else PYTHON_BYTES_PER_TOKEN // 4
    return logits + cache + transient + sample


def train_bytes(config: Any, n_params: int, batch: int, length: int) -> int:
    """Bytes of one training step: weights, gradients and two Adam moments, plus the
    activations autograd keeps (every layer) and the logits with their gradient."""
    s = _shape(config)
    state = 4 * n_params * FLOAT
    per_token_layer = (16 * s["d"] + 4 * s["ffn"] + 4 * s["heads"] * s["head_dim"]) * FLOAT
    per_token = s["layers"] * per_token_layer + 3 * s["vocab"] * FLOAT
    return state + batch * length * per_token


def check_eval_memory(config: Any, length: int, text: bool, weights_bytes: int = 0) -> None:
    """Refuse ``length`` when its estimate exceeds the memory available (ValueError saying
    the largest length that fits)."""
    avail = available_memory()
    if avail is None:
        return
    per = eval_bytes_per_token(config, text)
    budget = HEADROOM * avail - weights_bytes
    if length * per <= budget:
        return
    fits = max(0, int(budget // per))
    raise ValueError(
        f"length {length} needs about {gib(length * per)} of memory to evaluate this model "
        f"(~{per} bytes per token: logits, KV cache, activations) but {gib(avail)} is available;"
        f" lengths up to about {fits} fit on this machine"
    )


def check_train_memory(config: Any, n_params: int, batch: int, length: int) -> None:
    """Refuse a training step whose estimate exceeds the memory available."""
    avail = available_memory()
    if avail is None:
        return
    need = train_bytes(config, n_params, batch, length)
    if need <= HEADROOM * avail:
        return
    per_seq = max(1, train_bytes(config, 0, 1, length))
    fits = max(0, int((HEADROOM * avail - 4 * n_params * FLOAT) // per_seq))
    raise ValueError(
        f"training {batch} sequences of {length} tokens needs about {gib(need)} of memory but "
        f"{gib(avail)} is available: lower --train.batch_size (about {fits} fit at this "
        "length; --train.grad_accum keeps the global batch) or --train.seq_len"
    )
