"""The prediction trace of one streamed video, with the multi-clip windows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from bench.evaluation.protocols import MULTI_CLIP, parse_protocol, softmax, subclip_starts
from bench.report.analysis import ok_cells, protocol_predictions, trace_source, video_frames
from bench.report.formatting import deployment, num, rows_table
from bench.report.render import Figure, Section
from bench.results.rundir import RunData
from bench.scenarios import ACCURACY


TRACE_CLASSES = 5  # classes drawn in the prediction trace


def section_trace(run: RunData, out_dir: Path) -> Section:
    """The section "Prediction trace of one video" of `run`, its figures written into `out_dir`."""
    from bench.report.plots import trace_plot

    section = Section("Prediction trace of one video")
    source = trace_source(run)
    if source is None:
        return section.omit("no stream cell with a recorded per-step trace in this run.")
    pred, cell = source
    logits = np.asarray(json.loads(pred["trace"]), dtype=np.float64)
    probs = softmax(logits.reshape(len(logits), -1))
    # A fixed-step artifact streams in its own step size; otherwise the protocol's chunk.
    fixed = cell["frames_per_call"]
    step = int(fixed) if pd.notna(fixed) else parse_protocol(cell["protocol"]).chunk
    total = video_frames(cell, len(probs), step)
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
    said.update(protocol_predictions(run, cell, pred["video"], names))
    rows = [{"protocol": k, "prediction": name, "probability": num(prob, 3)}
            for k, (name, prob) in said.items()]
    windows = []
    multi = sorted({p for p in ok_cells(run.cells, ACCURACY)["protocol"].dropna()
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
        rows_table(rows, f"What each protocol of {deployment(cell)} predicted for this video"),
    ]
    return section
