"""The one registry of export formats: name → family, precision, runtime and file extension.

CLI options, manifests, the artifact cache and the runtime loader all resolve format names
here, so a format name never appears as a scattered string literal. A family is how a format
is built: one exporter each (converters.exporter), one runtime each format (runtimes.registry).
"""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import UnknownFormatError


@dataclass(frozen=True)
class FormatSpec:
    """One exportable format: how it is built (family), at what precision, and what runs it."""

    name: str
    family: str  # TENSORFLOW | ONNX | TFLITE | TENSORRT | OPENVINO
    precision: str  # FP32 | FP16 | DYNAMIC | INT8
    runtime: str  # 'tensorflow' | 'onnxruntime' | 'litert' | 'tensorrt' | 'openvino' (runtimes.registry)
    extension: str  # with the dot: '.onnx'; '' for the TF reference, which has no file
    # Built with exact graph optimizations (converters.optimize): every one that fits the model
    # ('+opt' formats), or only the one a format per optimization names (its before/after runs
    # beside the plain format and '+opt' in one matrix).
    optimized: bool = False
    only: tuple[str, ...] = ()
    # The single-frame graph with every tensor of rank ≤ 4 (converters.stream4d), for GPU
    # delegates; it carries every graph optimization of its family that fits the model.
    four_d: bool = False

    @property
    def plain(self) -> str:
        """The format built without graph optimizations ('tflite-int8' for 'tflite-int8+opt')."""
        return self.name.split("+", 1)[0]

    @property
    def suffix(self) -> str:
        """What follows the plain name ('+opt' for 'openvino+opt'; '' for a plain format)."""
        return self.name[len(self.plain):]

    @property
    def exported(self) -> bool:
        """False for the TensorFlow reference, built from the model config and checkpoint."""
        return self.family != TENSORFLOW

    @property
    def quantized(self) -> bool:
        return self.precision in (DYNAMIC, INT8)

    @property
    def calibrated(self) -> bool:
        """True when building it calibrates activation ranges on clips (full int8)."""
        return self.precision == INT8


# The families: how a format is built, by one exporter each (converters.exporter).
TENSORFLOW = "tensorflow"
ONNX = "onnx"
OPENVINO = "openvino"
TFLITE = "tflite"
TENSORRT = "tensorrt"
# The precisions.
FP32 = "fp32"
FP16 = "fp16"
DYNAMIC = "dynamic"  # int8 weights, activations quantized on the fly
INT8 = "int8"
OPTIMIZED_SUFFIX = "+opt"
FOUR_D_SUFFIX = "+4d"
# The graph optimizations by name (what each does: converters.optimize).
INT8_HARD_SWISH = "int8-hard-swish"
CAUSAL_POOL_STEP = "causal-pool-step"
HARD_SWISH_OP = "hard-swish-op"
HARD_SIGMOID_GATE_FOLD = "hard-sigmoid-gate-fold"

FORMATS: dict[str, FormatSpec] = {
    spec.name: spec
    for spec in (
        # The reference: the Model Garden model itself, run by TF through a traced step function.
        FormatSpec(TENSORFLOW, TENSORFLOW, FP32, TENSORFLOW, ""),
        FormatSpec(ONNX, ONNX, FP32, "onnxruntime", ".onnx"),
        # With exact ONNX graph rewrites that ONNX Runtime fuses (converters.onnx_rewrites):
        # all that fit, and one format per rewrite for each one's before/after.
        FormatSpec(ONNX + OPTIMIZED_SUFFIX, ONNX, FP32, "onnxruntime", ".onnx",
                   optimized=True),
        *(FormatSpec(f"{ONNX}+{name}", ONNX, FP32, "onnxruntime", ".onnx",
                     optimized=True, only=(name,))
          for name in (HARD_SWISH_OP, HARD_SIGMOID_GATE_FOLD)),
        # QDQ int8 of the plain or the optimized ONNX export (onnxruntime.quantization):
        # weights per channel, activations calibrated on streamed states.
        FormatSpec(f"{ONNX}-{INT8}", ONNX, INT8, "onnxruntime", ".onnx"),
        FormatSpec(f"{ONNX}-{INT8}" + OPTIMIZED_SUFFIX, ONNX, INT8, "onnxruntime", ".onnx",
                   optimized=True),
        # The same ONNX graph, run by OpenVINO's CPU plugin (which reads ONNX itself).
        FormatSpec(OPENVINO, OPENVINO, FP32, OPENVINO, ".onnx"),
        FormatSpec(OPENVINO + OPTIMIZED_SUFFIX, OPENVINO, FP32, OPENVINO, ".onnx",
                   optimized=True),
        # NNCF's int8 of the plain or the optimized ONNX export (a QDQ ONNX file the CPU plugin
        # runs in int8), calibrated on streamed states like every int8 here.
        FormatSpec(f"{OPENVINO}-{INT8}", OPENVINO, INT8, OPENVINO, ".onnx"),
        FormatSpec(f"{OPENVINO}-{INT8}" + OPTIMIZED_SUFFIX, OPENVINO, INT8, OPENVINO, ".onnx",
                   optimized=True),
        FormatSpec("tflite-fp32", TFLITE, FP32, "litert", ".tflite"),
        # fp16 weights; LiteRT's x86 kernels dequantize them to fp32 at load.
        FormatSpec("tflite-fp16", TFLITE, FP16, "litert", ".tflite"),
        # Dynamic-range: int8 weights, activations quantized on the fly, float I/O.
        FormatSpec("tflite-dynamic", TFLITE, DYNAMIC, "litert", ".tflite"),
        FormatSpec("tflite-int8", TFLITE, INT8, "litert", ".tflite"),
        # The same with graph optimizations for XNNPACK's int8 kernels (converters.optimize):
        # a format of its own, so a matrix runs it beside the plain one in every table.
        FormatSpec("tflite-int8" + OPTIMIZED_SUFFIX, TFLITE, INT8, "litert", ".tflite",
                   optimized=True),
        *(FormatSpec(f"tflite-int8+{name}", TFLITE, INT8, "litert", ".tflite",
                     optimized=True, only=(name,))
          for name in (INT8_HARD_SWISH, CAUSAL_POOL_STEP)),
        # The ≤4-D single-frame stream graph (converters.stream4d) for every family but
        # TensorRT: LiteRT's GPU delegate takes no tensor of higher rank.
        *(FormatSpec(f"tflite-{precision}" + FOUR_D_SUFFIX, TFLITE, precision, "litert",
                     ".tflite", optimized=True, four_d=True) for precision in (FP32, FP16, INT8)),
        FormatSpec(ONNX + FOUR_D_SUFFIX, ONNX, FP32, "onnxruntime", ".onnx", optimized=True,
                   four_d=True),
        FormatSpec(f"{ONNX}-{INT8}" + FOUR_D_SUFFIX, ONNX, INT8, "onnxruntime", ".onnx",
                   optimized=True, four_d=True),
        FormatSpec(OPENVINO + FOUR_D_SUFFIX, OPENVINO, FP32, OPENVINO, ".onnx", optimized=True,
                   four_d=True),
        FormatSpec(f"{OPENVINO}-{INT8}" + FOUR_D_SUFFIX, OPENVINO, INT8, OPENVINO, ".onnx",
                   optimized=True, four_d=True),
        FormatSpec("trt-fp32", TENSORRT, FP32, TENSORRT, ".engine"),
        FormatSpec("trt-fp16", TENSORRT, FP16, TENSORRT, ".engine"),
        FormatSpec("trt-int8", TENSORRT, INT8, TENSORRT, ".engine"),
    )
}


def plain_format(family: str, precision: str = FP32) -> FormatSpec:
    """The format of `family` at `precision` built without graph optimizations
    (TFLITE, INT8 → 'tflite-int8')."""
    return next(spec for spec in FORMATS.values()
                if spec.family == family and spec.precision == precision and not spec.optimized)


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
