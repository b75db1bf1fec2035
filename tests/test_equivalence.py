"""Stream-vs-full-clip equivalence on the TF reference, and its failure mode."""

from __future__ import annotations

import numpy as np
import pytest

from bench.evaluation.compare_logits import Tolerance, compare_logits
from bench.evaluation.equivalence import synthetic_clips, validate_equivalence
from core.zoo import ModelConfig
from runtimes.base import chunks, stream


def test_t0_stream_equals_full_clip(t0_stream_session):
    clips = synthetic_clips(2, 12, 64, seed=1)
    report = validate_equivalence(t0_stream_session, clips, [1, 3, 12], Tolerance(atol=1e-4))
    assert [r.label for r in report.rows] == [f"chunk={c} vs full-clip" for c in (1, 3, 12)]
    assert report.passed, report.to_dict()
    assert all(r.top1_agreement == 1.0 for r in report.rows)


@pytest.mark.slow
def test_a0_stream_equals_full_clip():
    from runtimes.tensorflow import TensorFlowSession

    session = TensorFlowSession.from_config(ModelConfig("a0", "stream", 96, 600))
    report = validate_equivalence(session, synthetic_clips(1, 8, 96), [1, 4], Tolerance(atol=1e-4))
    assert report.passed, report.to_dict()
    assert max(r.max_abs for r in report.rows) < 1e-4


def test_a_tolerance_of_zero_can_fail(t0_stream_session):
    """Floating-point reassociation makes frame-by-frame differ in the last bits: the check
    must be able to say FAIL, or its PASS means nothing."""
    clips = synthetic_clips(1, 8, 64, seed=2)
    report = validate_equivalence(t0_stream_session, clips, [1], Tolerance(atol=0.0))
    assert not report.passed


def test_states_carry_information(t0_stream_session):
    """Streaming with states reset every frame must NOT equal the full clip."""
    clip = synthetic_clips(1, 8, 64, seed=3)[0]
    full = t0_stream_session.predict(clip[None])
    carried = stream(t0_stream_session, chunks(clip, 1))[0][-1]
    reset = t0_stream_session.step(clip[None, -1:], t0_stream_session.init_states())[0]
    assert np.abs(full - carried).max() < 1e-4
    assert np.abs(full - reset).max() > 1e-3


def test_compare_logits_metrics():
    ref = np.array([[1.0, 2.0, 0.0], [3.0, 0.0, 1.0]])
    cand = ref + np.array([[0.0, -2.5, 0.0], [0.1, 0.0, 0.0]])
    diff = compare_logits("x", ref, cand, Tolerance(atol=1e-3, min_top1_agreement=0.5))
    assert diff.max_abs == pytest.approx(2.5)
    assert diff.max_rel == pytest.approx(2.5 / 3.0)
    assert diff.top1_agreement == 0.5
    assert not diff.passed
    assert compare_logits("x", ref, cand, Tolerance(atol=None, min_top1_agreement=0.5)).passed


def test_the_bound_scales_with_the_reference_logits():
    """Float rounding grows with the logits: the same relative error passes at any scale when
    the tolerance has a relative term, and an absolute-only bound fails the large-scale one."""
    from bench.evaluation.compare_logits import PRECISION_TOLERANCES

    rng = np.random.default_rng(0)
    small = rng.normal(size=(4, 6))
    noise = rng.normal(size=small.shape) * 1e-6
    large = small * 200
    relative = Tolerance(atol=1e-4, rtol=1e-5)
    assert compare_logits("small", small, small + noise, relative).passed
    assert compare_logits("large", large, large + 200 * noise * 2, relative).passed
    assert not compare_logits("large", large, large + 200 * noise * 2, Tolerance(atol=1e-4)).passed
    # A real difference stays one at every scale.
    assert not compare_logits("large", large, large * 1.001, relative).passed
    bound = relative.bound(float(np.abs(large).max()))
    assert bound == pytest.approx(1e-4 + 1e-5 * np.abs(large).max())
    assert relative.describe() == "max|Δ| ≤ 0.0001 + 1e-05·max|ref|"
    assert PRECISION_TOLERANCES["fp32"].rtol > 0 and PRECISION_TOLERANCES["int8"].atol is None


def test_int8_is_held_to_a_bound_as_well_as_top1():
    """Quantization noise of a fifth of the logit scale passes; logits scrambled below the
    winner (same top-1 on every row) fail on the stated bound."""
    from bench.evaluation.compare_logits import tolerance_for

    rng = np.random.default_rng(1)
    ref = rng.normal(size=(16, 10)) * 50
    ref[np.arange(16), ref.argmax(axis=1)] += 200  # a clear winner per row, as trained logits
    int8 = tolerance_for("int8")
    noisy = ref + rng.uniform(-0.2, 0.2, ref.shape) * np.abs(ref).max() * 0.5
    noisy[np.arange(16), ref.argmax(axis=1)] = ref[np.arange(16), ref.argmax(axis=1)] + 1
    assert compare_logits("noise", ref, noisy, int8).passed
    scrambled = -ref
    winners = ref.argmax(axis=1)
    scrambled[np.arange(16), winners] = np.abs(ref).max() * 3
    diff = compare_logits("scrambled", ref, scrambled, int8)
    assert diff.top1_agreement == 1.0 and not diff.passed
    assert "0.5·max|ref|" in int8.describe() and "top-1 agreement ≥ 80%" in int8.describe()
