"""Decoding real files written by the generator, in every container, and the ways it fails."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from bench.data.video import CODEC_FOR_SUFFIX, iter_frames, list_videos, probe, read_clip, write_video
from core.errors import VideoError

CONTAINERS = ("mp4", "webm", "avi", "mkv")


@pytest.fixture(scope="session")
def clip() -> np.ndarray:
    """16 frames of 32x48 with smooth content (codecs keep it close) and a moving square."""
    t, h, w = 16, 32, 48
    yy, xx = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    frames = np.empty((t, h, w, 3), np.float32)
    for i in range(t):
        frames[i] = np.stack([0.3 + 0.4 * xx, 0.3 + 0.4 * yy, np.full_like(xx, 0.5)], -1)
        frames[i, 8:16, 2 * i:2 * i + 8] = 1.0
    return frames


@pytest.fixture(scope="session")
def files(tmp_path_factory, clip) -> dict[str, object]:
    folder = tmp_path_factory.mktemp("videos")
    return {ext: write_video(folder / f"clip.{ext}", clip, fps=25) for ext in CONTAINERS}


@pytest.mark.parametrize("ext", CONTAINERS)
def test_decodes_every_container(files, clip, ext):
    info = probe(files[ext])
    assert (info.width, info.height) == (48, 32) and info.fps == pytest.approx(25)
    frames = read_clip(files[ext], 32, crop="none")
    assert frames.shape == (16, 32, 48, 3) and frames.dtype == np.float32
    assert 0.0 <= frames.min() and frames.max() <= 1.0
    assert np.abs(frames - clip).mean() < 0.03


@pytest.mark.parametrize("ext", CONTAINERS)
def test_resample_stride_and_crop(files, clip, ext):
    path = files[ext]
    centre = read_clip(path, 32)
    assert centre.shape == (16, 32, 32, 3)
    np.testing.assert_allclose(centre, read_clip(path, 32, crop="none")[:, :, 8:40], atol=1e-6)
    assert read_clip(path, 32, stride=3).shape[0] == 6
    half = read_clip(path, 16, fps=12.5)
    assert half.shape == (8, 16, 16, 3)
    # Going up in rate repeats frames; the grid starts at the first frame in every container.
    double = read_clip(path, 16, fps=50)
    assert double.shape[0] == 32
    np.testing.assert_array_equal(double[0], double[1])
    assert read_clip(path, 16, max_frames=5).shape[0] == 5


def test_iter_frames_is_lazy(files):
    frames = iter_frames(files["mp4"], 32)
    first = next(frames)
    assert first.shape == (32, 32, 3)
    frames.close()


def _zero_frame_file(path):
    with av.open(str(path), "w") as container:
        stream = container.add_stream(CODEC_FOR_SUFFIX[path.suffix], rate=Fraction(25))
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        container.start_encoding()
    return path


def test_bad_files_raise_one_line_video_errors(tmp_path, files):
    good = files["mp4"].read_bytes()
    cases = {
        "missing": tmp_path / "missing.mp4",
        "empty": tmp_path / "empty.mp4",
        "garbage": tmp_path / "garbage.mp4",
        "truncated": tmp_path / "truncated.mp4",
    }
    cases["empty"].write_bytes(b"")
    cases["garbage"].write_bytes(b"this is not a video" * 50)
    cases["truncated"].write_bytes(good[: len(good) // 2])
    for ext in CONTAINERS:
        cases[f"zero-frames-{ext}"] = _zero_frame_file(tmp_path / f"zero.{ext}")
    for name, path in cases.items():
        with pytest.raises(VideoError) as err:
            read_clip(path, 32)
        message = str(err.value)
        assert "\n" not in message and str(path) in message, name
    with pytest.raises(VideoError, match="empty"):
        read_clip(cases["empty"], 32)
    with pytest.raises(VideoError, match="not found"):
        probe(cases["missing"])


def test_bad_arguments(files, tmp_path):
    with pytest.raises(VideoError, match="stride"):
        read_clip(files["mp4"], 32, stride=0)
    with pytest.raises(VideoError, match="crop"):
        read_clip(files["mp4"], 32, crop="left")
    with pytest.raises(VideoError, match="codec"):
        write_video(tmp_path / "x.gif", np.zeros((2, 16, 16, 3), np.float32))
    assert list_videos(files["mp4"].parent) == sorted(files.values())
