"""Summaries of repeated timings.

A shared machine drifts by tens of percent from one minute to the next, so a
figure is never one run: it is a median or a percentile over many, and it is set
beside a baseline measured in the same run (see ``ratio``).
"""

from __future__ import annotations

import math
import time
from typing import Callable


def percentile(samples: list[float], p: float) -> float:
    """Nearest-rank percentile: the smallest sample that ``p`` percent of samples do not exceed."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def summary(seconds: list[float]) -> dict:
    """Milliseconds, rounded to what a shared machine can tell apart."""
    if not seconds:
        return {"n": 0}
    return {
        "n": len(seconds),
        "median_ms": round(percentile(seconds, 50) * 1000, 3),
        "p95_ms": round(percentile(seconds, 95) * 1000, 3),
        "p99_ms": round(percentile(seconds, 99) * 1000, 3),
        "max_ms": round(max(seconds) * 1000, 3),
    }


def repeat(work: Callable[[], object], runs: int) -> list[float]:
    """Seconds taken by each of ``runs`` calls of ``work``."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return times


def ratio(value: float, baseline: float) -> float | None:
    return round(value / baseline, 2) if baseline > 0 else None
