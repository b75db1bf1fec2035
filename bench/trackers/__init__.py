"""How a cell's resources are read: latency statistics, process memory, device memory.

`CellTrackers` reads memory and device memory together at each phase boundary of a cell
(idle → loaded → warm → end), so every scenario is measured the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.trackers.gpu import GpuMemoryTracker
from bench.trackers.memory import IDLE, MemoryTracker


@dataclass
class CellTrackers:
    """The memory and GPU trackers of one cell; `session` is set once the model is loaded."""

    memory: MemoryTracker = field(default_factory=MemoryTracker)
    gpu: GpuMemoryTracker = field(default_factory=GpuMemoryTracker)
    session: object | None = None

    def mark(self, phase: str) -> None:
        """Read every tracker at the start (idle) or end of `phase`."""
        self.memory.mark(phase)
        if phase != IDLE and self.session is not None:
            self.gpu.read(phase, self.session)

    def columns(self) -> dict:
        """The result columns of both trackers."""
        return {**self.memory.columns(), **self.gpu.columns()}
