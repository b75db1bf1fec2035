"""Stream-vs-full-clip equivalence: the core promise of a streaming MoViNet, checked."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bench.evaluation.compare_logits import Difference, Tolerance, compare_logits
from core.errors import MovibenchError
# Re-exported: callers import it from here; it lives in converters for int8 calibration.
from converters.calibration import synthetic_clips  # noqa: F401
from runtimes.base import Session, chunks, stream


@dataclass
class EquivalenceReport:
    """Per chunk size: streamed final logits vs the same causal model fed the whole clip."""

    model: str
    runtime: str
    frames: int
    videos: int
    rows: list[Difference] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rows)

    def to_dict(self) -> dict:
        return {"model": self.model, "runtime": self.runtime, "frames": self.frames,
                "videos": self.videos, "passed": self.passed,
                "rows": [r.to_dict() for r in self.rows]}


def validate_equivalence(session: Session, clips: list[np.ndarray], chunk_sizes: list[int],
                         tolerance: Tolerance) -> EquivalenceReport:
    """Stream every clip in chunks of each size and compare with one full-clip call."""
    if not session.manifest.causal:
        raise ValueError("equivalence needs a causal model (variant stream or mobile)")
    full = np.stack([session.predict(clip[None]).reshape(-1) for clip in clips])
    m = session.manifest
    report = EquivalenceReport(f"{m.model_id}/{m.variant}@{m.resolution}", session.runtime,
                               int(clips[0].shape[0]), len(clips))
    for size in chunk_sizes:
        streamed = np.stack([stream(session, chunks(clip, size))[0][-1] for clip in clips])
        report.rows.append(compare_logits(f"chunk={size} vs full-clip", full, streamed, tolerance))
    return report


@dataclass
class CrossRuntimeRow:
    """One artifact streamed next to the TF reference: its error and verdict."""

    format: str
    precision: str
    runtime: str
    comparison: str
    ok: bool
    error: str = ""
    difference: Difference | None = None
    artifact: str = ""

    @property
    def passed(self) -> bool:
        return self.ok and self.difference is not None and self.difference.passed

    def to_dict(self) -> dict:
        diff = self.difference.to_dict() if self.difference else {}
        return {"format": self.format, "precision": self.precision, "runtime": self.runtime,
                "comparison": self.comparison, "ok": self.ok, "error": self.error or None,
                "n": diff.get("n"), "max_abs": diff.get("max_abs"), "mean_abs": diff.get("mean_abs"),
                "max_rel": diff.get("max_rel"), "top1_agreement": diff.get("top1_agreement"),
                "passed": self.passed, "tolerance": diff.get("tolerance"), "artifact": self.artifact}


def stream_logits(session: Session, clip: np.ndarray, frames_per_call: int | None = None) -> np.ndarray:
    """Logits of every call over `clip` [T, H, W, 3], one row per call.

    A causal model streams the clip in calls of `frames_per_call` frames (default: the
    artifact's step size, else 1) carrying states; a clip (base) model predicts each
    consecutive window of its clip length L. A trailing partial call is dropped: a static
    artifact takes exactly its T.
    """
    m = session.manifest
    size = frames_per_call or m.frames_per_call or 1
    if not m.causal and (m.frames_per_call or frames_per_call) is None:
        raise ValueError("a clip model needs its clip length L as frames_per_call")
    whole = [c for c in chunks(clip, size) if c.shape[1] == size]
    if not whole:
        raise MovibenchError(f"clips of {clip.shape[0]} frames hold no call of {size} frames")
    if m.causal:
        return stream(session, whole)[0]
    return np.stack([np.asarray(session.predict(c)).reshape(-1) for c in whole])


def compare_sessions(label: str, reference: list[np.ndarray], session: Session,
                     clips: list[np.ndarray], tolerance: Tolerance,
                     frames_per_call: int | None = None) -> Difference:
    """Run `clips` through `session` call by call; compare every call's logits with `reference`."""
    candidate = [stream_logits(session, clip, frames_per_call) for clip in clips]
    return compare_logits(label, np.concatenate(reference), np.concatenate(candidate), tolerance)


def validate_cross_runtime(reference: Session, formats: list[str], clips: list[np.ndarray], *,
                           export, open_artifact, full_clip_formats: tuple[str, ...] = (),
                           on_format=None, frames_per_call: int | None = None) -> list[CrossRuntimeRow]:
    """Stream the same clips through the TF reference and every exported format.

    Args:
        reference: the TF session of the model the artifacts were exported from.
        formats: format names (core.formats).
        clips: clips [T, H, W, 3] float32, all of one length T.
        export: `export(fmt, frames_per_call) -> Artifact` (cached exporter).
        open_artifact: `open_artifact(path) -> Session` (runtimes.loader.open_session).
        full_clip_formats: formats that also get a T-frame artifact, to check stream vs full
            clip inside the format itself.
        on_format: called with each format name before it runs (progress).
        frames_per_call: frames per call: T > 1 streams a causal model in chunks of T; a
            clip (base) model needs its clip length L here and is compared window by window
            (artifacts exported with frames_per_call = L; no stream-vs-full-clip row).

    Every call's logits are compared (not only the last), under the tolerance of the
    artifact's precision. A format that fails to export or run becomes a failed row.
    """
    from bench.evaluation.compare_logits import tolerance_for
    from core.formats import get_format

    frames = int(clips[0].shape[0])
    causal = reference.manifest.causal
    ref_steps = [stream_logits(reference, clip, frames_per_call) for clip in clips]
    comparison = "stream vs tensorflow" if causal else "clips vs tensorflow"
    size = frames_per_call or 1
    what = ("frame" if size == 1 else f"{size}-frame call") if causal else f"{size}-frame clip"
    rows: list[CrossRuntimeRow] = []
    for fmt in formats:
        spec = get_format(fmt)
        if on_format:
            on_format(fmt)
        tol = tolerance_for(spec.precision)
        try:
            artifact = export(fmt, frames_per_call)
            with open_artifact(artifact.path) as session:
                diff = compare_sessions(f"{fmt} vs tensorflow (every {what})", ref_steps,
                                        session, clips, tol, frames_per_call)
                if causal:
                    streamed_last = np.stack([stream_logits(session, c)[-1] for c in clips])
            rows.append(CrossRuntimeRow(fmt, spec.precision, spec.runtime, comparison,
                                        True, difference=diff, artifact=str(artifact.path)))
        except MovibenchError as exc:
            rows.append(CrossRuntimeRow(fmt, spec.precision, spec.runtime, comparison,
                                        False, error=str(exc)))
            continue
        if not causal or fmt not in full_clip_formats:
            continue
        try:
            whole = export(fmt, frames)
            with open_artifact(whole.path) as session:
                full = np.stack([np.asarray(session.predict(c[None])).reshape(-1) for c in clips])
            diff = compare_logits(f"{fmt}: stream vs full clip ({frames} frames)", full,
                                  streamed_last, tol)
            rows.append(CrossRuntimeRow(fmt, spec.precision, spec.runtime, "stream vs full-clip",
                                        True, difference=diff, artifact=str(whole.path)))
        except MovibenchError as exc:
            rows.append(CrossRuntimeRow(fmt, spec.precision, spec.runtime, "stream vs full-clip",
                                        False, error=str(exc)))
    return rows


def compare_streams(reference: Session, candidate: Session, clips: list[np.ndarray],
                    label: str, tolerance: Tolerance) -> Difference:
    """Stream `clips` through both sessions in their own step sizes; compare every step."""
    expected = [stream_logits(reference, clip) for clip in clips]
    return compare_sessions(label, expected, candidate, clips, tolerance)
