"""Small Markdown helpers for reports (tables, number formatting)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = ["markdown_table", "format_number"]


def format_number(value: Any, digits: int = 1) -> str:
    """Numbers with ``digits`` decimals, ``-`` for missing / NaN, other values as ``str``."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def _cell(value: Any, digits: int) -> str:
    text = format_number(value, digits)
    # A pipe would split the cell; newlines would end the row.
    return text.replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def markdown_table(
    headers: Sequence[Any],
    rows: Sequence[Sequence[Any]],
    align: str | Sequence[str] | None = None,
    digits: int = 1,
) -> str:
    """A GitHub-flavoured Markdown table (no trailing newline).

    ``align``: one letter per column, ``l`` / ``r`` / ``c`` (default: ``l`` for the first
    column, ``r`` for the others). Floats get ``digits`` decimals; ``None`` / NaN print ``-``.
    """
    ncol = len(headers)
    if ncol == 0:
        raise ValueError("a table needs at least one column")
    for i, row in enumerate(rows):
        if len(row) != ncol:
            raise ValueError(f"row {i} has {len(row)} cells but the table has {ncol} columns")
    if align is None:
        align = "l" + "r" * (ncol - 1)
    if len(align) != ncol or any(a not in "lrc" for a in align):
        raise ValueError(f"align must give one of l/r/c per column ({ncol}); got {align!r}")
    rule = {"l": ":---", "r": "---:", "c": ":---:"}
    lines = [
        "| " + " | ".join(_cell(h, digits) for h in headers) + " |",
        "| " + " | ".join(rule[a] for a in align) + " |",
    ]
    lines += ["| " + " | ".join(_cell(c, digits) for c in row) + " |" for row in rows]
    return "\n".join(lines)
