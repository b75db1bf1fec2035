"""Decode real video files with PyAV into model-ready frames.

Frames come out as float32 [H, W, 3] in [0, 1], upright (display rotation applied), resized
so the short side matches the model resolution and centre-cropped to a square. `iter_frames`
decodes lazily, so streaming a 10-minute video holds one frame at a time; `read_clip`
materialises a bounded clip.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from core.errors import VideoError, first_line

VIDEO_EXTENSIONS = (".mp4", ".webm", ".avi", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".ts",
                    ".m2ts", ".mts", ".flv", ".ogv", ".3gp", ".wmv")


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about its first video stream; width and height as displayed
    (after the rotation a phone records in the file's display matrix)."""

    path: Path
    frames: int | None
    fps: float | None
    width: int
    height: int
    codec: str
    rotation: int = 0  # degrees counter-clockwise the stored frames are turned for display


def _open(path: str | Path) -> av.container.InputContainer:
    path = Path(path)
    if not path.exists():
        raise VideoError(f"video not found: {path}")
    if not path.is_file():
        raise VideoError(f"not a video file: {path} is a folder")
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
    """Container metadata of `path` (decoding only the first frame, for its rotation)."""
    with _open(path) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        width, height = stream.codec_context.width, stream.codec_context.height
        rotation = _stream_rotation(container, stream)
        if rotation % 180:
            width, height = height, width
        return VideoInfo(Path(path), stream.frames or None, float(rate) if rate else None,
                         width, height, stream.codec_context.name, rotation)


def _rotation(frame: av.VideoFrame) -> int:
    """The frame's display rotation, counter-clockwise, snapped to a quarter turn."""
    try:
        degrees = frame.rotation
    except (AttributeError, ValueError):
        return 0
    return int(round((degrees or 0) / 90.0)) % 4 * 90


def _stream_rotation(container, stream) -> int:
    """The display rotation of the stream, read off its first decoded frame."""
    try:
        for frame in container.decode(stream):
            return _rotation(frame)
    except av.error.FFmpegError:
        pass
    return 0


CROPS = ("center", "none")


def _resize_crop(frame: av.VideoFrame, size: int, crop: str = "center") -> np.ndarray:
    scale = size / min(frame.width, frame.height)
    width = max(size, round(frame.width * scale))
    height = max(size, round(frame.height * scale))
    rgb = frame.reformat(width=width, height=height, format="rgb24").to_ndarray()
    # Shown the way a player shows it: a portrait phone video is stored landscape with a
    # display rotation, and fed sideways it is another video to the model.
    quarter_turns = _rotation(frame) // 90
    if quarter_turns:
        rgb = np.rot90(rgb, quarter_turns)
    if crop == "none":
        return rgb.astype(np.float32) / 255.0
    height, width = rgb.shape[:2]
    top, left = (height - size) // 2, (width - size) // 2
    return rgb[top:top + size, left:left + size].astype(np.float32) / 255.0


def iter_frames(path: str | Path, size: int, *, stride: int = 1, fps: float | None = None,
                max_frames: int | None = None, crop: str = "center") -> Iterator[np.ndarray]:
    """Yield frames float32 in [0, 1], decoding lazily (one decoded frame held at a time).

    Frames are turned upright by the file's display rotation (as players show them), then
    resized so the short side is `size`; `crop="center"` then cuts the centre square
    [size, size, 3], `crop="none"` keeps the full width (for spatial multi-crop). `stride`
    keeps every n-th decoded frame; `fps` instead resamples to a target rate by presentation
    time (dropping frames to go down, holding them to go up or across a variable-rate gap).
    Raises VideoError for a missing, empty, corrupt or frameless file, and (after its last
    frame) for one that ends well before the length its container declares.
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
        for image in _decoded(container, path, size, stride, fps, crop):
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


def _decoded(container, path, size: int, stride: int, fps: float | None,
             crop: str) -> Iterator[np.ndarray]:
    """The frames of `iter_frames` without its limit; checks the file was whole at the end."""
    stream = container.streams.video[0]
    # Slice threads only: frame threading wants draining to EOF (an early stop at
    # max_frames can stall it), and CI once decoded the same file two ways with it on.
    stream.thread_type = "SLICE"
    source_rate = float(stream.average_rate or stream.guessed_rate or 25)
    decoded, last_time = 0, None
    # Resampling to `fps` is sample-and-hold: a frame shows from its time until the next
    # frame's, so a target tick inside a gap of a variable-rate video repeats the frame
    # before the gap (what a player shows then), never one from the future.
    held, image, first_time, next_time = None, None, None, 0.0

    def show_held_until(until: float) -> Iterator[np.ndarray]:
        nonlocal image, next_time
        while next_time < until - 1e-6:
            if image is None:
                image = _resize_crop(held, size, crop)
            yield image
            next_time += 1.0 / fps

    for index, frame in enumerate(container.decode(stream)):
        decoded = index + 1
        last_time = float(frame.time) if frame.time is not None else last_time
        if fps is None:
            if index % stride == 0:
                yield _resize_crop(frame, size, crop)
            continue
        t = float(frame.time) if frame.time is not None else index / source_rate
        # Containers may start at a non-zero timestamp (webm/mkv pre-roll): count from the
        # first frame so the output grid is the same for every container.
        first_time = t if first_time is None else first_time
        if held is not None:
            yield from show_held_until(t - first_time)
        held, image, held_time = frame, None, t - first_time
    if held is not None:
        # The last frame lasts one source frame interval.
        yield from show_held_until(held_time + 1.0 / source_rate)
    if decoded:
        _check_complete(container, stream, decoded, last_time, source_rate, path)


def _check_complete(container, stream, decoded: int, last_time: float | None, rate: float,
                    path) -> None:
    """Raise VideoError when decoding ended well before the length the container declares.

    A file cut short (an interrupted copy or download) often still decodes up to the cut
    (Matroska, WebM, AVI): evaluated as it is, it would be a silently wrong row. Slack of two
    frames or 5 % keeps rounding in headers and encoder delay from counting as a cut.
    """
    declared = stream.frames or 0
    if declared > 0:
        if decoded < declared - max(2, 0.05 * declared):
            raise VideoError(f"video ends early (truncated?): {path} decoded {decoded} of the "
                             f"{declared} frames its container declares")
        return
    seconds = None
    if stream.duration is not None and stream.time_base is not None:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration is not None and len(container.streams) == 1:
        # Only the stream's own length will do: with audio the container's may be longer.
        seconds = container.duration / av.time_base
    if not seconds or last_time is None:
        return
    start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    covered = last_time - min(start, last_time) + 1.0 / rate
    if covered < seconds - max(2.0 / rate, 0.05 * seconds):
        raise VideoError(f"video ends early (truncated?): {path} decoded {covered:.2f} s of the "
                         f"{seconds:.2f} s its container declares")


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
    return sorted(p for p in directory.rglob("*")
                  if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())
