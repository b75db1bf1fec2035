"""Decode real video files with PyAV into model-ready frames.

Frames come out as float32 [H, W, 3] in [0, 1], resized so the short side matches the model
resolution and centre-cropped to a square. `iter_frames` decodes lazily, so streaming a
10-minute video holds one frame at a time; `read_clip` materialises a bounded clip.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from converters.errors import VideoError

VIDEO_EXTENSIONS = (".mp4", ".webm", ".avi", ".mkv", ".mov", ".m4v")


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about its first video stream."""

    path: Path
    frames: int | None
    fps: float | None
    width: int
    height: int
    codec: str


def _open(path: str | Path) -> av.container.InputContainer:
    path = Path(path)
    if not path.exists():
        raise VideoError(f"video not found: {path}")
    if path.stat().st_size == 0:
        raise VideoError(f"video is empty (0 bytes): {path}")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise VideoError(f"cannot open video {path}: {exc}") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"no video stream in {path}")
    return container


def probe(path: str | Path) -> VideoInfo:
    """Container metadata of `path` without decoding frames."""
    with _open(path) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        return VideoInfo(Path(path), stream.frames or None, float(rate) if rate else None,
                         stream.codec_context.width, stream.codec_context.height,
                         stream.codec_context.name)


def _resize_crop(frame: av.VideoFrame, size: int) -> np.ndarray:
    scale = size / min(frame.width, frame.height)
    width = max(size, round(frame.width * scale))
    height = max(size, round(frame.height * scale))
    rgb = frame.reformat(width=width, height=height, format="rgb24").to_ndarray()
    top, left = (height - size) // 2, (width - size) // 2
    return rgb[top:top + size, left:left + size].astype(np.float32) / 255.0


def iter_frames(path: str | Path, size: int, *, stride: int = 1, fps: float | None = None,
                max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Yield frames [size, size, 3] float32 in [0, 1], decoding lazily.

    `stride` keeps every n-th decoded frame; `fps` instead resamples to a target rate by
    timestamps. Raises VideoError for a missing, empty, corrupt or frameless file.
    """
    if stride < 1:
        raise VideoError(f"frame stride must be >= 1, got {stride}")
    container = _open(path)
    produced = 0
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        next_time = 0.0
        step = 1.0 / fps if fps else None
        for index, frame in enumerate(container.decode(stream)):
            if step is not None:
                t = float(frame.time) if frame.time is not None else index / float(stream.average_rate or 25)
                if t + 1e-6 < next_time:
                    continue
                next_time += step
            elif index % stride:
                continue
            yield _resize_crop(frame, size)
            produced += 1
            if max_frames is not None and produced >= max_frames:
                return
    except av.error.FFmpegError as exc:
        raise VideoError(f"corrupt video {path}: {exc}") from None
    finally:
        container.close()
    if produced == 0:
        raise VideoError(f"video has no decodable frames: {path}")


def read_clip(path: str | Path, size: int, *, stride: int = 1, fps: float | None = None,
              max_frames: int | None = None) -> np.ndarray:
    """All (or the first `max_frames`) frames of a video as float32 [T, size, size, 3]."""
    return np.stack(list(iter_frames(path, size, stride=stride, fps=fps, max_frames=max_frames)))


def write_video(path: str | Path, frames: np.ndarray, fps: int = 25, codec: str = "libx264") -> Path:
    """Encode float [T, H, W, 3] in [0, 1] (or uint8) to a real video file with PyAV."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = frames if frames.dtype == np.uint8 else np.clip(frames * 255.0 + 0.5, 0, 255).astype(np.uint8)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps))
        stream.width, stream.height = data.shape[2], data.shape[1]
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            # Near-lossless so decoded frames stay close to what was generated.
            stream.options = {"crf": "10", "preset": "veryfast"}
        for image in data:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def list_videos(directory: str | Path) -> list[Path]:
    """Video files under `directory` (recursively), sorted; by extension, not content."""
    directory = Path(directory)
    if not directory.is_dir():
        raise VideoError(f"video folder not found: {directory}")
    return sorted(p for p in directory.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS)
