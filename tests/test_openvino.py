"""The OpenVINO runtime: the same ONNX graph as ONNX Runtime, the same session contract."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.errors import ArtifactError, StateError
from core.manifest import manifest_path_for
from runtimes.base import chunks, stream
from runtimes.loader import open_session
from runtimes.openvino import OpenVinoSession
from runtimes.state_buffers import BufferedState

from conftest import T0_STREAM


def frames(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.random((n, T0_STREAM.resolution, T0_STREAM.resolution, 3), dtype=np.float32)


def test_the_artifact_is_the_onnx_export_under_its_own_format(t0_stream_openvino, t0_stream_onnx):
    assert t0_stream_openvino.path.read_bytes() == t0_stream_onnx.path.read_bytes()
    assert t0_stream_openvino.manifest.format == "openvino"
    assert t0_stream_openvino.details["onnx_key"] == t0_stream_onnx.key


def test_streams_like_onnx_runtime_with_states_kept_as_openvino_tensors(
        t0_stream_openvino, t0_stream_onnx):
    clip = frames(6)
    with open_session(t0_stream_onnx.path, threads=2) as ort:
        expected, _ = stream(ort, chunks(clip, 1))
    with open_session(t0_stream_openvino.path, threads=2) as session:
        assert isinstance(session, OpenVinoSession)
        assert session.properties["INFERENCE_NUM_THREADS"] == "2"
        assert session.properties["INFERENCE_PRECISION_HINT"] == "f32"
        # What a results row records of it (runtime_settings): the plugin's own report.
        assert session.settings() == {**session.properties, "state_io": "buffers"}
        assert session.settings()["PERFORMANCE_HINT"] == "LATENCY"
        logits, states = stream(session, chunks(clip, 1))
        assert all(isinstance(v, BufferedState) for v in states.values())
    np.testing.assert_allclose(logits, expected, atol=1e-4)


def test_a_state_handed_out_is_not_overwritten_by_later_steps(t0_stream_openvino):
    clip = frames(3, seed=1)
    with open_session(t0_stream_openvino.path) as session:
        _, first = session.step(clip[None, :1], session.init_states())
        kept = {name: value.numpy() for name, value in first.items()}
        _, second = session.step(clip[None, 1:2], first)
        session.step(clip[None, 2:3], second)
        for name, value in first.items():
            np.testing.assert_array_equal(value.numpy(), kept[name], err_msg=name)
        # The states carry the clip: some differ after a step (the model is not memoryless).
        assert any(not np.array_equal(second[n].numpy(), kept[n]) for n in kept)


def test_states_from_numpy_and_from_another_runtime_are_accepted(t0_stream_openvino, t0_stream_onnx):
    clip = frames(2, seed=2)
    with open_session(t0_stream_onnx.path) as ort, open_session(t0_stream_openvino.path) as ov:
        _, ort_states = ort.step(clip[None, :1], ort.init_states())
        expected, _ = ort.step(clip[None, 1:2], ort_states)
        handed = {name: np.asarray(value) for name, value in ort_states.items()}
        logits, _ = ov.step(clip[None, 1:2], handed)
    np.testing.assert_allclose(logits, expected, atol=1e-4)


def test_wrong_states_and_frames_are_one_line_errors(t0_stream_openvino):
    with open_session(t0_stream_openvino.path) as session:
        states = dict(session.init_states())
        name = next(iter(states))
        bad = {**states, name: np.zeros((2, 3), np.float32)}
        with pytest.raises(StateError, match=f"state {name!r} has shape"):
            session.step(frames(1)[None], bad)
        states.pop(name)
        with pytest.raises(StateError, match="missing state"):
            session.step(frames(1)[None], states)
        with pytest.raises(StateError, match="exactly 1 frame"):
            session.step(frames(2)[None], session.init_states())


def test_a_corrupt_or_mismatched_file_is_an_artifact_error(tmp_path, t0_stream_openvino):
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(t0_stream_openvino.path.read_bytes()[:5000])
    manifest = json.loads(manifest_path_for(t0_stream_openvino.path).read_text())
    manifest_path_for(corrupt).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="cannot load ONNX model .* in OpenVINO") as info:
        open_session(corrupt)
    # The line that names the problem, not OpenVINO's "Exception from <file>:<line>:" prefix.
    assert "\n" not in str(info.value) and "Exception from" not in str(info.value)

    renamed = tmp_path / "renamed.onnx"
    renamed.write_bytes(t0_stream_openvino.path.read_bytes())
    manifest["states"][0]["name"] = "not_a_state"
    manifest_path_for(renamed).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="does not match its manifest"):
        open_session(renamed)


def test_layer_counters_name_executed_layers_and_kernels_and_leave_the_timed_session_alone(
        t0_stream_openvino):
    from core.errors import MovibenchError
    from runtimes.openvino import counter_facts

    with open_session(t0_stream_openvino.path, threads=1) as session:
        facts = session.execution_facts(frames(1)[None])
        assert session.step_ns == []
        assert str(session.compiled.get_property("PERF_COUNT")) == "NO"
    assert facts.nodes > 0 and facts.partitions is None
    assert sum(facts.op_time.values()) == pytest.approx(1.0)
    assert sum(facts.provider_time.values()) == pytest.approx(1.0)
    # The stream graph's convolutions and its causal pool's cumulative sum are executed layers.
    assert {"Convolution", "CumSum"} <= set(facts.op_time)
    assert all(kernel.endswith(("f32", "i32", "i64")) for kernel in facts.provider_time)
    with pytest.raises(MovibenchError, match="two calls or more"):
        counter_facts([[]])
