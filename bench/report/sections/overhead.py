"""What the harness adds to each engine call."""

from __future__ import annotations

from bench.report.analysis import ok_cells
from bench.report.formatting import deployment, head, num, rows_table
from bench.report.render import Section
from bench.results.rundir import RunData
from bench.scenarios import LATENCY


def section_overhead(run: RunData) -> Section:
    """The section "Harness overhead" of `run`."""
    section = Section("Harness overhead")
    ok = ok_cells(run.cells, LATENCY).dropna(subset=["harness_step_ms", "bare_step_ms"])
    if ok.empty:
        return section.omit("no latency cell recorded its harness and bare-loop times.")
    ok = ok.assign(deployment=[deployment(r) for _, r in ok.iterrows()])
    summary = ok.groupby("deployment", sort=False).agg(
        runtime=("runtime", "first"), cells=("cell_id", "size"), frame=("frame_p50_ms", "median"),
        bare=("bare_step_ms", "median"), harness=("harness_step_ms", "median"),
        overhead=("harness_overhead_pct", "median"), worst=("harness_overhead_pct", "max"),
    ).sort_values("bare", kind="stable")
    rows = [{"deployment": name, "runtime": r["runtime"], "cells": str(r["cells"]),
             head("frame_p50_ms", "median per-frame p50"): num(r["frame"], 3),
             head("bare_step_ms", "median bare call"): num(r["bare"], 3),
             head("harness_step_ms", "median harness call"): num(r["harness"], 3),
             "median overhead (%)": num(r["overhead"], 2), "max overhead (%)": num(r["worst"], 2)}
            for name, r in summary.iterrows()]
    section.blocks += [
        "What the harness adds to each engine call (input checks against the manifest, state "
        "bookkeeping, per-call timing): the median of the harness's calls minus that of bare "
        "calls to the same runtime, timed in alternating blocks so that drift hits both alike. "
        "Negative values are noise. Shortest engine call first: the harness's fixed cost per "
        "call weighs most there.",
        rows_table(rows),
    ]
    return section
