"""Table question answering in the style of HybridQA (Chen et al. 2020, "HybridQA: A Dataset
of Multi-Hop Question Answering over Tabular and Textual Data", arXiv 2004.07347).

"HybridQA-like", generated offline: a markdown table of entities (wonderwords adjective-noun
names) with numeric and categorical columns, optionally followed by one linked passage per
entity ("X is known for its Y."). Question types: ``lookup`` (a cell), ``compare`` (which of
two rows has the larger value), ``count`` (rows meeting a condition), ``aggregate`` (the sum
of a column over rows meeting a condition) and ``multihop`` (the passage fact of the row
with the largest value: table, then text). Answers come from the generator; the metric is
SQuAD-normalised substring match. The number of rows grows with the target length, and rows
are a seeded stream, so a longer table extends a shorter one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from longpos.data.words import nouns, random_adjective_noun
from longpos.tasks._render import Plan, TextJob, layout, text_task
from longpos.tasks.base import TaskSpec, derive_seed, register_task
from longpos.tasks.fitting import Rendered, TextBuilder

__all__ = ["TableConfig", "QUESTION_TYPES", "COLUMNS"]

QUESTION_TYPES = ("lookup", "compare", "count", "aggregate", "multihop")
NUMERIC = {"population": (100, 99999), "area": (10, 9999), "founded": (1700, 2020)}
CATEGORICAL = {
    "region": ("north", "south", "east", "west", "central"),
    "color": ("red", "blue", "green", "yellow", "purple", "orange"),
}
COLUMNS = ("name", *NUMERIC, *CATEGORICAL)


@dataclass
class TableConfig:
    """Table QA options."""

    question_type: str = "lookup"
    """One of ``lookup``, ``compare``, ``count``, ``aggregate``, ``multihop``."""
    passages: bool = False
    """Append one linked passage per entity (always on for ``multihop``)."""
    min_rows: int = 2

    def __post_init__(self) -> None:
        if self.question_type not in QUESTION_TYPES:
            raise ValueError(
                f"question_type must be one of {QUESTION_TYPES}, got {self.question_type!r}"
            )
        if not isinstance(self.min_rows, int) or not 2 <= self.min_rows <= 100_000:
            raise ValueError(f"min_rows must be an int in [2, 100000], got {self.min_rows!r}")


class _Rows:
    """A seeded, lazily extended stream of distinct rows."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.rows: list[dict[str, Any]] = []
        self.names: set[str] = set()

    def take(self, n: int) -> list[dict[str, Any]]:
        while len(self.rows) < n:
            name = random_adjective_noun(self.rng).replace("-", " ").title()
            if name in self.names:
                continue
            self.names.add(name)
            row: dict[str, Any] = {"name": name}
            for c, (lo, hi) in NUMERIC.items():
                row[c] = self.rng.randint(lo, hi)
            for c, vals in CATEGORICAL.items():
                row[c] = self.rng.choice(vals)
            row["known_for"] = self.rng.choice(nouns())
            self.rows.append(row)
        return self.rows[:n]


def _question(
    qtype: str, rows: list[dict[str, Any]], rng: random.Random, depth: float | None
) -> tuple[str, str, int | None]:
    """(question, answer, evidence row index or None)."""
    r = len(rows)
    i = min(r - 1, round(depth * (r - 1))) if depth is not None else rng.randrange(r)
    if qtype == "lookup":
        col = rng.choice([*NUMERIC, *CATEGORICAL])
        return f"What is the {col} of {rows[i]['name']}?", str(rows[i][col]), i
    if qtype == "compare":
        col = rng.choice(list(NUMERIC))
        js = [j for j in range(r) if j != i and rows[j][col] != rows[i][col]]
        j = rng.choice(js) if js else (i + 1) % r
        a, b = (i, j) if rng.random() < 0.5 else (j, i)
        word = "later" if col == "founded" else "larger"
        win = a if rows[a][col] > rows[b][col] else b
        return (
            f"Which has the {word} {col}, {rows[a]['name']} or {rows[b]['name']}?",
            rows[win]["name"],
            i,
        )
    col = rng.choice(list(CATEGORICAL))
    val = rows[i][col]
    if qtype == "count":
        n = sum(row[col] == val for row in rows)
        return f"How many entities have {col} {val}?", str(n), None
    if qtype == "aggregate":
        num = rng.choice(["population", "area"])
        tot = sum(row[num] for row in rows if row[col] == val)
        return f"What is the total {num} of the entities whose {col} is {val}?", str(tot), None
    num = rng.choice(list(NUMERIC))
    best = max(range(r), key=lambda k: rows[k][num])
    word = "latest" if num == "founded" else "largest"
    return f"What is the entity with the {word} {num} known for?", rows[best]["known_for"], best


@text_task
def _table_text(job: TextJob) -> Plan:
    cfg: TableConfig = job.cfg
    rng = job.rng
    stream = _Rows(random.Random(rng.getrandbits(63)))
    base = rng.getrandbits(63)
    passages = cfg.passages or cfg.question_type == "multihop"
    cols = list(COLUMNS)
    intro = "Answer the question based on the table" + (" and the passages" if passages else "")
    intro += ". Only give the answer.\n\n"

    def build(extra: int) -> Rendered:
        rows = stream.take(cfg.min_rows + extra)
        q, ans, ev = _question(
            cfg.question_type, rows, random.Random(derive_seed(base, len(rows))), job.depth
        )

        def context(b: TextBuilder) -> None:
            b.add("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n")
            for k, row in enumerate(rows):
                line = "| " + " | ".join(str(row[c]) for c in cols) + " |\n"
                b.add(line, "needle" if k == ev else None)
            if passages:
                b.add("\nPassages:\n")
                for row in rows:
                    b.add(f"{row['name']} is known for its {row['known_for']}.\n")

        return layout(
            intro, context, f"\nQuestion: {q}", "\nAnswer:", answers=[ans], answer_prefix=" Answer:",
            depth=None if ev is None else ev / max(1, len(rows) - 1),
            meta={"num_rows": len(rows), "question": q, "question_type": cfg.question_type},
        )  # fmt: skip

    return Plan(build, job.budget(32), hi=max(1, job.length // 40))


for _qt in QUESTION_TYPES:
    register_task(
        TaskSpec(
            name=f"table_{_qt}",
            family="table",
            metric="normalized_em",
            config_cls=TableConfig,
            defaults={"question_type": _qt},
            text_fn=_table_text,
            token_fn=None,
            ruler_like=True,
            description=f"HybridQA-like table QA: {_qt} questions over a markdown table",
        )  # fmt: skip
    )
