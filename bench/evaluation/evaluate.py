"""Accuracy and per-video cost of a model under one evaluation protocol.

`evaluate(session, samples, protocol)` decodes every sample (lazily for `stream`), runs the
protocol through the `Session` interface and returns an `EvalResult`: per-video rows (a
video that fails to decode becomes a failed row carrying its one-line error, and the rest go
on), top-1/top-5, mean per-class accuracy and the confusion matrix. Any runtime's session
works, so exported artifacts are evaluated exactly like the TensorFlow reference.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from bench.data.datasets import Sample
from bench.evaluation.protocols import Protocol, check_supported, parse_protocol, run_protocol
from bench.data.video import iter_frames, read_clip
from core.errors import MovibenchError, first_line
from runtimes.base import Session


@dataclass
class VideoResult:
    """One video under one protocol. Failed rows have `ok=False`, `error` set, and no
    prediction (`pred_index=-1`)."""

    path: str
    label: str
    label_index: int
    split: str | None
    protocol: str
    ok: bool
    error: str = ""
    pred_index: int = -1
    pred_label: str = ""
    correct: bool = False
    top5_correct: bool = False
    true_prob: float = float("nan")
    probs: list[float] = field(default_factory=list)
    frames_decoded: int = 0
    frames_processed: int = 0
    model_calls: int = 0
    views: int = 0
    wall_s: float = 0.0
    model_s: float = 0.0
    # Stream only: logits after every model call, and the frames seen by then.
    trace: np.ndarray | None = field(default=None, repr=False)
    trace_frames: np.ndarray | None = field(default=None, repr=False)

    def to_row(self) -> dict:
        """A flat dict for a results table: probabilities as a JSON list, no trace."""
        row = {k: v for k, v in asdict(self).items() if k not in ("trace", "trace_frames", "probs")}
        row["probs"] = json.dumps([round(float(p), 6) for p in self.probs])
        return row


@dataclass
class EvalMetrics:
    """Accuracy over the videos that ran; failed videos are counted, not scored."""

    videos: int
    evaluated: int
    failed: int
    top1: float
    top5: float
    mean_class_accuracy: float
    per_class_accuracy: dict[str, float]
    # confusion[i][j]: videos of class i predicted as class j.
    confusion: list[list[int]]


@dataclass
class EvalResult:
    """Everything `evaluate` measured for one model, runtime and protocol."""

    model: str
    runtime: str
    protocol: str
    classes: tuple[str, ...]
    videos: list[VideoResult]
    metrics: EvalMetrics
    wall_s: float

    @property
    def frames_processed(self) -> int:
        return sum(v.frames_processed for v in self.videos)

    def rows(self) -> list[dict]:
        """Per-video rows, each tagged with model, runtime and protocol."""
        return [{"model": self.model, "runtime": self.runtime, **v.to_row()} for v in self.videos]

    def summary(self) -> dict:
        """One row of headline numbers (confusion matrix as JSON) for a results table."""
        ok = [v for v in self.videos if v.ok]
        m = self.metrics
        return {
            "model": self.model, "runtime": self.runtime, "protocol": self.protocol,
            "videos": m.videos, "evaluated": m.evaluated, "failed": m.failed,
            "top1": m.top1, "top5": m.top5, "mean_class_accuracy": m.mean_class_accuracy,
            "frames_processed_per_video": float(np.mean([v.frames_processed for v in ok])) if ok else float("nan"),
            "model_calls_per_video": float(np.mean([v.model_calls for v in ok])) if ok else float("nan"),
            "wall_s_per_video": float(np.mean([v.wall_s for v in ok])) if ok else float("nan"),
            "model_s_per_video": float(np.mean([v.model_s for v in ok])) if ok else float("nan"),
            "confusion": json.dumps(m.confusion),
            "classes": json.dumps(list(self.classes)),
        }


def compute_metrics(videos: Sequence[VideoResult], classes: Sequence[str]) -> EvalMetrics:
    """Top-1, top-5 (only for more than 5 classes), mean per-class accuracy and confusion."""
    n = len(classes)
    ok = [v for v in videos if v.ok]
    confusion = np.zeros((n, n), np.int64)
    for v in ok:
        confusion[v.label_index, v.pred_index] += 1
    per_class = {}
    for i, name in enumerate(classes):
        total = confusion[i].sum()
        if total:
            per_class[name] = float(confusion[i, i] / total)
    return EvalMetrics(
        videos=len(videos), evaluated=len(ok), failed=len(videos) - len(ok),
        top1=float(np.mean([v.correct for v in ok])) if ok else float("nan"),
        # With 5 classes or fewer, top-5 is 100% by construction: not a measurement.
        top5=float(np.mean([v.top5_correct for v in ok])) if ok and n > 5 else float("nan"),
        mean_class_accuracy=float(np.mean(list(per_class.values()))) if per_class else float("nan"),
        per_class_accuracy=per_class, confusion=confusion.tolist())


def evaluate(session: Session, samples: Sequence[Sample], protocol: Protocol | str, *,
             classes: Sequence[str], fps: float | None = None, stride: int = 1,
             keep_traces: bool = True, warmup: bool = True,
             on_video: Callable[[VideoResult], None] | None = None) -> EvalResult:
    """Evaluate `session` on `samples` under `protocol`.

    Args:
        session: any runtime's Session; its manifest fixes the input resolution and class count.
        samples: labelled videos (e.g. `Dataset.split("val").samples`).
        protocol: a Protocol or its name ('stream', 'multi-clip:4x8', ...).
        classes: class names in model-output order; must match the session's class count.
        fps / stride: temporal resampling at decode (see `bench.data.video.iter_frames`).
        keep_traces: keep stream's per-step logits on each VideoResult.
        warmup: first run the protocol once, untimed, on the first video that decodes, so
            tracing/compilation is not charged to one video's cost.
        on_video: called after each video (progress bars, incremental writes).

    Returns:
        EvalResult with one VideoResult per sample, in order. A video that cannot be decoded
        or run is a failed row with a one-line error; a protocol that cannot run on this
        session at all raises ProtocolUnsupportedError before any video is decoded.
    """
    protocol = parse_protocol(protocol) if isinstance(protocol, str) else protocol
    m = session.manifest
    if len(classes) != m.num_classes:
        raise MovibenchError(f"the dataset has {len(classes)} classes but the model outputs "
                             f"{m.num_classes}")
    check_supported(protocol, session)
    crop = "none" if protocol.crops == 3 else "center"
    k = min(5, len(classes))
    if warmup:
        _warm_up(session, samples, protocol, m.resolution, stride, fps, crop)
    results = []
    began = time.perf_counter()
    for sample in samples:
        base = dict(path=str(sample.path), label=sample.label, label_index=sample.label_index,
                    split=sample.split, protocol=protocol.name)
        calls_before = len(session.step_ns)
        start = time.perf_counter()
        try:
            if protocol.lazy:
                frames = iter_frames(sample.path, m.resolution, stride=stride, fps=fps, crop=crop)
            else:
                frames = read_clip(sample.path, m.resolution, stride=stride, fps=fps, crop=crop)
            out = run_protocol(protocol, session, frames)
        except MovibenchError as exc:
            result = VideoResult(**base, ok=False, error=first_line(exc),
                                 wall_s=time.perf_counter() - start)
        else:
            wall = time.perf_counter() - start
            top = np.argsort(-out.probs)[:k]
            pred = int(top[0])
            result = VideoResult(
                **base, ok=True, pred_index=pred, pred_label=classes[pred],
                correct=pred == sample.label_index,
                top5_correct=bool(sample.label_index in top),
                true_prob=float(out.probs[sample.label_index]),
                probs=[float(p) for p in out.probs], frames_decoded=out.frames_decoded,
                frames_processed=out.frames_processed, model_calls=out.model_calls,
                views=out.views, wall_s=wall,
                model_s=sum(session.step_ns[calls_before:]) / 1e9,
                trace=out.trace if keep_traces else None,
                trace_frames=out.trace_frames if keep_traces else None)
        results.append(result)
        if on_video is not None:
            on_video(result)
    label = f"{m.model_id}/{m.variant}@{m.resolution}"
    return EvalResult(label, session.runtime, protocol.name, tuple(classes), results,
                      compute_metrics(results, classes), time.perf_counter() - began)


def _warm_up(session: Session, samples: Sequence[Sample], protocol: Protocol, size: int,
             stride: int, fps: float | None, crop: str) -> None:
    for sample in samples:
        try:
            run_protocol(protocol, session, read_clip(sample.path, size, stride=stride, fps=fps,
                                                      crop=crop))
        except MovibenchError:
            continue  # this video fails on its own row later; warm up on the next one
        return


def write_table(rows: list[dict], path: str | Path) -> Path:
    """Write rows to .csv or .parquet (by suffix)."""
    import pandas as pd

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(rows)
    if path.suffix.lower() == ".parquet":
        frame.to_parquet(path, index=False)
    elif path.suffix.lower() == ".csv":
        frame.to_csv(path, index=False)
    else:
        raise MovibenchError(f"--out must end in .csv or .parquet, got {path.name}")
    return path


def summary_path(out: str | Path) -> Path:
    """Where the per-protocol summary goes beside a per-video table: <stem>.summary.<ext>."""
    out = Path(out)
    return out.with_name(f"{out.stem}.summary{out.suffix}")
