"""TFLite export (fp32, full int8, a base clip model) and the LiteRT runtime, on t0 at 64².

Three conversions in all, each built once per session through the artifact cache.
"""

from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import pytest

from converters.calibration import synthetic_clips
from core.errors import ArtifactError, StateError, UnsupportedExportError
from converters.export import CalibrationData, export_model
from core.manifest import StateManifest, StateSpec, manifest_path_for
from core.zoo import ModelConfig
from runtimes.base import chunks, stream
from runtimes.litert import LiteRTSession, manifest_from_tflite
from runtimes.loader import load_manifest, open_session
from tests.conftest import T0_STREAM

T0_BASE = ModelConfig("t0", "base", 64, 5, conv_type="2plus1d")
BASE_CLIP_FRAMES = 4


@pytest.fixture(scope="session")
def fp32_artifact():
    return export_model(T0_STREAM, "tflite-fp32")


@pytest.fixture(scope="session")
def int8_artifact():
    return export_model(T0_STREAM, "tflite-int8")


@pytest.fixture(scope="session")
def base_artifact():
    return export_model(T0_BASE, "tflite-fp32", frames_per_call=BASE_CLIP_FRAMES)


@pytest.fixture(scope="session")
def clip():
    return synthetic_clips(1, 16, 64, seed=7)[0]


@pytest.fixture(scope="session")
def tf_stream_logits(t0_stream_session, clip):
    return stream(t0_stream_session, chunks(clip, 1))[0]


def _signature(path):
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_path=str(path)).get_signature_list()["serving_default"]


@pytest.mark.parametrize("which", ["fp32_artifact", "int8_artifact"])
def test_signature_names_follow_the_contract(which, request):
    artifact = request.getfixturevalue(which)
    signature = _signature(artifact.path)
    assert sorted(signature["inputs"]) == sorted(artifact.manifest.input_names)
    assert sorted(signature["outputs"]) == sorted(artifact.manifest.output_names)
    assert "image" in signature["inputs"] and "logits" in signature["outputs"]
    assert all(n.startswith("next_state_") for n in signature["outputs"] if n != "logits")


@pytest.mark.parametrize("xnnpack", [True, False])
def test_fp32_streams_like_tensorflow(fp32_artifact, tf_stream_logits, clip, xnnpack):
    session = LiteRTSession.open(fp32_artifact.path, fp32_artifact.manifest, threads=2,
                                 xnnpack=xnnpack)
    lite_logits, _ = stream(session, chunks(clip, 1))
    assert lite_logits.shape == tf_stream_logits.shape == (16, 5)
    assert np.abs(lite_logits - tf_stream_logits).max() < 1e-4
    assert len(session.step_ns) == 16


def test_states_carry_information_in_litert(fp32_artifact, clip):
    """Next states are copies the session owns: feeding fresh states must change the answer."""
    session = open_session(fp32_artifact.path)
    _, states = stream(session, chunks(clip[:8], 1))
    carried, _ = session.step(clip[None, 8:9], states)
    fresh, _ = session.step(clip[None, 8:9], session.init_states())
    assert np.abs(carried - fresh).max() > 1e-3


def test_int8_runs_and_its_error_is_measured(int8_artifact, fp32_artifact, tf_stream_logits,
                                             clip, record_property):
    details = int8_artifact.details
    assert details["calibration_samples"] == CalibrationData().clips * CalibrationData().frames
    assert details["tensor_dtypes"].get("int8", 0) > 0
    assert details["boundary_ops"].get("QUANTIZE", 0) > 0
    assert int8_artifact.size_bytes < fp32_artifact.size_bytes
    session = open_session(int8_artifact.path, threads=2)
    assert session.manifest.precision == "int8"
    lite_logits, states = stream(session, chunks(clip, 1))
    assert lite_logits.shape == (16, 5) and np.isfinite(lite_logits).all()
    assert all(np.isfinite(v).all() for v in states.values() if v.dtype.kind == "f")
    # Measured, not asserted: random weights make int8 agreement a fact to report, not a law.
    record_property("int8_max_abs_logit_diff", float(np.abs(lite_logits - tf_stream_logits).max()))
    record_property("int8_top1_agreement",
                    float((lite_logits.argmax(1) == tf_stream_logits.argmax(1)).mean()))


def test_int8_with_quantized_io_is_refused(tmp_path):
    from converters.export_tflite import export_tflite

    manifest = StateManifest("t0", "stream", 64, 5, [StateSpec("s", (1, 2), "float32")], 1)
    with pytest.raises(UnsupportedExportError, match="zero point"):
        export_tflite(None, manifest, 1, tmp_path / "x.tflite", "int8",
                      calibration=CalibrationData(), int8_float_io=False)


def test_repeat_export_is_a_cache_hit(fp32_artifact):
    again = export_model(T0_STREAM, "tflite-fp32")
    assert again.cached
    assert again.path == fp32_artifact.path
    assert again.key == fp32_artifact.key
    assert again.details["op_histogram"] == fp32_artifact.details["op_histogram"]


@pytest.mark.parametrize("which", ["fp32_artifact", "int8_artifact"])
def test_manifest_read_from_the_signature(which, request, tmp_path, clip):
    artifact = request.getfixturevalue(which)
    bare = tmp_path / "bare.tflite"
    shutil.copy(artifact.path, bare)
    inferred = load_manifest(bare)  # no manifest beside it: read off the signature
    reference = artifact.manifest
    assert inferred.states == reference.states
    assert (inferred.resolution, inferred.num_classes, inferred.frames_per_call) == (64, 5, 1)
    assert inferred.format == reference.format and "signature" in inferred.source
    with_manifest, _ = stream(open_session(artifact.path), chunks(clip[:4], 1))
    without, _ = stream(open_session(bare), chunks(clip[:4], 1))
    np.testing.assert_array_equal(with_manifest, without)


def test_base_clip_model_predicts_like_tensorflow(base_artifact, clip):
    from runtimes.tensorflow import TensorFlowSession

    assert base_artifact.manifest.states == [] and base_artifact.manifest.frames_per_call == 4
    window = clip[None, :BASE_CLIP_FRAMES]
    reference = TensorFlowSession.from_config(T0_BASE).predict(window)
    session = open_session(base_artifact.path)
    logits = session.predict(window)
    assert logits.shape == (1, 5)
    assert np.abs(logits - reference).max() < 1e-4
    with pytest.raises(StateError, match="exactly 4 frame"):
        session.predict(clip[None, :8])
    inferred = manifest_from_tflite(base_artifact.path)
    assert inferred.states == [] and inferred.variant == "base" and inferred.frames_per_call == 4


@pytest.mark.parametrize("content", [b"not a flatbuffer at all", None])
def test_corrupt_file_is_an_artifact_error(fp32_artifact, tmp_path, content):
    broken = tmp_path / "broken.tflite"
    data = fp32_artifact.path.read_bytes()
    broken.write_bytes(content if content is not None else data[: len(data) // 3])
    shutil.copy(fp32_artifact.manifest_path, manifest_path_for(broken))
    with pytest.raises(ArtifactError) as info:
        open_session(broken)
    assert "\n" not in str(info.value) and "broken.tflite" in str(info.value)


def _first_state(manifest: StateManifest) -> StateSpec:
    return next(s for s in manifest.states if s.dtype == "float32")


@pytest.mark.parametrize("change, message", [
    (lambda m: replace(m, num_classes=6), "'logits' has shape"),
    (lambda m: replace(m, resolution=96), "'image' has shape"),
    (lambda m: replace(m, states=m.states[1:]), "that the manifest does not name"),
    (lambda m: replace(m, states=[replace(_first_state(m), shape=(1, 1, 1, 1, 7))]
                       + [s for s in m.states if s != _first_state(m)]), "has shape"),
    (lambda m: replace(m, states=[replace(_first_state(m), dtype="float16")]
                       + [s for s in m.states if s != _first_state(m)]), "has dtype"),
    (lambda m: replace(m, format="onnx"), "not a TFLite format"),
])
def test_manifest_not_matching_the_artifact(fp32_artifact, change, message):
    with pytest.raises(ArtifactError, match=message):
        LiteRTSession.open(fp32_artifact.path, change(fp32_artifact.manifest))


def test_converted_model_failing_to_run_is_an_artifact_error(fp32_artifact):
    from converters.export_tflite import verify_tflite

    manifest = fp32_artifact.manifest
    feed = {"image": np.zeros(manifest.image_shape, np.float32)}
    feed.update({s.input_name: s.initial_value() for s in manifest.states})
    verify_tflite(fp32_artifact.path, manifest, feed)  # the real feed runs
    buffer = next(s for s in manifest.states if s.name.endswith("stream_buffer"))
    feed[buffer.input_name] = np.zeros(buffer.shape[:-1] + (buffer.shape[-1] + 1,), np.float32)
    with pytest.raises(ArtifactError, match="fails to run in LiteRT"):
        verify_tflite(fp32_artifact.path, manifest, feed)
    renamed = replace(manifest, states=[replace(buffer, name="renamed")]
                      + [s for s in manifest.states if s != buffer])
    with pytest.raises(ArtifactError, match="breaks the state contract"):
        verify_tflite(fp32_artifact.path, renamed, feed)


def test_wrong_states_are_state_errors(fp32_artifact, clip):
    session = open_session(fp32_artifact.path)
    frame = clip[None, :1]
    good = session.init_states()
    name = _first_state(session.manifest).name
    with pytest.raises(StateError, match="missing state"):
        session.step(frame, {k: v for k, v in good.items() if k != name})
    with pytest.raises(StateError, match="unexpected state"):
        session.step(frame, {**good, "bogus": good[name]})
    with pytest.raises(StateError, match="has shape"):
        session.step(frame, {**good, name: good[name][..., :-1]})
    with pytest.raises(StateError, match="has dtype"):
        session.step(frame, {**good, name: good[name].astype(np.float64)})
    with pytest.raises(StateError, match="float32"):
        session.step(frame.astype(np.float64), good)
    with pytest.raises(StateError, match="exactly 1 frame"):
        session.step(clip[None, :2], good)
