"""Side-by-side timing for the benchmarks: alternate the contenders every round.

Machines here are shared and noisy; timing A then B in rotating order each round makes
drift hit both alike, and the median of per-round ratios is robust to outliers.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable


def alternate(
    steps: dict[str, Callable[[], float]], rounds: int, warmup: int, baseline: str
) -> dict[str, object]:
    """Run each ``steps[name]()`` (returning seconds) ``warmup`` times, then ``rounds`` times
    in rotating order. Returns per-name times and medians, and the median per-round ratio
    of every contender to ``baseline``."""
    names = list(steps)
    for _ in range(warmup):
        for name in names:
            steps[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    ratios: dict[str, list[float]] = {name: [] for name in names if name != baseline}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        got = {name: steps[name]() for name in order}
        for name, seconds in got.items():
            times[name].append(seconds)
        for name in ratios:
            ratios[name].append(got[name] / got[baseline])
    return {
        "times": times,
        "medians": {name: statistics.median(t) for name, t in times.items()},
        "median_ratios": {name: statistics.median(r) for name, r in ratios.items()},
    }
