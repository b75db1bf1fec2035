"""The streaming interface shared by every runtime.

`Session` does the shared work once: it checks each call's inputs against the state manifest,
and times the engine call alone. Each runtime overrides only `_step` (causal models) or
`_predict` (clip models).
"""

from __future__ import annotations

import time
from abc import ABC
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from converters.errors import StateError
from converters.manifest import StateManifest

States = dict[str, Any]


class Session(ABC):
    """A loaded artifact that predicts logits; subclasses implement `_step` or `_predict`.

    `step_ns` holds the duration of every engine call (perf_counter_ns around `_step` /
    `_predict` only, excluding input checks), so harness overhead can be measured, not assumed.
    """

    runtime: str = "base"

    def __init__(self, manifest: StateManifest):
        self.manifest = manifest
        self.step_ns: list[int] = []

    # -- checks against the manifest -------------------------------------------------------
    def check_frames(self, frames: np.ndarray) -> None:
        """Raise StateError unless `frames` is float32 [1, T, H, W, 3] that this artifact takes."""
        m = self.manifest
        if not isinstance(frames, np.ndarray):
            raise StateError(f"image must be a numpy array, got {type(frames).__name__}")
        if frames.dtype != np.float32:
            raise StateError(f"image dtype must be float32, got {frames.dtype}")
        if frames.ndim != 5 or frames.shape[0] != 1 or frames.shape[2:] != (m.resolution, m.resolution, 3):
            raise StateError(
                f"image shape must be [1, T, {m.resolution}, {m.resolution}, 3], got {list(frames.shape)}")
        if frames.shape[1] < 1:
            raise StateError("image must hold at least one frame")
        if m.frames_per_step is not None and frames.shape[1] != m.frames_per_step:
            raise StateError(
                f"this {m.format} artifact takes exactly {m.frames_per_step} frame(s) per call, "
                f"got {frames.shape[1]}")

    def check_states(self, states: States) -> None:
        """Raise StateError naming the first missing, extra or mis-shaped/typed state."""
        expected = {s.name: s for s in self.manifest.states}
        missing = sorted(set(expected) - set(states))
        extra = sorted(set(states) - set(expected))
        if missing:
            raise StateError(f"missing state {missing[0]!r} ({len(missing)} missing in all)")
        if extra:
            raise StateError(f"unexpected state {extra[0]!r}; the manifest has no such state")
        for name, spec in expected.items():
            value = states[name]
            shape = tuple(value.shape)
            if shape != spec.shape:
                raise StateError(f"state {name!r} has shape {list(shape)}, expected {list(spec.shape)}")
            if np.dtype(value.dtype) != np.dtype(spec.dtype):
                raise StateError(f"state {name!r} has dtype {np.dtype(value.dtype)}, expected {spec.dtype}")

    # -- public calls ----------------------------------------------------------------------
    def init_states(self) -> States:
        """Fresh states from the manifest (zeros)."""
        return self.manifest.init_states()

    def step(self, frames: np.ndarray, states: States) -> tuple[np.ndarray, States]:
        """Run T frames with `states`; return (logits [1, classes], next states)."""
        if not self.manifest.causal:
            raise StateError(f"{self.manifest.model_id}/{self.manifest.variant} is not causal: "
                             "it has no states; use predict(clip)")
        self.check_frames(frames)
        self.check_states(states)
        start = time.perf_counter_ns()
        logits, next_states = self._step(frames, states)
        self.step_ns.append(time.perf_counter_ns() - start)
        return logits, next_states

    def predict(self, clip: np.ndarray) -> np.ndarray:
        """Logits of a whole clip [1, T, H, W, 3]; causal models start from fresh states."""
        self.check_frames(clip)
        if self.manifest.causal:
            logits, _ = self.step(clip, self.init_states())
            return logits
        start = time.perf_counter_ns()
        logits = self._predict(clip)
        self.step_ns.append(time.perf_counter_ns() - start)
        return logits

    def close(self) -> None:
        """Release engine resources (no-op unless a runtime holds device memory)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- what a runtime implements ---------------------------------------------------------
    @classmethod
    def open(cls, path, manifest: StateManifest, *, threads: int | None = None, **options) -> Session:
        """Load the artifact at `path` described by `manifest` (runtimes.loader calls this).

        Implementations check the artifact's own inputs/outputs against the manifest and raise
        ArtifactError naming the first mismatch.
        """
        raise NotImplementedError(f"{cls.runtime} does not load artifacts")

    def _step(self, frames: np.ndarray, states: States) -> tuple[np.ndarray, States]:
        raise NotImplementedError(f"{self.runtime} does not run causal models")

    def _predict(self, clip: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{self.runtime} does not run clip models")


def chunks(frames: np.ndarray, size: int) -> Iterator[np.ndarray]:
    """Split [T, H, W, 3] (or [1, T, ...]) into [1, <=size, H, W, 3] chunks in order."""
    if frames.ndim == 5:
        frames = frames[0]
    for start in range(0, frames.shape[0], size):
        yield np.ascontiguousarray(frames[None, start:start + size], dtype=np.float32)


def stream(session: Session, frame_chunks: Iterable[np.ndarray],
           states: States | None = None) -> tuple[np.ndarray, States]:
    """Feed chunks [1, C, H, W, 3] through `session.step`, carrying states.

    Returns (per-step logits [n_steps, classes], final states). The video's prediction under
    the `stream` protocol is the last row.
    """
    states = session.init_states() if states is None else states
    rows = []
    for chunk in frame_chunks:
        logits, states = session.step(chunk, states)
        rows.append(np.asarray(logits).reshape(-1))
    if not rows:
        raise StateError("stream() got no frames")
    return np.stack(rows), states
