"""The accuracy scenario: one evaluation protocol over the dataset, on one deployment.

Latency is not measured here (the latency scenario does it once per deployment); the cost per
video is the model time of this protocol's own calls, summed per video.
"""

from __future__ import annotations

import json

import numpy as np

from bench.jobs.job import CellJob
from bench.jobs.result import ScenarioResult
from bench.scenarios import ACCURACY, Scenario
from bench.trackers import CellTrackers
from core.errors import MovibenchError
from runtimes.base import Session


def run(session: Session, job: CellJob, trackers: CellTrackers) -> ScenarioResult:
    """Evaluate the cell's protocol: its metrics, and a prediction per video."""
    from bench.data.datasets import load_dataset
    from bench.evaluation.evaluate import evaluate

    data = job.data
    if data is None:
        raise MovibenchError("an accuracy cell needs [data] (a dataset path or a synth table)")
    dataset = load_dataset(data.path, data.split)
    samples = list(dataset.samples)[: data.max_videos or None]
    result = evaluate(session, samples, job.protocol, classes=dataset.classes)
    summary = result.summary()
    first_ok = next((v for v in result.videos if v.ok), None)
    columns = {
        "videos": summary["videos"], "videos_failed": summary["failed"],
        "top1": summary["top1"], "top5": summary["top5"],
        "mean_class_accuracy": summary["mean_class_accuracy"],
        "frames_per_video": summary["frames_processed_per_video"],
        "calls_per_video": summary["model_calls_per_video"],
        "video_ms": 1000 * summary["model_s_per_video"],
        "video_wall_ms": 1000 * summary["wall_s_per_video"],
        "confusion": summary["confusion"], "classes": summary["classes"],
    }
    return ScenarioResult(columns, predictions=tuple(
            {"video": v.path, "label_index": v.label_index, "pred_index": v.pred_index,
             "ok": v.ok, "error": v.error,
             "probs": json.dumps([round(float(p), 6) for p in v.probs]),
             # One stream trace per cell (the first video that ran) for the report's plot.
             "trace": json.dumps(np.round(v.trace, 5).tolist())
             if v is first_ok and v.trace is not None else ""}
            for v in result.videos))


SCENARIO = Scenario(ACCURACY, run)
