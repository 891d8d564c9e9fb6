"""Percentiles and histograms over plain lists (no numpy: the load tester stays light)."""

from __future__ import annotations

import math
from collections.abc import Sequence

PERCENTILES = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))


def summary_ms(seconds: Sequence[float]) -> dict[str, float | None]:
    """p50/p95/p99/max in milliseconds (nearest rank); None for an empty sample."""
    if not seconds:
        return {"p50": None, "p95": None, "p99": None, "max": None, "n": 0}
    values = sorted(seconds)
    n = len(values)
    out: dict[str, float | None] = {
        name: round(values[min(n - 1, max(0, math.ceil(q * n) - 1))] * 1000, 3)
        for name, q in PERCENTILES
    }
    out["max"] = round(values[-1] * 1000, 3)
    out["n"] = n
    return out


def log_histogram(
    seconds: Sequence[float], *, lo_ms: float = 0.1, hi_ms: float = 10_000, per_decade: int = 8
) -> list[tuple[float, float, int]]:
    """Counts in log-spaced buckets: (lower ms, upper ms, count); the ends catch the rest."""
    decades = math.log10(hi_ms / lo_ms)
    nb = max(1, round(decades * per_decade))
    edges = [lo_ms * 10 ** (i / per_decade) for i in range(nb + 1)]
    counts = [0] * nb
    scale = per_decade / math.log(10)
    for s in seconds:
        ms = s * 1000
        idx = 0 if ms <= lo_ms else min(nb - 1, int(math.log(ms / lo_ms) * scale))
        counts[idx] += 1
    return [(round(edges[i], 4), round(edges[i + 1], 4), counts[i]) for i in range(nb)]


def rate(count: float, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else 0.0


def ratio(ours: float | None, baseline: float | None) -> float | None:
    if ours is None or not baseline:
        return None
    return round(ours / baseline, 3)
