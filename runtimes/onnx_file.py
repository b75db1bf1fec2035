"""A state manifest read off a bare `.onnx` file's graph: the ONNX counterpart of
runtimes.litert.manifest_from_tflite, so a file made elsewhere opens like an export.

Reads the graph with the `onnx` package (inputs, outputs, initializers), without starting an
inference session.
"""

from __future__ import annotations

from pathlib import Path

from converters.errors import ArtifactError, first_line
from converters.manifest import StateManifest, manifest_from_signature
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
    manifest = manifest_from_signature(path, inputs, outputs, fmt="onnx", precision="fp32",
                                       source=f"read from the graph of {path.name}")
    names = {t.name for t in outputs}
    for state in manifest.states:
        if state.output_name not in names:
            raise ArtifactError(f"{path}: state input {state.input_name!r} has no output "
                                f"{state.output_name!r} carrying its next value")
    return manifest
