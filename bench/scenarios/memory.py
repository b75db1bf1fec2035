"""The memory scenario: one clip of N frames, in one call or frame by frame.

Run in its own process per clip length, so the process's resident high-water mark is this
clip's peak (plus load); the time reported is a second run of the clip, since the first traces
(TF) or plans (other engines) for the input shape — seconds that say nothing about clip length.
"""

from __future__ import annotations

import time

import numpy as np

from bench.jobs.job import CellJob
from bench.jobs.result import ScenarioResult
from bench.scenarios import FULL_CLIP_MODE, MEMORY, Scenario
from bench.trackers import CellTrackers
from bench.trackers.memory import WARM
from core.errors import MovibenchError
from runtimes.base import Session, chunks, stream


def run(session: Session, job: CellJob, trackers: CellTrackers) -> ScenarioResult:
    """Run the cell's clip twice; returns sweep_s (the second run) and frames_per_video."""
    m = session.manifest
    frames = job.clip_frames
    clip = np.random.default_rng(0).random((frames, m.resolution, m.resolution, 3),
                                           dtype=np.float32)
    if job.sweep_mode == FULL_CLIP_MODE:
        def run_clip():
            session.predict(clip[None])
    else:
        if not m.causal:
            raise MovibenchError(f"{m.model_id}/{m.variant} is not causal: it cannot stream")

        def run_clip():
            stream(session, chunks(clip, job.deployment.call_frames(m)))
    run_clip()
    trackers.mark(WARM)
    start = time.perf_counter()
    run_clip()
    return ScenarioResult({"sweep_s": time.perf_counter() - start,
                           "frames_per_video": float(frames)})


SCENARIO = Scenario(MEMORY, run)
