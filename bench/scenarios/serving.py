"""The serving scenario: how many camera streams one machine holds at f fps, at what latency.

N streams, each a video at `fps` frames per second with its own stream states. Frames arrive
open loop on each stream's clock — frame k of stream s at start + offset_s + k/fps, whether or
not the machine keeps up — with the starts synchronised (jitter 0) or spread over a fraction of
a frame period (seeded, so a rerun has the same offsets). The 'sessions' strategy gives every
stream a session of its own (its states stay in it, in its runtime's buffers) and serves the
streams' frames with a pool of W worker threads: a free worker takes the stream whose next frame
arrived first. A stream's frames run in order and never two at once, since each needs the states
its previous frame left; a frame that arrives meanwhile waits (policy 'queue') or is dropped
when a newer one has arrived by the time its stream is free (policy 'latest').

Threads serve in parallel because every CPU runtime here releases the GIL inside its engine call
(LiteRT's invoke, ONNX Runtime's run, OpenVINO's infer, TensorFlow's eager ops); docs/matrix.md
has how that was checked.

A frame's latency runs from its arrival to its logits, queueing included; it misses its deadline
beyond one frame period. Arrivals stop after `duration_s`; the queue then drains for at most
DRAIN_S, and frames not started by then are counted unserved, with the time they waited as a
lower bound of their latency — so a deployment that cannot keep up reports misses instead of
hanging. A stream count holds when its p99 is within one frame period and no frame was dropped
or left unserved; the largest count that holds is found by doubling from 1 until a count fails
(or the cap is reached) and then bisecting between the last that held and the first that failed
(`search_max_streams`), which assumes, as queueing does, that more streams never lower the tail.
"""

from __future__ import annotations

import heapq
import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import psutil

from bench.jobs.job import LATEST_POLICY, CellJob, ServingError, ServingSettings
from bench.jobs.result import ScenarioResult
from bench.scenarios import SERVING, Scenario
from bench.scenarios.latency import step_input
from bench.trackers import CellTrackers
from runtimes.base import Session

# After the last arrival, how long the queue may drain before what is left is unserved.
DRAIN_S = 1.0
# Frames decoded per stream; a stream plays them in a loop (the timing videos are short).
CLIP_FRAMES = 16
# Lead between starting the workers and the first arrival, so no frame waits for a thread start.
LEAD_S = 0.02


class SessionStream:
    """One stream served by a session of its own: the states its last frame left stay there."""

    def __init__(self, session: Session):
        self.session = session
        self.states = session.init_states()

    def step(self, frames: np.ndarray) -> np.ndarray:
        """The logits of the stream's next frames, advancing its states."""
        logits, self.states = self.session.step(frames, self.states)
        return logits


def state_bytes(session: Session) -> int:
    """Bytes of one stream's states (the manifest's), what a server keeps per camera."""
    return int(sum(np.prod(s.shape, dtype=np.int64) * np.dtype(s.dtype).itemsize
                   for s in session.manifest.states))


@dataclass
class ServePoint:
    """One stream count served for the settings' duration: what arrived, what came back when.

    `latencies_ms` hold every delivered frame's latency and, for each unserved frame, the
    time it had waited when serving stopped (a lower bound). `start` is the clock
    (perf_counter) time arrivals count from; `trace` (when recorded) lists (stream, frame,
    worker, begun, end) per delivered frame on that clock, and `logits` per stream the logits
    in the order its frames were served.
    """

    streams: int
    workers: int
    fps: float
    scheduled: int
    delivered: int
    dropped: int
    unserved: int
    late: int
    latencies_ms: np.ndarray
    window_s: float
    cpu_util_pct: float
    rss_mb: float
    start: float = 0.0
    trace: list[tuple[int, int, int, float, float]] = field(default_factory=list)
    logits: list[list[np.ndarray]] = field(default_factory=list)

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if len(self.latencies_ms) else float("nan")

    @property
    def deadline_ms(self) -> float:
        return 1000.0 / self.fps

    @property
    def miss_rate(self) -> float:
        """Share of the frames not dropped that came back after their deadline or never."""
        counted = self.delivered + self.unserved
        return (self.late + self.unserved) / counted if counted else float("nan")

    @property
    def holds(self) -> bool:
        """The count holds the deadline: p99 within a frame period, nothing dropped or unserved."""
        return (self.delivered > 0 and self.dropped == 0 and self.unserved == 0
                and self.percentile(99) <= self.deadline_ms)

    @property
    def delivered_fps(self) -> float:
        return self.delivered / self.window_s if self.window_s > 0 else float("nan")

    def summary(self) -> dict:
        """The point as the curve's JSON entry."""
        return {"streams": self.streams, "scheduled": self.scheduled, "delivered": self.delivered,
                "dropped": self.dropped, "unserved": self.unserved,
                "delivered_fps": round(self.delivered_fps, 3),
                "p50_ms": round(self.percentile(50), 4), "p90_ms": round(self.percentile(90), 4),
                "p99_ms": round(self.percentile(99), 4), "miss_rate": round(float(self.miss_rate), 5),
                "cpu_util_pct": round(self.cpu_util_pct, 2), "rss_mb": round(self.rss_mb, 2),
                "holds": self.holds}


def arrival_offsets(streams: int, settings: ServingSettings) -> np.ndarray:
    """Each stream's start within the first frame period (seconds): spread uniformly over
    `jitter` of it, seeded so the same count always starts the same way."""
    period = 1.0 / settings.fps
    return np.random.default_rng(0).uniform(0.0, settings.jitter * period, streams)


def arrival_times(streams: int, settings: ServingSettings) -> list[np.ndarray]:
    """Per stream, every frame's arrival (seconds after the start): its offset + k / fps for
    the frames that arrive within `duration_s`."""
    period = 1.0 / settings.fps
    times = []
    for offset in arrival_offsets(streams, settings):
        # Less a hair, so 0.2 s at 30 fps is 6 frames, not 7 by rounding.
        count = int(np.ceil((settings.duration_s - offset) * settings.fps - 1e-9))
        times.append(offset + period * np.arange(max(count, 0)))
    return times


class _Dispatcher:
    """Hands the worker threads the next frame to serve: of the streams with no frame in
    flight, the one whose next frame arrived first; waits for arrivals and completions."""

    def __init__(self, arrivals: list[np.ndarray], start: float, stop_at: float, policy: str):
        self.arrivals = [start + a for a in arrivals]
        self.next_frame = [0] * len(arrivals)
        self.dropped = [0] * len(arrivals)
        self.served = [0] * len(arrivals)
        self.stop_at = stop_at
        self.policy = policy
        self.stopped_at: float | None = None
        # Streams with no frame in flight and frames left, by their next frame's arrival.
        self.idle = [(a[0], s) for s, a in enumerate(self.arrivals) if len(a)]
        heapq.heapify(self.idle)
        self.active = len(self.idle)  # streams with frames left (idle or in flight)
        self.cond = threading.Condition()

    def take(self) -> tuple[int, int] | None:
        """(stream, frame) to serve next, its stream marked in flight; None when done."""
        with self.cond:
            while True:
                if self.stopped_at is not None or self.active == 0:
                    return None
                now = time.perf_counter()
                if now > self.stop_at:
                    self.stopped_at = now
                    self.cond.notify_all()
                    return None
                if not self.idle:  # every stream left is in flight: wait for one to finish
                    self.cond.wait(self.stop_at - now)
                    continue
                arrival, stream = self.idle[0]
                if arrival > now:
                    self.cond.wait(min(arrival, self.stop_at) - now)
                    continue
                heapq.heappop(self.idle)
                frame = self.next_frame[stream]
                if self.policy == LATEST_POLICY:
                    newest = int(np.searchsorted(self.arrivals[stream], now, "right")) - 1
                    self.dropped[stream] += newest - frame
                    frame = newest
                return stream, frame

    def done(self, stream: int, frame: int) -> None:
        """Frame `frame` of `stream` came back: its next frame may be served."""
        with self.cond:
            self.served[stream] += 1
            self.next_frame[stream] = frame + 1
            if frame + 1 < len(self.arrivals[stream]):
                heapq.heappush(self.idle, (self.arrivals[stream][frame + 1], stream))
            else:
                self.active -= 1
            self.cond.notify_all()


def serve(streams: Sequence, clips: Sequence[np.ndarray], settings: ServingSettings, *,
          drain_s: float = DRAIN_S, record: bool = False) -> ServePoint:
    """Serve `len(streams)` streams open loop for `settings.duration_s` with
    `settings.workers` threads; stream s plays `clips[s]` ([L, H, W, 3]) in a loop through
    `streams[s].step` ([1, 1, H, W, 3] -> logits). See the module docstring for the clock,
    the policies and what is counted; `record` keeps the trace and every stream's logits.
    """
    n = len(streams)
    arrivals = arrival_times(n, settings)
    deadline_s = 1.0 / settings.fps
    latencies: list[list[float]] = [[] for _ in range(settings.workers)]
    late = [0] * settings.workers
    traces: list[list] = [[] for _ in range(settings.workers)]
    logits: list[list[np.ndarray]] = [[] for _ in range(n)]
    errors: list[BaseException] = []
    last_end = [0.0] * settings.workers
    start = time.perf_counter() + LEAD_S
    dispatch = _Dispatcher(arrivals, start, start + settings.duration_s + drain_s, settings.policy)

    def work(worker: int) -> None:
        try:
            while (job := dispatch.take()) is not None:
                stream, frame = job
                clip = clips[stream]
                begun = time.perf_counter()
                out = streams[stream].step(clip[frame % len(clip)][None, None])
                end = time.perf_counter()
                latency = end - dispatch.arrivals[stream][frame]
                latencies[worker].append(latency)
                late[worker] += latency > deadline_s
                last_end[worker] = end
                if record:
                    traces[worker].append((stream, frame, worker, begun, end))
                    logits[stream].append(out)
                dispatch.done(stream, frame)
        except BaseException as exc:  # the engine's failure ends the point and fails the cell
            errors.append(exc)
            with dispatch.cond:
                dispatch.stopped_at = time.perf_counter()
                dispatch.cond.notify_all()

    process = psutil.Process()
    cpu_before = sum(process.cpu_times()[:2])
    threads = [threading.Thread(target=work, args=(w,), name=f"serve-{w}", daemon=True)
               for w in range(settings.workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    finished = time.perf_counter()
    if errors:
        raise errors[0]
    cpu_s = sum(process.cpu_times()[:2]) - cpu_before
    cores = len(process.cpu_affinity()) if hasattr(process, "cpu_affinity") else psutil.cpu_count()
    scheduled = sum(len(a) for a in arrivals)
    delivered = sum(dispatch.served)
    dropped = sum(dispatch.dropped)
    left = [len(a) - dispatch.served[s] - dispatch.dropped[s] for s, a in enumerate(arrivals)]
    lower_bounds = [] if dispatch.stopped_at is None else [
        dispatch.stopped_at - t for s, a in enumerate(dispatch.arrivals)
        for t in a[len(a) - left[s]:]]
    window = max(max(last_end), start) - start
    all_ms = 1000.0 * np.array([x for part in latencies for x in part] + lower_bounds)
    return ServePoint(
        streams=n, workers=settings.workers, fps=settings.fps, scheduled=scheduled,
        delivered=delivered, dropped=dropped, unserved=sum(left), late=sum(late),
        latencies_ms=all_ms, window_s=window,
        cpu_util_pct=100.0 * cpu_s / ((finished - start + LEAD_S) * cores),
        rss_mb=process.memory_info().rss / 2**20, start=start,
        trace=sorted(t for part in traces for t in part), logits=logits)


def search_max_streams(holds: Callable[[int], bool], cap: int) -> int:
    """The largest stream count up to `cap` that `holds` (0 when even one stream does not):
    counts 1, 2, 4, ... until one fails or `cap` is reached, then bisection between the last
    that held and the first that failed. Each count is asked at most once."""
    last_held, count = 0, 1
    while True:
        if not holds(count):
            first_failed = count
            break
        last_held = count
        if count == cap:
            return cap
        count = min(2 * count, cap)
    while first_failed - last_held > 1:
        middle = (last_held + first_failed) // 2
        if holds(middle):
            last_held = middle
        else:
            first_failed = middle
    return last_held


def listed_max_streams(counts: Sequence[int], holds: Callable[[int], bool]) -> int:
    """The largest of `counts` that holds with every smaller one holding too (0: the smallest
    does not); every count is measured, for the curve."""
    held = {n: holds(n) for n in sorted(counts)}
    best = 0
    for n, ok in held.items():
        if not ok:
            break
        best = n
    return best


class StreamPool:
    """Streams for the counts a cell measures, each with a session of its own: the cell's
    session serves stream 0, the others are opened as they are first needed and kept for the
    larger counts (their states start fresh at every count)."""

    def __init__(self, first: Session, open_session: Callable[[], Session]):
        self.sessions = [first]
        self._open = open_session

    def streams(self, count: int) -> list[SessionStream]:
        """`count` streams on fresh states, each session warmed by one untimed step (the first
        call of a session pays its lazy initialisation, which is not serving)."""
        while len(self.sessions) < count:
            session = self._open()
            self.sessions.append(session)
            m = session.manifest
            warm = np.zeros((1, 1, m.resolution, m.resolution, 3), np.float32)
            session.step(warm, session.init_states())
        return [SessionStream(s) for s in self.sessions[:count]]

    def close(self) -> None:
        """Close the sessions this pool opened (not the cell's own)."""
        for session in self.sessions[1:]:
            session.close()
        del self.sessions[1:]


def stream_clips(session: Session, videos: Sequence[str], count: int) -> list[np.ndarray]:
    """Stream s plays the first of the timing videos, taken from the s-th on, that decodes to
    CLIP_FRAMES frames (latency's `step_input`: reproducible noise when none does)."""
    decoded: dict[int, np.ndarray] = {}
    clips = []
    for s in range(count):
        turn = s % len(videos) if videos else 0
        if turn not in decoded:
            order = tuple(videos[turn:]) + tuple(videos[:turn])
            decoded[turn] = step_input(session, CLIP_FRAMES, order)[0]
        clips.append(decoded[turn])
    return clips


def measure_serving(pool: StreamPool, settings: ServingSettings,
                    videos: Sequence[str] = ()) -> tuple[int, dict[int, ServePoint]]:
    """The largest stream count that holds the deadline under `settings`, and every point
    measured on the way (by count)."""
    points: dict[int, ServePoint] = {}
    clips = stream_clips(pool.sessions[0], videos,
                         max(settings.streams) if settings.streams else settings.max_streams)

    def holds(count: int) -> bool:
        points[count] = serve(pool.streams(count), clips[:count], settings)
        return points[count].holds

    if settings.searched:
        best = search_max_streams(holds, settings.max_streams)
    else:
        best = listed_max_streams(settings.streams, holds)
    return best, points


def serving_columns(best: int, points: dict[int, ServePoint], settings: ServingSettings,
                    session: Session) -> dict:
    """The row of a serving cell: the operating point (the largest count that held, else the
    smallest measured) and the whole curve as JSON."""
    point = points[best] if best else points[min(points)]
    return {
        "serve_max_streams": best,
        "serve_max_streams_capped": bool(settings.searched and best == settings.max_streams),
        "serve_streams": point.streams, "serve_frames": point.scheduled,
        "serve_delivered_fps": point.delivered_fps,
        "serve_p50_ms": point.percentile(50), "serve_p90_ms": point.percentile(90),
        "serve_p99_ms": point.percentile(99), "serve_deadline_miss_rate": float(point.miss_rate),
        "serve_dropped_frames": point.dropped, "serve_unserved_frames": point.unserved,
        "serve_cpu_util_pct": point.cpu_util_pct,
        "serve_state_bytes_per_stream": state_bytes(session),
        "serve_curve": json.dumps([points[n].summary() for n in sorted(points)]),
    }


def run(session: Session, job: CellJob, trackers: CellTrackers) -> ScenarioResult:
    """The serving cell: its settings measured on a session per stream."""
    from bench.jobs.deployment import open_deployment

    settings = job.serving
    if settings is None:
        raise ServingError("a serving cell needs its serving settings")
    settings.check()
    m = session.manifest
    if not m.causal:
        raise ServingError(f"{m.model_id}/{m.variant} is not causal: it cannot serve streams "
                           "frame by frame")
    pool = StreamPool(session, lambda: open_deployment(job.deployment, job.artifact))
    try:
        best, points = measure_serving(pool, settings,
                                       job.data.timing_videos if job.data else ())
    finally:
        pool.close()
    return ScenarioResult(serving_columns(best, points, settings, session))


SCENARIO = Scenario(SERVING, run)
