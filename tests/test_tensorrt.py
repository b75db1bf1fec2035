"""TensorRT: build plans, calibration feeds and the runtime everywhere; real engines on a GPU.

The runtime (runtimes/tensorrt.py, tensorrt_cuda.py) runs everywhere against a double of
TensorRT and cuda-python (tests/doubles/tensorrt_double.py) whose "engine" is the t0 ONNX model
run by ONNX Runtime behind the engine API, so its logits must match the ONNX Runtime session's.
The `tensorrt`-marked tests build and run real engines and skip with the reason (TensorRT not
installed, no CUDA GPU) on machines without them.
"""

from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import pytest

from bench.evaluation.compare_logits import Tolerance, compare_logits
from bench.scenarios.latency import measure_latency
from bench.trackers.gpu import COLUMNS, GpuMemoryTracker
from converters.calibration import streamed_feeds, synthetic_clips
from core.errors import (
    ArtifactError, MissingDependencyError, MovibenchError, StateError, UnsupportedExportError,
)
from converters.export import CalibrationData, ExportOptions, export_model
from core.formats import get_format
from core.manifest import StateManifest, StateSpec, manifest_path_for
from converters.tensorrt_config import TensorRTBuildConfig, plan_engine_build
from runtimes.base import chunks, stream
from runtimes.loader import load_manifest, open_session
from runtimes.onnxruntime import OnnxRuntimeSession

from conftest import T0_STREAM

STATES = [StateSpec("block0_layer0_pool_buffer", (1, 1, 1, 1, 16), "float32"),
          StateSpec("block0_layer0_pool_frame_count", (1,), "int32"),
          StateSpec("block1_layer0_stream_buffer", (1, 2, 16, 16, 24), "float32")]


def manifest(frames: int | None = 1, states=STATES) -> StateManifest:
    return StateManifest("t0", "stream", 64, 5, list(states), frames_per_call=frames, format="onnx")


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
    clip_model = StateManifest("t0", "base", 64, 5, [], frames_per_call=2, format="onnx")
    windows = [f["image"] for f in streamed_feeds(source.path, clip_model, [clip])]
    assert [w.shape[1] for w in windows] == [2, 2]
    np.testing.assert_array_equal(windows[1][0], clip[2:4])
    with pytest.raises(UnsupportedExportError, match="static frames_per_call"):
        next(streamed_feeds(source.path, manifest(frames=None), [clip]))


# -- without TensorRT: clear refusals ------------------------------------------------------------
def test_engine_paths_refuse_clearly_without_tensorrt_or_gpu(tmp_path):
    from core.tensorrt_cuda import require_tensorrt

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


# -- the runtime against the TensorRT/CUDA double, everywhere ------------------------------------
@pytest.fixture(scope="module")
def onnx_reference():
    """A 16-frame clip and the t0 ONNX model's per-step logits on it (ONNX Runtime)."""
    source = export_model(T0_STREAM, "onnx")
    clip = synthetic_clips(1, 16, 64, seed=6)[0]
    logits, _ = stream(open_session(source.path), chunks(clip, 1))
    return clip, logits


@pytest.fixture(scope="module")
def double_engine(tmp_path_factory):
    """The t0 ONNX model as the double's engine file, beside the manifest of a trt-fp32 engine."""
    source = export_model(T0_STREAM, "onnx")
    path = tmp_path_factory.mktemp("double") / "t0_stream.engine"
    shutil.copyfile(source.path, path)
    source.manifest.with_format("trt-fp32", "fp32", 1, {}).save(manifest_path_for(path))
    return path


def max_diff(a, b) -> float:
    return float(np.abs(np.asarray(a) - np.asarray(b)).max())


@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_engine_streams_like_onnx_runtime(fake_gpu, double_engine, onnx_reference, cuda_graphs):
    clip, reference = onnx_reference
    with open_session(double_engine, cuda_graphs=cuda_graphs) as session:
        assert (session.runtime, session.manifest.format) == ("tensorrt", "trt-fp32")
        logits, _ = stream(session, chunks(clip, 1))
        # Ping-pong needs one graph per slot binding; captures only record, replays run.
        assert len(fake_gpu.graph_execs) == (2 if cuda_graphs else 0)
    assert fake_gpu.engine_runs == len(clip)
    assert max_diff(logits, reference) <= 1e-5


def test_a_graph_replaying_stale_addresses_gives_wrong_numbers(fake_gpu, double_engine, onnx_reference):
    from runtimes.tensorrt import TensorRTSession
    from core.tensorrt_cuda import cuda_call, cudart

    class StaleGraphSession(TensorRTSession):
        """Graph bookkeeping broken on purpose: the first graph serves every slot binding."""

        def _enqueue(self, slots):
            if self._graphs and slots not in self._graphs:
                first_exec = next(iter(self._graphs.values()))[1]
                cuda_call(cudart().cudaGraphLaunch(first_exec, self._stream))
                return
            super()._enqueue(slots)

    clip, reference = onnx_reference
    with StaleGraphSession.open(double_engine, load_manifest(double_engine), cuda_graphs=True) as session:
        logits, _ = stream(session, chunks(clip[:4], 1))
    assert max_diff(logits[:1], reference[:1]) <= 1e-5 and max_diff(logits, reference[:4]) > 1e-3


def test_a_state_two_steps_old_is_refused_and_a_live_one_reads_back(fake_gpu, double_engine, onnx_reference):
    clip, _ = onnx_reference
    _, expected = stream(open_session(export_model(T0_STREAM, "onnx").path), chunks(clip[:2], 1))
    with open_session(double_engine) as session:
        first = session.step(clip[None, :1], session.init_states())[1]
        second = session.step(clip[None, 1:2], first)[1]
        session.step(clip[None, 2:3], second)
        with pytest.raises(StateError, match="overwritten"):
            session.step(clip[None, :1], first)
        name = next(iter(first))
        with pytest.raises(StateError, match="overwritten"):
            np.asarray(first[name])
        # The third step read `second`'s slot and wrote the other: `second` is still valid.
        for key, value in second.items():
            assert max_diff(value, expected[key]) <= 1e-5, key


@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_states_from_the_host_or_another_runtime_are_uploaded(fake_gpu, double_engine, onnx_reference,
                                                               cuda_graphs):
    clip, reference = onnx_reference
    ort = open_session(export_model(T0_STREAM, "onnx").path)
    _, ort_states = stream(ort, chunks(clip[:6], 1))
    host_states = {name: np.asarray(value) for name, value in ort_states.items()}
    with open_session(double_engine, cuda_graphs=cuda_graphs) as session:
        from_ort, _ = stream(session, chunks(clip[6:], 1), ort_states)
        from_host, _ = stream(session, chunks(clip[6:], 1), host_states)
    assert max_diff(from_ort, reference[6:]) <= 1e-5 and max_diff(from_host, reference[6:]) <= 1e-5


def test_close_frees_everything_and_a_closed_session_refuses(fake_gpu, double_engine, onnx_reference):
    clip, _ = onnx_reference
    session = open_session(double_engine, cuda_graphs=True)
    _, states = stream(session, chunks(clip[:3], 1))
    m = session.manifest
    io_bytes = 2 * m.state_bytes + clip[:1].nbytes + 4 * m.num_classes
    assert fake_gpu.used_bytes >= io_bytes + session.device_memory_bytes
    assert fake_gpu.streams and fake_gpu.graphs and fake_gpu.graph_execs
    session.close()
    assert (fake_gpu.memory, fake_gpu.streams, fake_gpu.graphs, fake_gpu.graph_execs) == ({}, {}, {}, {})
    with pytest.raises(StateError, match="closed"):
        session.step(clip[None, :1], session.init_states())
    with pytest.raises(StateError, match="closed"):
        np.asarray(states[next(iter(states))])
    session.close()  # a second close is a no-op


def test_engine_io_is_checked_against_the_manifest(fake_gpu, double_engine, tmp_path):
    engine = tmp_path / "model.engine"
    shutil.copyfile(double_engine, engine)
    good = load_manifest(double_engine)
    replace(good, num_classes=6).save(manifest_path_for(engine))
    with pytest.raises(ArtifactError, match="output 'logits' has shape") as mismatch:
        open_session(engine)
    assert "does not match its manifest" in str(mismatch.value) and "\n" not in str(mismatch.value)
    replace(good, states=good.states[1:]).save(manifest_path_for(engine))
    with pytest.raises(ArtifactError, match="that the manifest does not name"):
        open_session(engine)
    engine.write_bytes(b"not an engine" * 100)
    with pytest.raises(ArtifactError, match="cannot deserialize .*Serialization"):
        open_session(engine)


def test_an_engine_refused_while_preparing_frees_what_it_allocated(monkeypatch, double_engine):
    """A device that fills up part-way through the state buffers: `open` closes the session,
    so the context, stream and buffers allocated so far (and then the engine) are freed."""
    from doubles.tensorrt_double import FakeGpu, install

    m = load_manifest(double_engine)
    scratch = 1 << 20
    # The engine's weights, its context's scratch, image and logits, and one of the two
    # ping-pong slots of every state: the second slots cannot all fit.
    room = (double_engine.stat().st_size + scratch + int(np.prod(m.image_shape)) * 4
            + 4 * m.num_classes + m.state_bytes)
    gpu = install(monkeypatch, FakeGpu(total_bytes=room, engine_scratch_bytes=scratch))
    with pytest.raises(MovibenchError, match="cudaErrorMemoryAllocation") as refused:
        open_session(double_engine)
    assert "\n" not in str(refused.value)
    assert (gpu.memory, gpu.streams) == ({}, {})


def test_without_a_gpu_the_engine_refuses_to_open(monkeypatch, double_engine):
    from doubles.tensorrt_double import FakeGpu, install

    install(monkeypatch, FakeGpu(device_count=0))
    with pytest.raises(MissingDependencyError, match=r"installed but there is no usable CUDA GPU \(cudaErrorNoDevice\)"):
        open_session(double_engine)


def test_device_buffers_catch_a_wrong_copy_kind_and_a_use_after_free(fake_gpu):
    from core.tensorrt_cuda import DeviceBuffer, cuda_call, cudart

    rt = cudart()
    data = np.arange(6, dtype=np.float32)
    buffer = DeviceBuffer(data.nbytes)
    buffer.upload(data)
    np.testing.assert_array_equal(buffer.download(np.empty_like(data)), data)
    with pytest.raises(MovibenchError, match="cudaErrorInvalidValue"):  # host and device swapped
        cuda_call(rt.cudaMemcpy(data.ctypes.data, buffer.ptr, data.nbytes,
                                rt.cudaMemcpyKind.cudaMemcpyHostToDevice))
    pointer = buffer.ptr
    buffer.free()
    with pytest.raises(MovibenchError, match="cudaErrorInvalidValue"):
        cuda_call(rt.cudaMemcpy(data.ctypes.data, pointer, data.nbytes,
                                rt.cudaMemcpyKind.cudaMemcpyDeviceToHost))
    assert fake_gpu.used_bytes == 0


@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_latency_cell_leaves_the_session_states_intact(fake_gpu, double_engine, onnx_reference, cuda_graphs):
    clip, reference = onnx_reference
    with open_session(double_engine, cuda_graphs=cuda_graphs) as session:
        out = measure_latency(session, clip[None, :1], warmup=2, iterations=10)
        assert out["step_n"] == len(out.samples_ms) == 10
        assert out["harness_step_ms"] > 0 and out["bare_step_ms"] > 0
        logits, _ = stream(session, chunks(clip, 1))
    assert max_diff(logits, reference) <= 1e-5


# -- GPU memory through the session ---------------------------------------------------------------
def test_gpu_memory_tracker_reads_the_device_through_the_session(fake_gpu, double_engine, onnx_reference):
    from runtimes.tensorrt import TensorRTSession

    clip, _ = onnx_reference
    tracker = GpuMemoryTracker()
    tracker.before_load(TensorRTSession)
    with open_session(double_engine, cuda_graphs=True) as session:
        loaded_bytes = fake_gpu.used_bytes
        tracker.read("loaded", session)
        _, states = stream(session, chunks(clip[:2], 1))
        tracker.read("warm", session)
        stream(session, chunks(clip[2:4], 1), states)
        tracker.read("end", session)
        m = session.manifest
        io_bytes = 2 * m.state_bytes + clip[:1].nbytes + 4 * m.num_classes
        engine_bytes = session.device_memory_bytes
    columns = tracker.columns()
    assert columns["gpu_mem_loaded_mb"] * 2**20 == loaded_bytes >= io_bytes + engine_bytes
    assert columns["gpu_mem_peak_mb"] >= columns["gpu_mem_loaded_mb"]
    assert columns["gpu_engine_mb"] == engine_bytes / 2**20 > 0
    assert tracker.readings["loaded"].total_bytes == fake_gpu.total_bytes


def test_gpu_memory_columns_are_empty_without_a_device():
    tracker = GpuMemoryTracker()
    tracker.before_load(OnnxRuntimeSession)
    session = open_session(export_model(T0_STREAM, "onnx").path)
    tracker.read("loaded", session)
    assert session.device_memory_info() is None and tracker.readings == {}
    assert tracker.columns() == dict.fromkeys(COLUMNS)
    with pytest.raises(ValueError, match="unknown phase"):
        tracker.read("after_lunch", session)


# -- real engines: TensorRT 10 and a CUDA GPU ----------------------------------------------------
@pytest.fixture(scope="module")
def tensorrt_ready():
    from core.tensorrt_cuda import require_tensorrt

    try:
        return require_tensorrt()
    except MissingDependencyError as exc:
        pytest.skip(f"needs TensorRT and a CUDA GPU: {exc}")


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
