"""GPU memory of a cell: device readings at its phase boundaries, through the session's own API.

Readings are instants (cudaMemGetInfo, device-wide): memory taken and given back between two
readings is not seen, and another process allocating on the same GPU shows up in the figures.
For a runtime without a device every column is None (an empty cell in the results).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.trackers.memory import END, LOADED, WARM
from runtimes.base import DeviceMemoryInfo, Session

BEFORE_LOAD = "before_load"
# The readings after loading, in the order a cell takes them (the memory tracker's phases).
PHASES = (LOADED, WARM, END)
COLUMNS = ("gpu_mem_loaded_mb", "gpu_mem_peak_mb", "gpu_engine_mb")
MB = 2**20


@dataclass
class GpuMemoryTracker:
    """Device memory readings of one cell: `before_load`, then `read` after each phase.

    Usage: `tracker.before_load(SessionClass)` just before loading the model, then
    `tracker.read("loaded", session)`, `read("warm", session)`, `read("end", session)`,
    and `tracker.columns()` for the result row.
    """

    readings: dict[str, DeviceMemoryInfo] = field(default_factory=dict)

    def before_load(self, runtime: type[Session]) -> None:
        """Read the device before the model is loaded (no session exists yet, so via its class)."""
        self._keep(BEFORE_LOAD, runtime.device_memory())

    def read(self, phase: str, session: Session) -> None:
        """Read the device at the end of `phase` ('loaded', 'warm' or 'end')."""
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}; known: {', '.join(PHASES)}")
        self._keep(phase, session.device_memory_info())

    def _keep(self, phase: str, reading: DeviceMemoryInfo | None) -> None:
        if reading is not None:
            self.readings[phase] = reading

    def columns(self) -> dict[str, float | None]:
        """gpu_mem_loaded_mb (in use after load minus before), gpu_mem_peak_mb (most in use at
        any reading minus before load), gpu_engine_mb (the engine's own device memory); all None
        without the before-load and loaded readings (a CPU runtime, or a cell that failed early).
        """
        base, loaded = self.readings.get(BEFORE_LOAD), self.readings.get(LOADED)
        if base is None or loaded is None:
            return dict.fromkeys(COLUMNS)
        peak = max(r.used_bytes for r in self.readings.values())
        return {
            "gpu_mem_loaded_mb": (loaded.used_bytes - base.used_bytes) / MB,
            "gpu_mem_peak_mb": (peak - base.used_bytes) / MB,
            "gpu_engine_mb": None if loaded.engine_bytes is None else loaded.engine_bytes / MB,
        }
