"""Token-level (symbolic) tasks for tiny from-scratch models, and training batches.

The same structures as the text tasks, over a small symbolic vocabulary with no tokenizer:
16 reserved marker ids (PAD, BOS, EOS, KEY, VAL, QUERY, ANS, SEP, NOISE, DOC, ...) followed by
``num_symbols`` content symbols. A needle is ``KEY k.. VAL v.. SEP``; a question is
``QUERY k.. ANS`` and the model must produce ``v..``. Keys come from the first half of the
content symbols and values from the second half, as in Zoology's MQAR (Arora et al. 2023,
arXiv 2312.04927); haystacks are a repeated random "sentence" of symbols (``repeat``), i.i.d.
random symbols (``random``) or distractor needles (``needle``).

Eval samples hold one question (the prompt ends with ``ANS``) and are exactly
``target_length`` long including the answer. Training sequences (:func:`make_token_batch`)
use *dense supervision*, which tiny models need to learn retrieval at all (see the
calibration notes): many needles, one question block per key, and a mask marking every answer
token. :mod:`longpos.tasks.mqar` is the fully dense MQAR layout.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

from longpos.tasks.base import NeedleSpan, Sample, TaskSpec, derive_seed, get_task
from longpos.tasks.fitting import TooShortError

__all__ = [
    "MARKERS",
    "NUM_MARKERS",
    "SymbolicVocab",
    "TokenOptions",
    "TokenInstance",
    "make_token_example",
    "make_token_batch",
    "register_token_example",
    "check_num_symbols",
    "token_level_sample",
]

MARKERS: tuple[str, ...] = (
    "PAD", "BOS", "EOS", "KEY", "VAL", "QUERY", "ANS", "SEP",
    "NOISE", "DOC", "YES", "NO", "M12", "M13", "M14", "M15",
)  # fmt: skip
NUM_MARKERS = len(MARKERS)
M = {name: i for i, name in enumerate(MARKERS)}
PAD, BOS, EOS, KEY, VAL, QUERY, ANS, SEP, NOISE, DOC = (M[n] for n in MARKERS[:10])

_TYPE_LEN = {"words": 2, "numbers": 3, "uuids": 4}


@dataclass(frozen=True)
class SymbolicVocab:
    """Marker ids 0..15, then content symbols ``16 .. 16 + num_symbols - 1``."""

    num_symbols: int = 512

    def __post_init__(self) -> None:
        if not 8 <= self.num_symbols <= 1_000_000:
            raise ValueError(f"num_symbols must be in [8, 1000000], got {self.num_symbols}")

    @property
    def vocab_size(self) -> int:
        return NUM_MARKERS + self.num_symbols

    def sym(self, i: int) -> int:
        """Id of content symbol ``i``."""
        return NUM_MARKERS + i

    def key_sym(self, rng: random.Random) -> int:
        return self.sym(rng.randrange(self.num_symbols // 2))

    def value_sym(self, rng: random.Random) -> int:
        return self.sym(
            self.num_symbols // 2 + rng.randrange(self.num_symbols - self.num_symbols // 2)
        )

    def any_sym(self, rng: random.Random) -> int:
        return self.sym(rng.randrange(self.num_symbols))

    def decode(self, ids: list[int]) -> str:
        """Readable form, e.g. ``"KEY s3 s7 VAL s300 SEP"``."""
        return " ".join(MARKERS[i] if 0 <= i < NUM_MARKERS else f"s{i - NUM_MARKERS}" for i in ids)


def check_num_symbols(value: Any, lo: int = 8, task: str = "") -> None:
    """The one check of a config's ``num_symbols``: an int in ``[lo, 1000000]``.

    Raises ``ValueError``, prefixed with ``"{task}: "`` when ``task`` is given.
    """
    if not isinstance(value, int) or not lo <= value <= 1_000_000:
        where = f"{task}: " if task else ""
        raise ValueError(f"{where}num_symbols must be an int in [{lo}, 1000000], got {value!r}")


def check_distractor_noise(value: Any, task: str) -> None:
    """The one check of a config's ``distractor_noise``: a number in ``[0, 1]``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"{task}: distractor_noise must be in [0, 1], got {value!r}")


def noise_symbols(
    n: int, vocab: SymbolicVocab, rng: random.Random, pool: list[int], distractor_noise: float
) -> list[int]:
    """``n`` filler symbols: i.i.d. random content symbols, each replaced with probability
    ``distractor_noise`` by a random symbol of ``pool`` (the context's own keys and values);
    with 0 the draws are exactly the plain random filler's."""
    if distractor_noise <= 0:
        return [vocab.any_sym(rng) for _ in range(n)]
    return [
        rng.choice(pool) if rng.random() < distractor_noise else vocab.any_sym(rng)
        for _ in range(n)
    ]


@dataclass
class TokenOptions:
    """Options of every task's token-level rendering (base class of the task configs)."""

    num_symbols: int = 512
    """Content symbols of the symbolic vocabulary (vocabulary size = 16 + num_symbols)."""
    noise: str = "auto"
    """Token-level haystack: ``auto`` (follows the text haystack), ``repeat``, ``random``."""
    key_len: int | None = None
    """Symbols per key (default by key type: words 2, numbers 3, uuids 4)."""
    value_len: int | None = None
    """Symbols per value (default by value type)."""
    sentence_len: tuple[int, int] = (8, 16)
    """Length range of the repeated noise sentence."""

    def __post_init__(self) -> None:
        check_num_symbols(self.num_symbols)
        if self.noise not in ("auto", "repeat", "random"):
            raise ValueError(
                f"noise must be one of ('auto', 'repeat', 'random'), got {self.noise!r}"
            )
        for name in ("key_len", "value_len"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, int) and 1 <= v <= 64):
                raise ValueError(f"{name} must be None or an int in [1, 64], got {v!r}")
        lo, hi = self.sentence_len
        if not 1 <= lo <= hi <= 1024:
            raise ValueError(
                f"sentence_len must satisfy 1 <= lo <= hi <= 1024, got {self.sentence_len}"
            )

    @property
    def vocab(self) -> SymbolicVocab:
        return SymbolicVocab(self.num_symbols)


@dataclass
class TokenInstance:
    """A token-level instance: a context and one or more (question, answer) blocks."""

    context: list[int]
    queries: list[tuple[list[int], list[int]]]
    spans: list[tuple[str, int, int]] = field(default_factory=list)
    """(role, start, end) token offsets inside ``context``."""
    depth: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    groups: list[list[int]] | None = None
    """The first question's answer split into gold items (values, names, words)."""


Builder = Callable[[Any, random.Random, int, float | None, bool], TokenInstance]


# ---------------------------------------------------------------------------- haystacks


def _noise_units(cfg: TokenOptions, kind: str, rng: random.Random, n: int) -> list[list[int]]:
    """Units (lists of ids) totalling exactly ``n`` tokens."""
    v = cfg.vocab
    if n <= 0:
        return []
    if kind == "random":
        return [[v.any_sym(rng)] for _ in range(n)]
    sent = [v.any_sym(rng) for _ in range(rng.randint(*cfg.sentence_len))]
    units = [list(sent) for _ in range(n // len(sent))]
    if n % len(sent):
        units.append(sent[: n % len(sent)])
    return units


def _assemble(
    units: list[list[int]], needles: list[tuple[float, str, list[int], list[tuple[str, int, int]]]]
) -> tuple[list[int], list[tuple[str, int, int]]]:
    """Insert needles ``(depth, role, ids, inner spans)`` at unit boundaries; return ids+spans."""
    k = len(units)
    at: dict[int, list[tuple[str, list[int], list[tuple[str, int, int]]]]] = {}
    for d, role, ids, inner in needles:
        at.setdefault(min(k, max(0, round(d * k))), []).append((role, ids, inner))
    out: list[int] = []
    spans: list[tuple[str, int, int]] = []
    for i in range(k + 1):
        for role, ids, inner in at.get(i, []):
            s = len(out)
            out.extend(ids)
            spans.append((role, s, len(out)))
            spans.extend((r, s + a, s + b) for r, a, b in inner)
        if i < k:
            out.extend(units[i])
    return out, spans


def _kv_needle(k: list[int], v: list[int]) -> tuple[list[int], list[tuple[str, int, int]]]:
    ids = [KEY, *k, VAL, *v, SEP]
    return ids, [("key", 1, 1 + len(k)), ("value", 2 + len(k), 2 + len(k) + len(v))]


def _distinct_seqs(
    rng: random.Random, n: int, length: int, draw: Callable[[random.Random], int], used: set
) -> list[list[int]]:
    out: list[list[int]] = []
    tries = 0
    while len(out) < n:
        s = tuple(draw(rng) for _ in range(length))
        tries += 1
        if tries > 100 * (n + 10):
            raise ValueError(
                "not enough distinct symbols: increase num_symbols or key/value length"
            )
        if s not in used:
            used.add(s)
            out.append(list(s))
    return out


def _too_short(task: str, need: int, budget: int) -> TooShortError:
    return TooShortError(
        f"token-level {task}: length {budget + 1} is too small, the needles and questions alone "
        f"need {need + 1} tokens; use a larger length or fewer needles"
    )


def _depths(rng: random.Random, n: int, depth: float | None, j: int = 0) -> list[float]:
    ds = [rng.random() for _ in range(n)]
    if depth is not None and n:
        ds[j] = depth
    return ds


# ---------------------------------------------------------------------------- builders


def _niah_builder(
    cfg: Any, rng: random.Random, budget: int, depth: float | None, dense: bool
) -> TokenInstance:
    v = cfg.vocab
    klen = cfg.key_len or _TYPE_LEN[cfg.key_type]
    vlen = cfg.value_len or _TYPE_LEN[cfg.value_type]
    k = max(cfg.num_keys, cfg.num_queries)
    used: set = set()
    keys = _distinct_seqs(rng, k, klen, v.key_sym, used)
    values = [_distinct_seqs(rng, cfg.num_values, vlen, v.value_sym, used) for _ in range(k)]
    pairs = [(ki, vi) for ki in range(k) for vi in range(cfg.num_values)]
    rng.shuffle(pairs)
    queried = rng.sample(range(k), cfg.num_queries)
    j = pairs.index((queried[0], 0))
    ds = _depths(rng, len(pairs), depth, j)
    if dense:
        order = list(range(k))
        rng.shuffle(order)
        queries = [([QUERY, *keys[ki], ANS], [s for vv in values[ki] for s in vv]) for ki in order]
    else:
        qk = [s for q in queried for s in keys[q]]
        queries = [([QUERY, *qk, ANS], [s for q in queried for vv in values[q] for s in vv])]
    needles = []
    for d, (ki, vi) in zip(ds, pairs, strict=True):
        ids, inner = _kv_needle(keys[ki], values[ki][vi])
        is_q = ki in queried or dense
        if not is_q:
            inner = [("key", *inner[0][1:]), ("distractor_value", *inner[1][1:])]
        needles.append((d, "needle" if is_q else "distractor", ids, inner))
    fixed = sum(len(n[2]) for n in needles) + sum(len(q) + len(a) for q, a in queries)
    fill = budget - fixed
    if fill < 0:
        raise _too_short("niah", fixed, budget)
    kind = cfg.noise if cfg.noise != "auto" else {"essay": "random"}.get(cfg.haystack, "repeat")
    if cfg.haystack == "needle":
        units: list[list[int]] = []
        n_left = fill
        while n_left >= klen + vlen + 3:
            kk = _distinct_seqs(rng, 1, klen, v.key_sym, used)[0]
            vv = _distinct_seqs(rng, 1, vlen, v.value_sym, used)[0]
            units.append(_kv_needle(kk, vv)[0])
            n_left -= len(units[-1])
        units += _noise_units(cfg, "random", rng, n_left)
    else:
        units = _noise_units(cfg, kind, rng, fill)
    ctx, spans = _assemble(units, needles)
    groups = None if dense else [list(vv) for q in queried for vv in values[q]]
    return TokenInstance(ctx, queries, spans, ds[j], {"noise": kind}, groups)


def _vt_builder(
    cfg: Any, rng: random.Random, budget: int, depth: float | None, dense: bool
) -> TokenInstance:
    v = cfg.vocab
    used: set = set()
    chains = []
    for _ in range(cfg.num_chains):
        names = _distinct_seqs(rng, cfg.num_hops + 1, 1, v.key_sym, used)
        value = _distinct_seqs(rng, 1, 2, v.value_sym, used)[0]
        chains.append((names, value))
    needles = []
    d0 = depth if depth is not None else rng.random() * 0.9
    for ci, (names, value) in enumerate(chains):
        start = d0 if ci == 0 else rng.random()
        ds = [start] + sorted(rng.uniform(start, 1.0) for _ in range(len(names) - 1))
        rhs = [value] + names[:-1]
        for d, name, r in zip(ds, names, rhs, strict=True):
            ids = [KEY, *name, VAL, *r, SEP]
            role = "needle" if ci == 0 else "distractor"
            needles.append((d, role, ids, [("value", 1, 1 + len(name))] if ci == 0 else []))
    needles.sort(key=lambda x: x[0])
    qs = range(len(chains)) if dense else [0]
    queries = [([QUERY, *chains[c][1], ANS], [s for nm in chains[c][0] for s in nm]) for c in qs]
    fixed = sum(len(n[2]) for n in needles) + sum(len(q) + len(a) for q, a in queries)
    if budget < fixed:
        raise _too_short("vt", fixed, budget)
    units = _noise_units(cfg, "repeat" if cfg.noise == "auto" else cfg.noise, rng, budget - fixed)
    ctx, spans = _assemble(units, needles)
    return TokenInstance(ctx, queries, spans, d0, groups=[list(nm) for nm in chains[0][0]])


def _cwe_builder(
    cfg: Any, rng: random.Random, budget: int, depth: float | None, dense: bool
) -> TokenInstance:
    v = cfg.vocab
    ncw = cfg.num_cw
    q = [QUERY, ANS]
    fill = budget - len(q) - ncw
    f_cw, f_ucw = cfg.freq_cw, cfg.freq_ucw
    if fill < ncw * f_cw:
        f_cw = max(2, fill // (ncw + 1))
        f_ucw = 1
    if fill < ncw * f_cw or f_cw < 2:
        raise _too_short("cwe", ncw * cfg.freq_cw + len(q) + ncw, budget)
    n_max = v.num_symbols - ncw
    while True:
        rest = fill - ncw * f_cw
        n_u = rest // f_ucw
        if n_u <= n_max or f_ucw + 1 >= f_cw:
            break
        f_ucw += 1
    n_u = min(n_u, n_max)
    perm = rng.sample(range(v.num_symbols), ncw + n_u)
    words = [v.sym(i) for i in perm]
    items = [w for w in words[:ncw] for _ in range(f_cw)] + [
        w for w in words[ncw:] for _ in range(f_ucw)
    ]
    items += [NOISE] * (fill - len(items))  # remainder: ignorable filler
    rng.shuffle(items)
    return TokenInstance(
        items, [(q, words[:ncw])], [], None, {"freq": [f_cw, f_ucw]}, [[w] for w in words[:ncw]]
    )


def _fwe_builder(
    cfg: Any, rng: random.Random, budget: int, depth: float | None, dense: bool
) -> TokenInstance:
    v = cfg.vocab
    q = [QUERY, ANS]
    fill = budget - len(q) - 3
    n_vocab = min(v.num_symbols, max(6, fill // 8))
    words = [NOISE] + [v.sym(i) for i in rng.sample(range(v.num_symbols), n_vocab - 1)]
    z = sum(k**-cfg.alpha for k in range(1, n_vocab + 1))

    def counts(n: int) -> list[int]:
        return [int(n * (k + 1) ** -cfg.alpha / z) for k in range(n_vocab)]

    n = fill
    while n > 0 and sum(counts(n)) > fill:
        n -= max(1, n // 100)
    c = counts(n)
    if not (c[1] > c[2] > c[3] > c[4]):
        raise _too_short("fwe", 100, budget)
    items = [w for w, cc in zip(words, c, strict=True) for _ in range(cc)]
    items += [NOISE] * (fill - len(items))
    rng.shuffle(items)
    return TokenInstance(
        items, [(q, words[1:4])], [], None, {"counts_top5": c[:5]}, [[w] for w in words[1:4]]
    )


def _qa_builder(
    cfg: Any, rng: random.Random, budget: int, depth: float | None, dense: bool
) -> TokenInstance:
    """Symbolic multi-document QA: find the document holding a 2-symbol span, copy what follows."""
    v = cfg.vocab
    doc_len = 16
    q_len, a_len = 2, 2
    fixed = 1 + q_len + 1 + a_len
    fill = budget - fixed
    if fill < doc_len + 2:
        raise _too_short("qa", fixed + doc_len + 2, budget)
    docs: list[list[int]] = []
    left = fill
    while left > 0:
        body = [v.any_sym(rng) for _ in range(min(doc_len, max(0, left - 2)))]
        docs.append([DOC, *body, SEP][:left])
        left -= len(docs[-1])
    full = [i for i, d in enumerate(docs) if len(d) == doc_len + 2]
    g = full[
        min(len(full) - 1, round((depth if depth is not None else rng.random()) * (len(full) - 1)))
    ]
    at = rng.randrange(1, doc_len - q_len - a_len + 2)
    key = docs[g][at : at + q_len]
    ans = docs[g][at + q_len : at + q_len + a_len]
    # make the key span unique in the whole context
    for i, d in enumerate(docs):
        for p in range(len(d) - q_len + 1):
            if (i, p) != (g, at) and d[p : p + q_len] == key:
                d[p] = v.any_sym(rng) if d[p] >= NUM_MARKERS else d[p]
    ctx = [t for d in docs for t in d]
    start = sum(len(d) for d in docs[:g])
    spans = [
        ("needle", start, start + len(docs[g])),
        ("key", start + at, start + at + q_len),
        ("value", start + at + q_len, start + at + q_len + a_len),
    ]
    d_real = g / max(1, len(full) - 1)
    return TokenInstance(ctx, [([QUERY, *key, ANS], ans)], spans, d_real, {"num_docs": len(docs)})


def _passkey_builder(
    cfg: Any, rng: random.Random, budget: int, depth: float | None, dense: bool
) -> TokenInstance:
    v = cfg.vocab
    # The key is always content symbol 0 ("the pass key"); the value is the pass key itself.
    key = [v.value_sym(rng) for _ in range(cfg.value_len or 5)]
    needle = [KEY, v.sym(0), VAL, *key, SEP]
    q = [QUERY, v.sym(0), ANS]
    fill = budget - len(needle) - len(q) - len(key)
    if fill < 0:
        raise _too_short("passkey", budget - fill, budget)
    d = depth if depth is not None else rng.random()
    units = _noise_units(cfg, "repeat" if cfg.noise == "auto" else cfg.noise, rng, fill)
    ctx, spans = _assemble(
        units, [(d, "needle", needle, [("key", 1, 2), ("value", 3, 3 + len(key))])]
    )
    return TokenInstance(ctx, [(q, key)], spans, d)


BUILDERS: dict[str, Builder] = {
    "niah": _niah_builder,
    "variable_tracking": _vt_builder,
    "cwe": _cwe_builder,
    "fwe": _fwe_builder,
    "qa": _qa_builder,
    "passkey": _passkey_builder,
}


# ---------------------------------------------------------------------------- samples and batches


def _instance(
    spec: TaskSpec, cfg: Any, seed: int, length: int, depth: float | None, dense: bool
) -> TokenInstance:
    if length < 2:
        raise ValueError(f"length must be >= 2, got {length}")
    builder = BUILDERS.get(spec.family)
    if builder is None:
        raise ValueError(f"task {spec.name!r} has no token-level rendering")
    rng = random.Random(derive_seed("longpos-token", spec.name, seed, dense))
    return builder(cfg, rng, length - 1, depth, dense)


def token_sample(
    spec: TaskSpec, *, length: int, seed: int, depth: float | None, options: dict[str, Any]
) -> Sample:
    """Token-level eval sample: ``[BOS] context QUERY .. ANS``, answer = the value ids."""
    cfg = spec.make_config(options)
    inst = _instance(spec, cfg, seed, length, depth, dense=False)
    query, answer = inst.queries[0]
    prompt = [BOS, *inst.context, *query]
    off = 1
    needles = [NeedleSpan(r, "", -1, -1, a + off, b + off) for r, a, b in inst.spans]
    metric = "token_accuracy" if spec.family == "mqar" else "token_match_all"
    voc = cfg.vocab
    return token_level_sample(
        spec,
        length=length,
        seed=seed,
        prompt=prompt,
        answer_ids=inst.groups or [answer],
        vocab=voc,
        depth=inst.depth,
        needles=needles,
        metric=metric,
        tokens_to_generate=len(answer),
        meta={
            "family": spec.family,
            "vocab_size": voc.vocab_size,
            "num_symbols": voc.num_symbols,
            "context_token_span": [1, 1 + len(inst.context)],
            **inst.meta,
        },
    )


def token_level_sample(
    spec: TaskSpec,
    *,
    length: int,
    seed: int,
    prompt: list[int],
    answer_ids: list[list[int]],
    vocab: SymbolicVocab,
    depth: float | None,
    needles: list[NeedleSpan],
    meta: dict[str, Any],
    metric: str = "token_accuracy",
    tokens_to_generate: int = 1,
) -> Sample:
    """A token-level eval :class:`Sample`: the gold id sequences ``answer_ids``, and their
    readable forms as the answers. The defaults are those of the one-token-answer tasks (MQAR,
    ``table_tokens``, ``graph_tokens``)."""
    return Sample(
        task=spec.name, level="token", seed=seed, target_length=length, prompt_ids=prompt,
        answers=[vocab.decode(a) for a in answer_ids], metric=metric,
        tokens_to_generate=tokens_to_generate, answer_ids=answer_ids, depth=depth,
        needles=needles, meta=meta,
    )  # fmt: skip


niah_tokens = vt_tokens = cwe_tokens = fwe_tokens = qa_tokens = passkey_tokens = token_sample


ExampleFn = Callable[[int, int, Any, bool], tuple[list[int], list[bool]]]
"""``(length, seed, config, dense) -> (ids, mask)``: a task's own training-example layout."""

TOKEN_EXAMPLES: dict[str, ExampleFn] = {}
"""Task name -> training-example function, for token-level-only tasks with their own layout
(:mod:`longpos.tasks.table_tokens`, :mod:`longpos.tasks.graph_tokens`); see
:func:`register_token_example`."""


def register_token_example(task: str, fn: ExampleFn) -> None:
    """Make :func:`make_token_example` (and so training batches) use ``fn`` for ``task``."""
    if task in TOKEN_EXAMPLES:
        raise ValueError(f"task {task!r} already has a token-level training example")
    TOKEN_EXAMPLES[task] = fn


def make_token_example(
    task: str, length: int, seed: int, *, dense: bool = True, **options: Any
) -> tuple[list[int], list[bool]]:
    """One training sequence of exactly ``length`` ids and its answer mask.

    Layout ``[BOS] context (QUERY .. ANS answer)*``. ``mask[t]`` is True where ``ids[t]`` is an
    answer token, i.e. the loss at logits position ``t - 1`` predicting ``ids[t]`` counts.
    """
    spec = get_task(task)
    example = TOKEN_EXAMPLES.get(spec.name)
    if example is not None:
        return example(length, seed, spec.make_config(options), dense)
    if spec.family == "mqar":
        from longpos.tasks.mqar import mqar_example

        return mqar_example(length, seed, spec.make_config(options))
    cfg = spec.make_config(options)
    inst = _instance(spec, cfg, seed, length, None, dense=dense)
    ids = [BOS, *inst.context]
    mask = [False] * len(ids)
    for q, a in inst.queries:
        ids += q + a
        mask += [False] * len(q) + [True] * len(a)
    assert len(ids) == length, (len(ids), length)
    return ids, mask


def make_token_batch(
    task: str,
    length: int,
    batch_size: int,
    rng: random.Random,
    *,
    dense: bool = True,
    **options: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A training batch of token-level sequences with dense supervision.

    Returns ``input_ids`` LongTensor ``(B, T)`` and ``target_mask`` BoolTensor ``(B, T)``, with
    ``T = length``; ``target_mask[b, t]`` marks answer tokens (see :func:`make_token_example`).
    Each row's seed is drawn from ``rng``, so a seeded ``rng`` gives the same batch everywhere.
    """
    import torch  # imported here so that generating text samples does not load torch

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    rows = [
        make_token_example(task, length, rng.getrandbits(63), dense=dense, **options)
        for _ in range(batch_size)
    ]
    ids = torch.tensor([r[0] for r in rows], dtype=torch.long)  # (B, T)
    mask = torch.tensor([r[1] for r in rows], dtype=torch.bool)  # (B, T)
    return ids, mask


def vocab_for(task: str, **options: Any) -> SymbolicVocab:
    """The symbolic vocabulary a token-level task uses with these options."""
    return get_task(task).make_config(options).vocab
