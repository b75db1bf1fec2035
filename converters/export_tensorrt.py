"""Build TensorRT engines from the exported ONNX (TensorRT 10 Python API, cuda-python buffers).

converters/tensorrt_config.py decides the build (flags, shapes, calibrator); this module only
carries the plan out on a machine with TensorRT and a CUDA GPU. int8 is calibrated with
realistic states: calibration clips stream frame by frame through the fp32 ONNX model
(converters/calibration.py), and each step's inputs become one calibration batch.
`TensorRTExporter` is the TensorRT family's exporter (converters.exporter).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from converters.export_onnx import graph_key_parts
from converters.exporter import BuildJob, Exporter, SourceExport
from core.errors import UnsupportedExportError
from core.formats import ONNX, TENSORRT, FormatSpec
from core.manifest import StateManifest
from converters.tensorrt_config import (
    EngineBuildPlan, TensorRTBuildConfig, plan_engine_build,
)
from core.tensorrt_cuda import recording_logger, require_tensorrt

if TYPE_CHECKING:
    from converters.export import ExportOptions


def stream_calibrator(trt, plan: EngineBuildPlan, feeds: Iterable[dict[str, np.ndarray]],
                      cache_path: Path):
    """An IInt8EntropyCalibrator2 that serves `feeds` (one streamed step each) as batches.

    One device buffer per network input is reused for every batch; TensorRT asks for inputs by
    name, so the order of `names` in get_batch decides the order of the returned pointers.
    """
    from core.tensorrt_cuda import DeviceBuffer

    class StreamCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._feeds = iter(feeds)
            self._buffers = {
                name: DeviceBuffer(int(np.prod(shape)) * np.dtype(plan.input_dtypes[name]).itemsize)
                for name, shape in plan.input_shapes.items()}
            self.batches = 0

        def get_batch_size(self):
            return 1  # explicit-batch network: the batch dim is part of each input's shape

        def get_batch(self, names):
            feed = next(self._feeds, None)
            if feed is None:
                return None
            for name in names:
                self._buffers[name].upload(feed[name])  # synchronous: the feed may be freed next
            self.batches += 1
            return [self._buffers[name].ptr for name in names]

        def read_calibration_cache(self):
            return None  # a new cache key means new inputs: always calibrate

        def write_calibration_cache(self, cache):
            # Kept beside the engine: the per-tensor int8 scales, worth reading when int8 drifts.
            cache_path.write_bytes(bytes(cache))

        def free(self):
            for buffer in self._buffers.values():
                buffer.free()

    return StreamCalibrator()


def _parse_onnx(trt, builder, logger, plan: EngineBuildPlan, onnx_path: Path):
    flags = 0
    for name in plan.network_flags:
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        first = errors[0].strip().splitlines()[0] if errors else logger.last_error("no reason given")
        raise UnsupportedExportError(
            f"TensorRT's ONNX parser rejected {onnx_path.name}: {first} ({len(errors)} error(s))")
    return network, parser


def _network_inputs(network, plan: EngineBuildPlan) -> list[str]:
    """Check the parsed inputs against the plan; return the names whose shapes are dynamic."""
    found = {network.get_input(i).name: tuple(network.get_input(i).shape)
             for i in range(network.num_inputs)}
    if set(found) != set(plan.input_shapes):
        missing = sorted(set(plan.input_shapes) - set(found)) or sorted(set(found) - set(plan.input_shapes))
        raise UnsupportedExportError(
            f"the parsed TensorRT network's inputs differ from the manifest's (first: {missing[0]!r})")
    dynamic = []
    for name, shape in found.items():
        want = plan.input_shapes[name]
        if len(shape) != len(want) or any(d not in (-1, w) for d, w in zip(shape, want)):
            raise UnsupportedExportError(
                f"TensorRT network input {name!r} has shape {list(shape)}, manifest says {list(want)}")
        if -1 in shape:
            dynamic.append(name)
    return dynamic


def build_engine(onnx_path: str | Path, manifest: StateManifest, precision: str,
                 config: TensorRTBuildConfig, target: Path, *, calibration) -> dict:
    """Build and serialize a TensorRT engine for `onnx_path` at `target`.

    Args:
        onnx_path: the static-shape ONNX artifact (export_model(..., 'onnx')).
        manifest: its manifest (static frames_per_call; state shapes and dtypes).
        precision: 'fp32', 'fp16' or 'int8'.
        config: workspace, optimization level, TF32, timing cache, DLA.
        target: the .engine file to write.
        calibration: converters.export.CalibrationData, used for int8 only.

    Returns:
        details: the plan, TensorRT version, GPU name, build seconds, engine size and, for
        int8, the number of calibration batches.

    Raises:
        MissingDependencyError without TensorRT or a GPU; UnsupportedExportError when the
        parser or builder refuses the model (naming TensorRT's error).
    """
    trt = require_tensorrt()
    from core.tensorrt_cuda import device_name

    onnx_path, target = Path(onnx_path), Path(target)
    plan = plan_engine_build(config, precision, manifest, tensorrt_version=trt.__version__)
    start = time.perf_counter()
    logger = recording_logger(trt)
    builder = trt.Builder(logger)
    network, _parser = _parse_onnx(trt, builder, logger, plan, onnx_path)
    dynamic = _network_inputs(network, plan)

    builder_config = builder.create_builder_config()
    builder_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.workspace_bytes)
    builder_config.builder_optimization_level = plan.optimization_level
    for name in plan.set_flags:
        builder_config.set_flag(getattr(trt.BuilderFlag, name))
    for name in plan.clear_flags:
        builder_config.clear_flag(getattr(trt.BuilderFlag, name))
    if plan.dla_core is not None:
        builder_config.default_device_type = trt.DeviceType.DLA
        builder_config.DLA_core = plan.dla_core
    profile = None
    if dynamic:  # an ONNX with symbolic dims: pin them to the manifest's static shapes
        profile = builder.create_optimization_profile()
        for name in dynamic:
            shape = plan.input_shapes[name]
            profile.set_shape(name, shape, shape, shape)
        builder_config.add_optimization_profile(profile)

    timing_cache = Path(config.timing_cache) if config.timing_cache else None
    cache_blob = timing_cache.read_bytes() if timing_cache and timing_cache.exists() else b""
    builder_config.set_timing_cache(builder_config.create_timing_cache(cache_blob), False)

    calibrator = None
    if plan.needs_calibrator:
        from converters.calibration import streamed_feeds

        feeds = streamed_feeds(onnx_path, manifest, calibration.iter_clips(manifest.resolution))
        calibrator = stream_calibrator(trt, plan, feeds, target.with_name(target.name + ".calib"))
        builder_config.int8_calibrator = calibrator
        if profile is not None:
            builder_config.set_calibration_profile(profile)
    try:
        serialized = builder.build_serialized_network(network, builder_config)
    finally:
        if calibrator is not None:
            calibrator.free()
    if serialized is None:
        raise UnsupportedExportError(
            f"TensorRT could not build a {precision} engine from {onnx_path.name}: "
            f"{logger.last_error('the builder returned no engine')}")
    with open(target, "wb") as handle:
        handle.write(serialized)
    if timing_cache is not None:
        timing_cache.parent.mkdir(parents=True, exist_ok=True)
        with open(timing_cache, "wb") as handle:
            handle.write(builder_config.get_timing_cache().serialize())
    details = {"tensorrt_version": trt.__version__, "device": device_name(),
               "build_seconds": round(time.perf_counter() - start, 3), "plan": plan.to_dict(),
               "engine_bytes": target.stat().st_size, "profile_inputs": dynamic,
               "timing_cache": str(timing_cache) if timing_cache else None}
    if calibrator is not None:
        details["calibration"] = {**calibration.key(), "batches": calibrator.batches}
    return details


class TensorRTExporter(Exporter):
    """TensorRT engines, built from the plain ONNX export on this machine's GPU."""

    family = TENSORRT
    support_note = "the engine is built from that ONNX export (needs TensorRT and a CUDA GPU)"

    def key_parts(self, spec: FormatSpec, options: ExportOptions) -> dict:
        key = {**graph_key_parts(options), "tensorrt": options.tensorrt.key()}
        if spec.calibrated:
            key["calibration"] = options.calibration.key()
        return key

    def source(self, spec: FormatSpec, options: ExportOptions) -> SourceExport:
        return SourceExport(ONNX, options)

    def prepare(self) -> None:
        require_tensorrt()  # before a minute is spent on the ONNX source

    def build(self, job: BuildJob) -> dict:
        details = build_engine(job.source.path, job.manifest, job.spec.precision,
                               job.options.tensorrt, job.target,
                               calibration=job.options.calibration)
        details["onnx_source"] = str(job.source.path)
        return details
