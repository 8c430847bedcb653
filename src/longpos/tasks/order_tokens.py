"""Token-level ordered-key lookup, ``order_tokens``: a task where order is necessary in
distribution.

Token level only (for tiny from-scratch models), in the dense symbolic style of Zoology's MQAR
(arXiv 2312.04927) and the layout of :mod:`longpos.tasks.table_tokens` /
:mod:`longpos.tasks.graph_tokens` (records with random filler between them, then questions).
It exists because on MQAR every position-free model (NoPE) does as well as RePo: a task that
does not need order cannot show what learned positions add.

Layout, with ``K = key_symbols`` (here ``K = 3``, symbols ``x y z``)::

    BOS  KEY x y v1 SEP  [filler]  KEY y x v2 SEP  [filler]  KEY x z v3 SEP ...  QUERY x y ANS v1

- every sample draws ``K`` distinct key symbols (from the key half ``s0 .. s{N//2 - 1}`` of the
  ``N = num_symbols`` content symbols) and makes a record for **every ordered pair** of them:
  ``K (K - 1)`` records ``KEY a b v SEP`` (5 tokens), listed in random order;
- the values ``v`` are distinct symbols of the value half ``s{N//2} .. s{N-1}``;
- so each unordered pair ``{a, b}`` is the key of two records, ``(a, b)`` and ``(b, a)``, with
  different values (the swapped-key distractor is always present), and each symbol is the first
  symbol of ``K - 1`` keys and the second of ``K - 1`` others: neither the set of the two key
  symbols nor either symbol alone identifies the record; only the ordered pair does;
- a question is ``QUERY a b ANS`` and its answer is the value of the record ``(a, b)``, one token;
- filler is i.i.d. random content symbols (keys, values and others); ``filler="between"``
  scatters it at random between the records, ``filler="after"`` puts it in one block between
  the records and the questions.

Training (:func:`order_example`, dense supervision): records and filler take the first half of
the sequence, questions about random records (with replacement) the second half; every answer
token is marked. An eval sample has the same records at the same length, filler for the rest,
and one question at the very end (metric ``token_accuracy``); ``depth`` picks the asked record
(0 = first record, 1 = last record). A longer eval length adds filler, not records.

Chance levels (``K = 3``, ``N = 64``): a random value 1 / 32 = 3.1%; copying some record's value
1 / 6 = 16.7%; an **order-blind** model (one that matches the unordered key, or only one of its
two symbols) can at best pick between the record and its swapped twin: 50%.

What each method should do, and why (written before measuring):

- **RoPE**: the match needs the two tokens before ``ANS`` (``b`` at -1, ``a`` at -2) compared
  with the two tokens before a record's value; relative offsets are what RoPE encodes, so this
  is a short-range circuit RoPE should learn at L. Beyond L the question sits at unseen distances
  from the records, as on MQAR, so RoPE should lose accuracy at 2L and 4L.
- **NoPE**: no positional signal except what the causal mask lets it derive (counting through
  the prefix). Telling ``x y`` from ``y x`` needs offset -1 versus -2, so NoPE should be slower
  to learn and may sit at or near the 50% order-blind level at L; what it does learn should
  extrapolate better than RoPE (no unseen rotations).
- **R2N1** (RoPE, RoPE, NoPE): the local order circuit fits in its RoPE layers and the long
  lookup in its NoPE layer, so it should learn at L like RoPE and extrapolate better than RoPE.
- **RePo** (layer 0 RoPE, layers 1-2 RePo): layer 0's integer RoPE can carry the local order;
  the RePo layers can assign positions that keep the record's internal order while ignoring
  the filler, so it should learn at L; if its learned positions collapse (become constant, i.e.
  NoPE) it should behave like NoPE for whatever order its RePo layers need.
- **DroPE** (the RoPE run with every rotation dropped at 87.5% of the steps, then recalibrated
  at L): dropping RoPE removes the offset signal the order circuit was built on; 250
  recalibration steps may not rebuild it without positions, so DroPE should fall towards the
  order-blind 50% at L, and stay there at 2L / 4L.

Measured afterwards (``benchmarks/results/calibration-cpu/``; demo model, one seed,
``answer_marker=False``, 4,000 steps, calibrated on RoPE; greedy % at L / 2L / 4L): RoPE
68 / 45 / 16, NoPE 7 / 3 / 4, R2N1 56 / 20 / 5, RePo 49 / 41 / 32, DroPE 35 / 23 / 13. RoPE and
R2N1 learned the order (100% on held-out training-layout batches); RePo and DroPE stayed at
the order-blind 50%, NoPE below copy-some-record. With the ``ANS`` marker (the default layout)
RoPE did not leave the copy-some-record plateau in 2,000 steps; at 2,000 steps without it, it
stayed order-blind. The gap between held-out (100%) and eval (68%) accuracy at L came from the
layout: 8 questions per training sequence leave ~1 filler token among the records, an eval
sample at L has 29. With ``max_questions=4`` (~17 filler tokens in training; the demo's
options) RoPE answers 85 / 59 / 29% at L / 2L / 4L after 4,000 steps.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, ClassVar

from longpos.tasks import _token_records as rec
from longpos.tasks.base import NeedleSpan
from longpos.tasks.symbolic import (
    ANS,
    BOS,
    KEY,
    QUERY,
    SEP,
    check_num_symbols,
)

__all__ = ["OrderTokensConfig", "order_example"]

NAME = "order_tokens"
RECORD_LEN = 5
"""``KEY a b v SEP``."""
QA_LEN = 5
"""``QUERY a b ANS v`` (``answer_marker=False``: ``QUERY a b v``, 4 tokens)."""


@dataclass
class OrderTokensConfig(rec.RecordsConfig):
    """Options of ``order_tokens``."""

    QA_LEN: ClassVar[int] = QA_LEN

    key_symbols: int = 3
    """Distinct key symbols per sample, K in [2, 8]: the records are all K (K - 1) ordered
    pairs of them (K = 3: 6 records)."""
    filler: str = "between"
    """Where the random-symbol filler goes: ``between`` the records (scattered at random) or
    ``after`` them (one block before the question)."""
    max_questions: int | None = None
    """Cap on the questions of a training sequence (``None``: as many as fit in half the
    sequence); fewer questions leave more filler, closer to the eval layout (one question)."""

    def __post_init__(self) -> None:
        check_num_symbols(self.num_symbols, 16, NAME)
        k = self.key_symbols
        if not isinstance(k, int) or isinstance(k, bool) or not 2 <= k <= 8:
            raise ValueError(f"{NAME}: key_symbols must be an int in [2, 8], got {k!r}")
        half = self.num_symbols // 2
        if k > half or self.records > self.num_symbols - half:
            raise ValueError(
                f"{NAME}: key_symbols = {k} needs {k} key symbols and {self.records} distinct "
                f"values, but num_symbols = {self.num_symbols} has {half} and "
                f"{self.num_symbols - half}"
            )
        rec.check_filler(NAME, self.filler)
        q = self.max_questions
        if q is not None and (not isinstance(q, int) or isinstance(q, bool) or q < 1):
            raise ValueError(f"{NAME}: max_questions must be None or an int >= 1, got {q!r}")
        self.check_records_options(NAME)

    @property
    def records(self) -> int:
        """Records per sample: ``key_symbols * (key_symbols - 1)``."""
        return self.key_symbols * (self.key_symbols - 1)


@dataclass
class _Built:
    ids: list[int]
    mask: list[bool]
    starts: list[int]
    """Offset of each record in ``ids``."""
    keys: list[tuple[int, int]]
    """The ordered key of each record, in context order."""
    last: int
    """Index (context order) of the record asked by the last question."""
    filler: int


def _build(
    cfg: OrderTokensConfig, length: int, rng: random.Random, depth: float | None, dense: bool
) -> _Built:
    v = cfg.vocab
    n = cfg.records
    filler, n_q = rec.budget(NAME, length, n, RECORD_LEN, cfg.qa_len, dense, cfg.max_questions)
    half = v.num_symbols // 2
    syms = [v.sym(i) for i in rng.sample(range(half), cfg.key_symbols)]
    keys = [(a, b) for a in syms for b in syms if a != b]
    rng.shuffle(keys)
    values = [v.sym(i) for i in rng.sample(range(half, v.num_symbols), n)]
    records = [[KEY, a, b, x, SEP] for (a, b), x in zip(keys, values, strict=True)]
    ctx, starts = rec.render(
        records, rec.gaps(rng, n, filler, cfg.filler), v, rng, cfg.distractor_noise
    )
    ids = [BOS, *ctx]
    mask = [False] * len(ids)
    r = 0
    for _ in range(n_q):
        if not dense and depth is not None:
            r = min(n - 1, round(depth * (n - 1)))
        else:
            r = rng.randrange(n)
        a, b = keys[r]
        ids += [QUERY, a, b, *([ANS] if cfg.answer_marker else []), values[r]]
        mask += [False] * (cfg.qa_len - 1) + [True]
    return _Built(ids, mask, [s + 1 for s in starts], keys, r, filler)


def order_example(
    length: int, seed: int, cfg: OrderTokensConfig, dense: bool = True
) -> tuple[list[int], list[bool]]:
    """One training sequence ``(ids, mask)`` of exactly ``length`` tokens (see
    :func:`longpos.tasks._token_records.training_example`)."""
    return rec.training_example(_build, NAME, length, seed, cfg, dense)


def _describe(cfg: OrderTokensConfig, b: _Built) -> tuple[float, list[NeedleSpan], dict[str, Any]]:
    r = b.last
    s = b.starts[r]
    a, c = b.keys[r]
    twin = b.keys.index((c, a))
    t = b.starts[twin]
    needles = [
        NeedleSpan("needle", "", -1, -1, s, s + RECORD_LEN),
        NeedleSpan("key", "", -1, -1, s + 1, s + 3),
        NeedleSpan("value", "", -1, -1, s + 3, s + 4),
        NeedleSpan("distractor", "", -1, -1, t, t + RECORD_LEN),
    ]
    meta = {
        "records": len(b.starts), "key_symbols": cfg.key_symbols, "filler_tokens": b.filler,
        "record": r, "swapped_record": twin, "swapped_value": b.ids[t + 3],
    }  # fmt: skip
    return r / max(1, len(b.starts) - 1), needles, meta


rec.register(
    NAME, "order", OrderTokensConfig, _build, _describe, order_example,
    qa_len=lambda cfg: cfg.qa_len,
    description="records `KEY a b v SEP` for every ordered pair of K key symbols: QUERY a b "
    "ANS -> v; the swapped key (b, a) always has another value (token level, dense)",
)  # fmt: skip
