"""Graph optimizations at export (converters.optimize): exact in fp32, applied only where they
fit, and a full-int8 graph whose hard-swish and causal pools stay on XNNPACK, on the T0 demo
weights."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import UnsupportedExportError
from converters.export import applied_optimizations, export_model
from core.formats import get_format
from converters.optimize import CAUSAL_POOL_STEP, INT8_HARD_SWISH, optimized_build
from core.zoo import ModelConfig, config_for
from runtimes.base import chunks, stream
from runtimes.loader import open_session

from conftest import T0_STREAM


@pytest.mark.parametrize("name", [INT8_HARD_SWISH, CAUSAL_POOL_STEP])
def test_each_optimization_is_exact_in_fp32_over_a_streamed_clip(name, t0_stream_session):
    from official.modeling import activations
    from official.vision.modeling.layers import nn_layers
    from runtimes.tensorflow import TensorFlowSession

    originals = activations.hard_swish, nn_layers.GlobalAveragePool3D.call
    with optimized_build((name,)):
        optimized = TensorFlowSession.from_config(T0_STREAM)  # same seed: same weights
    # Restored for every later build.
    assert (activations.hard_swish, nn_layers.GlobalAveragePool3D.call) == originals
    clip = np.random.default_rng(0).random((6, 64, 64, 3), dtype=np.float32)
    expected, expected_states = stream(t0_stream_session, chunks(clip, 1))
    with optimized_build((name,)):  # the pool is patched where the model is called
        got, got_states = stream(optimized, chunks(clip, 1))
    assert np.abs(got - expected).max() <= 1e-4
    # The states keep Model Garden's names, dtypes and values: a stream can move between them.
    assert got_states.keys() == expected_states.keys()
    for key, value in expected_states.items():
        assert got_states[key].dtype == value.dtype, key
        np.testing.assert_allclose(got_states[key], value, rtol=1e-5, atol=1e-5, err_msg=key)


def test_an_optimized_format_that_fits_nothing_is_refused_before_any_build():
    with pytest.raises(UnsupportedExportError, match="no graph optimization applies to a base"):
        export_model(ModelConfig("t0", "base", 64, 5), "tflite-int8+opt", frames_per_call=8)


@pytest.mark.parametrize("variant, fmt, applied", [
    ("stream", "tflite-int8+opt", (INT8_HARD_SWISH, CAUSAL_POOL_STEP)),
    ("stream", "tflite-int8+int8-hard-swish", (INT8_HARD_SWISH,)),
    ("stream", "tflite-int8+causal-pool-step", (CAUSAL_POOL_STEP,)),
    ("mobile", "tflite-int8+opt", (CAUSAL_POOL_STEP,)),  # ReLU6: nothing to unfuse
    ("stream", "tflite-int8", ()),
])
def test_each_optimization_has_a_format_of_its_own_beside_all_of_them(variant, fmt, applied):
    config = ModelConfig("t0", variant, 64, 5)
    assert applied_optimizations(config, get_format(fmt)) == applied
    assert get_format(fmt).plain == "tflite-int8"


def test_the_causal_pool_rewrite_is_named_only_where_a_one_frame_call_takes_it():
    # More frames per call take Model Garden's own pool: the manifest must not claim the rewrite.
    stream = ModelConfig("t0", "stream", 64, 5)
    assert applied_optimizations(stream, get_format("tflite-int8+opt"), 4) == (INT8_HARD_SWISH,)
    with pytest.raises(UnsupportedExportError, match="at 4 frame"):
        export_model(stream, "tflite-int8+causal-pool-step", frames_per_call=4)


def test_a_format_of_one_optimization_that_does_not_fit_is_refused():
    with pytest.raises(UnsupportedExportError, match="export tflite-int8$"):
        applied_optimizations(ModelConfig("t0", "mobile", 64, 5),
                              get_format("tflite-int8+int8-hard-swish"))


@pytest.fixture(scope="module")
def demo_int8_opt(demo_calibration):
    """The T0 stream demo weights in full int8 with the optimizations, calibrated on videos
    of the demo task."""
    path, config, options = demo_calibration
    return path, export_model(config, "tflite-int8+opt", checkpoint=path, options=options)


def test_optimized_int8_stays_on_xnnpack_and_agrees_with_fp32(demo_int8_opt, demo_task_videos):
    from bench.evaluation.evaluate import evaluate
    from runtimes.tensorflow import TensorFlowSession

    path, artifact = demo_int8_opt
    assert artifact.manifest.format == "tflite-int8+opt"
    assert artifact.manifest.optimizations == [INT8_HARD_SWISH, CAUSAL_POOL_STEP]
    assert "HARD_SWISH" not in artifact.details["op_histogram"]
    with open_session(artifact.path, threads=1) as session:
        facts = session.execution_facts(np.zeros(session.manifest.image_shape, np.float32))
        assert not any(op.startswith("HARD_SWISH") for op in facts.builtin_ops)
        # The causal pools' int32 and reciprocal ops read only the count inputs, so they no
        # longer cut the graph: 7 XNNPACK partitions on this model (hard-swish alone: 17).
        assert facts.partitions <= 8, facts

        # Against fp32 TF on videos the demo model never saw: the same top-1 on nearly all
        # (TF takes each video in one call: stream = full clip for it, tested elsewhere).
        videos = demo_task_videos
        reference = TensorFlowSession.from_config(config_for(None, None, checkpoint=path), path)
        fp32 = evaluate(reference, videos.samples, "full-clip", classes=videos.classes)
        int8 = evaluate(session, videos.samples, "stream", classes=videos.classes)
    assert fp32.metrics.top1 >= 0.75  # the demo model solves the task (chance is 0.25)
    agree = np.mean([a.pred_index == b.pred_index for a, b in zip(fp32.videos, int8.videos)])
    assert agree >= 7 / 8, agree
