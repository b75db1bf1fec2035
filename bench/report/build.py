"""The report of one run: `report.md` plus a self-contained `report.html`, and the PNGs.

Sections are built here once as data (paragraphs, tables of formatted strings, figures, code)
and rendered twice by bench.report.render, so the Markdown and the HTML say the same thing. Every number comes
from the run directory's files (bench.results.rundir); a piece the run lacks (no memory sweep, no
stream trace, no TF reference) is omitted with a sentence saying so, never invented.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from bench.evaluation.compare_logits import PRECISION_TOLERANCES
from bench.evaluation.protocols import MULTI_CLIP, STREAM, parse_protocol, softmax, subclip_starts
from bench.report.render import Code, Figure, Section, Table, render_html, render_markdown
from bench.results.rundir import RunData, cell_label, load_run
from bench.results.schema import CELL_COLUMNS
from bench.scenarios import ACCURACY, LATENCY, MEMORY, deployment_format
from core.formats import TENSORFLOW
from runtimes.base import PROFILE_CALLS

UNITS = {c.name: c.unit for c in CELL_COLUMNS}
# What identifies a deployment: the latency scenario measures each once. The artifact's source
# tells a foreign file apart from movibench's export of the same format.
DEPLOYMENT_KEY = ["model", "variant", "checkpoint", "resolution", "format", "artifact_source",
                  "threads", "frames_per_call"]
LATENCY_COLUMNS = ["frame_p50_ms", "fps", "step_p50_ms", "step_p99_ms"]

BEST_RULE = ("Best = among the successful accuracy cells of a runtime and precision, the "
             "highest top-1; ties broken by the lowest per-frame p50 of the deployment's latency "
             "cell (the same model, weights, format, threads and frames per call).")
TRACE_CLASSES = 5  # classes drawn in the prediction trace
TOP_OPS = 5  # op types named per deployment in "Where the time goes"


@dataclass
class ReportPaths:
    """What build_report wrote."""

    markdown: Path
    html: Path
    images: list[Path]
    sections: list[str]
    omitted: list[str]

    def to_dict(self) -> dict:
        return {"markdown": str(self.markdown), "html": str(self.html),
                "images": [str(p) for p in self.images], "sections": self.sections,
                "omitted": self.omitted}


# --- formatting ----------------------------------------------------------------------------

def head(column: str, text: str) -> str:
    """A header with the column's unit from the schema: 'per-frame p50 (ms)'."""
    unit = UNITS.get(column, "")
    unit = "%" if unit == "fraction" else unit
    return f"{text} ({unit})" if unit else text


def num(value, digits: int = 2) -> str:
    """A number with `digits` decimals; '–' for a missing value."""
    if value is None or pd.isna(value):
        return "–"
    return f"{float(value):,.{digits}f}"


def pct(value, digits: int = 1) -> str:
    """A fraction as a percentage."""
    return "–" if value is None or pd.isna(value) else f"{100 * float(value):.{digits}f}"


def sci(value) -> str:
    return "–" if value is None or pd.isna(value) else f"{float(value):.2e}"


def fmt_label(row) -> str:
    """A row's format, with its artifact's source when that is not movibench's own export."""
    return deployment_format(row["format"], row.get("artifact_source"))


def deployment(row) -> str:
    return f"{row['model']}/{row['variant']} {fmt_label(row)} t{row['threads']}"


def by_deployment_format(cells: pd.DataFrame) -> pd.DataFrame:
    """`cells` with `format` replaced by its label (fmt_label), for figures and tables that
    group or mark by format."""
    return cells.assign(format=[fmt_label(r) for _, r in cells.iterrows()])


def _table(rows: list[dict], caption: str = "") -> Table:
    return Table(pd.DataFrame(rows).astype(str), caption)


def _ok(cells: pd.DataFrame, kind: str) -> pd.DataFrame:
    return cells[(cells["kind"] == kind) & (cells["status"] == "ok")]


# --- analysis ------------------------------------------------------------------------------

def call_frames(row) -> float:
    """Frames per call of an accuracy cell's deployment: the artifact's fixed T, else (TF,
    any T) what its latency cell times: 1 for a causal model, L for a base model's multi-clip
    or full-clip."""
    from core.zoo import get_variant

    if pd.notna(row["frames_per_call"]):
        return float(row["frames_per_call"])
    if get_variant(row["variant"]).causal:
        return 1.0
    protocol = parse_protocol(row["protocol"])
    if protocol.kind == MULTI_CLIP:
        return float(protocol.clip_frames)
    return float(row["frames_per_video"])


def with_latency(cells: pd.DataFrame) -> pd.DataFrame:
    """The successful accuracy cells, each with its deployment's latency-cell figures
    (LATENCY_COLUMNS; NaN where the run has no such latency cell)."""
    acc = _ok(cells, ACCURACY)
    lat = _ok(cells, LATENCY)[DEPLOYMENT_KEY + LATENCY_COLUMNS]
    # Both sides' frames_per_call as float (also when there is no row), so the merge key matches.
    acc = acc.drop(columns=LATENCY_COLUMNS).assign(frames_per_call=pd.Series(
        [call_frames(r) for _, r in acc.iterrows()], index=acc.index, dtype=float))
    lat = lat.assign(frames_per_call=lat["frames_per_call"].astype(float))
    return acc.merge(lat.drop_duplicates(DEPLOYMENT_KEY), on=DEPLOYMENT_KEY, how="left")


def best_per_runtime(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per (runtime, precision): the best accuracy cell by BEST_RULE, with latency."""
    ok = with_latency(cells)
    ranked = ok.sort_values(["top1", "frame_p50_ms"], ascending=[False, True], na_position="last",
                            kind="stable")
    return ranked.groupby(["runtime", "precision"], sort=True).head(1).sort_values(
        ["runtime", "precision"], kind="stable")


def pareto_front(points: pd.DataFrame, cost: str, value: str) -> pd.Series:
    """True for the points no other point beats on both: cost no higher and value no lower
    (one strictly better)."""
    order = points.sort_values([cost, value], ascending=[True, False], kind="stable")
    best = -np.inf
    on_front = pd.Series(False, index=points.index)
    for idx, v in order[value].items():
        if v > best:
            on_front[idx] = True
            best = v
    return on_front


def paired_with(cells: pd.DataFrame, is_base, key: list[str], columns: list[str],
                suffix: str) -> pd.DataFrame:
    """Each successful accuracy cell (with its deployment's latency) that `is_base` (a row mask
    of those cells) rejects, next to every accepted cell with the same `key`: the accepted
    cell's `columns` with `suffix`."""
    ok = with_latency(cells)
    base = is_base(ok)
    return ok[~base].merge(ok[base][key + columns], on=key, suffixes=("", suffix))


def reference_pairs(cells: pd.DataFrame) -> pd.DataFrame:
    """Each non-TF accuracy cell (with its deployment's latency) next to the TF cell of the same
    model, weights, input, threads and protocol (suffix _ref)."""
    return paired_with(cells, lambda ok: ok["format"] == TENSORFLOW,
                       ["model", "variant", "checkpoint", "resolution", "threads", "protocol"],
                       ["frame_p50_ms", "video_ms"], "_ref")


# --- sections ------------------------------------------------------------------------------

def section_headline(run: RunData) -> Section:
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
                       "no exported artifact.", _table(rows)]
    return section


def section_pareto(run: RunData, out_dir: Path) -> Section:
    from bench.report.plots import pareto_plot

    section = Section("Latency vs accuracy")
    points = _ok(run.cells, ACCURACY).dropna(subset=["video_ms", "top1"])
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
        _table(rows, "Cells on the Pareto front, cheapest first"),
    ]
    return section


MODEL_KEY = ["model", "variant", "checkpoint", "resolution"]


def best_format_per_model(cells: pd.DataFrame) -> pd.DataFrame:
    """Per model and weights, the accuracy cells (with a confusion matrix) of the format and
    thread count with the highest mean top-1 over their protocols; ties: the lowest mean
    per-frame p50 of their latency cells."""
    acc = with_latency(cells)
    acc = acc[acc["confusion"].notna() & acc["classes"].notna()]
    if acc.empty:
        return acc
    by = [*MODEL_KEY, "format", "artifact_source", "threads"]
    score = acc.groupby(by, dropna=False).agg(top1=("top1", "mean"),
                                                 frame_p50_ms=("frame_p50_ms", "mean")).reset_index()
    best = score.sort_values(["top1", "frame_p50_ms"], ascending=[False, True],
                             na_position="last", kind="stable").groupby(
        MODEL_KEY, dropna=False, sort=True).head(1)
    return acc.merge(best[by], on=by).sort_values([*MODEL_KEY, "protocol"], kind="stable")


def section_confusion(run: RunData, out_dir: Path) -> Section:
    from bench.report.plots import confusion_plot

    section = Section("Confusion matrices of the best deployment per model")
    best = best_format_per_model(run.cells)
    if best.empty:
        return section.omit("no successful accuracy cell with a confusion matrix.")
    section.blocks.append(
        "Per model and weights: the format and thread count whose accuracy cells have the "
        "highest mean top-1 over their protocols (ties: the lowest mean per-frame p50), one "
        "heatmap per protocol. Rows are the true classes, columns the predicted ones; the "
        "number is the count of videos, the colour that count's share of the true class's "
        "videos. From each cell's `confusion` and `classes` columns.")
    for n, (_, cells) in enumerate(best.groupby(MODEL_KEY, dropna=False, sort=True)):
        first = cells.iloc[0]
        classes = json.loads(first["classes"])
        matrices = [(r["protocol"], np.asarray(json.loads(r["confusion"]), dtype=int))
                    for _, r in cells.iterrows()]
        name = f"{first['model']}/{first['variant']} {fmt_label(first)} t{int(first['threads'])}"
        path = confusion_plot(matrices, classes, out_dir / f"confusion_{n}.png",
                              f"{name}: true vs predicted class per protocol")
        rows = [{"protocol": r["protocol"], "videos": num(r["videos"], 0),
                 head("top1", "top-1"): pct(r["top1"]),
                 head("mean_class_accuracy", "mean per-class accuracy"): pct(r["mean_class_accuracy"])}
                for _, r in cells.iterrows()]
        weights = first["checkpoint"] if isinstance(first["checkpoint"], str) and first["checkpoint"] \
            else "random init"
        section.blocks += [Figure(path, f"Confusion matrices of {name} ({weights})."),
                           _table(rows, f"{name}: accuracy per protocol")]
    return section


def section_memory(run: RunData, out_dir: Path) -> Section:
    from bench.report.plots import memory_plot

    section = Section("Peak memory and time vs clip length")
    sweep = _ok(run.cells, MEMORY).dropna(subset=["clip_frames"])
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
    section.blocks.append(_table(rows))
    return section


def _trace_source(run: RunData) -> tuple[pd.Series, pd.Series] | None:
    """(prediction row with a trace, its cell): the TF reference's stream cell when there is one."""
    preds = run.predictions
    if preds.empty:
        return None
    traced = preds[preds["trace"].fillna("").str.len() > 0]
    cells = _ok(run.cells, ACCURACY).set_index("cell_id", drop=False)
    candidates = []
    for _, p in traced.iterrows():
        if p["cell_id"] in cells.index and str(cells.at[p["cell_id"], "protocol"]).startswith(STREAM):
            cell = cells.loc[p["cell_id"]]
            candidates.append((cell["format"] != TENSORFLOW, cell_label(cell), p, cell))
    if not candidates:
        return None
    _, _, pred, cell = min(candidates, key=lambda c: c[:2])
    return pred, cell


def _video_frames(cell: pd.Series, steps: int, step: int) -> int:
    """Frames of the traced video: the cell's frames per video when it fits the trace (a
    dataset of one length), else steps × step (the last chunk may have been shorter)."""
    per_video = cell["frames_per_video"]
    fits = pd.notna(per_video) and (steps - 1) * step < per_video <= steps * step
    if fits and float(per_video).is_integer():
        return int(per_video)
    return steps * step


def _protocol_predictions(run: RunData, cell: pd.Series, video: str,
                          names: list[str]) -> dict[str, tuple[str, float]]:
    """protocol -> (predicted class, its probability) for `video` under the other protocols of
    the same deployment as `cell`."""
    same = _ok(run.cells, ACCURACY)
    for k in ("model", "variant", "checkpoint", "resolution", "format", "artifact_source",
              "threads"):
        same = same[same[k] == cell[k]]
    preds = run.predictions[run.predictions["video"] == video].drop_duplicates("cell_id")
    preds = preds.set_index("cell_id")
    said = {}
    for _, other in same.sort_values("protocol", kind="stable").iterrows():
        if other["cell_id"] == cell["cell_id"] or other["cell_id"] not in preds.index:
            continue
        p = preds.loc[other["cell_id"]]
        if bool(p["ok"]) and p["probs"]:
            vec = np.asarray(json.loads(p["probs"]))
            said[other["protocol"]] = (names[int(vec.argmax())], float(vec.max()))
    return said


def section_trace(run: RunData, out_dir: Path) -> Section:
    from bench.report.plots import trace_plot

    section = Section("Prediction trace of one video")
    source = _trace_source(run)
    if source is None:
        return section.omit("no stream cell with a recorded per-step trace in this run.")
    pred, cell = source
    logits = np.asarray(json.loads(pred["trace"]), dtype=np.float64)
    probs = softmax(logits.reshape(len(logits), -1))
    # A fixed-step artifact streams in its own step size; otherwise the protocol's chunk.
    fixed = cell["frames_per_call"]
    step = int(fixed) if pd.notna(fixed) else parse_protocol(cell["protocol"]).chunk
    total = _video_frames(cell, len(probs), step)
    frames = np.minimum(step * np.arange(1, len(probs) + 1), total)
    names = json.loads(cell["classes"]) if pd.notna(cell["classes"]) and cell["classes"] else []
    names = names if len(names) == probs.shape[1] else [f"class {i}" for i in range(probs.shape[1])]
    true_class = names[int(pred["label_index"])] if pd.notna(pred["label_index"]) else None
    # Classes by their peak probability over the video; the true class is always shown.
    top = list(np.argsort(-probs.max(axis=0), kind="stable")[:TRACE_CLASSES])
    if true_class is not None and int(pred["label_index"]) not in top:
        top[-1] = int(pred["label_index"])
    shown = pd.DataFrame({names[i]: probs[:, i] for i in top})

    said = {cell["protocol"] + " (this trace)": (names[int(probs[-1].argmax())], float(probs[-1].max()))}
    said.update(_protocol_predictions(run, cell, pred["video"], names))
    rows = [{"protocol": k, "prediction": name, "probability": num(prob, 3)}
            for k, (name, prob) in said.items()]
    windows = []
    multi = sorted({p for p in _ok(run.cells, ACCURACY)["protocol"].dropna()
                    if p.startswith(MULTI_CLIP)}, key=lambda p: (parse_protocol(p).clips, p))
    for name in multi:
        proto = parse_protocol(name)
        label = f"{name} → {said[name][0]} ({said[name][1]:.2f})" if name in said else name
        windows.append((label, subclip_starts(total, proto.clips, proto.clip_frames), proto.clip_frames))
    # The class folder and file name: enough to find the video, free of the machine's paths.
    video = "/".join(Path(str(pred["video"])).parts[-2:])
    path = trace_plot(frames, shown, windows, total, true_class, out_dir / "prediction_trace.png",
                      f"{deployment(cell)} streaming one video\n{video} (true class: {true_class})")
    section.blocks += [
        f"Video `{video}` ({total} frames, true class **{true_class}**) streamed by "
        f"{deployment(cell)}: softmax of the logits after every step of {step} frame(s), for the "
        f"{len(top)} classes with the highest peak probability. Below: the subclips each "
        "multi-clip protocol of the run would take from this video (bench.evaluation.protocols.subclip_starts).",
        Figure(path, "Stream probabilities over time and the multi-clip windows."),
        _table(rows, f"What each protocol of {deployment(cell)} predicted for this video"),
    ]
    return section


def section_equivalence(run: RunData) -> Section:
    section = Section("Equivalence with the TensorFlow reference")
    ok = _ok(run.cells, ACCURACY)
    compared = ok[(ok["format"] != TENSORFLOW) & ok["ref_max_abs_prob_diff"].notna()]
    # Probabilities have scale 1: the tolerances' absolute bounds alone apply to them.
    tolerances = {p: replace(t, rtol=0.0) for p, t in PRECISION_TOLERANCES.items()}
    tolerance_rows = [{"precision": p, "tolerance": t.describe()} for p, t in tolerances.items()]
    if compared.empty:
        section.blocks.append("No exported-format cell has a TF reference cell (same model, "
                              "weights, input and protocol) in this run: nothing to compare.")
        section.omitted = run.validation is None
    else:
        rows = []
        groups = compared.groupby(["model", "variant", "format", "artifact_source", "precision",
                                   "runtime"], sort=True)
        for (model, variant, fmt, source, precision, runtime), g in groups:
            worst_diff = float(g["ref_max_abs_prob_diff"].max())
            worst_agree = float(g["ref_top1_agreement"].min())
            tol = tolerances.get(precision)
            verdict = ("no tolerance" if tol is None
                       else "PASS" if tol.accepts(worst_diff, worst_agree) else "FAIL")
            rows.append({"model": f"{model}/{variant}", "format": deployment_format(fmt, source),
                         "precision": precision,
                         "runtime": runtime, "cells": str(len(g)),
                         "max |Δ prob|": sci(worst_diff),
                         head("ref_top1_agreement", "min top-1 agreement"): pct(worst_agree),
                         "tolerance": tol.describe() if tol else "–", "verdict": verdict})
        section.blocks += [
            "Per format, the worst over its cells (threads × protocols) of the largest "
            "|Δ softmax probability| on any video vs the TF cell of the same model, weights, "
            "input and protocol, and the lowest share of videos with the same top-1.",
            _table(rows), _table(tolerance_rows, "Tolerances per precision")]
    if run.validation is not None:
        section.blocks += ["Cross-runtime validation table of the run (validation.parquet):",
                           _validation_table(run.validation)]
    return section


def _validation_table(validation: pd.DataFrame) -> Table:
    preferred = ["model", "format", "precision", "runtime", "max_abs", "mean_abs",
                 "top1_agreement", "tolerance", "passed"]
    columns = [c for c in preferred if c in validation] + [c for c in validation if c not in preferred]
    rows = []
    for _, r in validation[columns].iterrows():
        row = {}
        for c in columns:
            v = r[c]
            if c == "passed":
                row[c] = "–" if pd.isna(v) else ("PASS" if bool(v) else "FAIL")
            elif isinstance(v, (float, np.floating)):
                row[c] = pct(v) + " %" if c == "top1_agreement" else sci(v)
            else:
                row[c] = "–" if v is None or (np.isscalar(v) and pd.isna(v)) else str(v)
        rows.append(row)
    return _table(rows)


def section_speedup(run: RunData, out_dir: Path) -> Section:
    from bench.report.plots import speedup_plot

    section = Section("Speedup over the TensorFlow reference")
    pairs = reference_pairs(run.cells)
    if pairs.empty:
        return section.omit("no exported-format cell has a TF cell with the same model, "
                            "weights, input, threads and protocol.")
    pairs = by_deployment_format(pairs)
    pairs = pairs.assign(frame_speedup=pairs["frame_p50_ms_ref"] / pairs["frame_p50_ms"],
                         video_speedup=pairs["video_ms_ref"] / pairs["video_ms"],
                         series=[f"{r['model']}/{r['variant']} t{r['threads']}" for _, r in pairs.iterrows()])
    summary = pairs.groupby(["format", "series"], as_index=False)["frame_speedup"].median()
    path = speedup_plot(summary.rename(columns={"frame_speedup": "speedup"}),
                        out_dir / "speedup_vs_tensorflow.png",
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
        _table(rows),
    ]
    return section


def fp32_pairs(cells: pd.DataFrame) -> pd.DataFrame:
    """Each reduced-precision accuracy cell (with its deployment's latency) next to the fp32
    cell of the same runtime, model, weights, input, threads and protocol (suffix _fp32): one
    row per fp32 cell there is, movibench's and any [[artifacts]] one (Model Garden's recipe)."""
    return paired_with(cells, lambda ok: ok["precision"] == "fp32",
                       ["runtime", "model", "variant", "checkpoint", "resolution", "threads",
                        "protocol"],
                       ["cell_id", "format", "artifact_source", "top1", "frame_p50_ms"], "_fp32")


def prediction_agreement(predictions: pd.DataFrame, cell: str, other: str) -> tuple[float, int]:
    """Share of the videos both cells predicted on which their top-1 classes are the same,
    and how many such videos there are (nan, 0 when none)."""
    ok = predictions[predictions["ok"]]
    a = ok[ok["cell_id"] == cell].set_index("video")["pred_index"]
    b = ok[ok["cell_id"] == other].set_index("video")["pred_index"]
    both = a.index.intersection(b.index)
    if both.empty:
        return float("nan"), 0
    return float((a[both] == b[both]).mean()), int(len(both))


def section_precision(run: RunData) -> Section:
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
        _table(rows)]
    return section


def section_race(run: RunData) -> Section:
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
                "p50 per call (ms)": num(r["call_p50_ms"], 3),
                "p90 per call (ms)": num(r["call_p90_ms"], 3),
                "p50 per frame (ms)": "failed: " + r["error"] if failed else num(r["frame_p50_ms"], 3),
                "× the fastest": num(r["ratio_to_fastest"], 2),
                **_race_extras(r),
                "max |Δlogit| to the first": sci(r["max_abs_diff_to_first"])})
        section.blocks.append(_table(table, f"{threads} thread(s)"))
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
        extras["roofline (%)"] = pct(r["roofline_share"])
    if "top1" in r.index:
        extras["top-1 (%)"] = pct(r["top1"])
    return extras


def section_overhead(run: RunData) -> Section:
    section = Section("Harness overhead")
    ok = _ok(run.cells, LATENCY).dropna(subset=["harness_step_ms", "bare_step_ms"])
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
        _table(rows),
    ]
    return section


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
    cells = _ok(run.cells, LATENCY)
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
            _table(rows, "LiteRT: how the graph is split between XNNPACK and the built-in kernels")]
    profiled = cells[cells["exec_op_time"].notna()]
    for runtime, (name, what, text) in PROFILERS.items():
        mine = profiled[profiled["runtime"] == runtime]
        if mine.empty:
            continue
        rows = [{**_execution_row(r),
                 "share of node time (%)": _top(json.loads(r["exec_op_time"]), pct),
                 f"{what} (% of node time)": _top(json.loads(r["exec_provider_time"]), pct)}
                for _, r in mine.iterrows()]
        section.blocks += [text, _table(rows, f"{name}: share of node time per op type, "
                                               "largest first")]
    # One reading per deployment, at its highest thread count and fewest frames per call.
    ordered = cells.sort_values(["threads", "frames_per_call"], ascending=[False, True],
                                kind="stable")
    ordered = ordered.assign(key=[deployment(r).rsplit(" t", 1)[0] for _, r in ordered.iterrows()])
    readings = [{"deployment": deployment(r), "what the facts above say": text}
                for _, r in ordered.drop_duplicates("key").sort_values("key", kind="stable").iterrows()
                if (text := execution_reading(r))]
    if readings:
        section.blocks.append(_table(readings, "Why, in the facts above: what keeps each "
                                               "deployment off its runtime's fast kernels"))
    return section


def section_failures(run: RunData) -> Section:
    section = Section("Failed cells")
    failed = run.cells[run.cells["status"] != "ok"]
    if failed.empty:
        section.blocks.append(f"None: all {len(run.cells)} cells ran.")
        return section
    rows = [{"cell": cell_label(r), "cell_id": r["cell_id"],
             "exit code": "–" if pd.isna(r["exit_code"]) else str(r["exit_code"]),
             "error": "" if pd.isna(r["error"]) else str(r["error"])}
            for _, r in failed.sort_values("cell_id", kind="stable").iterrows()]
    section.blocks += [f"{len(failed)} of {len(run.cells)} cells failed.", _table(rows)]
    return section


def section_environment(run: RunData) -> Section:
    section = Section("Environment, command and configuration")
    meta, env = run.meta, dict(run.meta.get("environment", {}))
    libraries = env.pop("libraries", {})
    run_rows = [{"key": k, "value": str(meta[k])} for k in
                ("run_id", "name", "command", "config_hash", "started", "finished", "dataset",
                 "cells_planned") if k in meta]
    env_rows = [{"key": k, "value": " ".join(map(str, v)) if isinstance(v, list) else str(v)}
                for k, v in env.items()]
    lib_rows = [{"library": k, "version": v or "not installed"} for k, v in libraries.items()]
    if run_rows:
        section.blocks.append(_table(run_rows, "Run (run.json)"))
    if "command" in meta:
        section.blocks.append(Code(str(meta["command"]), "sh"))
    if env_rows:
        section.blocks.append(_table(env_rows, "Machine"))
    if lib_rows:
        section.blocks.append(_table(lib_rows, "Libraries"))
    if meta.get("nodes"):
        section.blocks.append(_table([_node_row(n) for n in meta["nodes"]],
                                     f"Nodes ({meta.get('executor', 'executor')}): where the cells ran"))
    if not (run_rows or env_rows):
        section.blocks.append("The run directory has no run.json.")
    section.blocks += (["Configuration (config.toml):", Code(run.config_text, "toml")]
                       if run.config_text else ["The run directory has no config.toml."])
    return section


def hardware_parts(run: RunData) -> list[tuple[str | None, RunData]]:
    """The run split by the CPU model its cells ran on (`node_cpu`): one part, named None, when
    they all ran on one kind of machine (or the run predates that column). Cells that do not
    say (never ran, or from before the column) are a part of their own then."""
    cpu = run.cells["node_cpu"].fillna("unknown CPU")
    if cpu.nunique() <= 1 or run.cells["node_cpu"].isna().all():
        return [(None, run)]
    return [(name, replace(run, cells=run.cells[cpu == name])) for name in sorted(cpu.unique())]


def per_hardware(run: RunData, out_dir: Path, build) -> list[Section]:
    """`build(run, out_dir)` once per CPU model of the run, so that no table, figure or
    median mixes latencies of different machines; each section and figure names its CPU."""
    parts = hardware_parts(run)
    if len(parts) == 1:
        return [build(run, out_dir)]
    sections = []
    for i, (cpu, part) in enumerate(parts, 1):
        section = build(part, out_dir)
        section.title += f" — {cpu}"
        for block in section.blocks:
            if isinstance(block, Figure):
                block.path = block.path.replace(block.path.with_name(f"cpu{i}_{block.path.name}"))
        sections.append(section)
    return sections


def _node_row(node: dict) -> dict:
    env = node.get("environment") or {}
    return {"node": str(node.get("node_id", ""))[:12], "host": str(node.get("host", "")),
            "CPU": str(env.get("cpu_model", "–")), "cores": str(env.get("logical_cores", "–")),
            "timing slots": str(node.get("slots", "–")), "git": str(env.get("git_revision", "–")),
            "alive at the end": "yes" if node.get("alive") else "no"}


def build_sections(run: RunData, out_dir: Path) -> list[Section]:
    """All sections of the report, figures written into `out_dir`; the sections that rank or
    pool latencies come once per CPU model the cells ran on."""
    return [*per_hardware(run, out_dir, lambda r, _: section_headline(r)),
            *per_hardware(run, out_dir, section_pareto), section_confusion(run, out_dir),
            *per_hardware(run, out_dir, section_memory),
            section_trace(run, out_dir), section_equivalence(run),
            *per_hardware(run, out_dir, section_speedup),
            *per_hardware(run, out_dir, lambda r, _: section_precision(r)), section_race(run),
            *per_hardware(run, out_dir, lambda r, _: section_overhead(r)),
            *per_hardware(run, out_dir, lambda r, _: section_execution(r)),
            section_failures(run), section_environment(run)]


def _intro(run: RunData) -> str:
    cells = run.cells
    ok = int((cells["status"] == "ok").sum())
    kinds = ", ".join(f"{n} {k}" for k, n in cells["kind"].value_counts().sort_index().items())
    return (f"Run `{run.meta.get('run_id', run.root.name)}` from `{run.root}`: {len(cells)} cells"
            f"{f' ({kinds})' if kinds else ''}, {ok} ok, {len(cells) - ok} failed. Tables and "
            "figures are computed from the run's cells.parquet, samples.parquet, predictions.parquet and run.json; "
            "column meanings and units: `movibench matrix schema`.")


def build_report(run_dir: str | Path, out_dir: str | Path) -> ReportPaths:
    """Write report.md, report.html and the figures (PNG) of the run at `run_dir` into `out_dir`."""
    run = load_run(run_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sections = build_sections(run, out)
    title = f"movibench report — {run.name}"
    intro = _intro(run)
    md = out / "report.md"
    md.write_text(render_markdown(title, intro, sections))
    page = out / "report.html"
    page.write_text(render_html(title, intro, sections))
    images = [b.path for s in sections for b in s.blocks if isinstance(b, Figure)]
    return ReportPaths(md, page, images, [s.title for s in sections],
                       [s.title for s in sections if s.omitted])
