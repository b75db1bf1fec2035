"""Stream-vs-full-clip equivalence: the core promise of a streaming MoViNet, checked."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bench.compare_logits import Difference, Tolerance, compare_logits
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


def synthetic_clips(n: int, frames: int, size: int, seed: int = 0) -> list[np.ndarray]:
    """`n` reproducible clips [frames, size, size, 3]: moving gradients plus noise, in [0, 1].

    Structured rather than pure noise so activations look like video, not static.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    clips = []
    for _ in range(n):
        phase = rng.uniform(0, 2 * np.pi, size=3)
        speed = rng.uniform(0.1, 0.6, size=3)
        t = np.arange(frames, dtype=np.float32)[:, None, None]
        channels = [0.5 + 0.4 * np.sin(2 * np.pi * (xx * (c + 1) + yy) + phase[c] + speed[c] * t)
                    for c in range(3)]
        clip = np.stack(channels, axis=-1) + rng.normal(0, 0.05, (frames, size, size, 3))
        clips.append(np.clip(clip, 0, 1).astype(np.float32))
    return clips


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
