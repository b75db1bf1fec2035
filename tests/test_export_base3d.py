"""3D MoViNets exported: the 2D rewrite of 3D convs/pools, the '3d_2plus1d' rebuild, the
support table and base models through `validate cross-runtime`.

The rewritten ops are checked against TF's own 3D ops on random tensors (no conversion); three
conversions in all, on t0 at 32² (ONNX and TFLite of the official 3D base architecture, TFLite
of a '3d_2plus1d' stream checkpoint), each built once through the artifact cache.
"""

from __future__ import annotations

import json
import re

import numpy as np
import onnx
import pytest
import tensorflow as tf
import tf_keras
from official.projects.movinet.modeling import movinet_layers
from official.vision.modeling.layers import nn_layers
from typer.testing import CliRunner

from bench.cli.app import app
from bench.evaluation.equivalence import validate_cross_runtime
from core.build import (
    build_model, checkpoint_conv_type, load_checkpoint, make_manifest, step_function,
)
from core.checkpoints import resolve_checkpoint_prefix
from converters.calibration import synthetic_clips
from core.errors import CheckpointMismatchError, UnsupportedExportError
from converters.export import ExportOptions, export_model
from converters.rewrite3d import (
    THREE_D_OPS, avg_pool3d_as_2d, conv3d_as_2d, fit_weight, graph_ops, rewritten_3d,
)
from converters.support import (
    DOCS_PATH, TARGETS, render_markdown, support_row, support_rows,
)
from core.zoo import CONV_TYPES, MODELS, VARIANTS, ModelConfig
from runtimes.base import chunks, stream
from runtimes.loader import open_session
from runtimes.tensorflow import TensorFlowSession

RES = 32
BASE3D = ModelConfig("t0", "base", RES, 5)  # conv_type '3d': the official base architecture
STREAM_3D_2PLUS1D = ModelConfig("t0", "stream", RES, 5, conv_type="3d_2plus1d")
CLIP_FRAMES = 4


def invoke(*args):
    """Run the CLI in-process; `.code` is what `movibench` would exit with."""
    result = CliRunner().invoke(app, list(args), standalone_mode=False, catch_exceptions=True)
    exc = result.exception
    result.code = getattr(exc, "exit_code", None) if exc is not None else (result.return_value or 0)
    return result


def _random(shape, seed=0):
    return tf.constant(np.random.default_rng(seed).normal(size=shape).astype(np.float32))


# -- the rewritten ops vs TF's own, on random tensors ---------------------------------------

@pytest.mark.parametrize("kernel, strides, padding, depthwise, frames", [
    ((5, 3, 3), (1, 1, 1), "same", True, 6),     # MoViNet's feature conv (base)
    ((3, 3, 3), (1, 2, 2), "same", True, 5),     # a downsampling block
    ((1, 5, 5), (1, 2, 2), "same", True, 4),
    ((3, 3, 3), (2, 2, 2), "same", False, 6),    # full conv, temporal stride, odd padding
    ((1, 1, 1), (1, 1, 1), "same", False, 3),    # pointwise (expansion/projection/SE/head)
    ((3, 3, 3), (1, 1, 1), "causal", True, 5),   # stream model without a buffer
])
def test_conv3d_rewrite_matches_conv3d(kernel, strides, padding, depthwise, frames):
    channels = 6
    layer = nn_layers.Conv3D(channels * (1 if depthwise else 2), kernel, strides=strides,
                             padding=padding, groups=channels if depthwise else 1,
                             use_bias=not depthwise, bias_initializer="random_normal")
    x = _random([1, frames, 9, 10, channels])
    expected = layer(x)  # Model Garden's layer: XLA-compiled tf.nn.conv3d
    got = conv3d_as_2d(layer, x)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-5)


def test_buffered_causal_conv_pads_nothing_in_time():
    layer = nn_layers.Conv3D(4, (3, 3, 3), padding="causal", groups=4, use_buffered_input=True)
    x = _random([1, 6, 8, 8, 4], seed=1)  # 2 buffered frames + 4 new ones
    expected = layer(x)
    assert expected.shape[1] == 4
    np.testing.assert_allclose(conv3d_as_2d(layer, x).numpy(), expected.numpy(), atol=1e-5)


def test_stream_conv_block_streams_like_the_original():
    """A causal 3D MovinetBlock feature conv (stream buffer + buffered conv), frame by frame."""
    block = movinet_layers.StreamConvBlock(8, (3, 3, 3), depthwise=True, causal=True,
                                           conv_type="3d", activation="swish", state_prefix="b")
    x = _random([1, 5, 8, 8, 8], seed=3)

    def frame_by_frame():
        states, outputs = {}, []
        for t in range(x.shape[1]):
            y, states = block(x[:, t:t + 1], states=states)
            outputs.append(y.numpy())
        return np.concatenate(outputs, axis=1), states["b_stream_buffer"].numpy()

    want, want_buffer = frame_by_frame()
    with rewritten_3d(block) as counts:
        got, got_buffer = frame_by_frame()
    assert counts == {"Conv3D": 1}
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_array_equal(got_buffer, want_buffer)


@pytest.mark.parametrize("pool, strides, padding", [
    ((1, 3, 3), (1, 2, 2), "same"),  # MoViNet's skip pool
    ((3, 3, 3), (2, 2, 2), "same"),  # temporal taps: padded frames are not averaged
    ((2, 2, 2), (2, 2, 2), "valid"),
])
def test_avg_pool3d_rewrite_matches_avg_pool3d(pool, strides, padding):
    layer = tf_keras.layers.AveragePooling3D(pool, strides, padding)
    x = _random([1, 6, 9, 10, 3], seed=2)  # 6 frames: SAME pads 0 before, 1 after
    expected = tf.nn.avg_pool3d(x, (1, *pool, 1), (1, *strides, 1), padding.upper())
    np.testing.assert_allclose(layer(x).numpy(), expected.numpy(), atol=1e-6)
    np.testing.assert_allclose(avg_pool3d_as_2d(layer, x).numpy(), expected.numpy(), atol=1e-6)


@pytest.mark.parametrize("kwargs, message", [
    (dict(groups=2), "neither full nor depthwise"),
    (dict(dilation_rate=(1, 2, 2)), "dilated"),
])
def test_conv3d_without_a_rewrite_is_refused(kwargs, message):
    layer = nn_layers.Conv3D(4, (1, 3, 3), padding="same", **kwargs)
    x = _random([1, 2, 8, 8, 4])
    layer(x)
    with pytest.raises(UnsupportedExportError, match=message):
        conv3d_as_2d(layer, x)


def test_same_padding_in_time_needs_a_static_clip_length():
    layer = nn_layers.Conv3D(4, (3, 3, 3), padding="same", groups=4)
    layer.build([1, None, 8, 8, 4])
    fn = tf.function(lambda x: conv3d_as_2d(layer, x))
    with pytest.raises(UnsupportedExportError, match="static number of frames"):
        fn.get_concrete_function(tf.TensorSpec([1, None, 8, 8, 4]))


@pytest.mark.parametrize("source, target, expected", [
    ((1, 3, 3, 1, 8), (3, 3, 8, 1), "depthwise spatial"),
    ((5, 1, 1, 1, 8), (5, 1, 8, 1), "depthwise temporal"),
    ((1, 1, 1, 4, 8), (1, 1, 4, 8), "pointwise"),
    ((8,), (8,), "batch norm / bias"),
])
def test_3d_2plus1d_weights_map_onto_2plus1d(source, target, expected):
    value = np.arange(np.prod(source), dtype=np.float32).reshape(source)
    fitted = fit_weight(value, target)
    assert fitted.shape == target
    assert sorted(fitted.ravel()) == sorted(value.ravel())  # a view of the same numbers
    with pytest.raises(UnsupportedExportError, match="cannot map"):
        fit_weight(value, (7,) + target[1:])


# -- the official 3D base architecture ------------------------------------------------------

@pytest.fixture(scope="module")
def base3d_reference():
    """TF reference of t0 base with full 3D convs (random init, seed 0, as the exports)."""
    return TensorFlowSession.from_config(BASE3D)


@pytest.fixture(scope="module")
def clip():
    return synthetic_clips(1, 2 * CLIP_FRAMES, RES, seed=3)[0]


@pytest.fixture(scope="module")
def base3d_onnx():
    return export_model(BASE3D, "onnx", frames_per_call=CLIP_FRAMES)


@pytest.fixture(scope="module")
def base3d_tflite():
    return export_model(BASE3D, "tflite-fp32", frames_per_call=CLIP_FRAMES)


@pytest.mark.slow
def test_rewrite_leaves_no_3d_op_and_restores_the_model(base3d_reference, clip):
    model, manifest = base3d_reference.model, base3d_reference.manifest
    window = clip[None, :CLIP_FRAMES]
    before = base3d_reference.predict(window)
    with rewritten_3d(model) as counts:
        traced = step_function(model, manifest, CLIP_FRAMES)
        ops = graph_ops(traced.get_concrete_function())
        rewritten = traced(window)["logits"].numpy()
    assert counts["Conv3D"] > 50 and counts["AveragePooling3D"] > 0
    assert not ops & set(THREE_D_OPS)
    assert {"Conv2D", "DepthwiseConv2dNative", "AvgPool"} <= ops
    assert np.abs(rewritten - before).max() <= 1e-5
    original = step_function(model, manifest, CLIP_FRAMES).get_concrete_function()
    assert "Conv3D" in graph_ops(original) or "StatefulPartitionedCall" in graph_ops(original)


@pytest.mark.slow
@pytest.mark.parametrize("which", ["base3d_onnx", "base3d_tflite"])
def test_3d_base_exports_and_predicts_like_tensorflow(which, request, base3d_reference, clip):
    artifact = request.getfixturevalue(which)
    assert artifact.details["route"] == "rewrite-3d"
    assert artifact.details["rewritten_layers"]["Conv3D"] > 50
    manifest = artifact.manifest
    assert (manifest.states, manifest.frames_per_call) == ([], CLIP_FRAMES)
    assert manifest.model_config["conv_type"] == "3d"
    assert manifest.weights_sha256 == base3d_reference.manifest.weights_sha256
    session = open_session(artifact.path)
    for window in chunks(clip, CLIP_FRAMES):
        assert np.abs(session.predict(window) - base3d_reference.predict(window)).max() <= 1e-4
    again = export_model(BASE3D, artifact.format, frames_per_call=CLIP_FRAMES)
    assert again.cached and again.path == artifact.path


@pytest.mark.slow
def test_3d_base_onnx_has_only_2d_convolutions(base3d_onnx):
    graph = onnx.load(str(base3d_onnx.path)).graph
    convs = [n for n in graph.node if n.op_type in ("Conv", "AveragePool")]
    assert convs
    for node in convs:
        kernel = next(a.ints for a in node.attribute if a.name == "kernel_shape")
        assert len(kernel) == 2, node.name


@pytest.mark.slow
def test_3d_base_tflite_has_only_builtin_2d_ops(base3d_tflite):
    ops = _tflite_ops(base3d_tflite.path)
    assert "CONV_3D" not in ops and "CUSTOM" not in ops
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D"} <= ops


@pytest.mark.slow
def test_cross_runtime_validation_compares_a_base_model_clip_by_clip(
        base3d_reference, base3d_onnx, base3d_tflite):
    """What `movibench validate cross-runtime --variant base --clip-frames L` runs: artifacts
    of length L, every L-frame window of every clip compared with TF."""
    artifacts = {"onnx": base3d_onnx, "tflite-fp32": base3d_tflite}
    clips = synthetic_clips(2, 2 * CLIP_FRAMES + 1, RES, seed=6)  # a trailing frame is dropped
    rows = validate_cross_runtime(
        base3d_reference, list(artifacts), clips, frames_per_call=CLIP_FRAMES,
        export=lambda fmt, frames: export_model(BASE3D, fmt, frames_per_call=frames),
        open_artifact=open_session, full_clip_formats=("onnx",))
    assert [r.format for r in rows] == list(artifacts)  # no stream-vs-full-clip row
    for row in rows:
        assert row.passed and row.comparison == "clips vs tensorflow"
        assert row.difference.n == 4 and row.difference.max_abs <= 1e-4
        assert row.artifact == str(artifacts[row.format].path)


# -- '3d_2plus1d' checkpoints --------------------------------------------------------------

@pytest.fixture(scope="module")
def model_3d_2plus1d(tmp_path_factory):
    """A '3d_2plus1d' stream model and its foreign checkpoint (Model Garden layout, no sidecar)."""
    model = build_model(STREAM_3D_2PLUS1D, seed=7)
    directory = tmp_path_factory.mktemp("ckpt-3d-2plus1d")
    tf.train.Checkpoint(model=model).save(str(directory / "ckpt"))
    return model, directory


def _tflite_ops(path) -> set[str]:
    """Op names read off the flatbuffer; a Select-TF (flex) op is a CUSTOM op named Flex*."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    names = set()
    for op in model.subgraphs[0].operators:
        name = flatbuffer_utils.opcode_to_name(model, op.opcodeIndex)
        names.add(name)
        code = model.operatorCodes[op.opcodeIndex]
        if code.customCode:
            names.add("CUSTOM")
    return names


@pytest.mark.slow
def test_3d_2plus1d_checkpoint_exports_without_flex_ops_and_streams_equal(model_3d_2plus1d):
    model, checkpoint = model_3d_2plus1d
    artifact = export_model(STREAM_3D_2PLUS1D, "tflite-fp32", checkpoint=checkpoint)
    assert artifact.details["route"] == "rebuild-2plus1d"
    ops = _tflite_ops(artifact.path)
    assert "CUSTOM" not in ops and not any(op.startswith("Flex") for op in ops)
    assert "CONV_3D" not in ops and "DEPTHWISE_CONV_2D" in ops
    # The reference is the very model the checkpoint was saved from, run by TF (Conv3D + XLA).
    reference = TensorFlowSession(model, make_manifest(model, STREAM_3D_2PLUS1D))
    assert artifact.manifest.states == reference.manifest.states
    frames = synthetic_clips(1, 8, RES, seed=5)[0]
    want, _ = stream(reference, chunks(frames, 1))
    got, _ = stream(open_session(artifact.path), chunks(frames, 1))
    assert got.shape == want.shape == (8, 5)
    assert np.abs(got - want).max() <= 1e-4


@pytest.mark.slow  # the fixture builds a model
def test_checkpoint_of_another_conv_type_names_it(model_3d_2plus1d):
    _, checkpoint = model_3d_2plus1d
    assert checkpoint_conv_type(resolve_checkpoint_prefix(checkpoint)) == "3d_2plus1d"
    # Any trackable that does not fit the checkpoint; building a 2plus1d twin costs seconds.
    holder = tf.Module()
    holder.unmatched = tf.Variable(0.0)
    holder.movibench_conv_type = "2plus1d"
    with pytest.raises(CheckpointMismatchError, match="pass --conv-type 3d_2plus1d"):
        load_checkpoint(holder, checkpoint)


# -- the support table ----------------------------------------------------------------------

def test_support_doc_is_generated_from_the_code():
    assert DOCS_PATH.read_text() == render_markdown(), \
        "docs/support.md is stale: run python -m converters.support"


def test_support_rows_cover_every_combination_and_say_why_not():
    rows = support_rows()
    assert len(rows) == len(MODELS) * len(VARIANTS) * len(CONV_TYPES) * len(TARGETS)
    refused = [r for r in rows if not r.supported]
    # Every model id, variant and conv type exports to every fixed-shape plain format; the
    # refusals are a dynamic T for clip models and an optimized format whose optimizations fit
    # no layer of the variant (hard-swish and hard-sigmoid gates: stream only; the causal pool:
    # stream and mobile), each with the exporter's own reason; and the 4-D single-frame graph,
    # which is for causal models with the (2+1)D causal convolution only.
    dynamic_onnx = "onnx (dynamic T)"
    stream_only = {"tflite-int8+int8-hard-swish", "onnx+opt", "onnx+hard-swish-op",
                   "onnx+hard-sigmoid-gate-fold", "onnx-int8+opt", "openvino+opt",
                   "openvino-int8+opt"}
    four_d = {t.label for t in TARGETS if t.label.endswith("+4d")}
    assert len(four_d) == 7
    assert {(r.variant, r.target) for r in refused} == {
        ("base", dynamic_onnx), ("base", "tflite-int8+opt"), ("base", "tflite-int8+causal-pool-step"),
        *(("base", fmt) for fmt in stream_only), *(("mobile", fmt) for fmt in stream_only),
        *((variant, fmt) for variant in VARIANTS for fmt in four_d)}
    assert {r.conv_type for r in refused if r.target in four_d and r.variant != "base"} == {"3d"}
    dynamic = next(r for r in refused if r.target == dynamic_onnx)
    assert "causal" in dynamic.how
    with pytest.raises(UnsupportedExportError, match=re.escape(dynamic.how)):
        export_model(ModelConfig("t0", "base", RES, 5), "onnx", frames_per_call=CLIP_FRAMES,
                     options=ExportOptions(dynamic_frames=True))


@pytest.mark.slow
def test_support_route_is_the_route_exports_take(base3d_onnx):
    onnx_target = next(t for t in TARGETS if t.label == "onnx")
    row = support_row("t0", "base", "3d", onnx_target)
    assert row.supported and row.route == base3d_onnx.details["route"]


def test_models_support_option_prints_the_rows():
    result = invoke("models", "--support", "--json")
    assert result.code == 0
    assert json.loads(result.stdout)["rows"] == [r.to_dict() for r in support_rows()]
    table = invoke("models", "--support")
    assert "rewrite-3d" in table.stdout and "rebuild-2plus1d" in table.stdout
