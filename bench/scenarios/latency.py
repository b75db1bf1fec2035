"""The latency scenario: how long one engine call of a deployment takes, measured once.

Timing wraps the runtime's engine call only (`Session.step_ns`, perf_counter_ns); warm-up
calls are run, counted and excluded. The harness overhead is measured, not assumed: the same
number of bare engine calls (no input checks, no state bookkeeping) run in blocks alternating
with the harness's calls, so drift hits both alike, and their medians are compared.
Afterwards, untimed, the runtime says how it runs the deployment (`execution_columns`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict

import numpy as np

from bench.jobs.job import CellJob
from bench.jobs.result import ScenarioResult
from bench.scenarios import LATENCY, Scenario
from bench.trackers import CellTrackers
from bench.trackers.latency import LatencyStats
from bench.trackers.memory import WARM
from core.errors import VideoError
from runtimes.base import Session

OVERHEAD_BLOCKS = 5


def step_input(session: Session, frames: int, videos: tuple[str, ...] = ()) -> np.ndarray:
    """The [1, frames, H, W, 3] input one timed call takes: decoded frames of the first of
    `videos` that decodes to enough frames, else reproducible noise."""
    if videos:
        from bench.data.video import read_clip  # PyAV: imported only when there are videos
    m = session.manifest
    for video in videos:
        try:
            clip = read_clip(video, m.resolution, max_frames=frames)
        except VideoError:
            continue  # timing needs frames of the right shape, not this particular video
        if clip.shape[0] == frames:
            return clip[None]
    return np.random.default_rng(0).random((1, frames, m.resolution, m.resolution, 3),
                                           dtype=np.float32)


def measure_latency(session: Session, frames: np.ndarray, warmup: int, iterations: int,
                    trackers: CellTrackers | None = None) -> ScenarioResult:
    """First call, warm-up, `iterations` timed calls and the harness overhead.

    One chain of states runs through every call, harness and bare alike: a runtime that keeps
    states in its own buffers (TensorRT's ping-pong slots) only ever sees the states its last
    call returned, so the measurement cannot corrupt what it measures.

    Returns bench.results.schema columns and every timed call's latency.
    """
    causal = session.manifest.causal
    states = session.init_states() if causal else None

    def harness(states):
        if causal:
            return session.step(frames, states)[1]
        session.predict(frames)
        return None

    def bare(states):
        if causal:
            return session.step_unchecked(frames, states)[1]
        session.predict_unchecked(frames)
        return None

    session.step_ns.clear()
    states = harness(states)
    first_ms = session.step_ns[0] / 1e6
    for _ in range(warmup):
        states = harness(states)
    if trackers is not None:
        trackers.mark(WARM)
    session.step_ns.clear()
    harness_ns, bare_ns = [], []
    for block in np.array_split(np.arange(iterations), OVERHEAD_BLOCKS):
        for _ in block:
            start = time.perf_counter_ns()
            states = harness(states)
            harness_ns.append(time.perf_counter_ns() - start)
        for _ in block:
            start = time.perf_counter_ns()
            states = bare(states)
            bare_ns.append(time.perf_counter_ns() - start)
    harness_med, bare_med = float(np.median(harness_ns)), float(np.median(bare_ns))
    samples = list(session.step_ns)
    stats = LatencyStats.from_ns(samples)
    per_call = frames.shape[1]
    return ScenarioResult({
        "first_step_ms": first_ms, "warmup_steps": warmup, "step_n": stats.n,
        "step_p50_ms": stats.p50_ms, "step_p90_ms": stats.p90_ms, "step_p99_ms": stats.p99_ms,
        "step_mean_ms": stats.mean_ms, "step_std_ms": stats.std_ms,
        "frame_p50_ms": stats.p50_ms / per_call, "fps": per_call * 1000.0 / stats.p50_ms,
        "harness_step_ms": harness_med / 1e6, "bare_step_ms": bare_med / 1e6,
        "harness_overhead_pct": 100.0 * (harness_med - bare_med) / bare_med,
    }, samples_ms=tuple(s / 1e6 for s in samples))


def call_input(session: Session, job: CellJob) -> np.ndarray:
    """The input every timed call of the cell takes (`Deployment.call_frames` frames)."""
    return step_input(session, call_frames(session, job),
                      job.data.timing_videos if job.data else ())


def call_frames(session: Session, job: CellJob) -> int:
    """Frames each timed call of the cell takes (the row's frames_per_call)."""
    return job.deployment.call_frames(session.manifest)


def run(session: Session, job: CellJob, trackers: CellTrackers) -> ScenarioResult:
    """The latency cell: the deployment's frames per call, the cell's timing knobs."""
    return measure_latency(session, call_input(session, job), job.warmup, job.iterations,
                           trackers)


def execution_columns(session: Session, job: CellJob) -> dict:
    """The cell's `exec_*` columns: how the runtime runs the deployment on the timed calls'
    input (`Session.execution_facts`); none for a runtime with nothing to tell.

    Run after the timed calls, never between them; the worker calls it after the cell's last
    memory reading too, so a profiling session's memory is not counted as the deployment's.
    """
    facts = session.execution_facts(call_input(session, job))
    if facts is None:
        return {}
    return {f"exec_{name}": json.dumps(value) if isinstance(value, Mapping) else value
            for name, value in asdict(facts).items() if value is not None}


SCENARIO = Scenario(LATENCY, run, after=execution_columns, frames_per_call=call_frames)
