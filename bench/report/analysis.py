"""What the report computes from a run's tables, before any of it is written as words.

Pairing cells (an accuracy cell with its deployment's latency cell, a format with the TF
reference, a reduced precision with fp32), the Pareto front, the best cell per runtime or model,
prediction agreement and the stream trace's source: plain DataFrames and numbers, no formatting.
"""

from __future__ import annotations

import json
from dataclasses import fields

import numpy as np
import pandas as pd

from bench.evaluation.protocols import MULTI_CLIP, STREAM, parse_protocol
from bench.results.rundir import RunData, cell_label
from bench.scenarios import ACCURACY, LATENCY, SERVING
from core.formats import TENSORFLOW
from runtimes.base import ExecutionFacts


# What identifies a deployment: the latency scenario measures each once. The artifact's source
# tells a foreign file apart from movibench's export of the same format.
DEPLOYMENT_KEY = ["model", "variant", "checkpoint", "resolution", "format", "artifact_source",
                  "threads", "frames_per_call"]


LATENCY_COLUMNS = ["frame_p50_ms", "fps", "step_p50_ms", "step_p99_ms", "first_step_ms"]


MODEL_KEY = ["model", "variant", "checkpoint", "resolution"]


def ok_cells(cells: pd.DataFrame, kind: str) -> pd.DataFrame:
    """The successful cells of scenario `kind`."""
    return cells[(cells["kind"] == kind) & (cells["status"] == "ok")]


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
    acc = ok_cells(cells, ACCURACY)
    lat = ok_cells(cells, LATENCY)[DEPLOYMENT_KEY + LATENCY_COLUMNS]
    # Both sides' frames_per_call as float (also when there is no row), so the merge key matches.
    acc = acc.drop(columns=LATENCY_COLUMNS).assign(frames_per_call=pd.Series(
        [call_frames(r) for _, r in acc.iterrows()], index=acc.index, dtype=float))
    lat = lat.assign(frames_per_call=lat["frames_per_call"].astype(float))
    return acc.merge(lat.drop_duplicates(DEPLOYMENT_KEY), on=DEPLOYMENT_KEY, how="left")


def end_to_end(cells: pd.DataFrame) -> pd.DataFrame:
    """The accuracy cells that timed their videos (with_latency), each with frames/s through
    the model alone (`model_fps`: frames through the model ÷ model time per video) and end to
    end (`wall_fps`: the same frames ÷ the wall time per video, decoding and resizing
    included), fastest end to end first."""
    ok = with_latency(cells).dropna(subset=["video_wall_ms", "video_ms", "frames_per_video"])
    ok = ok[(ok["video_wall_ms"] > 0) & (ok["video_ms"] > 0)]
    return ok.assign(model_fps=1000 * ok["frames_per_video"] / ok["video_ms"],
                     wall_fps=1000 * ok["frames_per_video"] / ok["video_wall_ms"]
                     ).sort_values("wall_fps", ascending=False, kind="stable")


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


def reference_speedups(cells: pd.DataFrame) -> pd.DataFrame:
    """reference_pairs, each with its speedups over TF (TF latency / this one's): per frame
    (`frame_speedup`, from the latency cells) and per video (`video_speedup`)."""
    pairs = reference_pairs(cells)
    return pairs.assign(frame_speedup=pairs["frame_p50_ms_ref"] / pairs["frame_p50_ms"],
                        video_speedup=pairs["video_ms_ref"] / pairs["video_ms"])


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


def trace_source(run: RunData) -> tuple[pd.Series, pd.Series] | None:
    """(prediction row with a trace, its cell): the TF reference's stream cell when there is one."""
    preds = run.predictions
    if preds.empty:
        return None
    traced = preds[preds["trace"].fillna("").str.len() > 0]
    cells = ok_cells(run.cells, ACCURACY).set_index("cell_id", drop=False)
    candidates = []
    for _, p in traced.iterrows():
        if p["cell_id"] in cells.index and str(cells.at[p["cell_id"], "protocol"]).startswith(STREAM):
            cell = cells.loc[p["cell_id"]]
            candidates.append((cell["format"] != TENSORFLOW, cell_label(cell), p, cell))
    if not candidates:
        return None
    _, _, pred, cell = min(candidates, key=lambda c: c[:2])
    return pred, cell


def video_frames(cell: pd.Series, steps: int, step: int) -> int:
    """Frames of the traced video: the cell's frames per video when it fits the trace (a
    dataset of one length), else steps × step (the last chunk may have been shorter)."""
    per_video = cell["frames_per_video"]
    fits = pd.notna(per_video) and (steps - 1) * step < per_video <= steps * step
    if fits and float(per_video).is_integer():
        return int(per_video)
    return steps * step


def protocol_predictions(run: RunData, cell: pd.Series, video: str,
                          names: list[str]) -> dict[str, tuple[str, float]]:
    """protocol -> (predicted class, its probability) for `video` under the other protocols of
    the same deployment as `cell`."""
    same = ok_cells(run.cells, ACCURACY)
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


def recorded_facts(row) -> ExecutionFacts | None:
    """A latency cell's exec_* columns back as the ExecutionFacts its runtime recorded
    (bench.scenarios.latency writes each field as exec_<field>, mappings as JSON); None for a
    cell without them."""
    if pd.isna(row["exec_nodes"]):
        return None
    values = {}
    for f in fields(ExecutionFacts):
        value = row[f"exec_{f.name}"]
        values[f.name] = (None if pd.isna(value) else json.loads(value) if isinstance(value, str)
                          else int(value))
    return ExecutionFacts(**values)


def serving_curves(cells: pd.DataFrame) -> pd.DataFrame:
    """Every stream count the run's serving cells measured: one row per cell and count, with
    the cell's settings (serve_fps, ...), streams, p99_ms, holds and the cell's label."""
    rows = []
    for _, cell in ok_cells(cells, SERVING).iterrows():
        for point in json.loads(cell["serve_curve"] or "[]"):
            rows.append({**cell.to_dict(), "label": cell_label(cell), "streams": point["streams"],
                         "p99_ms": point["p99_ms"], "holds": point["holds"]})
    return pd.DataFrame(rows)


# What tells two serving cells' answers apart beyond the deployment and its fps.
SERVING_KEY = ["serve_strategy", "serve_workers", "serve_jitter", "serve_policy"]


def streams_per_machine(cells: pd.DataFrame, fps: tuple[float, ...] = (15.0, 30.0)) -> pd.DataFrame:
    """Max streams per machine (node_cpu, node_cores), deployment and serving settings: for
    each frame rate of `fps`, the largest serve_max_streams of its cells ('max_streams@<fps>',
    None where not served), whether that search hit its cap ('capped@<fps>'), and the count a
    machine without serving costs would hold ('bound@<fps>'): the deployment's latency cell's
    frames/s on one session x the sessions its cores run side by side (cores / threads),
    over the rate, rounded down (None without that latency cell)."""
    served = ok_cells(cells, SERVING)
    served = served.assign(node_cpu=served["node_cpu"].fillna("unknown CPU"))
    key = ["node_cpu", "node_cores", *DEPLOYMENT_KEY, *SERVING_KEY]
    latency = ok_cells(cells, LATENCY)
    latency = latency.assign(node_cpu=latency["node_cpu"].fillna("unknown CPU"))
    single = {tuple(r[k] for k in ["node_cpu", *DEPLOYMENT_KEY]): r["fps"]
              for _, r in latency.iterrows()}
    rows = []
    for values, group in served.groupby(key, dropna=False, sort=True):
        row = dict(zip(key, values))
        closed_loop = single.get(tuple(row[k] for k in ["node_cpu", *DEPLOYMENT_KEY]))
        for rate in fps:
            at = group[group["serve_fps"] == rate]
            best = at.loc[at["serve_max_streams"].idxmax()] if len(at) else None
            row[f"max_streams@{rate:g}"] = None if best is None else int(best["serve_max_streams"])
            row[f"capped@{rate:g}"] = best is not None and bool(best["serve_max_streams_capped"])
            row[f"bound@{rate:g}"] = None if closed_loop is None or pd.isna(row["node_cores"]) \
                else int(closed_loop * row["node_cores"] / row["threads"] // rate)
        if any(row[f"max_streams@{rate:g}"] is not None for rate in fps):
            rows.append(row)
    return pd.DataFrame(rows)
