"""Multiply-adds counted from an artifact's graph (Session.multiply_adds), against hand counts."""

from __future__ import annotations

import numpy as np

from runtimes.loader import open_session
from runtimes.onnx_file import onnx_multiply_adds

# Conv 3x3, 3 -> 8 channels, on 8x8 with 'same' padding: 8*8*8 outputs x 3*3*3 taps.
CONV = 8 * 8 * 8 * 3 * 3 * 3
# Depthwise 3x3 on the 8 channels: 8*8*8 outputs x 3*3 taps.
DEPTHWISE = 8 * 8 * 8 * 3 * 3
# Dense 8 -> 5 on the pooled vector: 5 outputs x 8 inputs.
DENSE = 5 * 8


def test_onnx_count_matches_a_hand_count(tmp_path):
    from onnx import TensorProto, helper, numpy_helper, save

    rng = np.random.default_rng(0)
    weights = {"conv_w": rng.random((8, 3, 3, 3), dtype=np.float32),
               "dw_w": rng.random((8, 1, 3, 3), dtype=np.float32),
               "fc_w": rng.random((8, 5), dtype=np.float32),
               "gemm_w": rng.random((5, 5), dtype=np.float32)}
    nodes = [
        helper.make_node("Conv", ["x", "conv_w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["c", "dw_w"], ["d"], pads=[1, 1, 1, 1], group=8),
        helper.make_node("GlobalAveragePool", ["d"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("MatMul", ["f", "fc_w"], ["m"]),
        # Gemm with transA: A [5, 1] is used as [1, 5], so K = 5 and the [1, 5] output costs 5 x 5.
        helper.make_node("Transpose", ["m"], ["mt"], perm=[1, 0]),
        helper.make_node("Gemm", ["mt", "gemm_w"], ["y"], transA=1),
    ]
    graph = helper.make_graph(
        nodes, "hand", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])],
        [numpy_helper.from_array(w, name) for name, w in weights.items()])
    path = tmp_path / "hand.onnx"
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)

    assert onnx_multiply_adds(path) == CONV + DEPTHWISE + DENSE + 5 * 5


def test_tflite_count_matches_a_hand_count(tmp_path):
    import tensorflow as tf

    from runtimes.litert import load_interpreter, multiply_adds

    rng = np.random.default_rng(0)
    conv = tf.constant(rng.random((3, 3, 3, 8), dtype=np.float32))
    depthwise = tf.constant(rng.random((3, 3, 8, 1), dtype=np.float32))
    dense = tf.constant(rng.random((8, 5), dtype=np.float32))

    @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 3], tf.float32)])
    def net(x):
        x = tf.nn.conv2d(x, conv, 1, "SAME")
        x = tf.nn.depthwise_conv2d(x, depthwise, [1, 1, 1, 1], "SAME")
        return tf.matmul(tf.reduce_mean(x, axis=[1, 2]), dense)

    holder = tf.Module()
    holder.net = net
    path = tmp_path / "hand.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_concrete_functions(
        [net.get_concrete_function()], holder).convert())

    assert multiply_adds(load_interpreter(path, xnnpack=False)[0]) == CONV + DEPTHWISE + DENSE


def test_one_model_counts_the_same_in_every_format(t0_stream_tflite, t0_stream_onnx):
    counts = {artifact.format: open_session(artifact.path).multiply_adds()
              for artifact in (t0_stream_tflite, t0_stream_onnx)}
    assert counts["tflite-fp32"] == counts["onnx"] > 0
