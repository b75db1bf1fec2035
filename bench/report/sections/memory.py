"""Peak memory and time vs clip length (the memory sweep)."""

from __future__ import annotations

from pathlib import Path

from bench.report.analysis import ok_cells
from bench.report.formatting import fmt_label, head, num, rows_table
from bench.report.render import Figure, Section
from bench.results.rundir import RunData
from bench.scenarios import MEMORY


def section_memory(run: RunData, out_dir: Path) -> Section:
    """The section "Peak memory and time vs clip length" of `run`,
    its figures written into `out_dir`."""
    from bench.report.plots import memory_plot

    section = Section("Peak memory and time vs clip length")
    sweep = ok_cells(run.cells, MEMORY).dropna(subset=["clip_frames"])
    if sweep.empty:
        return section.omit("this run has no memory-sweep cells ([memory_sweep] in the matrix).")
    sweep = sweep.assign(series=[f"{r['model']}/{r['variant']} {fmt_label(r)} {r['sweep_mode']}"
                                 for _, r in sweep.iterrows()])
    section.blocks.append(
        "Each point is a fresh process running one random clip of that length, twice (the time "
        "is the second run: the first traces or plans for the shape). Memory is over the idle "
        "reading taken after importing the runtime's engine, before loading the model: the "
        "process's resident high-water mark (covers load and both runs) and its largest unique "
        "set size at the phase boundaries. One figure per runtime.")
    for runtime, group in sweep.groupby("runtime", sort=True):
        path = memory_plot(group, out_dir / f"memory_vs_clip_length_{runtime}.png",
                           f"{runtime}: one call on the whole clip (full-clip, dashed) vs frame "
                           "by frame (stream, solid)")
        section.blocks.append(Figure(path, f"{runtime}: peak RSS over idle and time vs clip length."))
    rows = [{"model": f"{r['model']}/{r['variant']}", "format": fmt_label(r), "mode": r["sweep_mode"],
             head("clip_frames", "clip"): str(r["clip_frames"]),
             head("peak_rss_delta_mb", "peak RSS over idle"): num(r["peak_rss_delta_mb"], 0),
             head("uss_delta_mb", "USS over idle"): num(r["uss_delta_mb"], 0),
             head("peak_rss_mb", "peak RSS"): num(r["peak_rss_mb"], 0),
             head("sweep_s", "time"): num(r["sweep_s"], 3)}
            for _, r in sweep.sort_values(["runtime", "series", "clip_frames"], kind="stable").iterrows()]
    section.blocks.append(rows_table(rows))
    return section
