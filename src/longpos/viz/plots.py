"""PNG plots for reports (matplotlib, Agg backend; files written atomically)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from longpos.io import atomic_write

__all__ = ["plot_accuracy_vs_length", "plot_heatmap", "save_figure"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, out_png: str | Path, dpi: int = 110) -> Path:
    """Save a matplotlib figure as PNG atomically, then close it."""
    plt = _pyplot()
    out = Path(out_png)
    try:
        atomic_write(out, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))
    finally:
        plt.close(fig)
    return out


def _is_pow2_grid(lengths: Sequence[int]) -> bool:
    return len(lengths) > 1 and all(n > 0 and (n & (n - 1)) == 0 for n in lengths)


def plot_accuracy_vs_length(
    results: Mapping[str, Mapping[int, float]],
    out_png: str | Path,
    title: str,
    *,
    ylabel: str = "accuracy (%)",
    train_length: int | None = None,
    ylim: tuple[float, float] | None = (0.0, 100.0),
) -> Path:
    """One line per model: ``results[model][length] -> accuracy``.

    Lengths on a log2 axis when they are all powers of two; a dashed vertical line marks
    ``train_length`` if given. Missing points are skipped. Returns the PNG path.
    """
    if not results:
        raise ValueError("no results to plot")
    plt = _pyplot()
    all_lengths = sorted({int(n) for curve in results.values() for n in curve})
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    markers = "osD^vP*Xh<>"
    for k, (model, curve) in enumerate(results.items()):
        pts = sorted(
            (int(n), float(v))
            for n, v in curve.items()
            if v is not None and not math.isnan(float(v))
        )
        if not pts:
            continue
        ax.plot(
            [p[0] for p in pts], [p[1] for p in pts],
            marker=markers[k % len(markers)], label=str(model),
        )  # fmt: skip
    if _is_pow2_grid(all_lengths):
        ax.set_xscale("log", base=2)
    if all_lengths:
        ax.set_xticks(all_lengths)
        ax.set_xticklabels([str(n) for n in all_lengths], rotation=0)
        ax.minorticks_off()
    if train_length is not None:
        ax.axvline(train_length, color="0.5", ls="--", lw=1, label=f"train length {train_length}")
    if ylim is not None:
        lo, hi = ylim
        ax.set_ylim(lo - 0.03 * (hi - lo), hi + 0.03 * (hi - lo))
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, out_png)


def plot_heatmap(
    scores: Mapping[str, Mapping[int, float]],
    out_png: str | Path,
    title: str,
    *,
    vmin: float = 0.0,
    vmax: float = 100.0,
    label: str = "accuracy (%)",
) -> Path:
    """Task x length heatmap: ``scores[task][length] -> value`` with the values written in
    the cells (blank where missing). Returns the PNG path."""
    if not scores:
        raise ValueError("no scores to plot")
    plt = _pyplot()
    import numpy as np

    tasks = list(scores)
    lengths = sorted({int(n) for row in scores.values() for n in row})
    grid = np.full((len(tasks), len(lengths)), np.nan)
    for i, task in enumerate(tasks):
        for j, n in enumerate(lengths):
            v = scores[task].get(n, scores[task].get(str(n)))  # type: ignore[call-overload]
            if v is not None:
                grid[i, j] = float(v)
    fig, ax = plt.subplots(
        figsize=(1.6 + 0.9 * max(3, len(lengths)), 1.2 + 0.42 * max(2, len(tasks)))
    )
    image = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", vmin=vmin, vmax=vmax,
                      aspect="auto")  # fmt: skip
    ax.set_xticks(range(len(lengths)))
    ax.set_xticklabels([str(n) for n in lengths])
    ax.set_yticks(range(len(tasks)))
    ax.set_yticklabels(tasks)
    ax.set_xlabel("context length (tokens)")
    mid = (vmin + vmax) / 2
    for i in range(len(tasks)):
        for j in range(len(lengths)):
            if not np.isnan(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.0f}", ha="center", va="center", fontsize=8,
                        color="black" if grid[i, j] > mid else "white")  # fmt: skip
    fig.colorbar(image, ax=ax, label=label)
    ax.set_title(title)
    fig.tight_layout()
    return save_figure(fig, out_png)
