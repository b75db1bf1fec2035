"""How many camera streams one machine holds (the serving cells)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.report.analysis import ok_cells, serving_curves, streams_per_machine
from bench.report.formatting import deployment, head, num, pct, rows_table
from bench.report.render import Figure, Section
from bench.results.rundir import RunData, cell_label
from bench.scenarios import SERVING

RATES = (15.0, 30.0)


def _streams(row, fps: float) -> str:
    value = row[f"max_streams@{fps:g}"]
    if value is None or pd.isna(value):
        return "–"
    return f"≥ {int(value)}" if row[f"capped@{fps:g}"] else str(int(value))


def section_serving(run: RunData, out_dir: Path) -> Section:
    """The section "Streams per machine" of `run`, its figure written into `out_dir`."""
    from bench.report.plots import serving_plot

    section = Section("Streams per machine")
    served = ok_cells(run.cells, SERVING)
    if served.empty:
        return section.omit("this run has no serving cells ([serving] in the matrix).")
    first = served.iloc[0]
    section.blocks.append(
        "Each serving cell serves N streams, each a video at f fps with its own stream states, "
        "frames arriving open loop on each stream's clock for "
        f"{num(first['serve_duration_s'], 1)} s per count; latency runs from a frame's arrival "
        "to its logits, queueing included. A count holds when its p99 stays within one frame "
        "period with no frame dropped or unserved; the largest that holds is found "
        f"by {first['serve_search']} (serve_search). Strategy 'sessions': a session per "
        "stream served by a pool of worker threads (w). ≥: the search reached its cap. "
        "Bound: what the machine would hold if serving cost nothing — the deployment's latency "
        "cell's frames/s on one session × cores / threads, over the rate, rounded down (– "
        "without a latency cell of the deployment in the run).")
    curves = serving_curves(run.cells)
    path = serving_plot(curves, out_dir / "serving_p99_vs_streams.png",
                        "p99 latency vs streams, per deployment and serving setting")
    section.blocks.append(Figure(path, "p99 latency vs stream count; hollow: did not hold."))
    table = streams_per_machine(run.cells, RATES)
    if not table.empty:
        rows = [{"machine": f"{r['node_cpu']} ({r['node_cores']} cores)",
                 "deployment": deployment(r),
                 "strategy": f"{r['serve_strategy']} w{r['serve_workers']} "
                             f"j{float(r['serve_jitter']):g} {r['serve_policy']}",
                 **{f"streams at {fps:g} fps": _streams(r, fps) for fps in RATES},
                 **{f"bound at {fps:g} fps": "–" if r[f"bound@{fps:g}"] is None
                    or pd.isna(r[f"bound@{fps:g}"]) else str(int(r[f"bound@{fps:g}"]))
                    for fps in RATES}}
                for _, r in table.iterrows()]
        section.blocks.append(rows_table(rows, "Streams at 15 and 30 fps per machine"))
    rows = [{"cell": cell_label(r), head("serve_max_streams", "max streams"):
             str(r["serve_max_streams"]), head("serve_streams", "at N"): str(r["serve_streams"]),
             head("serve_p50_ms", "p50"): num(r["serve_p50_ms"]),
             head("serve_p99_ms", "p99"): num(r["serve_p99_ms"]),
             head("serve_delivered_fps", "delivered"): num(r["serve_delivered_fps"], 1),
             head("serve_deadline_miss_rate", "misses"): pct(r["serve_deadline_miss_rate"], 2),
             head("serve_cpu_util_pct", "CPU"): num(r["serve_cpu_util_pct"], 0),
             head("serve_state_bytes_per_stream", "state per stream"):
                 str(r["serve_state_bytes_per_stream"]),
             head("peak_rss_mb", "peak RSS"): num(r["peak_rss_mb"], 0)}
            for _, r in served.sort_values(["format", "serve_fps", "serve_workers"]).iterrows()]
    section.blocks.append(rows_table(rows, "At each cell's operating point (the largest count "
                                           "that held, else the smallest measured)"))
    return section
