"""The serving scenario: the open-loop clock, the worker pool's per-stream guarantees, the search
over stream counts, and its [serving] matrix cells.

Scheduler tests run a real T0 stream ONNX Runtime session per stream. Where a test needs a
deployment slower than the clock, it wraps the real stream in a sleep, which only ever adds time:
what it asserts (misses, drops, unserved frames) follows from that lower bound, never from how
fast the machine is.
"""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from bench.jobs.deployment import Deployment
from bench.jobs.job import CellJob, ServingError, ServingSettings, job_from_dict
from bench.matrix.config import Cell, MatrixConfigError, expand, parse_config
from bench.scenarios import SERVING
from bench.scenarios.serving import (
    SessionStream, StreamPool, arrival_times, listed_max_streams, run, search_max_streams, serve,
    state_bytes)
from bench.trackers import CellTrackers
from conftest import T0_STREAM

# A safety stop far beyond what the tests' few frames need, so a loaded machine never cuts
# a stream short where the test counts every frame.
NO_CUT_S = 120.0


@pytest.fixture(scope="module")
def open_onnx(t0_stream_onnx):
    from runtimes.onnxruntime import OnnxRuntimeSession

    def opened():
        return OnnxRuntimeSession.open(t0_stream_onnx.path, t0_stream_onnx.manifest, threads=1)

    return opened


@pytest.fixture(scope="module")
def sessions(open_onnx):
    opened = [open_onnx() for _ in range(3)]
    yield opened
    for session in opened:
        session.close()


def noise_clips(count: int, frames: int = 4, size: int = 64) -> list[np.ndarray]:
    """A different clip per stream, so a mix-up of streams changes their logits."""
    return [np.random.default_rng(s + 1).random((frames, size, size, 3), dtype=np.float32)
            for s in range(count)]


class Guarded:
    """A stream that records the frames it is asked for and fails on a second concurrent
    call, optionally sleeping after each (a deployment slower than the clock)."""

    def __init__(self, stream: SessionStream, sleep_s: float = 0.0):
        self.stream, self.sleep_s = stream, sleep_s
        self.lock = threading.Lock()
        self.inside = 0
        self.overlaps = 0
        self.frames: list[bytes] = []

    def step(self, frames):
        with self.lock:
            self.inside += 1
            self.overlaps += self.inside > 1
        try:
            self.frames.append(frames.tobytes())
            out = self.stream.step(frames)
            if self.sleep_s:
                time.sleep(self.sleep_s)
            return out
        finally:
            with self.lock:
                self.inside -= 1


def test_every_stream_gets_the_logits_of_an_independent_single_stream_run(sessions, open_onnx):
    clips = noise_clips(3)
    settings = ServingSettings(fps=200, workers=2, jitter=1.0, duration_s=0.06)
    point = serve([SessionStream(s) for s in sessions], clips, settings, drain_s=NO_CUT_S,
                  record=True)
    assert point.unserved == 0 and point.delivered == point.scheduled
    alone = open_onnx()
    try:
        for s, clip in enumerate(clips):
            stream = SessionStream(alone)
            expected = [stream.step(clip[k % len(clip)][None, None])
                        for k in range(len(point.logits[s]))]
            assert len(expected) == len(arrival_times(3, settings)[s])
            for got, want in zip(point.logits[s], expected):
                assert np.array_equal(got, want)
    finally:
        alone.close()


def test_a_streams_frames_run_in_order_and_never_two_at_once(sessions):
    clips = noise_clips(3)
    guarded = [Guarded(SessionStream(s)) for s in sessions]
    settings = ServingSettings(fps=300, workers=3, jitter=0.0, duration_s=0.05)
    point = serve(guarded, clips, settings, drain_s=NO_CUT_S, record=True)
    assert sum(g.overlaps for g in guarded) == 0
    for s, g in enumerate(guarded):
        served = [frame for stream, frame, *_ in sorted(point.trace, key=lambda t: t[3])
                  if stream == s]
        assert served == list(range(len(served)))
        assert g.frames == [clips[s][k % len(clips[s])][None, None].tobytes() for k in served]
        spans = sorted((begun, end) for stream, _, _, begun, end in point.trace if stream == s)
        assert all(end <= next_begun for (_, end), (next_begun, _) in zip(spans, spans[1:]))
    assert {w for _, _, w, _, _ in point.trace} <= {0, 1, 2}


def test_the_clock_counts_late_frames_from_their_arrival(sessions):
    period = 1 / 100
    slow = Guarded(SessionStream(sessions[0]), sleep_s=3 * period)
    settings = ServingSettings(fps=100, workers=1, duration_s=0.1)
    point = serve([slow], noise_clips(1), settings, drain_s=NO_CUT_S, record=True)
    arrivals = point.start + arrival_times(1, settings)[0]
    latencies = [end - arrivals[frame] for _, frame, _, _, end in point.trace]
    assert point.late == sum(latency > period for latency in latencies)
    # Each call lasts over three periods, so every frame after the first waits past its deadline.
    assert point.late >= point.delivered - 1
    assert point.miss_rate == pytest.approx(point.late / point.delivered)
    assert not point.holds


def test_a_slow_deployment_reports_unserved_frames_instead_of_hanging(sessions):
    slow = [Guarded(SessionStream(s), sleep_s=0.05) for s in sessions[:2]]
    settings = ServingSettings(fps=100, workers=1, duration_s=0.2)
    point = serve(slow, noise_clips(2), settings, drain_s=0.05)
    assert point.scheduled == 40
    assert point.delivered + point.dropped + point.unserved == point.scheduled
    # At most one 50 ms call started per 50 ms of the 0.25 s window, plus the one in flight.
    assert point.delivered <= 7 and point.unserved >= 33
    assert len(point.latencies_ms) == point.delivered + point.unserved
    assert point.miss_rate > 0.8 and not point.holds


def test_the_latest_policy_drops_the_frames_a_slow_stream_could_not_take(sessions):
    slow = Guarded(SessionStream(sessions[0]), sleep_s=0.03)
    settings = ServingSettings(fps=100, workers=1, duration_s=0.2, policy="latest")
    point = serve([slow], noise_clips(1), settings, drain_s=NO_CUT_S, record=True)
    served = [frame for _, frame, *_ in point.trace]
    assert served == sorted(set(served))
    assert point.dropped == point.scheduled - point.delivered - point.unserved
    # Three frames arrive during each 30 ms call: all but the newest are dropped (but after
    # the first call and near the end, where fewer are left to arrive).
    assert point.dropped >= 2 * (point.delivered - 2)
    assert not point.holds


def test_arrivals_are_open_loop_and_jittered_starts_are_reproducible():
    synced = arrival_times(4, ServingSettings(fps=10, duration_s=1.0, jitter=0.0))
    assert all(len(a) == 10 and np.allclose(a, np.arange(10) / 10, rtol=0, atol=1e-12)
               for a in synced)
    settings = ServingSettings(fps=10, duration_s=1.0, jitter=0.5)
    jittered = arrival_times(4, settings)
    assert all(np.array_equal(a, b) for a, b in zip(jittered, arrival_times(4, settings)))
    starts = [a[0] for a in jittered]
    assert len(set(starts)) == 4 and all(0 <= t < 0.05 for t in starts)
    assert all(a[-1] < 1.0 and np.allclose(np.diff(a), 0.1) for a in jittered)


def queueing_holds(service_s: float, workers: int, fps: float):
    """A deterministic stand-in for a machine: a count holds while the frames it brings per
    second fit the workers' service capacity. Records what was asked."""
    asked = []

    def holds(count: int) -> bool:
        asked.append(count)
        return count * fps * service_s <= workers

    return holds, asked


@pytest.mark.parametrize("capacity", [0, 1, 2, 3, 5, 8, 13, 31, 32, 33, 63, 64, 100])
def test_the_search_finds_the_largest_count_that_holds_asking_each_once(capacity):
    asked = []

    def holds(count):
        asked.append(count)
        return count <= capacity

    assert search_max_streams(holds, 64) == min(capacity, 64)
    assert len(asked) == len(set(asked))
    assert asked[:2] == ([1] if capacity == 0 else [1, 2])


def test_the_search_answer_is_monotone_in_the_machines_speed():
    answers = []
    for service_ms in (40, 20, 10, 5, 2.5, 1, 0.5):
        holds, _ = queueing_holds(service_ms / 1000, workers=2, fps=30)
        answers.append(search_max_streams(holds, 128))
    assert answers == sorted(answers)
    assert answers[-1] == 128  # 0.5 ms per frame on two workers: capped
    holds, _ = queueing_holds(0.010, workers=2, fps=30)
    assert search_max_streams(holds, 128) == 6  # 6 x 30 x 10 ms = 1.8 <= 2 < 7 x 0.3


def test_a_listed_count_holds_only_when_every_smaller_one_did():
    assert listed_max_streams([8, 1, 4, 2], lambda n: n <= 4) == 4
    assert listed_max_streams([1, 2, 4], lambda n: n != 2) == 1
    assert listed_max_streams([2, 4], lambda n: False) == 0


@pytest.mark.parametrize("settings, message", [
    (ServingSettings(fps=0), "fps must be > 0"),
    (ServingSettings(jitter=1.5), "jitter must be between 0 and 1"),
    (ServingSettings(workers=0), "workers must be an integer from 1"),
    (ServingSettings(streams=(2, 2)), "without repeats"),
    (ServingSettings(policy="newest"), "unknown serving policy 'newest'; known: queue, latest"),
    (ServingSettings(strategy="batched"), "unknown serving strategy 'batched'"),
])
def test_bad_serving_settings_are_one_line_errors(settings, message):
    with pytest.raises(ServingError, match=message) as err:
        settings.check()
    assert "\n" not in str(err.value)


def test_the_serving_cell_writes_its_columns_and_curve(t0_stream_onnx, open_onnx):
    settings = ServingSettings(fps=30, streams=(1, 2), workers=2, jitter=1.0, duration_s=0.2)
    job = CellJob(SERVING, "serving", Deployment(T0_STREAM, "onnx", threads=1,
                                                 frames_per_call=1),
                  artifact=str(t0_stream_onnx.path), serving=settings)
    first = open_onnx()
    try:
        columns = run(first, job, CellTrackers()).columns
        assert columns["serve_state_bytes_per_stream"] == state_bytes(first) > 0
    finally:
        first.close()
    curve = json.loads(columns["serve_curve"])
    assert [p["streams"] for p in curve] == [1, 2]
    assert columns["serve_max_streams"] in (0, 1, 2)
    held = [p["holds"] for p in curve]
    assert columns["serve_max_streams"] == (0 if not held[0] else 1 if not held[1] else 2)
    assert columns["serve_streams"] == max(columns["serve_max_streams"], 1)
    for p in curve:
        assert p["delivered"] + p["dropped"] + p["unserved"] == p["scheduled"]
        assert p["scheduled"] == 6 * p["streams"]
    assert job_from_dict(json.loads(json.dumps(job.to_dict()))) == job


def test_the_pool_opens_a_session_per_stream_and_closes_only_its_own(open_onnx):
    first = open_onnx()
    pool = StreamPool(first, open_onnx)
    try:
        streams = pool.streams(3)
        assert len({id(s.session) for s in streams}) == 3 and streams[0].session is first
        assert pool.streams(2)[1].session is streams[1].session
    finally:
        pool.close()
    assert pool.sessions == [first]
    first.close()


SERVING_TOML = """
name = "serve"
[[models]]
model = "t0"
variant = "stream"
[[models]]
model = "t0"
variant = "base"
[axes]
formats = ["onnx", "tflite-fp32"]
threads = [1, 2]
[[include]]
kind = "serving"
[serving]
formats = ["onnx"]
fps = [15, 30]
workers = [1, 2]
jitter = [0.0, 1.0]
"""


def test_a_serving_section_expands_to_cells_of_every_setting_on_stream_models():
    import tomllib

    cells = expand(parse_config(tomllib.loads(SERVING_TOML), SERVING_TOML))
    assert len(cells) == 2 * 2 * 2 * 2  # threads x fps x workers x jitter, stream model only
    assert {(c.kind, c.variant, c.format) for c in cells} == {(SERVING, "stream", "onnx")}
    assert len({c.cell_id for c in cells}) == len(cells)
    assert all(c.serving.searched and c.serving.max_streams == 64 for c in cells)
    assert "t0/stream onnx t1 serving sessions@30fps w2 j1 queue" in {c.label for c in cells}
    assert all(Cell.from_dict(c.to_dict()) == c for c in cells)


@pytest.mark.parametrize("serving, message", [
    ("fps = 0", r"\[serving\] fps must be > 0"),
    ("fps = [30]\nstreams = \"all\"", "streams must be \"search\" or a list"),
    ("fps = [30]\nstreams = [0]", r"\[serving\] streams must be >= 1"),
    ("fps = [30]\njitter = 2", "jitter must be a number from 0 to 1"),
    ("fps = [30]\npolicy = \"newest\"", "unknown serving policy 'newest'"),
    ("fps = [30]\nbatch = 4", r"unknown \[serving\] key\(s\) \['batch'\]"),
    ("workers = [2]", r"\[serving\] needs fps"),
])
def test_bad_serving_sections_name_the_key(serving, message):
    import tomllib

    text = SERVING_TOML.split("[serving]")[0] + "[serving]\n" + serving + "\n"
    with pytest.raises(MatrixConfigError, match=message) as err:
        parse_config(tomllib.loads(text), text)
    assert "\n" not in str(err.value)


def test_a_serving_cell_runs_in_the_worker_and_a_bad_one_is_a_one_line_failure(
        t0_stream_onnx, tmp_path):
    from bench.launchers.worker import main

    settings = ServingSettings(fps=30, streams=(1,), duration_s=0.1)
    deployment = Deployment(T0_STREAM, "onnx", threads=1, frames_per_call=1)
    good = CellJob(SERVING, "serving", deployment, str(t0_stream_onnx.path), serving=settings)
    bad = CellJob(SERVING, "bad serving", deployment, str(t0_stream_onnx.path),
                  serving=ServingSettings(fps=30, workers=0))
    sent = {}
    for name, job in (("good", good), ("bad", bad)):
        (tmp_path / f"{name}.json").write_text(json.dumps(job.to_dict()))
        code = main([str(tmp_path / f"{name}.json"), str(tmp_path / f"{name}.out.json")])
        sent[name] = (code, json.loads((tmp_path / f"{name}.out.json").read_text()))
    code, good_out = sent["good"]
    assert code == 0 and good_out["result"]["serve_frames"] == 3
    assert good_out["result"]["peak_rss_mb"] > 0 and good_out["result"]["frames_per_call"] == 1
    code, bad_out = sent["bad"]
    assert code == 1
    assert bad_out["error"] == "ServingError: serving workers must be an integer from 1 to 256, got 0"
