"""ONNX Runtime session settings chosen by measurement: a grid of settings timed side by side.

Every setting of a grid (optimization level x execution mode x intra-op spinning) gets its own
session of one artifact, per thread count. All of a thread count's sessions stay open and are
timed side by side in alternating rounds (bench.race.interleaved), so drift of the machine hits
every setting alike. Each setting's logits on the same frames are checked against those of the
default settings, which are always measured as the reference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.race.interleaved import Contender, measure_side_by_side, summarise
from core.formats import FORMATS
from runtimes.onnxruntime import OnnxRuntimeSession

if TYPE_CHECKING:
    from runtimes.onnxruntime import OrtSettings

# The runtime tuned (runtimes.onnxruntime imports its engine only when a session opens), and the
# format a model is exported to for it: the registry's first of that runtime, plain fp32 ONNX.
ONNX_RUNTIME = OnnxRuntimeSession.runtime
TUNED_FORMAT = next(spec for spec in FORMATS.values() if spec.runtime == ONNX_RUNTIME)


@dataclass
class TuneRow:
    """One setting at one thread count: its latency, its ratio to the default settings, and
    whether its logits equal the default's."""

    threads: int
    setting: str  # OrtSettings.label
    optimization_level: str
    execution_mode: str
    spinning: bool
    inter_op_threads: int | None
    default: bool  # the settings every benchmark cell uses
    calls: int = 0
    p50_ms: float | None = None
    p90_ms: float | None = None
    ratio_to_default: float | None = None  # p50 / the default's p50: below 1 is faster
    max_abs_diff: float | None = None  # largest |logit - the default's logit| on the same calls
    same_logits: bool | None = None  # max_abs_diff within the tolerance
    # lowest p50 of this thread count among the settings that kept the logits and were applied
    fastest: bool = False
    error: str = ""
    settings: dict[str, Any] = field(default_factory=dict)  # Session.settings(), read back
    # The settings the session really has, when ONNX Runtime did not apply the ones asked
    # (parallel mode with one inter-op thread runs sequentially); '' when it did.
    ran_as: str = ""

    @property
    def ok(self) -> bool:
        """Ran, and did not change the results."""
        return not self.error and self.same_logits is not False

    def to_dict(self) -> dict[str, Any]:
        """The row as JSON-ready values."""
        return asdict(self)


def settings_grid(levels: list[str], modes: list[str], spinning: list[bool],
                  threads: int, inter_op_threads: int | None = None) -> list[OrtSettings]:
    """The OrtSettings to measure at `threads`, the default settings first (always measured:
    they are the reference). A parallel setting runs `inter_op_threads` inter-op threads,
    by default as many as `threads`; a sequential one has no use for them and keeps 1."""
    from runtimes.onnxruntime import OrtSettings

    default = OrtSettings()
    grid = [default]
    for level in levels:
        for mode in modes:
            for spin in spinning:
                inter = (inter_op_threads or threads) if mode == "parallel" else 1
                setting = OrtSettings(level, mode, spin, inter)
                if setting not in grid:
                    grid.append(setting)
    return grid


def applied_label(settings: dict[str, Any]) -> str:
    """The OrtSettings label of what a session reports it runs with (`Session.settings()`)."""
    from runtimes.onnxruntime import OrtSettings

    return OrtSettings(settings["optimization_level"], settings["execution_mode"],
                       settings["spinning"], settings["inter_op_threads"] or None).label


def measure_threads(path: Path, grid: list[OrtSettings], threads: int, frames_per_call: int, *,
                    warmup: int, iterations: int, rounds: int, atol: float,
                    on_block: Callable[[], None] | None = None) -> list[TuneRow]:
    """Time every setting of `grid` (the default first) at `threads` intra-op threads on the
    ONNX artifact at `path`, `frames_per_call` frames per call; one TuneRow per setting.

    The settings are contenders of one side-by-side measurement
    (bench.race.interleaved): every session runs the same inputs, first once untimed
    from fresh states (these logits are checked against the default's, within `atol`), then
    `warmup` untimed calls, then `iterations` timed calls in `rounds` alternating rounds. A
    setting that fails to open or run keeps its error and the others go on.
    """
    from runtimes.loader import open_session

    rows: dict[str, TuneRow] = {}
    contenders = []
    for setting in grid:
        rows[setting.label] = TuneRow(threads, setting.label, setting.optimization_level,
                                      setting.execution_mode, setting.spinning,
                                      setting.inter_op_threads, default=setting == grid[0])
        contenders.append(Contender(setting.label, lambda setting=setting: open_session(
            path, threads=threads, **setting.to_dict())))

    def read_back(entry: Contender) -> None:
        row = rows[entry.label]
        row.settings = entry.session.settings()
        applied = applied_label(row.settings)
        row.ran_as = "" if applied == row.setting else applied

    measure_side_by_side(contenders, warmup=warmup, iterations=iterations, rounds=rounds,
                         frames_per_call=frames_per_call, on_open=read_back, on_block=on_block)
    return summarise_settings([(rows[c.label], c) for c in contenders], atol)


def summarise_settings(measured: list[tuple[TuneRow, Contender]], atol: float) -> list[TuneRow]:
    """Percentiles, ratios to the default (the first), the logits check and the fastest of one
    thread count."""
    reference = measured[0][1]
    contenders = [entry for _, entry in measured]
    for (row, entry), summary in zip(measured, summarise(contenders, lambda _: reference)):
        row.error = entry.error
        if summary is None:
            continue
        row.calls, row.p50_ms, row.p90_ms = summary.calls, summary.p50_ms, summary.p90_ms
        if summary.max_abs_diff is not None:
            row.max_abs_diff = summary.max_abs_diff
            row.same_logits = row.max_abs_diff <= atol
    rows = [row for row, _ in measured]
    if reference.error:  # nothing to compare with: no ratios, no fastest
        return rows
    for row in rows:
        if row.p50_ms is not None:
            row.ratio_to_default = row.p50_ms / rows[0].p50_ms
    # A setting ONNX Runtime replaced by another is that other one again: its difference is noise.
    kept = [r for r in rows if r.ok and r.p50_ms is not None and not r.ran_as]
    min(kept, key=lambda r: r.p50_ms).fastest = True  # the default itself is always kept
    return rows
