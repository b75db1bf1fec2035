"""The stages of long work (an export: build, trace, convert, calibrate, validate), told as
they start and end to whoever listens.

Listening is opt-in and process-wide: the `export` verb prints each stage with its time, an
export worker returns the times to the matrix. Code that does the work only marks its stages,
so an exporter needs no callback threaded through it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# (stage name, None when it starts | its seconds when it ends)
Listener = Callable[[str, float | None], None]

_listeners: list[Listener] = []


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Tell `listener` every stage that starts or ends inside the block."""
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Mark the block as stage `name`: listeners hear it start, then end with its seconds
    (a stage that raises is not told as ended)."""
    for listener in list(_listeners):
        listener(name, None)
    start = time.perf_counter()
    yield
    seconds = time.perf_counter() - start
    for listener in list(_listeners):
        listener(name, seconds)


class StageTimes:
    """A listener that adds up the seconds of each stage (a stage met twice, e.g. in an
    artifact's source export, is summed), in the order stages first ended."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str, seconds: float | None) -> None:
        if seconds is not None:
            self.seconds[name] = self.seconds.get(name, 0.0) + seconds


def describe(seconds: dict[str, float]) -> str:
    """'build 8.1 s, trace 2.0 s, convert 30.4 s' (empty for no stages)."""
    return ", ".join(f"{name} {value:.1f} s" for name, value in seconds.items())
