"""Multi-query associative recall, MQAR (Arora et al. 2023, Zoology, arXiv 2312.04927).

Token level only. A sequence starts with ``num_kv_pairs`` key-value pairs ``k1 v1 k2 v2 ..``
(keys from the first half of the content symbols, values from the second half); later the
same keys appear again as queries, each followed by its value, at gaps drawn from a power law
p(g) ~ a g^(a-1) (a = 0.01 puts most queries near the start of the query region). Other slots
hold random symbols. Supervision is dense: every value after a query is a target. It tests
in-context associative recall, the core of retrieval, and is the CPU acceptance test for
length extrapolation (train at 256, test at 1024) and for FwPKM's episodic memory.

Constraint (Zoology): ``num_kv_pairs * 4 <= length``. An eval sample ends with one query key
and asks for its value (metric ``token_accuracy``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from longpos.tasks.base import NeedleSpan, Sample, TaskSpec, derive_seed, register_task
from longpos.tasks.symbolic import (
    BOS,
    SymbolicVocab,
    check_distractor_noise,
    check_num_symbols,
    noise_symbols,
    token_level_sample,
)

__all__ = ["MQARConfig", "mqar_example"]


@dataclass
class MQARConfig:
    """MQAR options."""

    num_symbols: int = 512
    """Content symbols (vocabulary = 16 markers + num_symbols); Zoology uses 8,192."""
    num_kv_pairs: int | None = None
    """Key-value pairs per sequence; default ``max(1, length // 16)``."""
    power_a: float = 0.01
    """Exponent a of the query-gap power law (0 < a <= 1)."""
    random_non_queries: bool = True
    """Fill non-query slots with random symbols (else PAD)."""
    distractor_noise: float = 0.0
    """Share of the random non-query symbols that copy a key or value of the pairs instead
    (0 in training): the noisy-context evaluation of ``benchmarks/reproduce.py``."""

    def __post_init__(self) -> None:
        check_num_symbols(self.num_symbols)
        if self.num_kv_pairs is not None and not (
            isinstance(self.num_kv_pairs, int) and 1 <= self.num_kv_pairs <= self.num_symbols // 2
        ):
            raise ValueError(
                f"num_kv_pairs must be None or an int in [1, num_symbols // 2 = "
                f"{self.num_symbols // 2}], got {self.num_kv_pairs!r}"
            )
        if not 0 < self.power_a <= 1:
            raise ValueError(f"power_a must be in (0, 1], got {self.power_a}")
        check_distractor_noise(self.distractor_noise, "mqar")

    @property
    def vocab(self) -> SymbolicVocab:
        return SymbolicVocab(self.num_symbols)

    def pairs_for(self, length: int) -> int:
        n = self.num_kv_pairs if self.num_kv_pairs is not None else max(1, length // 16)
        if self.num_kv_pairs is None and n > self.num_symbols // 2:
            raise ValueError(
                f"MQAR at length {length}: the default num_kv_pairs = length // 16 = {n} needs "
                f"more than num_symbols // 2 = {self.num_symbols // 2} distinct keys; lengths "
                f"up to {16 * (self.num_symbols // 2 + 1) - 1} fit, or set num_kv_pairs (e.g. "
                '{"num_kv_pairs": 8}) or a larger num_symbols'
            )
        if 4 * n > length - 1:
            raise ValueError(
                f"MQAR: num_kv_pairs={n} needs length >= 4 * num_kv_pairs + 1 = {4 * n + 1}, "
                f"got length {length}"
            )
        return n


def _layout(
    length: int, cfg: MQARConfig, rng: random.Random
) -> tuple[list[int], list[bool], list[int], list[tuple[int, int]]]:
    """Dense MQAR sequence: (ids, mask, keys, query slots as (position, pair index))."""
    v = cfg.vocab
    n = cfg.pairs_for(length)
    half = v.num_symbols // 2
    keys = [v.sym(i) for i in rng.sample(range(half), n)]
    vals = [v.sym(half + i) for i in rng.choices(range(v.num_symbols - half), k=n)]
    ids = [BOS]
    for k, val in zip(keys, vals, strict=True):
        ids += [k, val]
    region = length - len(ids)  # query region
    slots = region // 2
    weights = [cfg.power_a * (g + 1) ** (cfg.power_a - 1) for g in range(slots)]
    chosen: set[int] = set()
    while len(chosen) < n:
        chosen.add(rng.choices(range(slots), weights=weights)[0])
    order = list(range(n))
    rng.shuffle(order)
    body = (
        noise_symbols(region, v, rng, keys + vals, cfg.distractor_noise)
        if cfg.random_non_queries
        else [0] * region
    )
    mask = [False] * length
    queries = []
    for slot, pi in zip(sorted(chosen), order, strict=True):
        pos = len(ids) + 2 * slot
        body[2 * slot], body[2 * slot + 1] = keys[pi], vals[pi]
        mask[pos + 1] = True
        queries.append((pos, pi))
    ids += body
    return ids, mask, keys, queries


def mqar_example(length: int, seed: int, cfg: MQARConfig) -> tuple[list[int], list[bool]]:
    """One dense training sequence ``(ids, mask)`` of exactly ``length`` tokens."""
    ids, mask, _, _ = _layout(length, cfg, random.Random(derive_seed("mqar", seed)))
    return ids, mask


def _mqar_tokens(
    spec: TaskSpec, *, length: int, seed: int, depth: float | None, options: dict[str, Any]
) -> Sample:
    cfg: MQARConfig = spec.make_config(options)
    rng = random.Random(derive_seed("mqar-eval", seed))
    n = cfg.pairs_for(length)
    # Layout of length + 1 minus the last (masked) value, then ask the pair at ``depth``.
    ids, _, keys, queries = _layout(length + 1, cfg, rng)
    vals = {ids[1 + 2 * i]: ids[2 + 2 * i] for i in range(n)}
    pi = min(n - 1, round(depth * (n - 1))) if depth is not None else rng.randrange(n)
    prompt = ids[: length - 1]
    # Remove later occurrences? No: overwrite the last slot with the asked key.
    prompt[-1] = keys[pi]
    answer = [vals[keys[pi]]]
    needles = [
        NeedleSpan("key", "", -1, -1, 1 + 2 * pi, 2 + 2 * pi),
        NeedleSpan("value", "", -1, -1, 2 + 2 * pi, 3 + 2 * pi),
    ]
    return token_level_sample(
        spec, length=length, seed=seed, prompt=prompt, answer_ids=[answer], vocab=cfg.vocab,
        depth=pi / max(1, n - 1), needles=needles,
        meta={"family": "mqar", "num_kv_pairs": n, "vocab_size": cfg.vocab.vocab_size,
              "num_symbols": cfg.num_symbols, "context_token_span": [1, length - 1]},
    )  # fmt: skip


register_task(
    TaskSpec(
        name="mqar",
        family="mqar",
        metric="token_accuracy",
        config_cls=MQARConfig,
        defaults={},
        text_fn=None,
        token_fn=_mqar_tokens,
        description="Zoology MQAR: recall the value of each queried key (token level, dense)",
    )
)
