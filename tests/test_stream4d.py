"""The ≤4-D single-frame stream graph (converters.stream4d) and its state map (core.state_layout).

Exact against TensorFlow's Model Garden model over a streamed clip, in TF and after every
conversion; no tensor of rank above 4 in any artifact (the 5-D graph must fail the same
check); a stream that moves from a 5-D to a 4-D artifact mid-clip gets the same logits.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from converters.export import export_model
from core.errors import ArtifactError, StateError, UnsupportedExportError
from core.manifest import LAYOUT_4D, StateManifest
from core.state_layout import to_four_d, to_model_garden
from core.zoo import ModelConfig
from runtimes.loader import open_session

from conftest import T0_STREAM

FOUR_D_FORMATS = ("tflite-fp32+4d", "onnx+4d", "openvino+4d")
FRAMES = 8
# Relative to the clip's largest |logit|: float summation order is all that may differ.
EXACT = 1e-5


def clip(n: int = FRAMES, seed: int = 0) -> list[np.ndarray]:
    r = T0_STREAM.resolution
    rng = np.random.default_rng(seed)
    return [rng.random((1, 1, r, r, 3), dtype=np.float32) for _ in range(n)]


def stream(session, frames, states=None):
    states = session.init_states() if states is None else states
    logits = []
    for frame in frames:
        out, states = session.step(frame, states)
        logits.append(np.asarray(out))
    return np.concatenate(logits), states


def relative(got, want) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


@pytest.fixture(scope="module")
def reference(t0_stream_session):
    """TensorFlow's logits and final states over the clip."""
    return stream(t0_stream_session, clip())


def test_the_graph_in_tensorflow_equals_model_garden_states_included(reference):
    from core.build import build_model, make_manifest, step_function
    from converters.stream4d import four_d_manifest, single_frame_graph

    model = build_model(T0_STREAM)
    manifest = make_manifest(model, T0_STREAM, frames_per_call=1)
    four_d = four_d_manifest(manifest)
    step = step_function(single_frame_graph(model, manifest), four_d, 1)
    states = four_d.init_states()
    logits = []
    for frame in clip():
        out = step(frame.reshape(four_d.image_shape), *(states[s.name] for s in four_d.states))
        logits.append(out["logits"].numpy())
        states = {s.name: out[s.output_name].numpy() for s in four_d.states}
    want_logits, want_states = reference
    assert relative(np.concatenate(logits), want_logits) <= EXACT
    back = to_model_garden(states, four_d)
    for name, value in want_states.items():
        np.testing.assert_allclose(back[name], np.asarray(value), rtol=1e-5, atol=1e-5,
                                   err_msg=name)


@pytest.mark.parametrize("fmt", FOUR_D_FORMATS)
def test_every_4d_artifact_streams_exactly_like_tensorflow(fmt, reference):
    artifact = export_model(T0_STREAM, fmt)
    manifest = artifact.manifest
    assert manifest.layout == LAYOUT_4D and manifest.frames_per_call == 1
    assert all(len(s.shape) <= 4 for s in manifest.states)
    with open_session(artifact.path, threads=1) as session:
        logits, _ = stream(session, clip())
    assert relative(logits, reference[0]) <= EXACT


def tflite_ranks(path) -> dict[str, int]:
    from ai_edge_litert.interpreter import Interpreter

    return {t["name"]: len(t["shape"]) for t in Interpreter(str(path)).get_tensor_details()}


def onnx_ranks(path) -> dict[str, int]:
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)), strict_mode=True)
    graph = model.graph
    values = list(graph.input) + list(graph.output) + list(graph.value_info)
    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in values}
    ranks.update({t.name: len(t.dims) for t in graph.initializer})
    return ranks


@pytest.mark.parametrize("fmt,ranks", [("tflite-fp32", tflite_ranks), ("onnx", onnx_ranks)])
def test_no_tensor_above_rank_4_where_the_5d_graph_has_them(fmt, ranks):
    five_d = {n: r for n, r in ranks(export_model(T0_STREAM, fmt).path).items() if r > 4}
    assert five_d, "the check must see the 5-D graph's rank-5 tensors"
    four_d = ranks(export_model(T0_STREAM, fmt + "+4d").path)
    assert four_d and max(four_d.values()) <= 4, {n: r for n, r in four_d.items() if r > 4}


@pytest.mark.parametrize("fmt", ["tflite-fp32+4d", "tflite-fp16+4d"])
def test_the_float_tflite_4d_graph_passes_the_gpu_delegate_check_the_5d_one_fails(fmt):
    from converters.gpu_delegate_compat import check_gpu_delegate_compat

    five_d = check_gpu_delegate_compat(export_model(T0_STREAM, "tflite-fp32").path)
    assert not five_d.passed and five_d.highest_rank == 5
    # fp16: its weights reach the convolutions through DEQUANTIZE ops the delegate folds.
    artifact = export_model(T0_STREAM, fmt)
    report = check_gpu_delegate_compat(artifact.path)
    assert report.passed, report.summary()
    assert artifact.details["gpu_delegate"]["passed"]
    counts = [s for s in artifact.manifest.states if s.model_garden_dtype == "int32"]
    assert counts and all(s.dtype == "float32" and s.shape == (1, 1, 1, 1) for s in counts)


def test_a_stream_moves_from_a_5d_to_a_4d_artifact_mid_clip(t0_stream_onnx, reference):
    frames = clip()
    half = FRAMES // 2
    four_d = export_model(T0_STREAM, "onnx+4d")
    with open_session(t0_stream_onnx.path, threads=1) as five, \
            open_session(four_d.path, threads=1) as four:
        first, states = stream(five, frames[:half])
        second, states4 = stream(four, frames[half:], to_four_d(states, four.manifest))
        # ... and back: the 4-D states as Model Garden holds them continue on the 5-D artifact.
        third, _ = stream(five, clip(2, seed=1), to_model_garden(states4, four.manifest))
    assert relative(np.concatenate([first, second]), reference[0]) <= EXACT
    with open_session(t0_stream_onnx.path, threads=1) as five:
        _, whole = stream(five, frames)
        want, _ = stream(five, clip(2, seed=1), whole)
    assert relative(third, want) <= EXACT


@pytest.mark.parametrize("fmt", ["onnx+4d", "tflite-fp32+4d"])
def test_state_map_round_trips_and_names_a_misfit(fmt):
    manifest = export_model(T0_STREAM, fmt).manifest
    rng = np.random.default_rng(3)
    garden = {s.name: (rng.random(s.model_garden_shape or s.shape) * 100).astype(
        s.model_garden_dtype or s.dtype) for s in manifest.states}
    there = to_four_d(garden, manifest)
    assert {n: (v.shape, v.dtype) for n, v in there.items()} == {
        s.name: (s.shape, np.dtype(s.dtype)) for s in manifest.states}
    back = to_model_garden(there, manifest)
    for name, value in garden.items():
        assert back[name].dtype == value.dtype, name
        np.testing.assert_array_equal(back[name], value)
    buffer = next(s for s in manifest.states if s.name.endswith("_stream_buffer"))
    # Frame j of the buffer lands in rows j*H..(j+1)*H-1 of the 4-D state.
    height = buffer.model_garden_shape[2]
    np.testing.assert_array_equal(there[buffer.name][:, height:2 * height],
                                  garden[buffer.name][:, 1])
    with pytest.raises(StateError, match=buffer.name):
        to_four_d({**garden, buffer.name: there[buffer.name]}, manifest)
    with pytest.raises(StateError, match="missing state"):
        to_model_garden({}, manifest)


def test_the_manifest_records_model_gardens_shapes_and_refuses_a_wrong_one(tmp_path):
    manifest = export_model(T0_STREAM, "tflite-fp32+4d").manifest
    loaded = StateManifest.from_dict(json.loads(json.dumps(manifest.to_dict())))
    assert loaded.states == manifest.states and loaded.layout == LAYOUT_4D
    data = manifest.to_dict()
    buffer = next(s for s in data["states"] if "model_garden_shape" in s)
    buffer["model_garden_shape"] = [1, 3, 3]
    with pytest.raises(ArtifactError, match="does not hold"):
        StateManifest.from_dict(data)
    data = manifest.to_dict()
    data["frames_per_call"] = 2
    with pytest.raises(ArtifactError, match="one frame per call"):
        StateManifest.from_dict(data)


@pytest.mark.parametrize("config,frames,match", [
    (ModelConfig("t0", "base", 64, 5), 8, "clip model"),
    (T0_STREAM, 2, "one frame per call"),
    (ModelConfig("t0", "stream", 64, 5, conv_type="3d"), 1, "conv_type '3d'"),
])
def test_what_has_no_4d_graph_is_refused_before_any_build(config, frames, match):
    with pytest.raises(UnsupportedExportError, match=match):
        export_model(config, "tflite-fp32+4d", frames_per_call=frames)
