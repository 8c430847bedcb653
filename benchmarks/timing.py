"""Side-by-side timing for the benchmarks: alternate the contenders every round.

Machines here are shared and noisy; timing A then B in rotating order each round makes
drift hit both alike, and the median of per-round ratios is robust to outliers. The spread
of those ratios (min, quartiles, max) is returned beside the median so that a reader can
tell an overhead from the noise.

Clocks: ``wall`` (``time.perf_counter``, what a user waits for) or ``cpu``
(``time.process_time``, the CPU seconds of this process: far less sensitive to other jobs
taking the cores, most faithful with one intra-op thread).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


def spread(values: list[float]) -> dict[str, float]:
    """min, first quartile, median, third quartile, max of ``values`` (not empty)."""
    ordered = sorted(values)
    if len(ordered) >= 2:
        q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
    else:
        q1 = q3 = ordered[0]
    return {
        "min": ordered[0],
        "q1": q1,
        "median": statistics.median(ordered),
        "q3": q3,
        "max": ordered[-1],
    }


def alternate(
    steps: dict[str, Callable[[], float]], rounds: int, warmup: int, baseline: str
) -> dict[str, object]:
    """Run each ``steps[name]()`` (returning seconds) ``warmup`` times, then ``rounds`` times
    in rotating order. Returns per-name times and medians, every contender's per-round ratios
    to ``baseline``, their median and their spread (:func:`spread`), and the spread of each
    name's times (noise only adds time: the ratio of minima or of first quartiles is a second
    estimate, less sensitive to a busy machine)."""
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
        "ratios": ratios,
        "median_ratios": {name: statistics.median(r) for name, r in ratios.items()},
        "ratio_spread": {name: spread(r) for name, r in ratios.items() if r},
        "time_spread": {name: spread(t) for name, t in times.items() if t},
    }


def format_spread(s: dict[str, float]) -> str:
    """``median (IQR q1..q3, range min..max)`` with three decimals."""
    return (
        f"{s['median']:.3f} (IQR {s['q1']:.3f}..{s['q3']:.3f}, "
        f"range {s['min']:.3f}..{s['max']:.3f})"
    )
