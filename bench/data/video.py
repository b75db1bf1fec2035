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

from converters.errors import VideoError, first_line

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
        reason = getattr(exc, "strerror", None) or first_line(exc)
        raise VideoError(f"cannot open video {path}: {reason}") from None
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


CROPS = ("center", "none")


def _resize_crop(frame: av.VideoFrame, size: int, crop: str = "center") -> np.ndarray:
    scale = size / min(frame.width, frame.height)
    width = max(size, round(frame.width * scale))
    height = max(size, round(frame.height * scale))
    rgb = frame.reformat(width=width, height=height, format="rgb24").to_ndarray()
    if crop == "none":
        return rgb.astype(np.float32) / 255.0
    top, left = (height - size) // 2, (width - size) // 2
    return rgb[top:top + size, left:left + size].astype(np.float32) / 255.0


def iter_frames(path: str | Path, size: int, *, stride: int = 1, fps: float | None = None,
                max_frames: int | None = None, crop: str = "center") -> Iterator[np.ndarray]:
    """Yield frames float32 in [0, 1], decoding lazily (one decoded frame held at a time).

    Each frame is resized so its short side is `size`; `crop="center"` then cuts the centre
    square [size, size, 3], `crop="none"` keeps the full width (for spatial multi-crop).
    `stride` keeps every n-th decoded frame; `fps` instead resamples to a target rate by
    presentation time (dropping frames to go down, repeating them to go up). Raises
    VideoError for a missing, empty, corrupt or frameless file.
    """
    if stride < 1:
        raise VideoError(f"frame stride must be >= 1, got {stride}")
    if fps is not None and fps <= 0:
        raise VideoError(f"target fps must be > 0, got {fps}")
    if crop not in CROPS:
        raise VideoError(f"unknown crop {crop!r}; known: {', '.join(CROPS)}")
    if max_frames is not None and max_frames < 1:
        raise VideoError(f"max_frames must be >= 1, got {max_frames}")
    container = _open(path)
    produced = 0
    try:
        stream = container.streams.video[0]
        # Slice threads only: frame threading wants draining to EOF (an early stop at
        # max_frames can stall it), and CI once decoded the same file two ways with it on.
        stream.thread_type = "SLICE"
        source_rate = float(stream.average_rate or stream.guessed_rate or 25)
        first_time: float | None = None
        next_time = 0.0
        for index, frame in enumerate(container.decode(stream)):
            if fps is not None:
                t = float(frame.time) if frame.time is not None else index / source_rate
                # Containers may start at a non-zero timestamp (webm/mkv pre-roll): count from
                # the first frame so the output grid is the same for every container.
                first_time = t if first_time is None else first_time
                t -= first_time
                repeats = 0
                # A frame covers [t, t + 1/source_rate): emit it for every target tick inside.
                while next_time < t + 1.0 / source_rate - 1e-6:
                    repeats += 1
                    next_time += 1.0 / fps
                if repeats == 0:
                    continue
            else:
                if index % stride:
                    continue
                repeats = 1
            image = _resize_crop(frame, size, crop)
            for _ in range(repeats):
                yield image
                produced += 1
                if max_frames is not None and produced >= max_frames:
                    return
    except av.error.FFmpegError as exc:
        raise VideoError(f"corrupt video {path}: {first_line(exc)}") from None
    finally:
        container.close()
    if produced == 0:
        raise VideoError(f"video has no decodable frames: {path}")


def read_clip(path: str | Path, size: int, *, stride: int = 1, fps: float | None = None,
              max_frames: int | None = None, crop: str = "center") -> np.ndarray:
    """All (or the first `max_frames`) frames of a video as float32 [T, size, size, 3]."""
    return np.stack(list(iter_frames(path, size, stride=stride, fps=fps, max_frames=max_frames,
                                     crop=crop)))


# One codec per container that PyAV's bundled FFmpeg can write and every container accepts.
CODEC_FOR_SUFFIX = {".mp4": "libx264", ".mkv": "libx264", ".mov": "libx264", ".m4v": "libx264",
                    ".webm": "libvpx-vp9", ".avi": "mpeg4"}


def write_video(path: str | Path, frames: np.ndarray, fps: int = 25, codec: str | None = None) -> Path:
    """Encode float [T, H, W, 3] in [0, 1] (or uint8) to a real video file with PyAV.

    The codec defaults to one the container holds (H.264 for mp4/mkv, VP9 for webm, MPEG-4
    Part 2 for avi), encoded near-lossless so decoded frames stay close to the input.
    """
    path = Path(path)
    codec = codec or CODEC_FOR_SUFFIX.get(path.suffix.lower())
    if codec is None:
        raise VideoError(f"no default codec for {path.suffix!r}; known: {', '.join(CODEC_FOR_SUFFIX)}")
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise VideoError(f"frames must be [T>=1, H, W, 3], got {list(frames.shape)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    data = frames if frames.dtype == np.uint8 else np.clip(frames * 255.0 + 0.5, 0, 255).astype(np.uint8)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps))
        stream.width, stream.height = data.shape[2], data.shape[1]
        stream.pix_fmt = "yuv420p"
        # Single-threaded encoders keep the bytes identical for a seed.
        stream.thread_count = 1
        if codec == "libx264":
            # x264's SIMD paths read uninitialised bytes on small frames: the same frames then
            # encode differently from call to call (about 1 file in 20 at 32², depending on
            # what the heap held). Its C paths are deterministic, and fast enough for the
            # small generated videos this writer is for.
            stream.options = {"crf": "10", "preset": "veryfast", "x264-params": "asm=0"}
        elif codec == "libvpx-vp9":
            stream.options = {"crf": "10", "b": "0", "deadline": "realtime", "cpu-used": "8"}
        elif codec == "mpeg4":
            stream.options = {"qscale": "2"}
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
