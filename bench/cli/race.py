"""`movibench race`: deployments timed side by side, in one process, in alternating rounds.

A matrix times each deployment in its own cell, one after another; on a machine whose speed
drifts, the ratio of two cells minutes apart carries that drift. `race` opens the artifacts
together and interleaves their timed calls (bench.scenarios.interleaved), so each ratio is
measured under the same conditions: the figure to quote for "A is N x faster than B".
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Optional

import numpy as np
import typer
from rich.markup import escape
from rich.table import Table

from bench.cli.options import (
    EXIT_FAILED, EXIT_OK, JsonOpt, parse_int_list, per_thread_count, stdout,
)
from converters.errors import MovibenchError

TABLE_SUFFIXES = (".csv", ".parquet")


def register(root: typer.Typer) -> None:
    root.command("race")(race_cmd)


@dataclass
class RaceRow:
    """One deployment at one thread count, timed side by side with the others."""

    threads: int
    label: str  # 'a0/stream tflite-int8+opt' (+ ' T=8' for a clip artifact)
    artifact: str
    format: str
    runtime: str
    frames_per_call: int
    calls: int = 0
    call_p50_ms: float | None = None
    call_p90_ms: float | None = None
    frame_p50_ms: float | None = None  # call p50 / frames per call
    # frame p50 / the fastest deployment's of this thread count (1 = the fastest)
    ratio_to_fastest: float | None = None
    # largest |logit - the first deployment's of the same model| on the same inputs: the
    # race's first of the same model id, variant, classes and input shape (0 for that one)
    max_abs_diff_to_first: float | None = None
    fastest: bool = False
    error: str = ""
    settings: dict[str, Any] = field(default_factory=dict)  # Session.settings()

    def to_dict(self) -> dict[str, Any]:
        """The row as JSON-ready values."""
        return asdict(self)


@dataclass(frozen=True)
class Entry:
    """An artifact to race and its label."""

    label: str
    path: Path


def entries_from_paths(paths: list[Path]) -> list[Entry]:
    """Label each artifact by its manifest (model/variant format [T=n]); a label two files
    share gets the file name, so two files of one format are told apart."""
    from runtimes.loader import load_manifest

    labels = []
    for path in paths:
        if not path.is_file():
            raise MovibenchError(f"artifact not found: {path}")
        m = load_manifest(path)
        label = f"{m.model_id}/{m.variant} {m.format}"
        labels.append(label + (f" T={m.frames_per_call}" if (m.frames_per_call or 1) > 1 else ""))
    return [Entry(label if labels.count(label) == 1 else f"{label} ({path.name})", path)
            for label, path in zip(labels, paths)]


def entries_from_run(run: Path, only: str | None) -> list[Entry]:
    """The artifacts of a matrix run's latency cells that ran (those matching `only`, a
    `matrix run --only` filter), once each, labelled like the run's report, ordered by model,
    frames per call and format."""
    from bench.matrix.config import Cell, apply_filter
    from bench.results.rundir import load_run
    from bench.scenarios import LATENCY, OWN_SOURCE, deployment_format
    from converters.formats import FORMATS

    cells = load_run(run).cells
    rows = cells[(cells["kind"] == LATENCY) & (cells["status"] == "ok")
                 & cells["artifact"].notna() & (cells["artifact"] != "")]
    cells_and_rows = []
    for _, row in rows.iterrows():
        values = row.astype(object).where(row.notna(), None).to_dict()
        source = values.get("artifact_source") or OWN_SOURCE
        cell = Cell.from_dict({**values, "source": "" if source == OWN_SOURCE else source,
                               "protocol": values.get("protocol") or ""})
        cells_and_rows.append((cell, values))
    kept = {id(cell) for cell in apply_filter([c for c, _ in cells_and_rows], only)}
    # Per model and input, the registry's order of formats (onnx, fp32 first; movibench's own
    # before a foreign file): each model's first deployment, the logits' reference, is fp32.
    order = list(FORMATS)
    cells_and_rows.sort(key=lambda pair: (
        pair[0].model, pair[0].variant, pair[1].get("frames_per_call") or 1,
        order.index(pair[0].format) if pair[0].format in order else len(order), pair[0].source))
    entries: dict[str, Entry] = {}
    for cell, values in cells_and_rows:
        if id(cell) not in kept:
            continue
        label = f"{cell.model}/{cell.variant} {deployment_format(cell.format, cell.source)}"
        frames = int(values.get("frames_per_call") or 1)
        label += f" T={frames}" if frames > 1 else ""
        entries.setdefault(values["artifact"], Entry(label, Path(values["artifact"])))
    missing = [e.path for e in entries.values() if not e.path.is_file()]
    if missing:
        raise MovibenchError(f"{len(missing)} artifact(s) of {run} are not on this machine "
                             f"(first: {missing[0]}); rerun the matrix here to rebuild them")
    return list(entries.values())


def race_threads(entries: list[Entry], threads: int, *, warmup: int, iterations: int,
                 rounds: int, on_block: Callable[[], None] | None = None) -> list[RaceRow]:
    """Open every entry at `threads` threads and time them side by side; one row each."""
    from bench.scenarios.interleaved import Contender, measure_side_by_side
    from bench.trackers.latency import LatencyStats
    from runtimes.loader import open_session

    contenders = [Contender(e.label, lambda e=e: open_session(e.path, threads=threads))
                  for e in entries]
    rows = {e.label: RaceRow(threads, e.label, str(e.path), "", "", 1) for e in entries}

    def describe(entry: Contender) -> None:
        row, m = rows[entry.label], entry.session.manifest
        row.format, row.frames_per_call = m.format, entry.inputs[0].shape[1]
        row.runtime, row.settings = entry.session.runtime, entry.session.settings()

    measure_side_by_side(contenders, warmup=warmup, iterations=iterations, rounds=rounds,
                         on_open=describe, on_block=on_block)
    firsts: dict[tuple, Contender] = {}  # the first contender that ran, per model and input
    for entry in contenders:
        row = rows[entry.label]
        row.error = entry.error
        if row.error:
            continue
        stats = LatencyStats.from_ns(entry.times_ns)
        row.calls, row.call_p50_ms, row.call_p90_ms = stats.n, stats.p50_ms, stats.p90_ms
        row.frame_p50_ms = stats.p50_ms / row.frames_per_call
        m = entry.session.manifest
        first = firsts.setdefault((m.model_id, m.variant, m.num_classes, entry.inputs[0].shape),
                                  entry)
        row.max_abs_diff_to_first = float(np.abs(entry.logits - first.logits).max())
    timed = [r for r in rows.values() if r.frame_p50_ms is not None]
    if timed:
        fastest = min(timed, key=lambda r: r.frame_p50_ms)
        fastest.fastest = True
        for row in timed:
            row.ratio_to_fastest = row.frame_p50_ms / fastest.frame_p50_ms
    return list(rows.values())


def race_cmd(
    artifacts: Annotated[Optional[list[Path]], typer.Argument(
        help="Artifacts (each with its manifest) to time side by side.", show_default=False)] = None,
    run: Annotated[Optional[Path], typer.Option(
        help="Race the artifacts of this matrix run's latency cells (instead of paths).")] = None,
    only: Annotated[Optional[str], typer.Option(
        "--only", help="With --run: keep cells matching key=value[,key=value] (a|b for any "
                       "of), e.g. 'variant=stream,format=tflite-fp32|tflite-int8+opt'.")] = None,
    threads: Annotated[str, typer.Option(
        help="Thread counts, comma-separated; each is a race of its own.")] = "1,2",
    iterations: Annotated[int, typer.Option(help="Timed calls per deployment.", min=1)] = 300,
    warmup: Annotated[int, typer.Option(help="Untimed calls per deployment first.", min=0)] = 20,
    rounds: Annotated[int, typer.Option(
        help="Rounds the timed calls are split into, the deployments alternating in each "
             "(at most --iterations).", min=1)] = 15,
    out: Annotated[Optional[Path], typer.Option(
        help="Also write the rows to this .csv or .parquet file.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Time deployments side by side in one process and give each one's ratio to the fastest.

    Every artifact is opened at each thread count; their timed calls (one frame per call for
    a stream artifact, its T for a clip artifact) run in alternating rounds, each round a
    block of calls of every deployment in turn, so the machine's drift hits them alike: the
    ratios are the ones to quote. Reported per deployment: median and p90 call latency, the
    median per frame, its ratio to the fastest of that thread count, and the largest logit
    difference to the first deployment of the same model on the same inputs. Exit 0 when every deployment ran,
    1 when one failed to open or run, 2 on bad input.
    """
    thread_counts = parse_int_list(threads, "--threads")
    if out is not None and out.suffix not in TABLE_SUFFIXES:
        raise MovibenchError(f"--out must end in {' or '.join(TABLE_SUFFIXES)}, got {out.name}")
    if bool(artifacts) == (run is not None):
        raise MovibenchError("give artifact paths or --run, one of the two")
    if only is not None and run is None:
        raise MovibenchError("--only needs --run")
    entries = entries_from_run(run, only) if run is not None else entries_from_paths(artifacts)
    if len(entries) < 2:
        raise MovibenchError(f"a race needs two deployments or more, got {len(entries)}")
    rounds = min(rounds, iterations)
    rows: list[RaceRow] = per_thread_count(
        thread_counts, len(entries), "deployments", rounds,
        lambda t, on_block: race_threads(entries, t, warmup=warmup, iterations=iterations,
                                         rounds=rounds, on_block=on_block))
    if out is not None:
        from bench.evaluation.evaluate import write_table

        write_table([{**r.to_dict(), "settings": json.dumps(r.settings, sort_keys=True)}
                     for r in rows], out)
    failed = [r for r in rows if r.error]
    if as_json:
        print(json.dumps({"iterations": iterations, "warmup": warmup, "rounds": rounds,
                          "rows": [r.to_dict() for r in rows]}, indent=2))
    else:
        _print_table(rows, iterations)
    raise typer.Exit(EXIT_FAILED if failed else EXIT_OK)


def _print_table(rows: list[RaceRow], iterations: int) -> None:
    fmt = lambda v, spec: "–" if v is None else format(v, spec)  # noqa: E731
    stdout.print(f"{iterations} timed calls per deployment, side by side", highlight=False)
    for threads in dict.fromkeys(r.threads for r in rows):
        table = Table(title=f"{threads} thread(s)", box=None, pad_edge=False)
        for col in ("deployment", "p50 ms/call", "p90 ms/call", "p50 ms/frame", "×fastest",
                    "max|Δ| to first"):
            table.add_column(col, justify="left" if col == "deployment" else "right",
                             no_wrap=True)
        for r in (r for r in rows if r.threads == threads):
            if r.error:
                table.add_row(escape(r.label), f"[red]FAILED[/] {escape(r.error)}", "", "", "", "")
                continue
            table.add_row(escape(r.label), fmt(r.call_p50_ms, ".3f"), fmt(r.call_p90_ms, ".3f"),
                          fmt(r.frame_p50_ms, ".3f"), fmt(r.ratio_to_fastest, ".2f"),
                          fmt(r.max_abs_diff_to_first, ".1e"))
        stdout.print()
        stdout.print(table)
