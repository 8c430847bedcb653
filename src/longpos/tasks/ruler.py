"""The 13 RULER tasks (Hsieh et al. 2024, "RULER: What's the Real Context Size of Your
Long-Context Language Models?", arXiv 2404.06654), generated offline.

Categories: retrieval (8 needle-in-a-haystack variants: single, multi-key, multi-value,
multi-query needles in noise, essay or needle haystacks), multi-hop tracing (variable
tracking: follow a chain of ``VAR B = VAR A`` assignments), aggregation (common and frequent
word extraction: count words in a long list) and question answering over many documents
(SQuAD v2 / HotpotQA, read from a local file the user supplies).

Templates and answer prefixes are RULER's v1 ``base`` templates. Differences from RULER,
which make some tasks "RULER-like": the essay haystack is the offline corpus of
:mod:`longpos.data.corpus` instead of Paul Graham's essays; adjective-noun keys are drawn by
index from the product of the sorted wonderwords lists; sentence splitting is a regex; all
randomness comes from one ``random.Random`` per sample, so outputs are not byte-identical to
NVIDIA's. Every task also has a token-level rendering (:mod:`longpos.tasks.symbolic`).
"""

from __future__ import annotations

import functools
import json
import os
import random
import re
import string
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, cast

from longpos.data.words import common_vocabulary, random_adjective_noun
from longpos.tasks import symbolic
from longpos.tasks._render import Plan, TextJob, layout, text_task
from longpos.tasks.base import TaskSpec, derive_seed, register_task
from longpos.tasks.fitting import Rendered, TextBuilder
from longpos.tasks.haystack import (
    NOISE_BLOCK,
    HaystackStream,
    essay_stream,
    insert_units,
    noise_stream,
    repeat_stream,
)

__all__ = [
    "NIAHConfig",
    "VTConfig",
    "CWEConfig",
    "FWEConfig",
    "QAConfig",
    "RULER_TASKS",
    "DEPTH_GRID",
    "MissingDataError",
]

# RULER's 40 needle depths: round(linspace(0, 100, 40)) percent.
DEPTH_GRID: tuple[float, ...] = tuple(round(100 * i / 39) / 100 for i in range(40))

TOKENS_TO_GENERATE = {"niah": 128, "variable_tracking": 30, "cwe": 120, "fwe": 50, "qa": 32}

_HAYSTACKS = ("noise", "essay", "needle", "repeat")
_TYPES = ("words", "numbers", "uuids")


def _check_choice(name: str, value: Any, allowed: tuple[Any, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def _check_range(name: str, value: Any, lo: float, hi: float | None = None) -> None:
    ok = isinstance(value, int | float) and value >= lo and (hi is None or value <= hi)
    if not ok:
        rng = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise ValueError(f"{name} must be a number in {rng}, got {value!r}")


@dataclass
class _RulerOptions(symbolic.TokenOptions):
    """The token options, then the checks a RULER config declares: every field of ``CHOICES``
    against its allowed values, then every field of ``RANGES`` against its ``(lo, hi)``."""

    CHOICES: ClassVar[dict[str, tuple[Any, ...]]] = {}
    RANGES: ClassVar[dict[str, tuple[float, float]]] = {}

    def __post_init__(self) -> None:
        super().__post_init__()
        for name, allowed in self.CHOICES.items():
            _check_choice(name, getattr(self, name), allowed)
        for name, (lo, hi) in self.RANGES.items():
            _check_range(name, getattr(self, name), lo, hi)


@dataclass
class NIAHConfig(_RulerOptions):
    """A needle-in-a-haystack configuration (RULER ``niah``)."""

    CHOICES = {"haystack": _HAYSTACKS, "key_type": _TYPES, "value_type": _TYPES}
    RANGES = {"num_keys": (1, 64), "num_values": (1, 64), "num_queries": (1, 64)}

    haystack: str = "essay"
    """``noise`` | ``essay`` | ``needle`` (distractor needles) | ``repeat``."""
    key_type: str = "words"
    """``words`` (adjective-noun) | ``numbers`` (7 digits) | ``uuids``."""
    value_type: str = "numbers"
    num_keys: int = 1
    """Keys with a needle; at least ``num_queries`` are used."""
    num_values: int = 1
    """Values (needles) per key."""
    num_queries: int = 1
    """Keys asked about; the gold answers are all their values."""
    repeat_sentence: str = "The grass is green and the sky is blue."
    """The sentence repeated by the ``repeat`` haystack."""


@dataclass
class VTConfig(_RulerOptions):
    """Variable tracking (RULER ``vt``): chains of assignments hidden in noise."""

    RANGES = {"num_chains": (1, 16), "num_hops": (1, 32)}

    num_chains: int = 1
    num_hops: int = 4
    few_shot: bool = True
    """Prepend RULER's one-shot example (a short chain with 3-letter names)."""


@dataclass
class CWEConfig(_RulerOptions):
    """Common words extraction (RULER ``cwe``)."""

    RANGES = {"freq_cw": (2, 1000), "freq_ucw": (1, 1000), "num_cw": (1, 100)}

    freq_cw: int = 30
    freq_ucw: int = 3
    num_cw: int = 10
    few_shot: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.freq_ucw >= self.freq_cw:
            raise ValueError(f"freq_ucw must be < freq_cw={self.freq_cw}, got {self.freq_ucw}")


@dataclass
class FWEConfig(_RulerOptions):
    """Frequent words extraction (RULER ``fwe``): Zipf-distributed coded words."""

    RANGES = {"alpha": (1.01, 10.0)}

    alpha: float = 2.0


@dataclass
class QAConfig(_RulerOptions):
    """Multi-document QA (RULER ``qa``) over a local SQuAD v2 / HotpotQA file."""

    CHOICES = {"dataset": ("squad", "hotpotqa")}

    data_path: str | None = None
    """Local dataset file (SQuAD v2.0 dev JSON for qa_1, HotpotQA dev-distractor JSON for qa_2).
    Falls back to the environment variables ``LONGPOS_SQUAD`` / ``LONGPOS_HOTPOTQA``."""
    dataset: str = "squad"
    """``squad`` | ``hotpotqa``."""


# ---------------------------------------------------------------------------- helpers


def _gen_value(kind: str, rng: random.Random) -> str:
    if kind == "numbers":
        return str(rng.randint(10**6, 10**7 - 1))
    if kind == "words":
        return random_adjective_noun(rng)
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _distinct(kind: str, rng: random.Random, n: int, exclude: set[str]) -> list[str]:
    out: list[str] = []
    while len(out) < n:
        v = _gen_value(kind, rng)
        if v not in exclude:
            exclude.add(v)
            out.append(v)
    return out


def _join_keys(keys: list[str]) -> str:
    if len(keys) == 1:
        return keys[0]
    return ", ".join(keys[:-1]) + ", and " + keys[-1]


def _singular(text: str) -> str:
    text = text.replace("Some", "A").replace("are all", "is")
    text = re.sub(r"\bare\b", "is", text)
    return text.replace("answers", "answer")


def _add_context(
    b: TextBuilder,
    items: list[tuple[str, object | None]],
    joiner: str,
    render_needle: Any,
) -> None:
    first = True
    for text, payload in items:
        if not first:
            b.add(joiner)
        first = False
        if payload is None:
            b.add(text)
        else:
            render_needle(b, payload)


# ---------------------------------------------------------------------------- NIAH

NIAH_HEAD = (
    "Some special magic {tv} are hidden within the following text. Make sure to memorize it. "
    "I will quiz you about the {tv} afterwards.\n"
)
NIAH_TAIL = "\nWhat are all the special magic {tv} for {query} mentioned in the provided text?"
NIAH_PREFIX = " The special magic {tv} for {query} mentioned in the provided text are"


@text_task
def _niah_text(job: TextJob) -> Plan:
    cfg: NIAHConfig = job.cfg
    rng, depth = job.rng, job.depth
    k = max(cfg.num_keys, cfg.num_queries)
    used: set[str] = set()
    keys = _distinct(cfg.key_type, rng, k, used)
    values = [_distinct(cfg.value_type, rng, cfg.num_values, used) for _ in range(k)]
    needles = [(ki, vi) for ki in range(k) for vi in range(cfg.num_values)]
    rng.shuffle(needles)
    queried = rng.sample(range(k), cfg.num_queries)
    grid = list(DEPTH_GRID)
    depths = rng.sample(grid, len(needles)) if len(needles) <= len(grid) else None
    if depths is None:
        depths = [rng.choice(grid) for _ in needles]
    target = (queried[0], 0)
    j = needles.index(target)
    if depth is not None:
        depths[j] = depth
    placed: list[tuple[float, object]] = list(zip(depths, needles, strict=True))
    hay_rng = random.Random(rng.getrandbits(63))
    tv = cfg.value_type
    head, tail, prefix = NIAH_HEAD, NIAH_TAIL, NIAH_PREFIX
    if cfg.num_queries * cfg.num_values == 1:
        head, tail, prefix = _singular(head), _singular(tail), _singular(prefix)
        tv = tv[:-1]
    query = _join_keys([keys[q] for q in queried])
    stream = _niah_stream(cfg, hay_rng, used)

    def render_needle(b: TextBuilder, payload: object) -> None:
        ki, vi = cast(tuple[int, int], payload)
        b.add_tagged(
            [
                (f"One of the special magic {cfg.value_type} for ", None),
                (keys[ki], "key"),
                (" is: ", None),
                (values[ki][vi], "value" if ki in queried else "distractor_value"),
                (".", None),
            ],
            role="needle" if ki in queried else "distractor",
        )

    def build(size: int) -> Rendered:
        units = stream.take(size)
        return layout(
            head.format(tv=tv),
            lambda b: _add_context(b, insert_units(units, placed), stream.joiner, render_needle),
            tail.format(tv=tv, query=query),
            prefix.format(tv=tv, query=query),
            answers=[values[q][vi] for q in queried for vi in range(cfg.num_values)],
            depth=depths[j],
            meta={"haystack_units": len(units), "haystack": cfg.haystack},
        )

    return Plan(build, job.budget(TOKENS_TO_GENERATE["niah"]), hi=max(1, job.length // 2))


def _niah_stream(cfg: NIAHConfig, rng: random.Random, used: set[str]) -> HaystackStream:
    if cfg.haystack == "noise":
        return noise_stream()
    if cfg.haystack == "essay":
        return essay_stream(rng)
    if cfg.haystack == "repeat":
        return repeat_stream(cfg.repeat_sentence)
    taken = set(used)

    def nxt() -> list[str]:
        key = _distinct(cfg.key_type, rng, 1, taken)[0]
        val = _distinct(cfg.value_type, rng, 1, taken)[0]
        return f"One of the special magic {cfg.value_type} for {key} is: {val}.".split()

    # Pieces are words, so only the very last distractor can be cut short (tight fitting).
    return HaystackStream(nxt, "\n", kind="needle")


# ---------------------------------------------------------------------------- VT

VT_HEAD = "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n"
VT_TAIL = "\nQuestion: Find all variables that are assigned the value {query} in the text above."
VT_PREFIX = (
    " Answer: According to the chain(s) of variable assignment in the text above, {num_v} "
    "variables are assigned the value {query}, they are: "
)


def _vt_chains(
    rng: random.Random, num_chains: int, num_hops: int, name_len: int
) -> list[tuple[list[str], str]]:
    taken: set[str] = set()
    chains = []
    for _ in range(num_chains):
        names: list[str] = []
        while len(names) < num_hops + 1:
            nm = "".join(rng.choice(string.ascii_uppercase) for _ in range(name_len))
            if nm not in taken:
                taken.add(nm)
                names.append(nm)
        chains.append((names, str(rng.randint(10000, 99999))))
    return chains


def _vt_lines(names: list[str], value: str) -> list[tuple[str, str]]:
    """(line, defined name) pairs: ``VAR A = n.`` then ``VAR B = VAR A.``."""
    out = [(f"VAR {names[0]} = {value}.", names[0])]
    for a, b in zip(names, names[1:], strict=False):
        out.append((f"VAR {b} = VAR {a}.", b))
    return out


@text_task
def _vt_text(job: TextJob) -> Plan:
    cfg: VTConfig = job.cfg
    rng, depth = job.rng, job.depth
    chains = _vt_chains(rng, cfg.num_chains, cfg.num_hops, 5)
    placed: list[tuple[float, object]] = []
    d0 = depth if depth is not None else rng.choice(DEPTH_GRID[:-1])
    for ci, (names, value) in enumerate(chains):
        start = d0 if ci == 0 else rng.random()
        ds = [start] + sorted(rng.uniform(start, 1.0) for _ in range(len(names) - 1))
        for d, line in zip(ds, _vt_lines(names, value), strict=True):
            placed.append((d, (ci, line)))
    placed.sort(key=lambda x: x[0])
    example = ""
    if cfg.few_shot:
        ((ex_names, ex_value),) = _vt_chains(rng, 1, 2, 3)
        ex_lines = [ln for ln, _ in _vt_lines(ex_names, ex_value)]
        ex_ctx = "\n".join([" ".join(noise_stream().take(len(NOISE_BLOCK.split())))] + ex_lines)
        example = (
            VT_HEAD
            + ex_ctx
            + VT_TAIL.format(query=ex_value)
            + VT_PREFIX.format(num_v=len(ex_names), query=ex_value)
            + " ".join(ex_names)
            + "\n\n"
        )
    names0, value0 = chains[0]
    stream = noise_stream()

    def render_needle(b: TextBuilder, payload: object) -> None:
        ci, (line, defined) = cast(tuple[int, tuple[str, str]], payload)
        i = line.index(defined)
        role = "needle" if ci == 0 else "distractor"
        b.add_tagged(
            [
                (line[:i], None),
                (defined, "value" if ci == 0 else None),
                (line[i + len(defined) :], None),
            ],
            role=role,
        )

    def build(size: int) -> Rendered:
        units = stream.take(size)
        return layout(
            example + VT_HEAD,
            lambda b: _add_context(b, insert_units(units, placed), stream.joiner, render_needle),
            VT_TAIL.format(query=value0),
            VT_PREFIX.format(num_v=len(names0), query=value0),
            answers=list(names0),
            depth=d0,
            meta={"haystack_units": len(units), "chain_value": value0},
        )

    ttg = job.budget(TOKENS_TO_GENERATE["variable_tracking"])
    return Plan(build, ttg, hi=max(1, job.length // 2))


# ---------------------------------------------------------------------------- CWE

CWE_HEAD = (
    "Below is a numbered list of words. In these words, some appear more often than others. "
    "Memorize the ones that appear most often.\n"
)
CWE_TAIL = "\nQuestion: What are the {n} most common words in the above list?"
CWE_PREFIX = " Answer: The top {n} words that appear most often in the list are:"


def _numbered(words: list[str]) -> str:
    return " ".join(f"{i + 1}. {w}" for i, w in enumerate(words))


def _cwe_vocab(rng: random.Random, n: int) -> list[str]:
    vocab = list(common_vocabulary())
    rng.shuffle(vocab)
    seen = set(vocab)
    while len(vocab) < n:  # beyond ~8K words: adjective-noun compounds (RULER-like)
        w = random_adjective_noun(rng)
        if w not in seen:
            seen.add(w)
            vocab.append(w)
    return vocab


def _cwe_items(words: list[str], n_common: int, f_cw: int, f_ucw: int, seed: int) -> list[str]:
    items = [w for w in words[:n_common] for _ in range(f_cw)]
    items += [w for w in words[n_common:] for _ in range(f_ucw)]
    random.Random(seed).shuffle(items)
    return items


@text_task
def _cwe_text(job: TextJob) -> Plan:
    # RULER uses lighter frequencies below 4096 tokens; we also fall back to them when the
    # full regime does not fit (e.g. byte-level tokens, which are ~4x more per word).
    ttg = job.budget(TOKENS_TO_GENERATE["cwe"])
    if job.length >= 4096:
        plan = _cwe_plan(job, job.rng, ttg, small=False)
        plan.fallback = lambda: _cwe_plan(job, job.fresh_rng(), ttg, small=True)
        return plan
    return _cwe_plan(job, job.rng, ttg, small=True)


def _cwe_plan(job: TextJob, rng: random.Random, ttg: int, small: bool) -> Plan:
    cfg: CWEConfig = job.cfg
    length = job.length
    f_cw, f_ucw = (min(6, cfg.freq_cw), 1) if small else (cfg.freq_cw, cfg.freq_ucw)
    base = rng.getrandbits(63)
    n_cap = 200_000
    vocab = _cwe_vocab(rng, min(n_cap, cfg.num_cw + max(64, length // 2)))
    example = ""
    ex_words: list[str] = []
    if cfg.few_shot:
        ex_n, ex_f = (20, (3, 1)) if small else (40, (10, 3))
        ex_words = vocab[-ex_n:]
        ex_items = _cwe_items(ex_words, cfg.num_cw, ex_f[0], ex_f[1], derive_seed(base, "ex"))
        example = (
            CWE_HEAD
            + _numbered(ex_items)
            + CWE_TAIL.format(n=cfg.num_cw)
            + CWE_PREFIX.format(n=cfg.num_cw)
            + " "
            + _numbered(ex_words[: cfg.num_cw])
            + "\n\n"
        )
    pool = vocab[: len(vocab) - len(ex_words)]

    def build(size: int) -> Rendered:
        words = pool[: cfg.num_cw + size]
        items = _cwe_items(words, cfg.num_cw, f_cw, f_ucw, derive_seed(base, size))
        return layout(
            example + CWE_HEAD,
            lambda b: b.add(_numbered(items)),
            CWE_TAIL.format(n=cfg.num_cw),
            CWE_PREFIX.format(n=cfg.num_cw),
            answers=words[: cfg.num_cw],
            meta={"num_words": len(words), "freq": [f_cw, f_ucw], "small_regime": small},
        )

    return Plan(build, ttg, hi=max(1, length // 16), max_size=len(pool) - cfg.num_cw)


# ---------------------------------------------------------------------------- FWE

FWE_HEAD = (
    "Read the following coded text and track the frequency of each coded word. Find the three "
    "most frequently appeared coded words. "
)
FWE_TAIL = (
    "\nQuestion: Do not provide any explanation. Please ignore the dots '....'. What are the "
    "three most frequently appeared words in the above coded text?"
)
FWE_PREFIX = (
    " Answer: According to the coded text above, the three most frequently appeared words are:"
)


def _zeta(alpha: float, terms: int = 100_000) -> float:
    s = sum(k**-alpha for k in range(1, terms))
    # Euler-Maclaurin tail: integral + half the first omitted term.
    return s + terms ** (1 - alpha) / (alpha - 1) + 0.5 * terms**-alpha


@text_task
def _fwe_text(job: TextJob) -> Plan:
    cfg: FWEConfig = job.cfg
    ttg = job.budget(TOKENS_TO_GENERATE["fwe"])
    rng = job.rng
    n_vocab = max(6, (job.length - ttg) // 50)
    seen: set[str] = set()
    vocab: list[str] = []
    while len(vocab) < n_vocab:
        w = "".join(rng.choice(string.ascii_lowercase) for _ in range(6))
        if w not in seen:
            seen.add(w)
            vocab.append(w)
    vocab.sort()
    rng.shuffle(vocab)
    vocab[0] = "...."
    z = _zeta(cfg.alpha)
    base = rng.getrandbits(63)

    def counts(n: int) -> list[int]:
        return [int(n * (k + 1) ** -cfg.alpha / z) for k in range(len(vocab))]

    lo = 1
    while not (counts(lo)[1] > counts(lo)[2] > counts(lo)[3] > counts(lo)[4]):
        lo += 1

    def build(size: int) -> Rendered:
        n = lo + size
        items = [w for w, c in zip(vocab, counts(n), strict=True) for _ in range(c)]
        random.Random(derive_seed(base, size)).shuffle(items)
        return layout(
            FWE_HEAD,
            lambda b: b.add(" ".join(items)),
            FWE_TAIL,
            FWE_PREFIX,
            answers=vocab[1:4],
            meta={"n": n, "counts_top5": counts(n)[:5]},
        )

    return Plan(build, ttg, hi=max(1, job.length // 8))


# ---------------------------------------------------------------------------- QA

QA_HEAD = (
    "Answer the question based on the given documents. Only give me the answer and do not "
    "output any other words.\n\nThe following are given documents.\n\n"
)
QA_TAIL = (
    "\n\nAnswer the question based on the given documents. Only give me the answer and do not "
    "output any other words.\n\nQuestion: {query}"
)
QA_PREFIX = " Answer:"


class MissingDataError(FileNotFoundError):
    """A task needs a local dataset file that was not given or does not exist."""


_QA_FILES = {
    "squad": (
        "LONGPOS_SQUAD",
        "the SQuAD v2.0 dev set JSON ('dev-v2.0.json' from the SQuAD website)",
    ),
    "hotpotqa": (
        "LONGPOS_HOTPOTQA",
        "the HotpotQA dev distractor JSON ('hotpot_dev_distractor_v1.json' from the HotpotQA site)",
    ),
}


@dataclass
class QAData:
    docs: list[str]
    # (question, answers, gold doc indices, same-source doc indices)
    questions: list[tuple[str, list[str], list[int], list[int]]] = field(default_factory=list)


def _qa_path(task: str, cfg: QAConfig) -> Path:
    env, what = _QA_FILES[cfg.dataset]
    p = cfg.data_path or os.environ.get(env)
    if not p:
        raise MissingDataError(
            f"task {task!r} needs {what} as a local file, because longpos never downloads data: "
            f"pass data_path='/path/to/file.json' (option data_path) or set ${env}"
        )
    path = Path(p).expanduser()
    if not path.is_file():
        raise MissingDataError(
            f"task {task!r}: data file {path} does not exist; it should be {what}"
        )
    return path


@functools.lru_cache(maxsize=4)
def load_qa_data(path: str, dataset: str, mtime: float = 0.0) -> QAData:
    """Read SQuAD v2 (``{"data": [...]}``) or HotpotQA (a list of examples) JSON."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read {dataset} JSON from {path}: {e}") from e
    data = QAData(docs=[])
    index: dict[str, int] = {}

    def doc_id(text: str) -> int:
        if text not in index:
            index[text] = len(data.docs)
            data.docs.append(text)
        return index[text]

    try:
        if dataset == "squad":
            for article in raw["data"]:
                ids = [doc_id(p["context"]) for p in article["paragraphs"]]
                for p, pid in zip(article["paragraphs"], ids, strict=True):
                    for qa in p["qas"]:
                        answers = list(dict.fromkeys(a["text"] for a in qa.get("answers", [])))
                        if qa.get("is_impossible") or not answers:
                            continue
                        data.questions.append((qa["question"], answers, [pid], ids))
        else:
            for ex in raw:
                ids = [doc_id(f"{title}\n{''.join(sents)}") for title, sents in ex["context"]]
                titles = [t for t, _ in ex["context"]]
                gold_titles = {t for t, _ in ex.get("supporting_facts", [])}
                gold = [i for i, t in zip(ids, titles, strict=True) if t in gold_titles] or ids[:1]
                data.questions.append((ex["question"], [ex["answer"]], gold, ids))
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(
            f"{path} is not in the {dataset} JSON layout expected by this task ({e!r}); "
            f"supply {_QA_FILES[dataset][1]}"
        ) from e
    if not data.questions:
        raise ValueError(f"{path}: no answerable questions found")
    return data


@text_task
def _qa_text(job: TextJob) -> Plan:
    cfg: QAConfig = job.cfg
    path = _qa_path(job.spec.name, cfg)
    data = load_qa_data(str(path), cfg.dataset, path.stat().st_mtime)
    ttg = job.budget(TOKENS_TO_GENERATE["qa"])
    rng, depth = job.rng, job.depth
    question, answers, gold, same = data.questions[rng.randrange(len(data.questions))]
    near = [i for i in same if i not in gold]
    rng.shuffle(near)
    others = [i for i in rng.sample(range(len(data.docs)), min(len(data.docs), 4000))]
    distract = list(dict.fromkeys(near + [i for i in others if i not in gold]))
    base = rng.getrandbits(63)
    d = depth if depth is not None else rng.random()

    def build(size: int) -> Rendered:
        chosen = distract[:size]
        order = list(chosen)
        random.Random(derive_seed(base, size)).shuffle(order)
        at = round(d * len(order))
        order[at:at] = gold
        return layout(
            QA_HEAD,
            lambda b: _add_documents(b, data.docs, order, gold, answers),
            QA_TAIL.format(query=question),
            QA_PREFIX,
            answers=answers,
            depth=d,
            meta={"num_docs": len(order), "question": question},
        )

    return Plan(build, ttg, hi=max(1, job.length // 200), max_size=len(distract))


def _add_documents(
    b: TextBuilder, docs: list[str], order: list[int], gold: list[int], answers: list[str]
) -> None:
    """``Document i:`` blocks; a gold document is a needle, its first answer hit the value."""
    for i, di in enumerate(order):
        if i:
            b.add("\n\n")
        text = docs[di]
        if di in gold:
            hit = next((a for a in answers if a in text), None)
            if hit is not None:
                k = text.index(hit)
                b.add_tagged(
                    [
                        (f"Document {i + 1}:\n{text[:k]}", None),
                        (hit, "value"),
                        (text[k + len(hit) :], None),
                    ],
                    role="needle",
                )
            else:
                b.add(f"Document {i + 1}:\n{text}", "needle")
        else:
            b.add(f"Document {i + 1}:\n{text}")


# ---------------------------------------------------------------------------- registry

_NIAH: dict[str, dict[str, Any]] = {
    "niah_single_1": dict(haystack="noise", key_type="words", value_type="numbers"),
    "niah_single_2": dict(haystack="essay", key_type="words", value_type="numbers"),
    "niah_single_3": dict(haystack="essay", key_type="words", value_type="uuids"),
    "niah_multikey_1": dict(haystack="essay", key_type="words", value_type="numbers", num_keys=4),
    "niah_multikey_2": dict(haystack="needle", key_type="words", value_type="numbers"),
    "niah_multikey_3": dict(haystack="needle", key_type="uuids", value_type="uuids"),
    "niah_multivalue": dict(haystack="essay", key_type="words", value_type="numbers", num_values=4),
    "niah_multiquery": dict(
        haystack="essay", key_type="words", value_type="numbers", num_queries=4
    ),
}
_EXACT = {"niah_single_1", "niah_multikey_2", "niah_multikey_3", "vt", "fwe"}


def _register(
    name: str,
    family: str,
    config_cls: type,
    text_fn: Any,
    token_fn: Any,
    description: str,
    *,
    metric: str = "string_match_all",
    defaults: dict[str, Any] | None = None,
    ruler_like: bool = False,
) -> None:
    register_task(
        TaskSpec(
            name=name,
            family=family,
            metric=metric,
            config_cls=config_cls,
            defaults={} if defaults is None else defaults,
            text_fn=text_fn,
            token_fn=token_fn,
            description=description,
            ruler_like=ruler_like,
        )
    )


for _name, _d in _NIAH.items():
    _register(
        _name, "niah", NIAHConfig, _niah_text, symbolic.niah_tokens,
        f"RULER {_name}: retrieve the value(s) of the queried key(s) "
        f"({_d['haystack']} haystack, {_d['key_type']} keys, {_d['value_type']} values)",
        defaults=_d, ruler_like=_name not in _EXACT,
    )  # fmt: skip
_register("vt", "variable_tracking", VTConfig, _vt_text, symbolic.vt_tokens,
          "RULER vt: name every variable of a 4-hop assignment chain hidden in noise")  # fmt: skip
_register("cwe", "cwe", CWEConfig, _cwe_text, symbolic.cwe_tokens,
          "RULER cwe: the 10 most common words of a long numbered list", ruler_like=True)  # fmt: skip
_register("fwe", "fwe", FWEConfig, _fwe_text, symbolic.fwe_tokens,
          "RULER fwe: the 3 most frequent coded words of a Zipf-distributed text")  # fmt: skip
_register("qa_1", "qa", QAConfig, _qa_text, symbolic.qa_tokens,
          "RULER qa_1: SQuAD v2 question over many documents (local file required)",
          metric="string_match_part", defaults={"dataset": "squad"})  # fmt: skip
_register("qa_2", "qa", QAConfig, _qa_text, symbolic.qa_tokens,
          "RULER qa_2: HotpotQA multi-hop question over many documents (local file required)",
          metric="string_match_part", defaults={"dataset": "hotpotqa"})  # fmt: skip

RULER_TASKS: tuple[str, ...] = (*_NIAH, "vt", "cwe", "fwe", "qa_1", "qa_2")
