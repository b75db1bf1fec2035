"""A state manifest read off a bare `.onnx` file's graph: the ONNX counterpart of
runtimes.litert.manifest_from_tflite, so a file made elsewhere opens like an export.

Reads the graph with the `onnx` package (inputs, outputs, initializers), without starting an
inference session.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.errors import ArtifactError, first_line
from core.formats import FP32, ONNX
from core.manifest import StateManifest, manifest_from_signature
from runtimes.base import TensorInfo

# Ops of a quantized graph (QDQ or integer kernels): the registry's ONNX formats are fp32.
QUANTIZED_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul",
                 "ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"}


def manifest_from_onnx(path: str | Path) -> StateManifest:
    """A manifest read off a `.onnx` file's graph inputs and outputs, for a file that came
    without one.

    The graph must follow the state contract: `image` [1, T, H, H, 3] (a symbolic T: any
    frames per call), `logits` [1, C], and per state an input `state_<name>` and an output
    `next_state_<name>`. Weights must be float32 and inside the file (the registry's ONNX
    formats are fp32 and one file each). Model id is the file's stem.

    Raises ArtifactError naming the first thing that does not fit.
    """
    import onnx
    from onnx.helper import tensor_dtype_to_np_dtype

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"ONNX artifact not found: {path}")
    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as exc:  # protobuf's DecodeError, onnx's own errors
        raise ArtifactError(f"cannot read ONNX model {path}: {first_line(exc)}") from None
    weights = {w.name: w for w in graph.initializer}
    if any(w.data_location == onnx.TensorProto.EXTERNAL for w in weights.values()):
        raise ArtifactError(f"{path} keeps its weights in external data files: save it as one "
                            "file (onnx.save with save_as_external_data=False)")
    low = sorted({onnx.TensorProto.DataType.Name(w.data_type) for w in weights.values()
                  if w.data_type in (onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16)})
    quantized = sorted({n.op_type for n in graph.node if n.op_type in QUANTIZED_OPS})
    if low or quantized:
        what = f"{'/'.join(low)} weights" if low else f"quantized ops ({', '.join(quantized)})"
        raise ArtifactError(f"{path} has {what}; the ONNX formats here are fp32")

    def info(value) -> TensorInfo:
        tensor = value.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                     for d in tensor.shape.dim)
        try:
            dtype = tensor_dtype_to_np_dtype(tensor.elem_type).name
        except (KeyError, ValueError, TypeError):
            dtype = onnx.TensorProto.DataType.Name(tensor.elem_type)
        return TensorInfo(value.name, dims, dtype)

    # Older exporters list initializers among the graph inputs too: those are weights.
    inputs = [info(v) for v in graph.input if v.name not in weights]
    outputs = [info(v) for v in graph.output]
    manifest = manifest_from_signature(path, inputs, outputs, fmt=ONNX, precision=FP32,
                                       source=f"read from the graph of {path.name}")
    names = {t.name for t in outputs}
    for state in manifest.states:
        if state.output_name not in names:
            raise ArtifactError(f"{path}: state input {state.input_name!r} has no output "
                                f"{state.output_name!r} carrying its next value")
    return manifest


def onnx_multiply_adds(path: str | Path) -> int:
    """Multiply-adds one call of the `.onnx` file at `path` does in its convolutions and
    matrix products (Conv, ConvInteger, QLinearConv, MatMul, MatMulInteger, QLinearMatMul,
    Gemm), counted from the graph with the shapes ONNX shape inference gives; elementwise ops
    are not counted. Raises ArtifactError when a counted node's shapes are not static.
    """
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    graph = model.graph
    shapes = {}
    for info in [*graph.input, *graph.value_info, *graph.output]:
        dims = info.type.tensor_type.shape.dim
        shapes[info.name] = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
    for init in graph.initializer:
        shapes[init.name] = tuple(init.dims)

    def shape(name: str, node) -> tuple[int, ...]:
        dims = shapes.get(name)
        if not dims or any(d is None for d in dims):
            raise ArtifactError(f"{path}: {node.op_type} node {node.name!r} has no static shape "
                                f"for {name!r}, so its multiply-adds cannot be counted")
        return dims

    total = 0
    for node in graph.node:
        op = node.op_type
        if op in ("Conv", "ConvInteger", "QLinearConv"):
            weight = node.input[3 if op == "QLinearConv" else 1]
            out = shape(node.output[0], node)
            w = shape(weight, node)  # [Cout, Cin / groups, k...]
            total += int(np.prod(out, dtype=np.int64)) * int(np.prod(w[1:], dtype=np.int64))
        elif op in ("MatMul", "MatMulInteger", "QLinearMatMul", "Gemm"):
            a = shape(node.input[0], node)
            transposed = op == "Gemm" and any(
                attr.name == "transA" and attr.i for attr in node.attribute)
            k = a[-2] if transposed else a[-1]
            total += int(np.prod(shape(node.output[0], node), dtype=np.int64)) * int(k)
    return total
