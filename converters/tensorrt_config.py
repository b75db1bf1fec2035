"""TensorRT engine-build settings and the pure plan they turn into (no TensorRT needed).

`plan_engine_build` decides everything about a build that can be decided without a GPU:
builder flags, memory, per-input static shapes, whether a calibrator is needed, and which
combinations cannot work. converters/export_tensorrt.py only carries the plan out, so the
decisions are unit-tested on machines where TensorRT cannot be installed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.errors import UnsupportedExportError
from core.formats import FP16, FP32, INT8, TENSORRT, plain_format
from core.manifest import IMAGE_INPUT, StateManifest

PRECISIONS = (FP32, FP16, INT8)
# TensorRT 11 removed weak typing: no BuilderFlag.FP16/INT8 and no calibrators; precision then
# comes from the ONNX types (an fp16 or Q/DQ graph), which this exporter does not write.
LAST_WEAKLY_TYPED_MAJOR = 10


@dataclass(frozen=True)
class TensorRTBuildConfig:
    """How to build an engine. Fields marked 'not in key' do not change the engine's bytes."""

    workspace_mib: int = 1024
    # IBuilderConfig.builder_optimization_level: 0 (fast build) … 5 (widest tactic search).
    optimization_level: int = 3
    # TF32 tensor-core math for fp32 layers: faster on Ampere+, but ~1e-3 relative error, which
    # would break fp32 equivalence with TF; off unless asked for.
    tf32: bool = False
    # Precision from the ONNX types alone (no FP16/INT8 flags); TensorRT 11 always does this.
    strongly_typed: bool = False
    # A DLA core (Jetson/DRIVE) with GPU fallback; DLA runs fp16/int8 only.
    dla_core: int | None = None
    # Reused tactic timings: rebuilds get faster (not in key).
    timing_cache: str | None = field(default=None, compare=False)
    # Runtime only: replay each step as a captured CUDA graph (not in key).
    cuda_graphs: bool = field(default=False, compare=False)

    def __post_init__(self):
        if self.workspace_mib < 1:
            raise UnsupportedExportError(f"TensorRT workspace must be >= 1 MiB, got {self.workspace_mib}")
        if not 0 <= self.optimization_level <= 5:
            raise UnsupportedExportError(
                f"TensorRT builder optimization level must be 0..5, got {self.optimization_level}")
        if self.dla_core is not None and self.dla_core < 0:
            raise UnsupportedExportError(f"DLA core must be >= 0, got {self.dla_core}")

    def key(self) -> dict:
        """The settings that change the engine's bytes (part of the artifact cache key)."""
        return {"workspace_mib": self.workspace_mib, "optimization_level": self.optimization_level,
                "tf32": self.tf32, "strongly_typed": self.strongly_typed, "dla_core": self.dla_core}


@dataclass(frozen=True)
class EngineBuildPlan:
    """Everything the builder is told, decided ahead of TensorRT."""

    precision: str
    network_flags: tuple[str, ...]  # NetworkDefinitionCreationFlag names
    set_flags: tuple[str, ...]  # BuilderFlag names to set
    clear_flags: tuple[str, ...]  # BuilderFlag names to clear (TensorRT sets TF32 by default)
    workspace_bytes: int
    optimization_level: int
    input_shapes: dict[str, tuple[int, ...]]  # every network input, static (image first)
    input_dtypes: dict[str, str]
    output_names: tuple[str, ...]
    needs_calibrator: bool
    dla_core: int | None = None

    def to_dict(self) -> dict:
        return {"precision": self.precision, "network_flags": list(self.network_flags),
                "set_flags": list(self.set_flags), "clear_flags": list(self.clear_flags),
                "workspace_bytes": self.workspace_bytes,
                "optimization_level": self.optimization_level,
                "input_shapes": {k: list(v) for k, v in self.input_shapes.items()},
                "needs_calibrator": self.needs_calibrator, "dla_core": self.dla_core}


def tensorrt_major(version: str | None) -> int:
    """Major version of a TensorRT version string ('10.15.1.29' → 10); None → 10 (the target)."""
    if not version:
        return LAST_WEAKLY_TYPED_MAJOR
    try:
        return int(version.split(".")[0])
    except ValueError:
        raise UnsupportedExportError(f"unreadable TensorRT version {version!r}") from None


def plan_engine_build(config: TensorRTBuildConfig, precision: str, manifest: StateManifest, *,
                      tensorrt_version: str | None = None) -> EngineBuildPlan:
    """Turn (config, precision, manifest) into an engine-build plan, or say why it cannot work.

    Args:
        config: the build settings.
        precision: 'fp32', 'fp16' or 'int8' (the trt-* format's precision).
        manifest: the ONNX source's manifest: it fixes every input's static shape and dtype.
        tensorrt_version: the installed TensorRT's version; None plans for TensorRT 10.

    Raises:
        UnsupportedExportError naming the combination that cannot be built.
    """
    if precision not in PRECISIONS:
        raise UnsupportedExportError(
            f"TensorRT precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if manifest.frames_per_call is None:
        raise UnsupportedExportError(
            "TensorRT engines here have static shapes: export the ONNX source with a fixed "
            "frames per call (not dynamic_frames)")
    major = tensorrt_major(tensorrt_version)
    weakly_typed = major <= LAST_WEAKLY_TYPED_MAJOR and not config.strongly_typed
    if precision != FP32 and not weakly_typed:
        why = (f"TensorRT {major} has no FP16/INT8 builder flags or calibrators"
               if major > LAST_WEAKLY_TYPED_MAJOR else "a strongly typed network")
        raise UnsupportedExportError(
            f"{plain_format(TENSORRT, precision).name} needs weak typing, but {why}: precision would come from the ONNX "
            "types, and the ONNX source is fp32")
    if config.dla_core is not None and precision == FP32:
        raise UnsupportedExportError(
            f"DLA runs fp16 or int8 layers only: use {plain_format(TENSORRT, FP16).name} or "
            f"{plain_format(TENSORRT, INT8).name}")

    set_flags: list[str] = []
    if precision == FP16:
        set_flags.append("FP16")
    elif precision == INT8:
        # FP16 too: layers without an int8 kernel then fall back to fp16, not fp32.
        set_flags += ["INT8", "FP16"]
    if config.tf32:
        set_flags.append("TF32")
    if config.dla_core is not None:
        set_flags.append("GPU_FALLBACK")
    network_flags = ("STRONGLY_TYPED",) if config.strongly_typed and major <= LAST_WEAKLY_TYPED_MAJOR else ()

    res, t = manifest.resolution, manifest.frames_per_call
    shapes = {IMAGE_INPUT: (1, t, res, res, 3)}
    shapes.update({s.input_name: s.shape for s in manifest.states})
    dtypes = {IMAGE_INPUT: "float32"}
    dtypes.update({s.input_name: s.dtype for s in manifest.states})
    return EngineBuildPlan(
        precision=precision, network_flags=network_flags, set_flags=tuple(set_flags),
        clear_flags=() if config.tf32 else ("TF32",),
        workspace_bytes=config.workspace_mib << 20, optimization_level=config.optimization_level,
        input_shapes=shapes, input_dtypes=dtypes, output_names=tuple(manifest.output_names),
        needs_calibrator=precision == INT8, dla_core=config.dla_core)
