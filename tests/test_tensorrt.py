"""TensorRT: build plans and calibration feeds everywhere; real engines where TensorRT and a GPU are.

The `tensorrt`-marked tests skip with the reason (TensorRT not installed, no CUDA GPU) on
machines without them; everything else runs without TensorRT.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.evaluation.compare_logits import Tolerance, compare_logits
from converters.calibration import streamed_feeds, synthetic_clips
from converters.errors import (
    ArtifactError, MissingDependencyError, StateError, UnsupportedExportError,
)
from converters.export import CalibrationData, ExportOptions, export_model
from converters.formats import get_format
from converters.manifest import StateManifest, StateSpec, manifest_path_for
from converters.tensorrt_config import TensorRTBuildConfig, plan_engine_build
from runtimes.base import chunks, stream
from runtimes.loader import open_session

from conftest import T0_STREAM

STATES = [StateSpec("block0_layer0_pool_buffer", (1, 1, 1, 1, 16), "float32"),
          StateSpec("block0_layer0_pool_frame_count", (1,), "int32"),
          StateSpec("block1_layer0_stream_buffer", (1, 2, 16, 16, 24), "float32")]


def manifest(frames: int | None = 1, states=STATES) -> StateManifest:
    return StateManifest("t0", "stream", 64, 5, list(states), frames_per_step=frames, format="onnx")


# -- the plan, everywhere ------------------------------------------------------------------------
def test_fp32_plan_keeps_fp32_exact_and_pins_every_input():
    plan = plan_engine_build(TensorRTBuildConfig(), "fp32", manifest(frames=2))
    assert plan.set_flags == () and plan.clear_flags == ("TF32",) and plan.network_flags == ()
    assert not plan.needs_calibrator
    assert plan.input_shapes == {"image": (1, 2, 64, 64, 3),
                                 **{s.input_name: s.shape for s in STATES}}
    assert plan.input_dtypes["state_block0_layer0_pool_frame_count"] == "int32"
    assert plan.output_names[0] == "logits" and len(plan.output_names) == 1 + len(STATES)
    assert plan.workspace_bytes == 1024 << 20 and plan.optimization_level == 3


def test_reduced_precision_plans():
    fp16 = plan_engine_build(TensorRTBuildConfig(tf32=True), "fp16", manifest())
    assert fp16.set_flags == ("FP16", "TF32") and fp16.clear_flags == ()
    int8 = plan_engine_build(TensorRTBuildConfig(), "int8", manifest())
    assert int8.set_flags == ("INT8", "FP16") and int8.needs_calibrator
    dla = plan_engine_build(TensorRTBuildConfig(dla_core=0), "fp16", manifest())
    assert "GPU_FALLBACK" in dla.set_flags and dla.dla_core == 0
    typed = plan_engine_build(TensorRTBuildConfig(strongly_typed=True), "fp32", manifest())
    assert typed.network_flags == ("STRONGLY_TYPED",)
    # TensorRT 11 is always strongly typed: the flag no longer exists.
    assert plan_engine_build(TensorRTBuildConfig(strongly_typed=True), "fp32", manifest(),
                             tensorrt_version="11.1.0").network_flags == ()


@pytest.mark.parametrize("config, precision, version, message", [
    (TensorRTBuildConfig(), "int4", None, "precision must be one of"),
    (TensorRTBuildConfig(strongly_typed=True), "fp16", None, "strongly typed"),
    (TensorRTBuildConfig(), "int8", "11.0.0", "TensorRT 11 has no FP16/INT8"),
    (TensorRTBuildConfig(dla_core=1), "fp32", None, "DLA runs fp16 or int8"),
])
def test_plans_that_cannot_work_say_why(config, precision, version, message):
    with pytest.raises(UnsupportedExportError, match=message):
        plan_engine_build(config, precision, manifest(), tensorrt_version=version)


def test_dynamic_frames_cannot_become_an_engine():
    with pytest.raises(UnsupportedExportError, match="static shapes"):
        plan_engine_build(TensorRTBuildConfig(), "fp32", manifest(frames=None))
    with pytest.raises(UnsupportedExportError, match="dynamic_frames is ONNX-only"):
        export_model(T0_STREAM, "trt-fp32", options=ExportOptions(dynamic_frames=True))


def test_bad_build_settings_fail_at_construction():
    with pytest.raises(UnsupportedExportError, match="optimization level must be 0..5"):
        TensorRTBuildConfig(optimization_level=6)
    with pytest.raises(UnsupportedExportError, match="workspace"):
        TensorRTBuildConfig(workspace_mib=0)


def test_cache_key_holds_what_changes_the_engine():
    base = TensorRTBuildConfig()
    runtime_only = TensorRTBuildConfig(timing_cache="/some/cache.bin", cuda_graphs=True)
    assert runtime_only.key() == base.key() and runtime_only == base
    assert TensorRTBuildConfig(workspace_mib=2048).key() != base.key()
    spec = get_format("trt-int8")
    a = ExportOptions().key(spec)
    b = ExportOptions(tensorrt=TensorRTBuildConfig(optimization_level=5)).key(spec)
    c = ExportOptions(calibration=CalibrationData(clips=2)).key(spec)
    assert a != b and a != c and "calibration" in a
    assert "calibration" not in ExportOptions().key(get_format("trt-fp16"))


# -- int8 calibration feeds (ONNX Runtime), everywhere -------------------------------------------
def test_calibration_feeds_carry_streamed_states():
    source = export_model(T0_STREAM, "onnx")
    m = source.manifest
    clip = synthetic_clips(1, 3, 64, seed=4)[0]
    feeds = list(streamed_feeds(source.path, m, [clip]))
    assert len(feeds) == 3 and all(set(f) == set(m.input_names) for f in feeds)
    np.testing.assert_array_equal(feeds[1]["image"], clip[None, 1:2])
    counter = next(s for s in m.states if s.dtype == "int32")
    assert [int(f[counter.input_name][0]) for f in feeds] == [0, 1, 2]
    # The states fed at step 2 are what the model itself returned after two frames.
    session = open_session(source.path, io_binding=False)
    _, states = stream(session, chunks(clip[:2], 1))
    for spec in m.states:
        np.testing.assert_allclose(feeds[2][spec.input_name], states[spec.name], atol=1e-6)


def test_calibration_drops_a_partial_step_and_refuses_dynamic_t():
    source = export_model(T0_STREAM, "onnx")
    clip = synthetic_clips(1, 5, 64)[0]
    # A clip model (no states) of 2 frames: windows 0-1 and 2-3; frame 4 cannot fill a step.
    clip_model = StateManifest("t0", "base", 64, 5, [], frames_per_step=2, format="onnx")
    windows = [f["image"] for f in streamed_feeds(source.path, clip_model, [clip])]
    assert [w.shape[1] for w in windows] == [2, 2]
    np.testing.assert_array_equal(windows[1][0], clip[2:4])
    with pytest.raises(UnsupportedExportError, match="static frames_per_step"):
        next(streamed_feeds(source.path, manifest(frames=None), [clip]))


# -- without TensorRT: clear refusals ------------------------------------------------------------
def test_engine_paths_refuse_clearly_without_tensorrt_or_gpu(tmp_path):
    from runtimes.tensorrt_cuda import require_tensorrt

    try:
        require_tensorrt()
    except MissingDependencyError as exc:
        reason = str(exc)
    else:
        pytest.skip("TensorRT and a CUDA GPU are present: the refusals cannot be seen here")
    assert ("TensorRT is not installed" in reason or "cuda-python" in reason
            or "GPU" in reason) and "\n" not in reason
    with pytest.raises(MissingDependencyError):
        export_model(T0_STREAM, "trt-fp16")
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"not an engine")
    manifest(frames=1).with_format("trt-fp32", "fp32", 1, {}).save(manifest_path_for(engine))
    with pytest.raises(MissingDependencyError):
        open_session(engine)


# -- real engines: TensorRT 10 and a CUDA GPU ----------------------------------------------------
@pytest.fixture(scope="module")
def tensorrt_ready():
    from runtimes.tensorrt_cuda import require_tensorrt

    try:
        return require_tensorrt()
    except MissingDependencyError as exc:
        pytest.skip(f"needs TensorRT and a CUDA GPU: {exc}")


@pytest.fixture(scope="module")
def onnx_reference(tensorrt_ready):
    source = export_model(T0_STREAM, "onnx")
    clip = synthetic_clips(1, 16, 64, seed=6)[0]
    logits, _ = stream(open_session(source.path), chunks(clip, 1))
    return clip, logits


@pytest.mark.tensorrt
def test_trt_fp32_streams_like_onnx(tensorrt_ready, onnx_reference):
    clip, reference = onnx_reference
    engine = export_model(T0_STREAM, "trt-fp32")
    assert engine.details["plan"]["clear_flags"] == ["TF32"] and engine.details["device"]
    with open_session(engine.path) as session:
        logits, states = stream(session, chunks(clip, 1))
        assert np.abs(logits - reference).max() <= 1e-4
        assert session.device_memory_bytes >= 0
        # Two steps on, the first step's buffers have been written again: refused, not misread.
        first = session.step(clip[None, :1], session.init_states())[1]
        second = session.step(clip[None, 1:2], first)[1]
        session.step(clip[None, 2:3], second)
        with pytest.raises(StateError, match="overwritten"):
            session.step(clip[None, :1], first)
        assert np.asarray(second[next(iter(second))]).shape == session.manifest.states[0].shape
    with open_session(engine.path, cuda_graphs=True) as graphed:
        graphed_logits, _ = stream(graphed, chunks(clip, 1))
    assert np.abs(graphed_logits - logits).max() <= 1e-6


@pytest.mark.tensorrt
def test_trt_fp16_and_int8_build_and_stay_close(tensorrt_ready, onnx_reference):
    clip, reference = onnx_reference
    fp16 = export_model(T0_STREAM, "trt-fp16")
    with open_session(fp16.path) as session:
        logits, _ = stream(session, chunks(clip, 1))
    diff = compare_logits("fp16 vs onnx", reference, logits, Tolerance(atol=None, min_top1_agreement=0.9))
    assert diff.passed and np.isfinite(logits).all(), diff
    calibration = CalibrationData(clips=2, frames=8)
    int8 = export_model(T0_STREAM, "trt-int8", options=ExportOptions(calibration=calibration))
    assert int8.details["calibration"]["batches"] == 2 * 8
    assert manifest_path_for(int8.path).exists() and int8.path.with_name(int8.path.name + ".calib").exists()
    with open_session(int8.path) as session:
        logits, _ = stream(session, chunks(clip, 1))
    assert logits.shape == reference.shape and np.isfinite(logits).all()


@pytest.mark.tensorrt
def test_corrupt_engine_is_an_artifact_error(tensorrt_ready, tmp_path):
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"not an engine" * 100)
    manifest(frames=1).with_format("trt-fp32", "fp32", 1, {}).save(manifest_path_for(engine))
    with pytest.raises(ArtifactError, match="cannot deserialize"):
        open_session(engine)
