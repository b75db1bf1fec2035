"""Process memory of a cell, read the same way for every runtime and every scenario.

One tracker, three rules:
- the idle reading is taken after the cell's runtime engine and the harness's own libraries
  are imported (bench.launchers.worker does that before `mark(IDLE)`), so the delta over idle
  is the model's and its engine state's, comparable across runtimes;
- the peak is the kernel's high-water mark of resident memory (VmHWM, or ru_maxrss where there
  is no /proc), read at the end and never reset: it covers load, warm-up and the measured phase.
  Writing 5 to /proc/self/clear_refs would rewind it and is never done here;
- resident memory counts file-backed pages of shared libraries, which depend on the page cache,
  so unique set size (USS: pages only this process holds, mostly anonymous memory) is read
  beside it at every phase boundary. There is no kernel high-water mark for USS: its maximum
  is over the boundary readings.
"""

from __future__ import annotations

import resource
import sys
from dataclasses import dataclass, field

import psutil

IDLE, LOADED, WARM, END = "idle", "loaded", "warm", "end"
MB = 2**20


def rss_mb() -> float:
    """Resident set size of this process now."""
    return psutil.Process().memory_info().rss / MB


def peak_rss_mb() -> float:
    """High-water mark of this process's resident set size, in MB (never reset here)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is in bytes on macOS, KiB on Linux.
    return peak / MB if sys.platform == "darwin" else peak / 1024.0


def uss_mb() -> float:
    """Unique set size of this process now (psutil reads /proc/self/smaps: ~ms, not per call)."""
    return psutil.Process().memory_full_info().uss / MB


@dataclass(frozen=True)
class MemoryReading:
    """One phase boundary: resident and unique memory now, and the resident peak so far."""

    phase: str
    rss_mb: float
    uss_mb: float
    peak_rss_mb: float


@dataclass
class MemoryTracker:
    """Readings at phase boundaries (idle → loaded → warm → end) turned into result columns."""

    readings: list[MemoryReading] = field(default_factory=list)

    def mark(self, phase: str) -> MemoryReading:
        """Read memory now, at the start or end of `phase`."""
        reading = MemoryReading(phase, rss_mb(), uss_mb(), peak_rss_mb())
        self.readings.append(reading)
        return reading

    def get(self, phase: str) -> MemoryReading | None:
        return next((r for r in self.readings if r.phase == phase), None)

    def columns(self) -> dict:
        """bench.results.schema memory columns; needs an IDLE reading and at least one after it."""
        idle = self.get(IDLE)
        if idle is None or len(self.readings) < 2:
            raise RuntimeError("memory tracker needs an idle reading and a later one")
        loaded = self.get(LOADED)
        last = self.readings[-1]
        uss_max = max(r.uss_mb for r in self.readings)
        return {
            "rss_idle_mb": idle.rss_mb, "uss_idle_mb": idle.uss_mb,
            "rss_loaded_mb": loaded.rss_mb if loaded else None,
            "uss_loaded_mb": loaded.uss_mb if loaded else None,
            "peak_rss_mb": last.peak_rss_mb,
            "peak_rss_delta_mb": last.peak_rss_mb - idle.rss_mb,
            "uss_max_mb": uss_max, "uss_delta_mb": uss_max - idle.uss_mb,
        }
