"""The headline: the best deployment per runtime and precision."""

from __future__ import annotations

from bench.report.analysis import best_per_runtime
from bench.report.formatting import deployment, head, num, pct, rows_table
from bench.report.render import Section
from bench.results.rundir import RunData


BEST_RULE = ("Best = among the successful accuracy cells of a runtime and precision, the "
             "highest top-1; ties broken by the lowest per-frame p50 of the deployment's latency "
             "cell (the same model, weights, format, threads and frames per call).")


def section_headline(run: RunData) -> Section:
    """The section "Best deployment per runtime and precision" of `run`."""
    section = Section("Best deployment per runtime and precision")
    best = best_per_runtime(run.cells)
    if best.empty:
        return section.omit("no successful accuracy cell in this run.")
    gpu = best["gpu_mem_peak_mb"].notna().any()
    rows = []
    for _, r in best.iterrows():
        row = {"runtime": r["runtime"], "precision": r["precision"], "deployment": deployment(r),
               "protocol": r["protocol"],
               head("frames_per_call", "frames / call"): num(r["frames_per_call"], 0),
               head("frame_p50_ms", "per-frame p50"): num(r["frame_p50_ms"], 3),
               head("fps", "fps"): num(r["fps"], 1),
               head("peak_rss_delta_mb", "peak RSS over idle"): num(r["peak_rss_delta_mb"], 0),
               head("uss_delta_mb", "USS over idle"): num(r["uss_delta_mb"], 0)}
        if gpu:
            row[head("gpu_mem_peak_mb", "GPU memory")] = num(r["gpu_mem_peak_mb"], 0)
        row[head("artifact_mb", "artifact")] = num(r["artifact_mb"], 2)
        row[head("export_s", "export")] = num(r["export_s"], 1)
        row[head("load_s", "load")] = num(r["load_s"], 2)
        row[head("top1", "top-1")] = pct(r["top1"])
        rows.append(row)
    section.blocks += [BEST_RULE + " Per-frame p50 and fps come from the latency cell (median "
                       "engine call of that many frames ÷ frames per call); memory from the "
                       "accuracy cell's own process: its resident high-water mark (load, "
                       "warm-up and the whole protocol) and its largest unique set size at the "
                       "phase boundaries, each over the idle reading taken after importing the "
                       "runtime's engine. Export is the conversion that built the artifact "
                       "(once; later runs take it from the cache), load the time to open it "
                       "(TensorFlow: build the model and load its checkpoint). TensorFlow has "
                       "no exported artifact.", rows_table(rows)]
    return section
