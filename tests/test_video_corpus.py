"""A corpus of real video files written with PyAV's bundled FFmpeg (no ffmpeg binary needed):
many codecs and containers, odd sizes, one frame, rotated, variable frame rate, alpha, 10-bit,
and broken files. Good files must decode to their frames (oriented as a player shows them);
broken ones must become failed rows with one line naming the file; no file is lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from bench.data.datasets import load_folder
from bench.evaluation.evaluate import evaluate
from bench.data.video import iter_frames, list_videos, probe, read_clip
from core.errors import VideoError

FRAMES = 12
RATE = 25


def source(frames: int = FRAMES, height: int = 48, width: int = 64) -> np.ndarray:
    """Smooth colours (lossy codecs keep them) and a bright square at the top left, so a
    wrong orientation cannot pass for a right one; uint8 [T, H, W, 3]."""
    yy, xx = np.mgrid[0:height, 0:width] / np.array([height, width])[:, None, None]
    out = np.empty((frames, height, width, 3), np.float32)
    for i in range(frames):
        out[i] = np.stack([0.2 + 0.5 * xx, 0.2 + 0.5 * yy, np.full_like(xx, 0.3 + 0.4 * i / frames)], -1)
    out[:, : height // 4, : width // 4] = 1.0
    return np.clip(out * 255 + 0.5, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Spec:
    """One corpus file: how it is encoded and what decoding it must give."""

    name: str
    codec: str = "libx264"
    pix_fmt: str = "yuv420p"
    frames: int = FRAMES
    height: int = 48
    width: int = 64
    rotation: int = 0  # display matrix, degrees counter-clockwise
    pts_ms: tuple[int, ...] = ()  # variable frame rate: presentation times in ms
    audio_first: bool = False
    options: tuple[tuple[str, str], ...] = ()


OPTIONS = {
    "libx264": (("crf", "10"), ("preset", "veryfast"), ("x264-params", "asm=0")),
    "libx265": (("crf", "10"), ("preset", "veryfast"), ("x265-params", "log-level=error")),
    "libvpx": (("crf", "4"), ("b", "1M")),
    "libvpx-vp9": (("crf", "10"), ("b", "0"), ("deadline", "realtime"), ("cpu-used", "8")),
    "mpeg4": (("qscale", "2"),),
    "mpeg2video": (("qscale", "2"),),
    "mjpeg": (("qscale", "2"),),
}

GOOD = [
    Spec("h264.mp4"),
    Spec("hevc.mkv", "libx265"),
    Spec("vp8.webm", "libvpx"),
    Spec("vp9.webm", "libvpx-vp9"),
    Spec("vp9-alpha.webm", "libvpx-vp9", "yuva420p"),
    Spec("mpeg4.avi", "mpeg4"),
    Spec("mjpeg.avi", "mjpeg", "yuvj420p"),
    Spec("mpeg2.ts", "mpeg2video"),
    Spec("prores-10bit.mov", "prores_ks", "yuv422p10le"),
    Spec("ffv1-odd-size.mkv", "ffv1", "yuv444p", height=33, width=47),
    Spec("h264-yuv444-odd.mkv", "libx264", "yuv444p", height=35, width=49),
    Spec("tiny.avi", "mpeg4", height=16, width=16),
    Spec("wide.mkv", "ffv1", "yuv444p", height=16, width=128),
    Spec("one-frame.mp4", frames=1),
    Spec("rotated-90.mp4", rotation=90),
    Spec("rotated-270.mov", rotation=270),
    Spec("rotated-180.mkv", rotation=180),
    Spec("vfr.mkv", pts_ms=(0, 40, 80, 200, 240, 280, 480, 520, 560, 600, 800, 840)),
    Spec("audio-first.mkv", audio_first=True),
]


def encode(path: Path, spec: Spec) -> np.ndarray:
    """Write `spec` to `path`; return the frames as displayed (rotation applied)."""
    shown = source(spec.frames, spec.height, spec.width)
    # Stored turned back, so that the display rotation brings the picture upright again.
    stored = np.ascontiguousarray(np.rot90(shown, -spec.rotation // 90, axes=(1, 2)))
    with av.open(str(path), "w") as container:
        if spec.audio_first:
            audio = container.add_stream("pcm_s16le", rate=8000)
            audio.layout = "mono"
        stream = container.add_stream(spec.codec, rate=Fraction(RATE))
        stream.height, stream.width = stored.shape[1:3]
        stream.pix_fmt = spec.pix_fmt
        stream.thread_count = 1
        stream.options = dict(spec.options or OPTIONS.get(spec.codec, ()))
        if spec.rotation:
            stream.set_display_rotation(spec.rotation)
        if spec.pts_ms:
            stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        if spec.audio_first:
            silence = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16",
                                                 layout="mono")
            silence.sample_rate = 8000
            for packet in audio.encode(silence):
                container.mux(packet)
        for i, image in enumerate(stored):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            if spec.pts_ms:
                frame.pts, frame.time_base = spec.pts_ms[i], Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if spec.audio_first:
            for packet in audio.encode():
                container.mux(packet)
    return shown


def _zero_frames(path: Path) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(RATE))
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()


def _audio_only(path: Path) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=8000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp",
                                           layout="mono")
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)


def _cut(fraction: float):
    def make(path: Path, corpus: Path) -> None:
        full = corpus / "sources" / f"full{path.suffix}"
        data = full.read_bytes()
        path.write_bytes(data[: int(len(data) * fraction)])
    return make


# name -> (how to make it, words of which the one-line error must hold one)
BAD = {
    "truncated-half.mp4": (_cut(0.5), ("cannot open video",)),
    "truncated.mkv": (_cut(0.6), ("ends early",)),
    "truncated.webm": (_cut(0.7), ("ends early",)),
    # Cut inside the last frame's packet: the decoder may refuse that packet first.
    "truncated.avi": (_cut(0.9), ("ends early", "corrupt video")),
    "empty.mp4": (lambda p, c: p.write_bytes(b""), ("empty",)),
    "not-a-video.mp4": (lambda p, c: p.write_text("just some text, not a video\n" * 40),
                        ("cannot open video",)),
    "audio-only.mp4": (lambda p, c: _audio_only(p), ("no video stream",)),
    "zero-frames.mkv": (lambda p, c: _zero_frames(p),
                        ("no decodable frames", "cannot open video")),
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """ROOT/<class>/<file>: the good files, the broken ones, and a folder named like a video."""
    root = tmp_path_factory.mktemp("corpus")
    shown = {}
    classes = [f"c{i}" for i in range(5)]
    for i, spec in enumerate(GOOD):
        folder = root / "data" / classes[i % 5]
        folder.mkdir(parents=True, exist_ok=True)
        shown[spec.name] = encode(folder / spec.name, spec)
    (root / "sources").mkdir()
    for suffix in (".mp4", ".mkv", ".webm", ".avi"):
        codec = {".webm": "libvpx-vp9", ".avi": "mpeg4"}.get(suffix, "libx264")
        encode(root / "sources" / f"full{suffix}", Spec("full", codec, frames=32))
    for i, (name, (make, _)) in enumerate(BAD.items()):
        make(root / "data" / classes[i % 5] / name, root)
    (root / "data" / "c0" / "a-folder.mp4").mkdir()
    return root, shown


def test_every_file_is_a_sample_and_a_folder_is_not(corpus):
    root, _ = corpus
    names = {p.name for p in list_videos(root / "data")}
    assert names == {s.name for s in GOOD} | set(BAD)
    dataset = load_folder(root / "data")
    assert {s.path.name for s in dataset.samples} == names


@pytest.mark.parametrize("spec", GOOD, ids=lambda s: s.name)
def test_good_files_decode_to_their_frames_as_displayed(corpus, spec):
    root, shown = corpus
    path = next((root / "data").rglob(spec.name))
    expected = shown[spec.name].astype(np.float32) / 255.0
    height, width = expected.shape[1:3]
    info = probe(path)
    assert (info.width, info.height, info.rotation) == (width, height, spec.rotation)
    # Short side at its own size: no resampling, so only the codec's loss remains.
    frames = read_clip(path, min(height, width), crop="none")
    assert frames.shape == expected.shape, spec.name
    error = np.abs(frames - expected).mean()
    assert error < 0.05, f"{spec.name}: mean abs error {error:.3f}"
    # The bright corner is where the source has it (top left), whatever the rotation.
    corner = frames[:, : height // 4, : width // 4].mean()
    assert corner > 0.9, f"{spec.name}: the top-left corner is not the bright one ({corner:.2f})"


def test_variable_frame_rate_resamples_by_time(corpus):
    root, _ = corpus
    path = next((root / "data").rglob("vfr.mkv"))
    assert read_clip(path, 32).shape[0] == FRAMES
    # 25 fps over 0..880 ms: 22 ticks; a frame repeats until the next one's time.
    resampled = read_clip(path, 32, fps=25)
    assert resampled.shape[0] == 22
    # Ticks in a gap show the frame before it (80 ms at 80, 120 and 160 ms), never the next.
    held = list(iter_frames(path, 32, fps=25))
    np.testing.assert_array_equal(held[2], held[3])
    np.testing.assert_array_equal(held[3], held[4])
    assert not np.array_equal(held[4], held[5])  # 200 ms: the next frame


def test_the_corpus_evaluates_to_ok_rows_and_failed_rows(corpus, t0_stream_onnx):
    """Every file is one row: good ones predicted from all their frames, broken ones failed
    with one line naming the file; none lost, and the run goes on past each failure."""
    from runtimes.loader import open_session

    root, _ = corpus
    dataset = load_folder(root / "data")
    with open_session(t0_stream_onnx.path) as session:
        result = evaluate(session, dataset.samples, "stream", classes=dataset.classes)
    rows = {Path(v.path).name: v for v in result.videos}
    assert len(result.videos) == len(dataset.samples) == len(GOOD) + len(BAD)
    for spec in GOOD:
        row = rows[spec.name]
        assert row.ok, f"{spec.name}: {row.error}"
        assert row.frames_processed == spec.frames and row.pred_index >= 0
    for name, (_, words) in BAD.items():
        row = rows[name]
        assert not row.ok and row.pred_index == -1, name
        assert "\n" not in row.error and name in row.error, row.error
        assert any(word in row.error for word in words), row.error
    assert result.metrics.failed == len(BAD) and result.metrics.evaluated == len(GOOD)


def test_a_broken_file_raises_a_video_error_everywhere_it_is_read(corpus):
    root, _ = corpus
    for name in BAD:
        path = next((root / "data").rglob(name))
        for read in (lambda: read_clip(path, 32), lambda: list(iter_frames(path, 32, fps=10))):
            with pytest.raises(VideoError) as err:
                read()
            assert "\n" not in str(err.value) and name in str(err.value)
