"""Which Session class runs each runtime named in core.formats.

Targets are 'module:Class' strings imported on first use, so opening an ONNX artifact never
imports TensorFlow or LiteRT, and a deployment box needs only the engine it runs.
"""

from __future__ import annotations

RUNTIME_SESSIONS: dict[str, str] = {
    "tensorflow": "runtimes.tensorflow:TensorFlowSession",
    "onnxruntime": "runtimes.onnxruntime:OnnxRuntimeSession",
    "litert": "runtimes.litert:LiteRTSession",
    "tensorrt": "runtimes.tensorrt:TensorRTSession",
    "openvino": "runtimes.openvino:OpenVinoSession",
}
