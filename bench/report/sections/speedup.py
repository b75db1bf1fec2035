"""Speedup of each exported format over the TensorFlow reference."""

from __future__ import annotations

from pathlib import Path

from bench.report.analysis import reference_speedups
from bench.report.formatting import by_deployment_format, head, num, rows_table
from bench.report.render import Figure, Section
from bench.results.rundir import RunData
from core.formats import TENSORFLOW


def section_speedup(run: RunData, out_dir: Path) -> Section:
    """The section "Speedup over the TensorFlow reference" of `run`,
    its figures written into `out_dir`."""
    from bench.report.plots import speedup_plot

    section = Section("Speedup over the TensorFlow reference")
    pairs = reference_speedups(run.cells)
    if pairs.empty:
        return section.omit("no exported-format cell has a TF cell with the same model, "
                            "weights, input, threads and protocol.")
    pairs = by_deployment_format(pairs)
    pairs = pairs.assign(series=[f"{r['model']}/{r['variant']} t{r['threads']}"
                                 for _, r in pairs.iterrows()])
    summary = pairs.groupby(["format", "series"], as_index=False)["frame_speedup"].median()
    path = speedup_plot(summary.rename(columns={"frame_speedup": "speedup"}),
                        out_dir / f"speedup_vs_{TENSORFLOW}.png",
                        "Per-frame p50 speedup over TensorFlow (median over protocols)")
    rows = [{"model": f"{r['model']}/{r['variant']}", "format": r["format"], "threads": str(r["threads"]),
             "protocol": r["protocol"],
             "TF " + head("frame_p50_ms", "per-frame p50"): num(r["frame_p50_ms_ref"], 3),
             head("frame_p50_ms", "per-frame p50"): num(r["frame_p50_ms"], 3),
             "per-frame speedup (×)": num(r["frame_speedup"], 2),
             "TF " + head("video_ms", "model time / video"): num(r["video_ms_ref"], 1),
             head("video_ms", "model time / video"): num(r["video_ms"], 1),
             "per-video speedup (×)": num(r["video_speedup"], 2)}
            for _, r in pairs.sort_values(["model", "variant", "format", "threads", "protocol"],
                                          kind="stable").iterrows()]
    section.blocks += [
        "Speedup = TF latency / format latency, for cells matched on model, weights, input, "
        "threads and protocol: per frame (median engine call ÷ frames per call) and per video "
        "(mean model time under the protocol). Above 1 the exported format is faster.",
        Figure(path, "Median per-frame speedup per format and thread count."),
        rows_table(rows),
    ]
    return section
