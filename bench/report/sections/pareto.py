"""Latency vs accuracy, and the cells on its Pareto front."""

from __future__ import annotations

from pathlib import Path

from bench.report.analysis import ok_cells, pareto_front
from bench.report.formatting import by_deployment_format, deployment, head, num, pct, rows_table
from bench.report.render import Figure, Section
from bench.results.rundir import RunData
from bench.scenarios import ACCURACY


def section_pareto(run: RunData, out_dir: Path) -> Section:
    """The section "Latency vs accuracy" of `run`, its figures written into `out_dir`."""
    from bench.report.plots import pareto_plot

    section = Section("Latency vs accuracy")
    points = ok_cells(run.cells, ACCURACY).dropna(subset=["video_ms", "top1"])
    if points.empty:
        return section.omit("no accuracy cell with both a per-video model time and an accuracy.")
    front = points[pareto_front(points, "video_ms", "top1")]
    path = pareto_plot(by_deployment_format(points), by_deployment_format(front),
                       out_dir / "latency_vs_accuracy.png",
                       "Accuracy vs cost per video, by protocol")
    rows = [{"deployment": deployment(r), "protocol": r["protocol"],
             head("video_ms", "model time / video"): num(r["video_ms"], 1),
             head("frames_per_video", "frames / video"): num(r["frames_per_video"], 1),
             head("top1", "top-1"): pct(r["top1"])}
            for _, r in front.sort_values("video_ms", kind="stable").iterrows()]
    section.blocks += [
        "Cost is the mean model time per video under the protocol (all its calls, overlapping "
        "subclips counted every time), accuracy the top-1 over the run's videos. The dashed "
        "line is the Pareto front: no other cell is both cheaper and more accurate.",
        Figure(path, "Top-1 vs model time per video; colour = protocol, marker = format."),
        rows_table(rows, "Cells on the Pareto front, cheapest first"),
    ]
    return section
