"""`movibench race`: deployments timed side by side, in one process, in alternating rounds.

A matrix times each deployment in its own cell, one after another; on a machine whose speed
drifts, the ratio of two cells minutes apart carries that drift. `race` opens the artifacts
together and interleaves their timed calls (bench.scenarios.interleaved), so each ratio is
measured under the same conditions: the figure to quote for "A is N x faster than B".
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Optional

import numpy as np
import typer
from rich.markup import escape
from rich.table import Table

from bench.cli.options import (
    EXIT_FAILED, EXIT_OK, JsonOpt, parse_int_list, per_thread_count, stdout,
)
from core.errors import MovibenchError

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
    # the baseline's frame p50 / this one's, at this thread count (--baseline; >1: faster)
    speedup_vs_baseline: float | None = None
    baseline: bool = False
    # multiply-adds per frame counted from the artifact's graph (Session.multiply_adds), the
    # rate this deployment reaches (G multiply-adds/s at its frame p50) and its share of the
    # CPU's measured matrix-product peak of its precision at this thread count (roofline)
    macs_per_frame: int | None = None
    gmacs_per_s: float | None = None
    peak_gmacs: float | None = None
    roofline_share: float | None = None
    # of the run's accuracy cells on this artifact (race --run): top-1 and the share of
    # videos with the TensorFlow reference's top-1
    top1: float | None = None
    top1_agreement: float | None = None
    error: str = ""
    options: dict[str, Any] = field(default_factory=dict)  # what --vary opened it with
    settings: dict[str, Any] = field(default_factory=dict)  # Session.settings()

    def to_dict(self) -> dict[str, Any]:
        """The row as JSON-ready values."""
        return asdict(self)


@dataclass(frozen=True)
class Entry:
    """An artifact to race, its label, and the runtime options to open it with."""

    label: str
    path: Path
    options: tuple[tuple[str, Any], ...] = ()
    top1: float | None = None
    top1_agreement: float | None = None


def parse_vary(texts: list[str]) -> dict[str, tuple[str, list[Any]]]:
    """'litert:state_io=host,buffers' → {'litert': ('state_io', ['host', 'buffers'])}: each
    deployment of that runtime races once per value (true/false → bool, digits → int)."""
    varied = {}
    for text in texts:
        runtime, sep, rest = text.partition(":")
        key, eq, values = rest.partition("=")
        if not (sep and eq and runtime.strip() and key.strip() and values.strip()):
            raise MovibenchError(f"--vary takes RUNTIME:OPTION=VALUE[,VALUE...], got {text!r}")
        if runtime.strip() in varied:
            raise MovibenchError(f"--vary names runtime {runtime.strip()!r} twice")
        varied[runtime.strip()] = (key.strip(), [_option_value(v) for v in values.split(",")
                                                 if v.strip()])
    return varied


def _option_value(text: str) -> Any:
    text = text.strip()
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return int(text) if text.isdigit() else text


def varied_entries(entries: list[Entry], varied: dict[str, tuple[str, list[Any]]]) -> list[Entry]:
    """Each entry whose runtime `varied` names, once per value (label + ' [option=value]')."""
    from runtimes.loader import load_manifest
    from core.formats import get_format

    out = []
    for entry in entries:
        runtime = get_format(load_manifest(entry.path).format).runtime
        if runtime not in varied:
            out.append(entry)
            continue
        key, values = varied[runtime]
        out += [replace(entry, label=f"{entry.label} [{key}={value}]",
                        options=entry.options + ((key, value),)) for value in values]
    return out


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
    from bench.scenarios import ACCURACY, LATENCY, OWN_SOURCE, deployment_format
    from core.formats import FORMATS

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
    accuracy = cells[(cells["kind"] == ACCURACY) & (cells["status"] == "ok")
                     & cells["artifact"].notna()].drop_duplicates("artifact").set_index("artifact")
    entries: dict[str, Entry] = {}
    for cell, values in cells_and_rows:
        if id(cell) not in kept:
            continue
        label = f"{cell.model}/{cell.variant} {deployment_format(cell.format, cell.source)}"
        frames = int(values.get("frames_per_call") or 1)
        label += f" T={frames}" if frames > 1 else ""
        scored = accuracy.loc[values["artifact"]] if values["artifact"] in accuracy.index else None
        entries.setdefault(values["artifact"], Entry(
            label, Path(values["artifact"]),
            top1=None if scored is None else _number(scored.get("top1")),
            top1_agreement=None if scored is None else _number(scored.get("ref_top1_agreement"))))
    missing = [e.path for e in entries.values() if not e.path.is_file()]
    if missing:
        raise MovibenchError(f"{len(missing)} artifact(s) of {run} are not on this machine "
                             f"(first: {missing[0]}); rerun the matrix here to rebuild them")
    return list(entries.values())


def _number(value) -> float | None:
    return None if value is None or value != value else float(value)


def race_threads(entries: list[Entry], threads: int, *, warmup: int, iterations: int,
                 rounds: int, on_block: Callable[[], None] | None = None,
                 baseline: str | None = None, peak=None) -> list[RaceRow]:
    """Open every entry at `threads` threads and time them side by side; one row each.

    `baseline`: the label of the entry every row's `speedup_vs_baseline` is to. `peak`: the
    CPU's GemmPeak at `threads` (bench.trackers.roofline), for each row's roofline share.
    """
    from bench.scenarios.interleaved import Contender, measure_side_by_side
    from bench.trackers.latency import LatencyStats
    from core.formats import get_format
    from runtimes.loader import open_session

    contenders = [Contender(e.label, lambda e=e: open_session(e.path, threads=threads,
                                                              **dict(e.options)))
                  for e in entries]
    rows = {e.label: RaceRow(threads, e.label, str(e.path), "", "", 1, top1=e.top1,
                             top1_agreement=e.top1_agreement, options=dict(e.options))
            for e in entries}

    def describe(entry: Contender) -> None:
        row, m = rows[entry.label], entry.session.manifest
        row.format, row.frames_per_call = m.format, entry.inputs[0].shape[1]
        row.runtime, row.settings = entry.session.runtime, entry.session.settings()
        macs = entry.session.multiply_adds()
        row.macs_per_frame = None if macs is None else macs // row.frames_per_call
        if peak is not None:
            row.peak_gmacs = peak.for_precision(get_format(m.format).precision)

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
    for row in timed:
        if row.macs_per_frame is not None:
            row.gmacs_per_s = row.macs_per_frame / (row.frame_p50_ms * 1e6)
            if row.peak_gmacs:
                row.roofline_share = row.gmacs_per_s / row.peak_gmacs
    if timed:
        fastest = min(timed, key=lambda r: r.frame_p50_ms)
        fastest.fastest = True
        for row in timed:
            row.ratio_to_fastest = row.frame_p50_ms / fastest.frame_p50_ms
    reference = rows.get(baseline) if baseline is not None else None
    if reference is not None:
        reference.baseline = True
        if reference.frame_p50_ms is not None:
            for row in timed:
                row.speedup_vs_baseline = reference.frame_p50_ms / row.frame_p50_ms
    return list(rows.values())


def pick_baseline(entries: list[Entry], text: str | None) -> str | None:
    """The label of the one entry whose label contains `text` (None: no baseline)."""
    if text is None:
        return None
    matches = [e.label for e in entries if text in e.label]
    if len(matches) != 1:
        raise MovibenchError(f"--baseline {text!r} must match exactly one deployment's label, "
                             f"matched {len(matches)}: {', '.join(matches) or 'none'}")
    return matches[0]


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
    vary: Annotated[Optional[list[str]], typer.Option(
        "--vary", help="RUNTIME:OPTION=V1,V2: race each deployment of that runtime once per "
                       "value of one of its options, e.g. 'litert:state_io=host,buffers' "
                       "(repeatable, one per runtime).")] = None,
    baseline: Annotated[Optional[str], typer.Option(
        help="Give every row its speedup over the one deployment whose label contains this, "
             "e.g. 'model-garden'.")] = None,
    roofline: Annotated[bool, typer.Option(
        help="Measure the CPU's fp32 and int8 matrix-product peak at each thread count "
             "(about a second) and give each row its share of it.")] = True,
    out: Annotated[Optional[Path], typer.Option(
        help="Also write the rows to this .csv or .parquet file, and the race's environment "
             "(CPU, flags, versions, the measured peaks) beside it as <out>.json.")] = None,
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
    entries = varied_entries(entries, parse_vary(vary or []))
    if len(entries) < 2:
        raise MovibenchError(f"a race needs two deployments or more, got {len(entries)}")
    reference = pick_baseline(entries, baseline)
    rounds = min(rounds, iterations)
    peaks = {}

    def measure(threads: int, on_block):
        if roofline:
            from bench.trackers.roofline import gemm_peak

            peaks[threads] = gemm_peak(threads)
        return race_threads(entries, threads, warmup=warmup, iterations=iterations,
                            rounds=rounds, on_block=on_block, baseline=reference,
                            peak=peaks.get(threads))

    rows: list[RaceRow] = per_thread_count(thread_counts, len(entries), "deployments", rounds,
                                           measure)
    facts = {"iterations": iterations, "warmup": warmup, "rounds": rounds,
             "baseline": reference, "gemm_peaks": [p.to_dict() for p in peaks.values()]}
    if out is not None:
        from bench.evaluation.evaluate import write_table
        from bench.results.environment import environment

        write_table([{**r.to_dict(), "settings": json.dumps(r.settings, sort_keys=True),
                      "options": json.dumps(r.options, sort_keys=True)} for r in rows], out)
        out.with_name(out.name + ".json").write_text(
            json.dumps({**facts, "environment": environment()}, indent=2) + "\n")
    failed = [r for r in rows if r.error]
    if as_json:
        print(json.dumps({**facts, "rows": [r.to_dict() for r in rows]}, indent=2))
    else:
        _print_table(rows, iterations)
    raise typer.Exit(EXIT_FAILED if failed else EXIT_OK)


def _print_table(rows: list[RaceRow], iterations: int) -> None:
    fmt = lambda v, spec: "–" if v is None else format(v, spec)  # noqa: E731
    stdout.print(f"{iterations} timed calls per deployment, side by side", highlight=False)
    for threads in dict.fromkeys(r.threads for r in rows):
        table = Table(title=f"{threads} thread(s)", box=None, pad_edge=False)
        for col in ("deployment", "p50 ms/call", "p90 ms/call", "p50 ms/frame", "×fastest",
                    "×baseline", "roofline", "top-1", "max|Δ| to first"):
            table.add_column(col, justify="left" if col == "deployment" else "right",
                             no_wrap=True)
        for r in (r for r in rows if r.threads == threads):
            if r.error:
                table.add_row(escape(r.label), f"[red]FAILED[/] {escape(r.error)}",
                              *[""] * 7)
                continue
            table.add_row(escape(r.label), fmt(r.call_p50_ms, ".3f"), fmt(r.call_p90_ms, ".3f"),
                          fmt(r.frame_p50_ms, ".3f"), fmt(r.ratio_to_fastest, ".2f"),
                          fmt(r.speedup_vs_baseline, ".2f"), fmt(r.roofline_share, ".1%"),
                          fmt(None if r.top1 is None else 100 * r.top1, ".1f"),
                          fmt(r.max_abs_diff_to_first, ".1e"))
        stdout.print()
        stdout.print(table)
