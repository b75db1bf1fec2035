"""The one registry of export formats: name → family, precision, runtime and file extension.

CLI options, manifests, the artifact cache and the runtime loader all resolve format names
here, so a format name never appears as a scattered string literal.
"""

from __future__ import annotations

from dataclasses import dataclass

from converters.errors import UnknownFormatError


@dataclass(frozen=True)
class FormatSpec:
    """One exportable format: how it is built (family), at what precision, and what runs it."""

    name: str
    family: str  # 'onnx' | 'tflite' | 'tensorrt'
    precision: str  # 'fp32' | 'fp16' | 'dynamic' | 'int8'
    runtime: str  # 'onnxruntime' | 'litert' | 'tensorrt'
    extension: str  # with the dot: '.onnx'

    @property
    def quantized(self) -> bool:
        return self.precision in ("dynamic", "int8")


FORMATS: dict[str, FormatSpec] = {
    spec.name: spec
    for spec in (
        FormatSpec("onnx", "onnx", "fp32", "onnxruntime", ".onnx"),
        FormatSpec("tflite-fp32", "tflite", "fp32", "litert", ".tflite"),
        # fp16 weights; x86 kernels dequantize them to fp32 at load (FIELD_NOTES).
        FormatSpec("tflite-fp16", "tflite", "fp16", "litert", ".tflite"),
        # Dynamic-range: int8 weights, activations quantized on the fly, float I/O.
        FormatSpec("tflite-dynamic", "tflite", "dynamic", "litert", ".tflite"),
        FormatSpec("tflite-int8", "tflite", "int8", "litert", ".tflite"),
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


def parse_formats(text: str) -> list[FormatSpec]:
    """'onnx,tflite-fp32' → specs in order, duplicates dropped; empty or unknown → error."""
    specs: list[FormatSpec] = []
    for part in text.split(","):
        if part.strip():
            spec = get_format(part)
            if spec not in specs:
                specs.append(spec)
    if not specs:
        raise UnknownFormatError(f"no formats given; known formats: {', '.join(FORMATS)}")
    return specs
