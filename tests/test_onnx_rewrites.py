"""The ONNX graph rewrites (converters.onnx_rewrites) and the formats built with them: exact
over a streamed clip against the TensorFlow reference, applied only where their pattern is,
and the same file on OpenVINO."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from core.errors import UnsupportedExportError
from converters.export import export_model
from core.formats import HARD_SIGMOID_GATE_FOLD, HARD_SWISH_OP, get_format
from converters.onnx_rewrites import fold_hard_sigmoid_gates, fuse_hard_swish
from core.zoo import ModelConfig
from runtimes.base import chunks, stream
from runtimes.loader import open_session

from conftest import T0_STREAM


def _model(nodes, constants, inputs=("x",), shape=(1, 4, 3, 3), opset=17):
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name in inputs],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in constants.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _run(model, feeds):
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["y"], feeds)[0]


def _hard_swish_chain(sixth_first: bool, sixth=1 / 6):
    nodes = [helper.make_node("Add", ["three", "x"], ["a"]),
             helper.make_node("Clip", ["a", "zero", "six"], ["c"])]
    if sixth_first:  # relu6(x + 3) * 1/6 * x
        nodes += [helper.make_node("Mul", ["c", "sixth"], ["m"]),
                  helper.make_node("Mul", ["x", "m"], ["y"])]
    else:  # relu6(x + 3) * x * 1/6
        nodes += [helper.make_node("Mul", ["x", "c"], ["m"]),
                  helper.make_node("Mul", ["m", "sixth"], ["y"])]
    return _model(nodes, {"three": 3.0, "zero": 0.0, "six": 6.0, "sixth": sixth})


@pytest.mark.parametrize("sixth_first", [True, False])
def test_hard_swish_chain_becomes_one_exact_node(sixth_first):
    model = _hard_swish_chain(sixth_first)
    x = {"x": np.linspace(-5, 5, 36, dtype=np.float32).reshape(1, 4, 3, 3)}
    expected = _run(model, x)
    assert fuse_hard_swish(model) == 1
    assert [n.op_type for n in model.graph.node] == ["HardSwish"]
    assert not model.graph.initializer  # its constants went with the chain
    onnx.checker.check_model(model, full_check=True)
    np.testing.assert_allclose(_run(model, x), expected, atol=1e-6)


def test_a_chain_of_another_function_is_left_alone():
    # x * relu6(x + 3) * 0.2 is not hard-swish; an opset before HardSwish cannot take the op.
    assert fuse_hard_swish(_hard_swish_chain(True, sixth=0.2)) == 0
    assert fuse_hard_swish(_model(_hard_swish_chain(True).graph.node,
                                  {"three": 3.0, "zero": 0.0, "six": 6.0, "sixth": 1 / 6},
                                  opset=13)) == 0


def _gate(extra_reader: bool = False):
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["conv"]),
             helper.make_node("Add", ["conv", "three"], ["a"]),
             helper.make_node("Clip", ["a", "zero", "six"], ["c"]),
             helper.make_node("Mul", ["c", "scale"], ["gate"]),
             helper.make_node("Mul" if not extra_reader else "Add",
                              ["gate", "gate" if not extra_reader else "conv"], ["y"])]
    return _model(nodes, {"w": rng.normal(size=(4, 4, 1, 1)), "b": rng.normal(size=4),
                          "three": 3.0, "zero": 0.0, "six": 6.0, "scale": 0.16667})


def test_a_hard_sigmoid_gate_folds_into_its_convolution_exactly():
    model = _gate()
    x = {"x": np.random.default_rng(1).normal(0, 4, (1, 4, 3, 3)).astype(np.float32)}
    expected = _run(model, x)
    assert fold_hard_sigmoid_gates(model) == 1
    assert [n.op_type for n in model.graph.node] == ["Conv", "Clip", "Mul"]
    onnx.checker.check_model(model, full_check=True)
    np.testing.assert_allclose(_run(model, x), expected, atol=1e-5)


def test_a_gate_whose_convolution_feeds_something_else_is_left_alone():
    # Folding the scale into the conv would change what the other reader sees.
    assert fold_hard_sigmoid_gates(_gate(extra_reader=True)) == 0


@pytest.fixture(scope="module")
def t0_onnx_opt():
    return export_model(T0_STREAM, "onnx+opt")


def test_onnx_opt_is_exact_against_the_tensorflow_reference_over_a_streamed_clip(
        t0_onnx_opt, t0_stream_session):
    artifact = t0_onnx_opt
    assert artifact.manifest.optimizations == [HARD_SWISH_OP, HARD_SIGMOID_GATE_FOLD]
    # Made from the plain export's file, which the cache now serves: no second conversion.
    plain = export_model(T0_STREAM, "onnx")
    assert plain.cached and artifact.details["onnx_source"] == str(plain.path)
    sites = artifact.details["optimization_sites"]
    assert sites[HARD_SWISH_OP] > 0 and sites[HARD_SIGMOID_GATE_FOLD] > 0, sites
    histogram = artifact.details["op_histogram"]
    assert histogram["HardSwish"] == sites[HARD_SWISH_OP]
    # Every Clip left is a folded gate (hard-swish's went into HardSwish).
    assert histogram.get("Clip", 0) == sites[HARD_SIGMOID_GATE_FOLD]
    clip = np.random.default_rng(0).random((6, 64, 64, 3), dtype=np.float32)
    expected, expected_states = stream(t0_stream_session, chunks(clip, 1))
    with open_session(artifact.path, threads=1) as session:
        got, got_states = stream(session, chunks(clip, 1))
    assert np.abs(got - expected).max() <= 1e-4
    assert got_states.keys() == expected_states.keys()
    for key, value in expected_states.items():
        assert np.abs(got_states[key] - value).max() <= 1e-4, key


def test_openvino_opt_reads_the_same_optimized_file(t0_onnx_opt):
    pytest.importorskip("openvino")
    artifact = export_model(T0_STREAM, "openvino+opt")
    assert artifact.path.read_bytes() == t0_onnx_opt.path.read_bytes()
    assert artifact.manifest.optimizations == t0_onnx_opt.manifest.optimizations
    clip = np.random.default_rng(1).random((4, 64, 64, 3), dtype=np.float32)
    with open_session(artifact.path, threads=1) as ov, \
            open_session(t0_onnx_opt.path, threads=1) as ort_session:
        assert ov.manifest.format == "openvino+opt"
        a, _ = stream(ov, chunks(clip, 1))
        b, _ = stream(ort_session, chunks(clip, 1))
    assert np.abs(a - b).max() <= 1e-3


@pytest.mark.parametrize("fmt,applied", [("onnx+hard-swish-op", [HARD_SWISH_OP]),
                                         ("onnx+hard-sigmoid-gate-fold", [HARD_SIGMOID_GATE_FOLD])])
def test_each_onnx_rewrite_has_a_format_of_its_own(fmt, applied):
    from converters.export import applied_optimizations

    assert get_format(fmt).plain == "onnx"
    assert list(applied_optimizations(T0_STREAM.resolved(), get_format(fmt))) == applied


@pytest.mark.parametrize("variant", ["mobile", "base"])
def test_onnx_opt_of_a_model_without_hard_swish_or_gates_is_refused(variant):
    # mobile: ReLU6, no squeeze-excitation; base: swish, sigmoid gates.
    with pytest.raises(UnsupportedExportError, match="no graph optimization applies"):
        export_model(ModelConfig("t0", variant, 64, 5), "onnx+opt", frames_per_call=4)
