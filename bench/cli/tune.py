"""`movibench tune onnxruntime`: ONNX Runtime session settings chosen by measurement.

Every setting of a grid (optimization level x execution mode x intra-op spinning) gets its own
session of one artifact, per thread count. All of a thread count's sessions stay open and are
timed side by side in alternating rounds (bench.scenarios.interleaved), so drift of the
machine hits every setting alike.
Each setting's logits on the same frames are checked against those of the default settings,
which are always measured as the reference.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import numpy as np
import typer
from rich.markup import escape
from rich.table import Table

from bench.cli.options import (
    EXIT_FAILED, EXIT_OK, FROM_OPTIONS, ClipFramesOpt, JsonOpt, ModelChoice, console,
    model_options, non_negative, parse_int_list, per_thread_count, stdout,
)
from core.errors import MovibenchError

if TYPE_CHECKING:
    from bench.scenarios.interleaved import Contender
    from runtimes.onnxruntime import OrtSettings

app = typer.Typer(help="Choose a runtime's session settings by measurement.", no_args_is_help=True)

ONNX_RUNTIME = "onnxruntime"
SPINNING_WORDS = {"on": True, "off": False}
TABLE_SUFFIXES = (".csv", ".parquet")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="tune")


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


def parse_choices(text: str, known: tuple[str, ...], what: str) -> list[str]:
    """'all,basic' -> ['all', 'basic'], each one of `known`; else a one-line MovibenchError."""
    values = [v.strip().lower() for v in text.split(",") if v.strip()]
    if not values:
        raise MovibenchError(f"{what} needs at least one of {', '.join(known)}")
    unknown = [v for v in values if v not in known]
    if unknown:
        raise MovibenchError(f"unknown {what} {unknown[0]!r}; known: {', '.join(known)}")
    return list(dict.fromkeys(values))


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
    (bench.scenarios.interleaved): every session runs the same inputs, first once untimed
    from fresh states (these logits are checked against the default's, within `atol`), then
    `warmup` untimed calls, then `iterations` timed calls in `rounds` alternating rounds. A
    setting that fails to open or run keeps its error and the others go on.
    """
    from bench.scenarios.interleaved import Contender, measure_side_by_side
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
    return _summarise([(rows[c.label], c) for c in contenders], atol)


def _summarise(measured: list[tuple[TuneRow, Contender]], atol: float) -> list[TuneRow]:
    """Percentiles, ratios to the default, the logits check and the fastest of one thread count."""
    from bench.trackers.latency import LatencyStats

    reference = measured[0][1]
    for row, entry in measured:
        row.error = entry.error
        if row.error:
            continue
        stats = LatencyStats.from_ns(entry.times_ns)
        row.calls, row.p50_ms, row.p90_ms = stats.n, stats.p50_ms, stats.p90_ms
        if reference.error:
            continue
        row.max_abs_diff = float(np.abs(entry.logits - reference.logits).max())
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


def onnx_artifact(artifact: Path | None, choice: ModelChoice, clip_frames: int | None) -> Path:
    """The ONNX artifact to tune: `artifact`, or the model the options name exported to
    'onnx' (through the artifact cache). Raises MovibenchError for both or for a file that
    ONNX Runtime does not run."""
    from core.formats import get_format
    from runtimes.loader import load_manifest

    if artifact is not None:
        if choice != FROM_OPTIONS:
            raise MovibenchError("give --artifact or the model options, not both")
        fmt = get_format(load_manifest(artifact).format)
        if fmt.runtime != ONNX_RUNTIME:
            raise MovibenchError(f"{artifact} is a {fmt.name} artifact, run by {fmt.runtime}; "
                                 "tune onnxruntime takes an ONNX artifact (format onnx)")
        return artifact
    from converters.export import export_model

    config = choice.config()
    with console.status(f"exporting {config.model_id}/{config.variant} to onnx"):
        return export_model(config, "onnx", checkpoint=choice.checkpoint,
                            frames_per_call=clip_frames).path


@app.command("onnxruntime")
@model_options()
def onnxruntime_cmd(
    artifact: Annotated[Optional[Path], typer.Option(
        "--artifact", help="An ONNX artifact (with its manifest); default: export the model "
                           "the model options name.")] = None,
    choice: ModelChoice = FROM_OPTIONS,
    clip_frames: ClipFramesOpt = None,
    threads: Annotated[str, typer.Option(
        help="Intra-op thread counts, comma-separated; each is tuned on its own.")] = "1,2",
    levels: Annotated[str, typer.Option(
        help="Graph optimization levels: disable, basic, extended, all.")] = "all,extended,basic",
    modes: Annotated[str, typer.Option(
        help="Execution modes: sequential, parallel.")] = "sequential,parallel",
    spinning: Annotated[str, typer.Option(
        help="Intra-op spinning: on (idle threads busy-wait), off (they sleep).")] = "on,off",
    inter_op_threads: Annotated[Optional[int], typer.Option(
        "--inter-op-threads", help="Inter-op threads of the parallel settings (default: the "
                                   "thread count being tuned).", min=1)] = None,
    iterations: Annotated[int, typer.Option(help="Timed calls per setting.", min=1)] = 200,
    warmup: Annotated[int, typer.Option(help="Untimed calls per setting first.", min=0)] = 20,
    rounds: Annotated[int, typer.Option(
        help="Rounds the timed calls are split into, the settings alternating in each "
             "(at most --iterations).", min=1)] = 10,
    atol: Annotated[float, typer.Option(
        help="Largest |logit difference| to the default settings that is still the same result.",
        callback=non_negative)] = 1e-4,
    out: Annotated[Optional[Path], typer.Option(
        help="Also write the rows to this .csv or .parquet file.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Time ONNX Runtime settings on one artifact and name the fastest per thread count.

    Each setting of the grid (optimization level x execution mode x spinning), and the
    default settings every benchmark cell uses, gets a session per thread count; their
    calls (one frame per call for a causal model, the artifact's T for a base model) run in
    alternating rounds so drift hits every setting alike. Reported per setting: median and
    p90 call latency, the ratio to the default's median, and whether the logits equal the
    default's within --atol (a setting that changes results is flagged, never the fastest).
    Each session's settings are read back from ONNX Runtime: one it did not apply as asked
    (parallel mode with one inter-op thread runs sequentially) says what it ran as.
    Exit 0 when every setting ran with the default's results, 1 when one failed or changed
    results, 2 on bad input.
    """
    from bench.scenarios.deployment import frames_per_call
    from runtimes.loader import load_manifest
    from runtimes.onnxruntime import EXECUTION_MODES, OPTIMIZATION_LEVELS

    thread_counts = parse_int_list(threads, "--threads")
    grid_levels = parse_choices(levels, OPTIMIZATION_LEVELS, "optimization level")
    grid_modes = parse_choices(modes, EXECUTION_MODES, "execution mode")
    grid_spinning = [SPINNING_WORDS[w] for w in parse_choices(spinning, tuple(SPINNING_WORDS),
                                                              "spinning value")]
    if out is not None and out.suffix not in TABLE_SUFFIXES:
        raise MovibenchError(f"--out must end in {' or '.join(TABLE_SUFFIXES)}, got {out.name}")
    rounds = min(rounds, iterations)
    grids = {t: settings_grid(grid_levels, grid_modes, grid_spinning, t, inter_op_threads)
             for t in thread_counts}
    path = onnx_artifact(artifact, choice, clip_frames)
    manifest = load_manifest(path)
    per_call = manifest.frames_per_call or frames_per_call(manifest.causal, clip_frames=clip_frames)

    rows: list[TuneRow] = per_thread_count(
        thread_counts, max(len(g) for g in grids.values()), "settings", rounds,
        lambda t, on_block: measure_threads(path, grids[t], t, per_call, warmup=warmup,
                                            iterations=iterations, rounds=rounds, atol=atol,
                                            on_block=on_block))
    if out is not None:
        from bench.evaluation.evaluate import write_table

        write_table([{**r.to_dict(), "settings": json.dumps(r.settings, sort_keys=True)}
                     for r in rows], out)
    failed = [r for r in rows if not r.ok]
    if as_json:
        print(json.dumps({"artifact": str(path), "model": manifest.model_id,
                          "variant": manifest.variant, "resolution": manifest.resolution,
                          "frames_per_call": per_call, "iterations": iterations,
                          "warmup": warmup, "rounds": rounds, "atol": atol,
                          "rows": [r.to_dict() for r in rows]}, indent=2))
    else:
        _print_table(rows, f"{manifest.model_id}/{manifest.variant}@{manifest.resolution} onnx: "
                           f"{per_call} frame(s) per call, {iterations} timed calls per setting")
    raise typer.Exit(EXIT_FAILED if failed else EXIT_OK)


def _print_table(rows: list[TuneRow], title: str) -> None:
    """One table per thread count, then the reasons of the rows that need one and the fastest
    settings; sized for a terminal of 80 columns."""
    fmt = lambda v, spec: "–" if v is None else format(v, spec)  # noqa: E731
    stdout.print(title, highlight=False)
    notes = []
    for threads in dict.fromkeys(r.threads for r in rows):
        table = Table(title=f"{threads} thread(s)", box=None, pad_edge=False)
        for col in ("level", "mode", "spin", "p50 ms", "p90 ms", "×default", "max|Δ|", "result"):
            text = col in ("level", "mode", "spin", "result")
            table.add_column(col, justify="left" if text else "right", no_wrap=True)
        for r in (r for r in rows if r.threads == threads):
            if r.error:
                result = "[red]FAILED[/]"
                notes.append(f"[red]{threads} thread(s), {r.setting} failed:[/] {escape(r.error)}")
            elif r.same_logits is False:
                result = "[red]changed results[/]"
            elif r.ran_as:
                result = "[yellow]ran as other[/]"
                notes.append(f"[yellow]{threads} thread(s), {r.setting} ran as {r.ran_as}[/]: "
                             "ONNX Runtime did not apply it")
            else:
                result = ", ".join(w for w, on in (("[green]fastest[/]", r.fastest),
                                                   ("default", r.default)) if on)
            mode = r.execution_mode + (f"×{r.inter_op_threads or 'auto'}"
                                       if r.execution_mode == "parallel" else "")
            table.add_row(r.optimization_level, mode, "on" if r.spinning else "off",
                          fmt(r.p50_ms, ".3f"), fmt(r.p90_ms, ".3f"),
                          fmt(r.ratio_to_default, ".3f"), fmt(r.max_abs_diff, ".0e"), result)
        stdout.print()
        stdout.print(table)
    for note in notes:
        stdout.print(note, highlight=False, soft_wrap=True)
    for r in rows:
        if r.fastest:
            stdout.print(f"{r.threads} thread(s): fastest {r.setting}, "
                         f"{r.ratio_to_default:.3f}× the default's median", highlight=False)
