"""End to end against model only: what a camera pipeline gets out of each deployment."""

from __future__ import annotations

from bench.report.analysis import end_to_end
from bench.report.formatting import deployment, head, num, pct, rows_table
from bench.report.render import Section
from bench.results.rundir import RunData


def section_end_to_end(run: RunData) -> Section:
    """The section "End to end vs model only" of `run`: per accuracy cell, frames/s with and
    without decoding and resizing, the latency cell's p50, p99 and first call, top-1 (and
    top-5 where the run has more than 5 classes)."""
    section = Section("End to end vs model only")
    cells = end_to_end(run.cells)
    if cells.empty:
        return section.omit("no accuracy cell recorded its wall and model time per video.")
    top5 = cells["top5"].notna().any()
    rows = []
    for _, r in cells.iterrows():
        row = {"deployment": deployment(r), "protocol": r["protocol"],
               head("fps", "model only, latency cell"): num(r["fps"], 1),
               "model only, in the protocol (frames/s)": num(r["model_fps"], 1),
               "end to end (frames/s)": num(r["wall_fps"], 1),
               "outside the model (%)": pct(1 - r["video_ms"] / r["video_wall_ms"]),
               head("step_p50_ms", "call p50"): num(r["step_p50_ms"], 3),
               head("step_p99_ms", "call p99"): num(r["step_p99_ms"], 3),
               head("first_step_ms", "first call"): num(r["first_step_ms"], 1),
               head("top1", "top-1"): pct(r["top1"])}
        if top5:
            row[head("top5", "top-5")] = pct(r["top5"])
        rows.append(row)
    section.blocks += [
        "A model's frames/s is not a camera pipeline's. End to end is the frames the protocol "
        "puts through the model per second of wall time per video, decoding, resizing and "
        "the harness included; model only in the protocol is the same frames over the "
        "engine calls' own time, and the latency cell's is its median call of one deployment "
        "in a tight loop. Outside the model is the share of the wall time spent elsewhere. "
        "Call p50, p99 and the first call after load (lazy initialisation included) come "
        "from the deployment's latency cell (ms per engine call). Fastest end to end first"
        + ("." if top5 else "; top-5 is shown only for runs of more than 5 classes."),
        rows_table(rows),
    ]
    return section
