"""Where the time goes: how each runtime runs its deployments (the exec_* columns)."""

from __future__ import annotations

import json

import pandas as pd

from bench.report.analysis import ok_cells
from bench.report.formatting import deployment, head, num, pct, rows_table
from bench.report.render import Section
from bench.results.rundir import RunData
from bench.scenarios import LATENCY
from runtimes.base import PROFILE_CALLS


TOP_OPS = 5  # op types named per deployment in "Where the time goes"


def _top(counts: dict, shown) -> str:
    """The first TOP_OPS entries of an exec_* JSON mapping (largest first), as 'OP value, ...'."""
    items = [f"{name} {shown(value)}" for name, value in list(counts.items())[:TOP_OPS]]
    more = len(counts) - TOP_OPS
    return ", ".join(items + ([f"+{more} more"] if more > 0 else [])) or "none"


def _execution_row(r) -> dict:
    return {"deployment": deployment(r),
            head("frames_per_call", "frames / call"): num(r["frames_per_call"], 0),
            head("frame_p50_ms", "per-frame p50"): num(r["frame_p50_ms"], 3),
            "nodes": num(r["exec_nodes"], 0)}


_PROFILED = (f"over {PROFILE_CALLS} calls on the timed calls' input (a stream model's states "
             "carried from call to call), the first call left out; on a second session opened "
             "like the timed one, so the timed calls are never profiled.")


# Runtimes whose exec_op_time comes from their own profiler: their name, what their second
# mapping (exec_provider_time) names, and how to read the table.
PROFILERS = {
    "onnxruntime": ("ONNX Runtime", "providers", (
        f"ONNX Runtime: its own profiler's node times per op type, {_PROFILED} Nodes are "
        "those of the graph after ONNX Runtime's optimizations (fused and layout nodes such as "
        "ReorderInput included); the time between nodes is not in the shares.")),
    "openvino": ("OpenVINO", "kernels", (
        f"OpenVINO: the CPU plugin's per-layer counters (PERF_COUNT), {_PROFILED} Layers are "
        "those the plugin executes after its own fusions (a 'Subgraph' is a fused group); "
        "kernels are the implementations it chose, e.g. jit_avx2_f32 (JIT code for AVX2) or "
        "ref_any_f32 (a reference C++ loop, the slow path).")),
}


# ONNX Runtime nodes that move data between layouts (its blocked NCHWc convolutions and the
# plain NCHW/NHWC of everything else) rather than compute.
LAYOUT_NODES = ("ReorderInput", "ReorderOutput", "Transpose")


def execution_reading(r) -> str | None:
    """What a latency cell's exec_* facts say keeps its deployment off its runtime's fast
    kernels, in one sentence; None when the cell has no such facts."""
    if r["runtime"] == "litert" and pd.notna(r["exec_partitions"]):
        builtin = json.loads(r["exec_builtin_ops"])
        left, partitions = sum(builtin.values()), int(r["exec_partitions"])
        if not left:
            return (f"all {num(r['exec_nodes'], 0)} nodes run on XNNPACK "
                    f"({partitions} partition{'s' if partitions > 1 else ''}): nothing falls back")
        top, count = next(iter(builtin.items()))
        return (f"{partitions} XNNPACK partition{'s' if partitions > 1 else ''}; {left} nodes "
                f"run on LiteRT's built-in kernels (most: {top}, {count}), and every partition "
                "boundary hands tensors over between the two")
    if pd.isna(r["exec_op_time"]):
        return None
    shares = json.loads(r["exec_op_time"])
    top, share = next(iter(shares.items()), ("none", float("nan")))
    if r["runtime"] == "onnxruntime":
        layout = sum(shares.get(op, 0.0) for op in LAYOUT_NODES)
        return (f"{pct(layout)} % of node time converts layouts ({', '.join(LAYOUT_NODES)}), "
                f"{pct(shares.get('Conv', 0.0))} % is convolution; the rest is elementwise and "
                "shape nodes the runtime did not fuse into them")
    if r["runtime"] == "openvino":
        kernels = json.loads(r["exec_provider_time"])
        reference = sum(v for k, v in kernels.items() if k.startswith("ref"))
        return (f"{pct(reference)} % of layer time on reference (non-JIT) kernels; the largest "
                f"layer type is {top} at {pct(share)} %")
    return None


def section_execution(run: RunData) -> Section:
    section = Section("Where the time goes")
    cells = ok_cells(run.cells, LATENCY)
    cells = cells[cells["exec_nodes"].notna()].sort_values(
        ["model", "variant", "format", "artifact_source", "threads", "frames_per_call"],
        kind="stable")
    if cells.empty:
        return section.omit("no latency cell recorded how its runtime runs the artifact (the "
                            "exec_* columns: LiteRT, ONNX Runtime and OpenVINO cells).")
    delegated = cells[cells["exec_partitions"].notna()]
    if not delegated.empty:
        rows = [{**_execution_row(r), "XNNPACK partitions": num(r["exec_partitions"], 0),
                 "delegated nodes (%)": pct(r["exec_delegated_nodes"] / r["exec_nodes"]),
                 "left on built-in kernels (nodes)": _top(json.loads(r["exec_builtin_ops"]), str)}
                for _, r in delegated.iterrows()]
        section.blocks += [
            "LiteRT: XNNPACK takes the nodes it supports in partitions, one delegate kernel "
            "each; the nodes it does not take run on LiteRT's built-in kernels between them, "
            "and every partition boundary hands tensors over from one to the other. Read off "
            "the interpreter's node table after the timed calls; the nodes left out are named "
            "by op type and first operand dtype, most frequent first.",
            rows_table(rows, "LiteRT: how the graph is split between XNNPACK and the built-in kernels")]
    profiled = cells[cells["exec_op_time"].notna()]
    for runtime, (name, what, text) in PROFILERS.items():
        mine = profiled[profiled["runtime"] == runtime]
        if mine.empty:
            continue
        rows = [{**_execution_row(r),
                 "share of node time (%)": _top(json.loads(r["exec_op_time"]), pct),
                 f"{what} (% of node time)": _top(json.loads(r["exec_provider_time"]), pct)}
                for _, r in mine.iterrows()]
        section.blocks += [text, rows_table(rows, f"{name}: share of node time per op type, "
                                               "largest first")]
    # One reading per deployment, at its highest thread count and fewest frames per call.
    ordered = cells.sort_values(["threads", "frames_per_call"], ascending=[False, True],
                                kind="stable")
    ordered = ordered.assign(key=[deployment(r).rsplit(" t", 1)[0] for _, r in ordered.iterrows()])
    readings = [{"deployment": deployment(r), "what the facts above say": text}
                for _, r in ordered.drop_duplicates("key").sort_values("key", kind="stable").iterrows()
                if (text := execution_reading(r))]
    if readings:
        section.blocks.append(rows_table(readings, "Why, in the facts above: what keeps each "
                                               "deployment off its runtime's fast kernels"))
    return section
