"""Calibration inputs for int8 exporters: reproducible clips, and realistic per-step feeds.

A streaming model's int8 ranges must cover the states it sees mid-video, not zeros: feeds are
made by streaming each clip through the fp32 model (TensorFlow for TFLite, ONNX Runtime for
TensorRT) and recording every step's inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from core.errors import UnsupportedExportError
from core.manifest import IMAGE_INPUT, LAYOUT_4D, StateManifest


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


def stream_feeds(next_states: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]],
                 manifest: StateManifest, frames: int,
                 clips: Iterable[np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
    """Every call's inputs {input name: array} as `clips` stream through a model.

    Each clip [T, H, W, 3] is cut into calls of `frames` frames (a trailing partial call is
    dropped: a static-shape artifact cannot take it) and streamed from fresh states, so later
    feeds carry the states a deployed model sees mid-video rather than zeros; a clip shorter
    than `frames` is looped in time to `frames`. `next_states(feed)` runs the fp32 model on one
    feed and returns its output states by state name (called only for models with states).
    Dicts, not positional lists: converters match a list to the inputs in an order of their
    own choosing.
    """
    for clip in clips:
        clip = np.asarray(clip, dtype=np.float32)
        if clip.shape[0] < frames:
            clip = clip[np.arange(frames) % clip.shape[0]]
        states = manifest.init_states()
        for start in range(0, clip.shape[0] - frames + 1, frames):
            image = np.ascontiguousarray(clip[None, start:start + frames])
            # A 4-D artifact's image tensor is its one frame [1, H, W, 3].
            feed = {IMAGE_INPUT: image.reshape(manifest.image_shape) if manifest.layout == LAYOUT_4D
                    else image}
            feed.update({s.input_name: states[s.name] for s in manifest.states})
            yield feed
            if manifest.states:
                states = next_states(feed)


def streamed_feeds(onnx_path: str | Path, manifest: StateManifest,
                   clips: Iterable[np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
    """stream_feeds through the fp32 ONNX model (ONNX Runtime), in calls of the manifest's
    `frames_per_call` (clip models: consecutive windows of their clip length)."""
    import onnxruntime as ort

    step = manifest.frames_per_call
    if step is None:
        raise UnsupportedExportError(
            "int8 calibration needs a static frames_per_call (a static-shape artifact)")
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    outputs = [s.output_name for s in manifest.states]

    def next_states(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {s.name: value for s, value in zip(manifest.states, session.run(outputs, feed))}

    return stream_feeds(next_states, manifest, step, clips)


class StreamedFeeds:
    """`streamed_feeds` of `calibration`'s clips as an iterable a quantizer may walk more than
    once: each walk streams the clips through the fp32 model again rather than holding every
    state in memory. `count` is the most feeds one walk handed out (a quantizer may stop a walk
    early, so it is counted as the feeds go)."""

    def __init__(self, source: str | Path, manifest: StateManifest, calibration) -> None:
        self.source, self.manifest, self.calibration = source, manifest, calibration
        self.count = 0

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        for count, feed in enumerate(streamed_feeds(
                self.source, self.manifest, self.calibration.iter_clips(self.manifest.resolution)),
                start=1):
            self.count = max(self.count, count)
            yield feed
