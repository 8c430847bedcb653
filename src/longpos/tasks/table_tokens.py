"""Token-level table lookup, ``table_tokens``: a linearised table over symbols.

Token level only (for tiny from-scratch models; the text version is ``table_lookup`` in
:mod:`longpos.tasks.tables`). It imitates the linearised tables of HybridQA-style table QA
(arXiv 2004.07347), where RePo (arXiv 2512.14391) reports gains on linearised tables and
graphs, in the dense symbolic style of Zoology's MQAR (arXiv 2312.04927): keys and values come
from disjoint symbol ranges and training asks many questions per sequence.

Layout, with ``C = cols`` (here ``C = 2``)::

    BOS  KEY r1 c0 v c1 v SEP  [filler]  KEY r2 c0 v c1 v SEP ... [filler]  QUERY r c ANS v ...

- a row is ``KEY r c0 v_0 .. c_{C-1} v_{C-1} SEP`` (``3 + 2C`` tokens; the ``KEY`` marker
  opens a record); every row lists the columns in the same order;
- symbols, with ``N = num_symbols``: column ids are the fixed symbols ``s0 .. s{C-1}`` (the
  first 8 symbols are reserved for columns), row keys are distinct symbols from
  ``s8 .. s{N//2 - 1}``, cell values are drawn with replacement from ``s{N//2} .. s{N-1}``
  (MQAR's value half);
- a question is ``QUERY r c ANS`` and its answer is the one cell value ``v`` of row ``r``,
  column ``c``; with ``answer_marker=False`` it is ``QUERY r c`` and the answer follows the
  column id directly (``QUERY r c v``), as the cell follows it in the row;
- with ``row_key_per_cell=True`` every cell carries its row key: a row is ``KEY c0 r v_0 ..
  c_{C-1} r v_{C-1} SEP`` (``2 + 3C`` tokens) and a question is ``QUERY c r ANS`` (``QUERY c
  r`` without the marker), so the token before each value is its row key and the one before
  that its column, the two-symbol key of ``order_tokens`` (the CPU calibration setting; see
  ``benchmarks/results/calibration-cpu/``);
- filler is i.i.d. random content symbols; ``filler="between"`` scatters it at random between
  the rows, ``filler="after"`` puts it in one block between the table and the questions.

Rows: ``rows=None`` sizes the table to about half the sequence (``((length - 1) // 2) //
(3 + 2C)`` rows, at most the number of distinct keys), so longer sequences get larger tables;
``rows=R`` fixes the table size, so a longer eval length adds only filler noise (longer context,
same table).

Training (:func:`table_example`, dense supervision): the table and filler take the first half
of the sequence and questions about random (row, column) pairs, drawn with replacement, fill
the second half; every answer token is marked in the mask. An eval sample has the same table
at the same length, filler for the rest, and exactly one question at the very end (metric
``token_accuracy``); ``depth`` picks the asked row (0 = first row, 1 = last row).
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

__all__ = ["TableTokensConfig", "table_example"]

NAME = "table_tokens"
MAX_COLS = 8
"""Symbols ``s0 .. s7`` are the column ids."""
QA_LEN = 5
"""``QUERY r c ANS v`` (``answer_marker=False``: ``QUERY r c v``, 4 tokens)."""


@dataclass
class TableTokensConfig(rec.RecordsConfig):
    """Options of ``table_tokens``."""

    QA_LEN: ClassVar[int] = QA_LEN

    rows: int | None = None
    """Table rows; ``None``: about half the sequence, ``((length - 1) // 2) // (3 + 2 * cols)``
    rows (at most ``num_symbols // 2 - 8``); an int fixes the table at every length."""
    cols: int = 2
    """Columns per row, in [1, 8]."""
    filler: str = "between"
    """Where the random-symbol filler goes: ``between`` the rows (scattered at random) or
    ``after`` the table (one block before the question)."""
    row_key_per_cell: bool = False
    """Repeat the row key before each cell value (``KEY c0 r v0 c1 r v1 SEP``) and ask
    ``QUERY c r``; ``False``: the row key once, ``KEY r c0 v0 c1 v1 SEP``, and ``QUERY r c``."""

    def __post_init__(self) -> None:
        check_num_symbols(self.num_symbols, 32, NAME)
        if not isinstance(self.row_key_per_cell, bool):
            raise ValueError(
                f"table_tokens: row_key_per_cell must be a bool, got {self.row_key_per_cell!r}"
            )
        if not isinstance(self.cols, int) or not 1 <= self.cols <= MAX_COLS:
            raise ValueError(f"table_tokens: cols must be an int in [1, 8], got {self.cols!r}")
        if self.rows is not None and not (
            isinstance(self.rows, int) and 1 <= self.rows <= self.max_rows
        ):
            raise ValueError(
                f"table_tokens: rows must be None or an int in [1, num_symbols // 2 - 8 = "
                f"{self.max_rows}], got {self.rows!r}"
            )
        self.check_records_options(NAME)

    @property
    def max_rows(self) -> int:
        """Distinct row keys available: symbols ``s8 .. s{num_symbols // 2 - 1}``."""
        return self.num_symbols // 2 - MAX_COLS

    @property
    def row_len(self) -> int:
        return 2 + 3 * self.cols if self.row_key_per_cell else 3 + 2 * self.cols

    def cell(self, column: int, row_key: int, value: int) -> list[int]:
        """One cell's tokens in a row."""
        return [column, row_key, value] if self.row_key_per_cell else [column, value]

    def value_offset(self, c: int) -> int:
        """Offset of column ``c``'s value from the row's ``KEY``."""
        return 3 + 3 * c if self.row_key_per_cell else 3 + 2 * c

    def rows_for(self, length: int) -> int:
        if self.rows is not None:
            return self.rows
        return rec.default_records(length, self.row_len, 1, self.max_rows)


@dataclass
class _Built:
    ids: list[int]
    mask: list[bool]
    starts: list[int]
    """Offset of each row in ``ids``."""
    last: tuple[int, int]
    """(row, column) of the last question."""
    filler: int


def _build(
    cfg: TableTokensConfig, length: int, rng: random.Random, depth: float | None, dense: bool
) -> _Built:
    v = cfg.vocab
    n_rows = cfg.rows_for(length)
    filler, n_q = rec.budget(NAME, length, n_rows, cfg.row_len, cfg.qa_len, dense)
    half = v.num_symbols // 2
    keys = [v.sym(i) for i in rng.sample(range(MAX_COLS, half), n_rows)]
    col_ids = [v.sym(j) for j in range(cfg.cols)]
    cells = [[v.value_sym(rng) for _ in range(cfg.cols)] for _ in range(n_rows)]
    rows = [
        [KEY, *([] if cfg.row_key_per_cell else [k]),
         *(t for c, x in zip(col_ids, row, strict=True) for t in cfg.cell(c, k, x)), SEP]
        for k, row in zip(keys, cells, strict=True)
    ]  # fmt: skip
    ctx, starts = rec.render(
        rows, rec.gaps(rng, n_rows, filler, cfg.filler), v, rng, cfg.distractor_noise
    )
    ids = [BOS, *ctx]
    mask = [False] * len(ids)
    asked = (0, 0)
    for _ in range(n_q):
        if not dense and depth is not None:
            r = min(n_rows - 1, round(depth * (n_rows - 1)))
        else:
            r = rng.randrange(n_rows)
        c = rng.randrange(cfg.cols)
        key = [col_ids[c], keys[r]] if cfg.row_key_per_cell else [keys[r], col_ids[c]]
        ids += [QUERY, *key, *([ANS] if cfg.answer_marker else []), cells[r][c]]
        mask += [False] * (cfg.qa_len - 1) + [True]
        asked = (r, c)
    return _Built(ids, mask, [s + 1 for s in starts], asked, filler)


def table_example(
    length: int, seed: int, cfg: TableTokensConfig, dense: bool = True
) -> tuple[list[int], list[bool]]:
    """One training sequence ``(ids, mask)`` of exactly ``length`` tokens (see
    :func:`longpos.tasks._token_records.training_example`)."""
    return rec.training_example(_build, NAME, length, seed, cfg, dense)


def _describe(cfg: TableTokensConfig, b: _Built) -> tuple[float, list[NeedleSpan], dict[str, Any]]:
    r, c = b.last
    s = b.starts[r]
    n_rows = len(b.starts)
    value = s + cfg.value_offset(c)
    key = value - 1 if cfg.row_key_per_cell else s + 1  # the row key nearest the value
    needles = [
        NeedleSpan("needle", "", -1, -1, s, s + cfg.row_len),
        NeedleSpan("key", "", -1, -1, key, key + 1),
        NeedleSpan("value", "", -1, -1, value, value + 1),
    ]
    meta = {"rows": n_rows, "cols": cfg.cols, "filler_tokens": b.filler, "row": r, "col": c}
    return r / max(1, n_rows - 1), needles, meta


rec.register(
    NAME, "table", TableTokensConfig, _build, _describe, table_example,
    qa_len=lambda cfg: cfg.qa_len,
    description="linearised symbol table: QUERY row col ANS -> the cell (token level, dense)",
)  # fmt: skip
