"""The one registry of export formats: name → family, precision, runtime and file extension.

CLI options, manifests, the artifact cache and the runtime loader all resolve format names
here, so a format name never appears as a scattered string literal.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import UnknownFormatError


@dataclass(frozen=True)
class FormatSpec:
    """One exportable format: how it is built (family), at what precision, and what runs it."""

    name: str
    family: str  # 'tensorflow' | 'onnx' | 'tflite' | 'tensorrt' | 'openvino'
    precision: str  # 'fp32' | 'fp16' | 'dynamic' | 'int8'
    runtime: str  # 'tensorflow' | 'onnxruntime' | 'litert' | 'tensorrt' | 'openvino' (runtimes.registry)
    extension: str  # with the dot: '.onnx'; '' for the TF reference, which has no file
    # Built with exact graph optimizations (converters.optimize): every one that fits the model
    # ('+opt' formats), or only the one a format per optimization names (its before/after runs
    # beside the plain format and '+opt' in one matrix).
    optimized: bool = False
    only: tuple[str, ...] = ()

    @property
    def plain(self) -> str:
        """The format built without graph optimizations ('tflite-int8' for 'tflite-int8+opt')."""
        return self.name.split("+", 1)[0]

    @property
    def onnx_source(self) -> str:
        """The ONNX format an OpenVINO (or TensorRT) artifact is made from: 'onnx+opt' for
        'openvino+opt'. TensorRT builds from the plain ONNX."""
        return "onnx" + self.name[len(self.plain):] if self.family == "openvino" else "onnx"

    @property
    def exported(self) -> bool:
        """False for the TensorFlow reference, built from the model config and checkpoint."""
        return self.family != TENSORFLOW

    @property
    def quantized(self) -> bool:
        return self.precision in ("dynamic", "int8")


TENSORFLOW = "tensorflow"
OPTIMIZED_SUFFIX = "+opt"
# The graph optimizations by name (what each does: converters.optimize).
INT8_HARD_SWISH = "int8-hard-swish"
CAUSAL_POOL_STEP = "causal-pool-step"
HARD_SWISH_OP = "hard-swish-op"
HARD_SIGMOID_GATE_FOLD = "hard-sigmoid-gate-fold"

FORMATS: dict[str, FormatSpec] = {
    spec.name: spec
    for spec in (
        # The reference: the Model Garden model itself, run by TF through a traced step function.
        FormatSpec(TENSORFLOW, TENSORFLOW, "fp32", TENSORFLOW, ""),
        FormatSpec("onnx", "onnx", "fp32", "onnxruntime", ".onnx"),
        # With exact ONNX graph rewrites that ONNX Runtime fuses (converters.onnx_rewrites):
        # all that fit, and one format per rewrite for each one's before/after.
        FormatSpec("onnx" + OPTIMIZED_SUFFIX, "onnx", "fp32", "onnxruntime", ".onnx",
                   optimized=True),
        *(FormatSpec(f"onnx+{name}", "onnx", "fp32", "onnxruntime", ".onnx",
                     optimized=True, only=(name,))
          for name in (HARD_SWISH_OP, HARD_SIGMOID_GATE_FOLD)),
        # The same ONNX graph, run by OpenVINO's CPU plugin (which reads ONNX itself).
        FormatSpec("openvino", "openvino", "fp32", "openvino", ".onnx"),
        FormatSpec("openvino" + OPTIMIZED_SUFFIX, "openvino", "fp32", "openvino", ".onnx",
                   optimized=True),
        FormatSpec("tflite-fp32", "tflite", "fp32", "litert", ".tflite"),
        # fp16 weights; LiteRT's x86 kernels dequantize them to fp32 at load.
        FormatSpec("tflite-fp16", "tflite", "fp16", "litert", ".tflite"),
        # Dynamic-range: int8 weights, activations quantized on the fly, float I/O.
        FormatSpec("tflite-dynamic", "tflite", "dynamic", "litert", ".tflite"),
        FormatSpec("tflite-int8", "tflite", "int8", "litert", ".tflite"),
        # The same with graph optimizations for XNNPACK's int8 kernels (converters.optimize):
        # a format of its own, so a matrix runs it beside the plain one in every table.
        FormatSpec("tflite-int8" + OPTIMIZED_SUFFIX, "tflite", "int8", "litert", ".tflite",
                   optimized=True),
        *(FormatSpec(f"tflite-int8+{name}", "tflite", "int8", "litert", ".tflite",
                     optimized=True, only=(name,))
          for name in (INT8_HARD_SWISH, CAUSAL_POOL_STEP)),
        FormatSpec("trt-fp32", "tensorrt", "fp32", "tensorrt", ".engine"),
        FormatSpec("trt-fp16", "tensorrt", "fp16", "tensorrt", ".engine"),
        FormatSpec("trt-int8", "tensorrt", "int8", "tensorrt", ".engine"),
    )
}



def get_format(name: str) -> FormatSpec:
    """Return the spec of format `name`, or raise UnknownFormatError listing the known ones."""
    try:
        return FORMATS[name.strip().lower()]
    except (KeyError, AttributeError):
        raise UnknownFormatError(
            f"unknown format {name!r}; known formats: {', '.join(FORMATS)}") from None


def get_export_format(name: str) -> FormatSpec:
    """Like get_format, but refuse the TensorFlow reference, which has no artifact to export."""
    spec = get_format(name)
    if not spec.exported:
        raise UnknownFormatError(
            f"{spec.name!r} is the reference, not an export format; export formats: "
            f"{', '.join(n for n, s in FORMATS.items() if s.exported)}")
    return spec


def parse_formats(text: str, *, exported_only: bool = True) -> list[FormatSpec]:
    """'onnx,tflite-fp32' → specs in order, duplicates dropped; empty or unknown → error.

    With `exported_only`, the TensorFlow reference (which has no artifact) is refused by name.
    """
    specs: list[FormatSpec] = []
    for part in text.split(","):
        if part.strip():
            spec = get_export_format(part) if exported_only else get_format(part)
            if spec not in specs:
                specs.append(spec)
    if not specs:
        raise UnknownFormatError(f"no formats given; known formats: {', '.join(FORMATS)}")
    return specs
