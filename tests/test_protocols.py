"""Protocol names, subclip placement, and running each protocol through real TF sessions."""

from __future__ import annotations

import numpy as np
import pytest

from bench.evaluation.protocols import (
    Protocol, ProtocolError, ProtocolUnsupportedError, crop_offsets, format_protocol,
    parse_protocol, run_protocol, softmax, spatial_views, subclip_starts, take_subclip,
)
from bench.evaluation.equivalence import synthetic_clips
from core.zoo import ModelConfig
from runtimes.base import chunks, stream

RES = 32


@pytest.fixture(scope="session")
def causal():
    from runtimes.tensorflow import TensorFlowSession

    return TensorFlowSession.from_config(ModelConfig("t0", "stream", RES, 4))


@pytest.fixture(scope="session")
def base():
    from runtimes.tensorflow import TensorFlowSession

    return TensorFlowSession.from_config(ModelConfig("t0", "base", RES, 4, conv_type="2plus1d"))


def fixed(session, frames_per_call):
    """The same model behind a manifest that, like a TFLite/TensorRT artifact, takes exactly
    `frames_per_call` frames per call (Session.check_frames enforces it)."""
    from runtimes.tensorflow import TensorFlowSession

    manifest = session.manifest.with_format("tensorflow", "fp32", frames_per_call, {})
    return TensorFlowSession(session.model, manifest)


@pytest.fixture(scope="session")
def video():
    return synthetic_clips(1, 16, RES, seed=3)[0]


@pytest.mark.parametrize("name, expected", [
    ("stream", Protocol("stream")),
    ("stream:C=4", Protocol("stream", chunk=4)),
    (" Stream:c=1 ", Protocol("stream")),
    ("full-clip", Protocol("full-clip")),
    ("full-clip:3crop", Protocol("full-clip", crops=3)),
    ("multi-clip:4x8", Protocol("multi-clip", clips=4, clip_frames=8)),
    ("multi-clip:2x16:3crop", Protocol("multi-clip", clips=2, clip_frames=16, crops=3)),
])
def test_parse_and_format_round_trip(name, expected):
    parsed = parse_protocol(name)
    assert parsed == expected
    assert parse_protocol(format_protocol(parsed)) == parsed
    assert parsed.name == format_protocol(parsed)


@pytest.mark.parametrize("bad, hint", [
    ("multi-clip", "KxL|K x L"), ("multi-clip:4", "K x L"), ("multi-clip:0x8", "K and L"),
    ("stream:C=0", ">= 1"), ("stream:4", "chunk size"), ("sliding", "known"),
    ("full-clip:5crop", "known"),
])
def test_bad_names_are_clear(bad, hint):
    with pytest.raises(ProtocolError, match=hint):
        parse_protocol(bad)


def test_subclip_placement():
    assert subclip_starts(32, 4, 8) == [0, 8, 16, 24]           # K·L = T: tiles exactly
    assert subclip_starts(32, 4, 16) == [0, 5, 11, 16]          # K·L > T: overlap
    assert subclip_starts(32, 2, 4) == [0, 28]                  # K·L < T: gaps, ends covered
    assert subclip_starts(32, 1, 8) == [12]                     # one clip: centred
    assert subclip_starts(8, 3, 8) == [0] and subclip_starts(5, 3, 8) == [0]
    for total, k, length in [(32, 4, 4), (50, 3, 16), (17, 5, 4)]:
        starts = subclip_starts(total, k, length)
        gaps = np.diff(starts)
        assert starts[0] == 0 and starts[-1] + length == total and len(starts) == k
        assert gaps.max() - gaps.min() <= 1
    clip = take_subclip(np.arange(5)[:, None], 0, 8)
    assert clip[:, 0].tolist() == [0, 1, 2, 3, 4, 4, 4, 4]
    with pytest.raises(ProtocolError):
        subclip_starts(0, 1, 4)


def test_spatial_crops():
    assert crop_offsets(48, 32, 3) == [0, 8, 16] and crop_offsets(48, 32, 1) == [8]
    assert crop_offsets(32, 32, 3) == [0]
    wide = np.random.default_rng(0).random((2, 32, 48, 3)).astype(np.float32)
    views = spatial_views(wide, 32, 3)
    assert [v.shape for v in views] == [(2, 32, 32, 3)] * 3
    np.testing.assert_array_equal(views[2], wide[:, :, 16:])
    tall = wide.transpose(0, 2, 1, 3)
    np.testing.assert_array_equal(spatial_views(tall, 32, 1)[0], tall[:, 8:40])


def test_stream_equals_full_clip_for_a_causal_model(causal, video):
    full = run_protocol(parse_protocol("full-clip"), causal, video)
    for name, calls in (("stream", 16), ("stream:C=4", 4), ("stream:C=5", 4)):
        out = run_protocol(parse_protocol(name), causal, iter(video))
        np.testing.assert_allclose(out.logits, full.logits, atol=1e-4)
        assert out.prediction == full.prediction
        assert out.model_calls == calls and out.trace.shape == (calls, 4)
        assert out.trace_frames[-1] == 16 and out.frames_processed == 16
    assert full.model_calls == 1 and full.views == 1


def test_multi_clip_counts_overlapping_frames(causal, video):
    out = run_protocol(parse_protocol("multi-clip:3x8"), causal, video)
    assert out.frames_processed == 24 and out.model_calls == 3 and out.views == 3
    expected = np.mean([softmax(causal.predict(video[None, s:s + 8]).reshape(-1))
                        for s in subclip_starts(16, 3, 8)], axis=0)
    np.testing.assert_allclose(out.probs, expected, atol=1e-5)
    assert out.probs.sum() == pytest.approx(1.0, abs=1e-5)


def test_three_crop_on_wide_frames(causal):
    wide = np.random.default_rng(1).random((8, RES, RES + 16, 3)).astype(np.float32)
    out = run_protocol(parse_protocol("multi-clip:2x8:3crop"), causal, wide)
    # T = L: both subclips are the whole video, placed once; three crops each.
    assert out.views == 3 and out.frames_processed == 24


def test_fixed_step_sessions(causal, base, video):
    one = fixed(causal, 1)                               # like a TFLite stream artifact
    ref = run_protocol(parse_protocol("full-clip"), causal, video)
    for name in ("stream", "stream:C=4", "full-clip", "multi-clip:2x8"):
        out = run_protocol(parse_protocol(name), one, video if "clip" in name else iter(video))
        assert out.frames_processed in (16,)
        if name != "multi-clip:2x8":
            np.testing.assert_allclose(out.logits, ref.logits, atol=1e-4)
    clip8 = fixed(base, 8)                               # a base artifact compiled for L=8
    out = run_protocol(parse_protocol("multi-clip:2x8"), clip8, video)
    assert out.model_calls == 2
    np.testing.assert_allclose(
        out.probs, run_protocol(parse_protocol("multi-clip:2x8"), base, video).probs, atol=1e-5)
    with pytest.raises(ProtocolUnsupportedError, match="compiled for exactly 8 frames"):
        run_protocol(parse_protocol("multi-clip:4x4"), clip8, video)
    with pytest.raises(ProtocolUnsupportedError, match="16-frame view"):
        run_protocol(parse_protocol("full-clip"), clip8, video)
    with pytest.raises(ProtocolUnsupportedError, match="causal"):
        run_protocol(parse_protocol("stream"), base, iter(video))
    with pytest.raises(ProtocolUnsupportedError, match="3-frame steps"):
        run_protocol(parse_protocol("stream:C=4"), fixed(causal, 3), iter(video))


def test_stream_helper_agrees(causal, video):
    per_step, _ = stream(causal, chunks(video, 4))
    out = run_protocol(parse_protocol("stream:C=4"), causal, iter(video))
    np.testing.assert_allclose(out.trace, per_step, atol=1e-6)
