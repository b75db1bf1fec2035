"""The run's deployments side by side in one process: its race.csv, whose columns are
bench.results.schema.RACE_COLUMNS."""

from __future__ import annotations

import pandas as pd

from bench.report.formatting import RACE_UNITS, head, num, pct, rows_table, sci
from bench.report.render import Section
from bench.results.rundir import RunData


def section_race(run: RunData) -> Section:
    """The section "Side by side in one process" of `run`."""
    section = Section("Side by side in one process")
    race = run.race
    if race is None or race.empty:
        return section.omit("the run has no race.csv (`movibench race --run RUN --out "
                            "RUN/race.csv` times its deployments side by side).")
    for threads, rows in race.groupby("threads", sort=True):
        table = []
        for _, r in rows.sort_values("frame_p50_ms", kind="stable").iterrows():
            failed = isinstance(r["error"], str) and r["error"]
            table.append({
                "deployment": r["label"], "frames / call": str(r["frames_per_call"]),
                "calls": str(r["calls"]),
                head("call_p50_ms", "p50 per call", RACE_UNITS): num(r["call_p50_ms"], 3),
                head("call_p90_ms", "p90 per call", RACE_UNITS): num(r["call_p90_ms"], 3),
                head("frame_p50_ms", "p50 per frame", RACE_UNITS):
                    "failed: " + r["error"] if failed else num(r["frame_p50_ms"], 3),
                "× the fastest": num(r["ratio_to_fastest"], 2),
                **_race_extras(r),
                "max |Δlogit| to the first": sci(r["max_abs_diff_to_first"])})
        section.blocks.append(rows_table(table, f"{threads} thread(s)"))
    if "roofline_share" in race.columns:
        section.blocks.append(
            "Speedup = the baseline's per-frame p50 / this one's (`race --baseline`). Roofline = "
            "multiply-adds per frame (counted from the artifact's graph: convolutions and matrix "
            "products) per second at this p50, over the CPU's measured matrix-product peak of "
            "the deployment's precision at this thread count (int8 for full int8, fp32 else; "
            "bench/trackers/roofline.py, the peaks in race.csv.json). Top-1 is the run's "
            "accuracy cell on the same artifact.")
    section.blocks.insert(0, (
        "The latency cells above ran one after another, each in its own process; a machine "
        "whose speed drifts puts that drift into their ratios. Here the same artifacts were "
        "opened together in one process and timed in alternating rounds (`movibench race`, "
        "docs/tuning.md), so drift hits them alike: quote these ratios. × the fastest = this "
        "per-frame p50 / the lowest of the same thread count. The logit difference is to the "
        "race's first deployment of the same model and input shape, on noise frames: far from "
        "what int8 was calibrated on, so no accuracy figure (the accuracy cells are). "
        "Memory is not measured here: every engine is loaded in the one process."))
    return section


def _race_extras(r: pd.Series) -> dict[str, str]:
    """The columns a race written with --baseline and the roofline adds (older ones lack them)."""
    extras = {}
    if "speedup_vs_baseline" in r.index:
        extras["speedup vs the baseline"] = num(r["speedup_vs_baseline"], 2)
    if "roofline_share" in r.index:
        extras["M multiply-adds / frame"] = num(r["macs_per_frame"] / 1e6, 1)
        extras[head("roofline_share", "roofline", RACE_UNITS)] = pct(r["roofline_share"])
    if "top1" in r.index:
        extras[head("top1", "top-1", RACE_UNITS)] = pct(r["top1"])
    return extras
