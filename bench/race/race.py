"""Deployments raced side by side: which artifacts, labelled how, and one row each per thread count.

A matrix times each deployment in its own cell, one after another; on a machine whose speed
drifts, the ratio of two cells minutes apart carries that drift. A race opens the artifacts
together and interleaves their timed calls (bench.race.interleaved), so each ratio is measured
under the same conditions: the figure to quote for "A is N x faster than B". The columns of a
race's rows are bench.results.schema.RACE_COLUMNS.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.race.interleaved import Contender, measure_side_by_side, summarise
from core.errors import MovibenchError


@dataclass
class RaceRow:
    """One deployment at one thread count, timed side by side with the others: a row of
    race.csv, whose columns (these fields, in order) bench.results.schema.RACE_COLUMNS
    describes."""

    threads: int
    label: str
    artifact: str
    format: str
    runtime: str
    frames_per_call: int
    calls: int = 0
    call_p50_ms: float | None = None
    call_p90_ms: float | None = None
    frame_p50_ms: float | None = None
    ratio_to_fastest: float | None = None
    max_abs_diff_to_first: float | None = None
    fastest: bool = False
    speedup_vs_baseline: float | None = None
    baseline: bool = False
    macs_per_frame: int | None = None
    gmacs_per_s: float | None = None
    peak_gmacs: float | None = None
    roofline_share: float | None = None
    top1: float | None = None
    top1_agreement: float | None = None
    error: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

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

    def first_of_its_model(entry: Contender) -> Contender:
        m = entry.session.manifest
        return firsts.setdefault((m.model_id, m.variant, m.num_classes, entry.inputs[0].shape),
                                 entry)

    for entry, summary in zip(contenders, summarise(contenders, first_of_its_model)):
        row = rows[entry.label]
        row.error = entry.error
        if summary is None:
            continue
        row.calls, row.call_p50_ms, row.call_p90_ms = summary.calls, summary.p50_ms, summary.p90_ms
        row.frame_p50_ms = summary.p50_ms / row.frames_per_call
        row.max_abs_diff_to_first = summary.max_abs_diff
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


