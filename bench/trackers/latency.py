"""Latency statistics of timed engine calls, computed the same way for every runtime."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class LatencyStats:
    """Percentiles of engine-call latencies (warm-up excluded), in milliseconds."""

    n: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float

    @classmethod
    def from_ns(cls, samples_ns: list[int]) -> LatencyStats:
        """Statistics of durations in nanoseconds (all NaN for no samples)."""
        if not samples_ns:
            nan = float("nan")
            return cls(0, nan, nan, nan, nan, nan)
        ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        return cls(len(ms), float(p50), float(p90), float(p99), float(ms.mean()), float(ms.std()))

    def to_dict(self) -> dict:
        return asdict(self)
