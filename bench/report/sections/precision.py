"""Reduced precision vs fp32: the accuracy it costs and the speed it buys."""

from __future__ import annotations

from bench.report.analysis import fp32_pairs, prediction_agreement
from bench.report.formatting import fmt_label, head, num, pct, rows_table
from bench.report.render import Section
from bench.results.rundir import RunData
from bench.scenarios import deployment_format


def section_precision(run: RunData) -> Section:
    """The section "Reduced precision vs fp32" of `run`."""
    section = Section("Reduced precision vs fp32")
    pairs = fp32_pairs(run.cells)
    if pairs.empty:
        return section.omit("no fp16, dynamic-range or int8 accuracy cell has an fp32 cell of "
                            "the same runtime, model, weights, input, threads and protocol.")
    rows = []
    order = ["model", "variant", "format", "artifact_source", "threads", "protocol",
             "artifact_source_fp32"]
    for _, r in pairs.sort_values(order, kind="stable").iterrows():
        agreement, videos = prediction_agreement(run.predictions, r["cell_id"], r["cell_id_fp32"])
        rows.append({
            "model": f"{r['model']}/{r['variant']}", "format": fmt_label(r),
            "vs": deployment_format(r["format_fp32"], r["artifact_source_fp32"]),
            "threads": str(r["threads"]), "protocol": r["protocol"],
            "videos": str(videos),
            "fp32 " + head("top1", "top-1"): pct(r["top1_fp32"]),
            head("top1", "top-1"): pct(r["top1"]),
            "Δ top-1 (points)": num(100 * (r["top1"] - r["top1_fp32"]), 1),
            "top-1 agreement with fp32 (%)": pct(agreement),
            "fp32 " + head("frame_p50_ms", "per-frame p50"): num(r["frame_p50_ms_fp32"], 3),
            head("frame_p50_ms", "per-frame p50"): num(r["frame_p50_ms"], 3),
            "speedup over fp32 (×)": num(r["frame_p50_ms_fp32"] / r["frame_p50_ms"], 2)})
    section.blocks += [
        "What a reduced-precision artifact costs in accuracy and buys in speed, against the fp32 "
        "artifact of the same runtime, weights, input, threads and protocol, on the same videos. "
        "Agreement is the share of videos whose top-1 class is the same in both; per-frame p50 "
        "comes from each deployment's latency cell; speedup = fp32 p50 / this p50 (above 1 the "
        "reduced precision is faster). On random-init weights the logits are nearly tied, so "
        "agreement there says little; on trained weights it is the accuracy cost.",
        rows_table(rows)]
    return section
