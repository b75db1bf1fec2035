"""Several open sessions timed side by side, in one process, in alternating rounds.

A matrix times each deployment in its own cell process, one after another. On a machine whose
speed drifts (a shared VM's neighbours, clock changes) two cells minutes apart can differ by
tens of per cent with nothing changed, which is as large as the differences being measured.
Here every contender stays open and the timed calls are split into rounds; in each round
every contender runs one block of calls in turn, the order starting one contender later each
round, so drift hits every contender alike and none always follows the same one. Each block
starts with one untimed call: a spinning thread pool of the contender before busy-waits a
while after its last call, and this contender's weights come back into the caches. A call is
timed by the runtime base class around the engine call alone (`Session.step_ns`, as in the
matrix's latency cells); a causal model's states are carried from call to call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from core.errors import MovibenchError
from runtimes.base import Session

# Distinct inputs the calls cycle through (and the untimed first pass streams): enough that a
# call is not a repeat of the one before, few enough to stay in memory for any model.
INPUT_CALLS = 8


def session_calls(session: Session, inputs: list[np.ndarray], states=None):
    """Calls of `session` on `inputs` in order, each timed into `session.step_ns` by the base
    class; a causal model's states carried from call to call. Returns (logits [calls,
    classes], last states)."""
    from runtimes.base import stream

    if session.manifest.causal:
        return stream(session, inputs, states)
    return np.stack([np.asarray(session.predict(clip)).reshape(-1) for clip in inputs]), None


@dataclass
class Contender:
    """One session of a side-by-side measurement: how to open it, and what it has run."""

    label: str
    open: Callable[[], Session]
    session: Session | None = None
    inputs: list[np.ndarray] = field(default_factory=list)
    states: object = None
    next_input: int = 0
    logits: np.ndarray | None = None  # of the untimed first pass over the inputs
    times_ns: list[int] = field(default_factory=list)
    error: str = ""

    def run(self, calls: int) -> None:
        """`calls` more calls, continuing the chain of states and the cycle of inputs."""
        if calls <= 0:
            return
        order = [self.inputs[(self.next_input + i) % len(self.inputs)] for i in range(calls)]
        self.next_input = (self.next_input + calls) % len(self.inputs)
        _, self.states = session_calls(self.session, order, self.states)


def measure_side_by_side(contenders: list[Contender], *, warmup: int, iterations: int,
                         rounds: int, frames_per_call: int | None = None,
                         on_open: Callable[[Contender], None] | None = None,
                         on_block: Callable[[], None] | None = None) -> list[Contender]:
    """Open every contender, then time `iterations` calls of each in `rounds` alternating
    rounds (see the module docstring); every session is closed before returning.

    Each contender's inputs are `INPUT_CALLS` calls' worth of reproducible frames at its own
    resolution, `frames_per_call` frames per call (default: its manifest's), the same frames
    for contenders of one input shape. It first streams them once from fresh states, untimed
    (`logits`), then runs `warmup` untimed calls. A contender that fails to open or run keeps
    its one-line `error` and the others go on. `on_open(contender)` runs after each open.
    """
    from bench.scenarios.latency import step_input
    from runtimes.base import chunks

    try:
        for entry in contenders:
            try:
                entry.session = session = entry.open()
                per_call = frames_per_call or session.manifest.frames_per_call or 1
                frames = step_input(session, per_call * INPUT_CALLS)
                entry.inputs = list(chunks(frames, per_call))
                if on_open is not None:
                    on_open(entry)
                entry.logits, _ = session_calls(session, entry.inputs)
                entry.states = session.init_states() if session.manifest.causal else None
                entry.run(warmup)
            except MovibenchError as exc:
                entry.error = str(exc)
        for number, block in enumerate(np.array_split(np.arange(iterations), rounds)):
            for k in range(len(contenders)):
                entry = contenders[(number + k) % len(contenders)]
                if not entry.error:
                    try:
                        entry.run(1)
                        entry.session.step_ns.clear()
                        entry.run(len(block))
                        entry.times_ns += entry.session.step_ns
                    except MovibenchError as exc:
                        entry.error = str(exc)
                if on_block is not None:
                    on_block()
    finally:
        for entry in contenders:
            if entry.session is not None:
                entry.session.close()
    return contenders


@dataclass(frozen=True)
class Summary:
    """What one contender's timed calls came to."""

    calls: int
    p50_ms: float
    p90_ms: float
    # largest |logit - its reference's logit| on the same inputs (the untimed first pass);
    # None when it has no reference that ran
    max_abs_diff: float | None


def summarise(contenders: list[Contender],
              reference: Callable[[Contender], Contender | None]) -> list[Summary | None]:
    """Per contender, in order, its call latency percentiles and its logits' largest difference
    to `reference(contender)`'s; None for a contender that failed. `reference` is asked only
    about the contenders that ran, in their order (so it may pick the first that ran of a kind)
    and may return None, or a contender that failed, for no comparison."""
    from bench.trackers.latency import LatencyStats

    summaries = []
    for entry in contenders:
        if entry.error:
            summaries.append(None)
            continue
        stats = LatencyStats.from_ns(entry.times_ns)
        ref = reference(entry)
        diff = (None if ref is None or ref.error
                else float(np.abs(entry.logits - ref.logits).max()))
        summaries.append(Summary(stats.n, stats.p50_ms, stats.p90_ms, diff))
    return summaries
