"""The state manifest: naming contract, JSON round trip, and runtime input checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.errors import ArtifactError, StateError
from core.manifest import (
    StateManifest, manifest_path_for, state_input_name, state_name_from_tensor, state_output_name,
)


def test_state_names_in_and_out_differ():
    assert state_input_name("b1_stream_buffer") == "state_b1_stream_buffer"
    assert state_output_name("b1_stream_buffer") == "next_state_b1_stream_buffer"
    assert state_name_from_tensor("next_state_x") == state_name_from_tensor("state_x") == "x"
    with pytest.raises(ValueError):
        state_name_from_tensor("logits")


def test_reference_manifest_describes_model(t0_stream_session):
    m = t0_stream_session.manifest
    assert (m.model_id, m.variant, m.resolution, m.num_classes) == ("t0", "stream", 64, 5)
    assert len(m.states) == 38
    counters = [s for s in m.states if s.name.endswith("frame_count")]
    assert counters and all(s.dtype == "int32" for s in counters)
    assert len(m.weights_sha256) == 64
    assert m.input_names[0] == "image" and m.output_names[0] == "logits"
    assert not set(m.input_names) & set(m.output_names)


def test_manifest_round_trips_through_json(t0_stream_session, tmp_path):
    m = t0_stream_session.manifest
    path = m.save(manifest_path_for(tmp_path / "model.onnx"))
    assert path.name == "model.onnx.manifest.json"
    back = StateManifest.load(path)
    assert back == m
    data = json.loads(path.read_text())
    assert data["states"][0]["init"] == "zeros"
    for spec, initial in zip(back.states, back.init_states().values()):
        assert initial.shape == spec.shape and initial.dtype == np.dtype(spec.dtype)
        assert not initial.any()


def test_manifest_written_with_the_old_field_name_still_loads(t0_stream_session):
    """Manifests from before `frames_per_call` took the results' name said `frames_per_step`."""
    data = t0_stream_session.manifest.with_format("onnx", "fp32", 4, {}).to_dict()
    data["frames_per_step"] = data.pop("frames_per_call")
    assert StateManifest.from_dict(data).frames_per_call == 4


def test_broken_manifest_files_are_clear_errors(tmp_path):
    with pytest.raises(ArtifactError, match="not found"):
        StateManifest.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        StateManifest.load(tmp_path / "bad.json")
    (tmp_path / "partial.json").write_text('{"model_id": "t0"}')
    with pytest.raises(ArtifactError, match="invalid state manifest"):
        StateManifest.load(tmp_path / "partial.json")


def _frame(session, frames=1):
    r = session.manifest.resolution
    return np.zeros((1, frames, r, r, 3), np.float32)


def test_wrong_state_shape_is_named(t0_stream_session):
    states = dict(t0_stream_session.init_states())
    name = next(iter(states))
    states[name] = np.zeros((1, 2, 3), states[name].dtype)
    with pytest.raises(StateError, match=rf"state '{name}' has shape \[1, 2, 3\]"):
        t0_stream_session.step(_frame(t0_stream_session), states)


def test_wrong_state_dtype_is_named(t0_stream_session):
    states = dict(t0_stream_session.init_states())
    name = next(n for n, v in states.items() if v.dtype == np.int32)
    states[name] = states[name].astype(np.float32)
    with pytest.raises(StateError, match=rf"state '{name}' has dtype float32, expected int32"):
        t0_stream_session.step(_frame(t0_stream_session), states)


def test_missing_and_extra_states_are_named(t0_stream_session):
    states = dict(t0_stream_session.init_states())
    dropped = sorted(states)[0]
    del states[dropped]
    with pytest.raises(StateError, match=f"missing state '{dropped}'"):
        t0_stream_session.step(_frame(t0_stream_session), states)
    states = dict(t0_stream_session.init_states())
    states["bogus"] = np.zeros(1, np.float32)
    with pytest.raises(StateError, match="unexpected state 'bogus'"):
        t0_stream_session.step(_frame(t0_stream_session), states)


@pytest.mark.parametrize("image, match", [
    (np.zeros((1, 1, 64, 64, 3), np.float64), "dtype must be float32"),
    (np.zeros((1, 1, 32, 32, 3), np.float32), r"shape must be \[1, T, 64, 64, 3\]"),
    (np.zeros((1, 64, 64, 3), np.float32), "shape must be"),
    ([[0.0]], "numpy array"),
])
def test_bad_images_are_named(t0_stream_session, image, match):
    with pytest.raises(StateError, match=match):
        t0_stream_session.step(image, t0_stream_session.init_states())


def test_issued_states_are_read_only(t0_stream_session):
    """States a session hands out cannot be changed in place, so they need no re-check."""
    _, states = t0_stream_session.step(_frame(t0_stream_session), t0_stream_session.init_states())
    name = next(iter(states))
    with pytest.raises(TypeError):
        states[name] = np.zeros((1, 2, 3), np.float32)
    copied = {**states, name: np.zeros((1, 2, 3), states[name].dtype)}
    with pytest.raises(StateError, match="has shape"):
        t0_stream_session.step(_frame(t0_stream_session), copied)
