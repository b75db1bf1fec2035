"""`movibench tune onnxruntime`: ONNX Runtime session settings chosen by measurement.

The options, the artifact to tune, the progress and the output; the grid of settings and their
measurement are bench.race.tune.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from bench.cli.options import (
    EXIT_FAILED, EXIT_OK, FROM_OPTIONS, ClipFramesOpt, JsonOpt, ModelChoice, console,
    model_options, non_negative, parse_int_list, per_thread_count, stdout,
)
from bench.race.tune import ONNX_RUNTIME, TUNED_FORMAT, TuneRow, measure_threads, settings_grid
from core.errors import MovibenchError
from core.formats import get_format

app = typer.Typer(help="Choose a runtime's session settings by measurement.", no_args_is_help=True)

SPINNING_WORDS = {"on": True, "off": False}
TABLE_SUFFIXES = (".csv", ".parquet")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="tune")


def parse_choices(text: str, known: tuple[str, ...], what: str) -> list[str]:
    """'all,basic' -> ['all', 'basic'], each one of `known`; else a one-line MovibenchError."""
    values = [v.strip().lower() for v in text.split(",") if v.strip()]
    if not values:
        raise MovibenchError(f"{what} needs at least one of {', '.join(known)}")
    unknown = [v for v in values if v not in known]
    if unknown:
        raise MovibenchError(f"unknown {what} {unknown[0]!r}; known: {', '.join(known)}")
    return list(dict.fromkeys(values))


def onnx_artifact(artifact: Path | None, choice: ModelChoice, clip_frames: int | None) -> Path:
    """The ONNX artifact to tune: `artifact`, or the model the options name exported to
    TUNED_FORMAT (through the artifact cache). Raises MovibenchError for both or for a file that
    ONNX Runtime does not run."""
    from runtimes.loader import load_manifest

    if artifact is not None:
        if choice != FROM_OPTIONS:
            raise MovibenchError("give --artifact or the model options, not both")
        fmt = get_format(load_manifest(artifact).format)
        if fmt.runtime != ONNX_RUNTIME:
            raise MovibenchError(f"{artifact} is a {fmt.name} artifact, run by {fmt.runtime}; "
                                 f"tune {ONNX_RUNTIME} takes an ONNX artifact (format "
                                 f"{TUNED_FORMAT.name})")
        return artifact
    from converters.export import export_model

    config = choice.config()
    with console.status(f"exporting {config.model_id}/{config.variant} to {TUNED_FORMAT.name}"):
        return export_model(config, TUNED_FORMAT.name, checkpoint=choice.checkpoint,
                            frames_per_call=clip_frames).path


@app.command(ONNX_RUNTIME)
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
    from bench.jobs.deployment import frames_per_call
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
        _print_table(rows, f"{manifest.model_id}/{manifest.variant}@{manifest.resolution} "
                           f"{get_format(manifest.format).family}: "
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
