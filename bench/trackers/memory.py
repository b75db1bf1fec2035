"""Latency statistics and process memory, measured the same way for every cell."""

from __future__ import annotations

import resource
from dataclasses import asdict, dataclass

import numpy as np
import psutil


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
        if not samples_ns:
            nan = float("nan")
            return cls(0, nan, nan, nan, nan, nan)
        ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        return cls(len(ms), float(p50), float(p90), float(p99), float(ms.mean()), float(ms.std()))

    def to_dict(self) -> dict:
        return asdict(self)


def rss_mb() -> float:
    """Resident set size of this process now."""
    return psutil.Process().memory_info().rss / 2**20


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
