"""Export a traced step function to ONNX with tf2onnx, named by the state contract.

The graph takes `image` + `state_*` and returns `logits` + `next_state_*`; the file is checked
(onnx.checker, strict shape inference) before it is written, so a graph that tf2onnx could
only half convert fails here with the reason instead of at load time in a runtime.
`OnnxExporter` is the ONNX family's exporter (converters.exporter).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from converters.exporter import BuildJob, Exporter, SourceExport, source_facts
from core.errors import UnsupportedExportError, first_line
from core.formats import HARD_SIGMOID_GATE_FOLD, HARD_SWISH_OP, ONNX, FormatSpec
from core.manifest import LOGITS_OUTPUT, StateManifest
from core.stages import stage

if TYPE_CHECKING:
    from converters.export import ExportOptions
    from core.zoo import ModelConfig

# Name given to the symbolic T axis of a dynamic-frames export (tf2onnx calls it 'unk__N').
FRAMES_DIM = "frames"
# The rewrites of the exported graph (converters.onnx_rewrites): what an optimized ONNX
# format, and OpenVINO reading the same file, can carry.
ONNX_GRAPH_OPTIMIZATIONS = (HARD_SWISH_OP, HARD_SIGMOID_GATE_FOLD)


@contextmanager
def quieted(logger_name: str | None, level: int = logging.ERROR):
    """Python logger `logger_name` (None: the root logger) at `level` within the block: a
    converter's chatter stays out of the CLI's output; errors that matter still raise."""
    logger = logging.getLogger(logger_name)
    saved = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(saved)


def op_histogram(model) -> dict[str, int]:
    """Node count per op type of the main graph, most frequent first."""
    return dict(Counter(node.op_type for node in model.graph.node).most_common())


def check_contract_names(model, manifest: StateManifest) -> None:
    """Raise UnsupportedExportError unless graph I/O names are exactly the manifest's, in order."""
    for kind, found, expected in (
        ("input", [i.name for i in model.graph.input], manifest.input_names),
        ("output", [o.name for o in model.graph.output], manifest.output_names),
    ):
        if found != expected:
            first = next((f"{e!r} (found {f!r})" for f, e in zip(found, expected) if f != e),
                         f"{len(expected)} names (found {len(found)})")
            raise UnsupportedExportError(
                f"tf2onnx named the ONNX graph's {kind}s differently from the state contract: "
                f"expected {first}")


def pin_io_shapes(model, manifest: StateManifest, frames: int | None) -> None:
    """Declare output shapes from the manifest where tf2onnx left dims unknown; name T 'frames'.

    With a symbolic T, TF's shape inference also loses the (static) T of stream buffers in
    `next_state_*`; a consumer should see the same static state shapes on both sides.
    """
    shapes = {LOGITS_OUTPUT: (1, manifest.num_classes)}
    shapes.update({s.output_name: s.shape for s in manifest.states})
    for output in model.graph.output:
        dims = output.type.tensor_type.shape.dim
        for dim, size in zip(dims, shapes[output.name]):
            dim.Clear()
            dim.dim_value = size
    if frames is None:
        image_t = model.graph.input[0].type.tensor_type.shape.dim[1]
        image_t.Clear()
        image_t.dim_param = FRAMES_DIM


def simplify_model(model) -> tuple[object, dict]:
    """Run onnxslim; return the slimmed model and the before/after node counts and sizes."""
    import onnxslim

    start = time.perf_counter()
    slim = onnxslim.slim(model)
    return slim, {
        "seconds": round(time.perf_counter() - start, 3),
        "nodes_before": len(model.graph.node), "nodes_after": len(slim.graph.node),
        "bytes_before": model.ByteSize(), "bytes_after": slim.ByteSize(),
    }


def validate_onnx(model):
    """onnx.checker plus strict shape inference; return the model with inferred value_info."""
    import onnx

    try:
        onnx.checker.check_model(model)
        return onnx.shape_inference.infer_shapes(model, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise UnsupportedExportError(
            f"tf2onnx produced an invalid ONNX graph: {first_line(exc)}") from None


def export_onnx(model, manifest: StateManifest, frames: int | None, target: Path, *,
                opset: int, simplify: bool) -> dict:
    """Convert `model`'s step function to ONNX at `target`.

    Args:
        model: the built Keras MovinetClassifier.
        manifest: its reference manifest (state names, shapes, dtypes).
        frames: static frames per call, or None for a symbolic T axis named 'frames'.
        target: the .onnx file to write.
        opset: ONNX opset for tf2onnx.
        simplify: run onnxslim after conversion and record its effect.

    Returns:
        details: conversion seconds, node count, op histogram, opset, file size and, with
        `simplify`, the before/after node counts and sizes.

    Raises:
        UnsupportedExportError when tf2onnx cannot produce a valid graph with contract names.
    """
    import tf2onnx

    from core.build import input_signature, step_function

    start = time.perf_counter()
    signature = input_signature(manifest, frames)
    with stage("trace"):
        step = step_function(model, manifest, frames)
        # tf2onnx asks for this same concrete function: traced once, here.
        step.get_concrete_function(*signature)
    # tf2onnx's transpose optimizer fails on MoViNet's 0-d bias constants and logs a traceback,
    # then carries on without that one optimization (the exported graph is unaffected).
    with stage("convert"), quieted("tf2onnx"):
        proto, _ = tf2onnx.convert.from_function(step, input_signature=signature, opset=opset)
    convert_seconds = time.perf_counter() - start
    check_contract_names(proto, manifest)
    pin_io_shapes(proto, manifest, frames)
    details: dict = {"convert_seconds": round(convert_seconds, 3), "opset": opset,
                     "dynamic_frames": frames is None}
    if simplify:
        proto, details["simplify"] = simplify_model(proto)
        check_contract_names(proto, manifest)
    return save_checked(proto, target, details)


def save_checked(proto, target: Path, details: dict) -> dict:
    """Validate `proto` (validate_onnx), write it to `target`, and return `details` with its
    node count, op histogram and file size added."""
    import onnx

    with stage("validate"):
        proto = validate_onnx(proto)
        onnx.save(proto, str(target))
    details.update(nodes=len(proto.graph.node), op_histogram=op_histogram(proto),
                   file_bytes=Path(target).stat().st_size)
    return details


def rewrite_onnx_file(source: Path, target: Path, optimizations: tuple[str, ...], *,
                      simplify: bool) -> dict:
    """Write `source` with the ONNX graph rewrites `optimizations` (converters.optimize) applied
    to `target`, then onnxslim if `simplify`, checked as a fresh export is.

    Returns the sites each rewrite changed, the seconds it took, the node count, op histogram
    and file size (and onnxslim's effect). Raises UnsupportedExportError when a rewrite finds
    nothing to change or the result is not a valid graph.
    """
    import onnx

    from converters.optimize import rewrite_onnx

    start = time.perf_counter()
    proto = onnx.load(str(source))
    details: dict = {"optimization_sites": rewrite_onnx(proto, optimizations)}
    # Shapes inferred for the source's tensors: some are gone, the rest are inferred again.
    del proto.graph.value_info[:]
    if simplify:
        proto, details["simplify"] = simplify_model(proto)
    details["rewrite_seconds"] = round(time.perf_counter() - start, 3)
    return save_checked(proto, target, details)


# How quantize_onnx quantizes, in the cache key: a change of settings is another artifact.
QUANTIZER = ("onnxruntime.quantization.quantize_static (QDQ U8S8, 7-bit weights (reduce_range), "
             "per-channel, MinMax)")


def quantize_onnx(source: Path, target: Path, manifest: StateManifest, calibration) -> dict:
    """QDQ int8 of the fp32 ONNX file `source`, written to `target` (onnxruntime.quantization).

    Weights int8 per output channel with 7-bit range, activations uint8 per tensor (U8S8),
    ranges by MinMax over the inputs of every step as `calibration`'s clips stream through the
    fp32 model, states included, so they cover the states a deployed model sees mid-video. The
    graph's inputs and outputs stay float: the state contract is the fp32 artifact's.

    Why 7-bit weights: without VNNI, x86 int8 kernels add pairs of u8×s8 products in 16 bits,
    which saturate at full-range weights, and ONNX Runtime runs int8 activations (S8S8) through
    the same kernels. On the trained A0 stream demo, 32 held-out videos streamed frame by frame
    on an AVX2 CPU (results/a0-4d/experiments/ort_int8_settings.*): U8S8 and S8S8 at full range
    fell to chance top-1 (25 %, the states drifting frame after frame), both with reduce_range
    kept fp32's top-1 on all 32. With VNNI the 16-bit step is gone and the cost is one bit of
    weight precision; the artifact does not depend on the CPU it was built on.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static,
    )

    from converters.calibration import StreamedFeeds

    feeds = StreamedFeeds(source, manifest, calibration)

    class Feeds(CalibrationDataReader):
        def __init__(self):
            self.feeds = iter(feeds)

        def get_next(self):
            return next(self.feeds, None)

    start = time.perf_counter()
    # The quantizer advises pre-processing (shape inference) on the root logger at every call,
    # which reads as a problem in a CLI's output; every ONNX export here is shape-inferred
    # strictly before it is written (validate_onnx).
    try:
        with stage("calibrate+quantize"), quieted(None):
            quantize_static(str(source), str(target), Feeds(), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, reduce_range=True,
                            calibrate_method=CalibrationMethod.MinMax)
    except (ValueError, RuntimeError) as exc:
        raise UnsupportedExportError(f"ONNX Runtime's quantizer refused the graph: "
                                     f"{first_line(exc)}") from None
    model = onnx.load(str(target))
    return {"quantizer": QUANTIZER,
            "calibration_steps": feeds.count, "quantize_s": time.perf_counter() - start,
            "ops": op_histogram(model)}


def graph_key_parts(options: ExportOptions) -> dict:
    """The options that decide the ONNX graph: those of every artifact made from an ONNX export."""
    return {"opset": options.opset, "simplify": options.simplify}


class OnnxExporter(Exporter):
    """ONNX for ONNX Runtime: tf2onnx of the traced step function, or for an optimized format
    the plain export's file with the ONNX graph rewrites applied."""

    family = ONNX
    dynamic_frames = True

    def key_parts(self, spec: FormatSpec, options: ExportOptions) -> dict:
        key = {**graph_key_parts(options), "dynamic_frames": options.dynamic_frames}
        if spec.calibrated:
            key.update(calibration=options.calibration.key(), quantizer=QUANTIZER)
        return key

    def takes_dynamic_frames(self, spec: FormatSpec) -> bool:
        # Calibration streams calls of one fixed T through the fp32 model; a 4-D graph takes
        # one frame.
        return not spec.calibrated and not spec.four_d

    def refusal(self, config: ModelConfig, spec: FormatSpec, options: ExportOptions) -> str | None:
        if options.dynamic_frames and not self.takes_dynamic_frames(spec):
            return f"{spec.name} is calibrated on calls of a fixed T: it needs static shapes"
        return super().refusal(config, spec, options)

    def source(self, spec: FormatSpec, options: ExportOptions) -> SourceExport | None:
        if spec.calibrated:
            # int8 quantizes the fp32 export of the same suffix ('onnx+opt' for 'onnx-int8+opt').
            return SourceExport(ONNX + spec.suffix, options)
        # The rewrites work on the exported graph: they start from the plain export (from the
        # cache when it is there) instead of converting the model again, and simplify after.
        # A 4-D graph is traced itself (there is no plain 4-D export to start from).
        if not spec.optimized or spec.four_d:
            return None
        return SourceExport(spec.plain, replace(options, simplify=False))

    def optimizations(self, spec: FormatSpec) -> tuple[str, ...]:
        return ONNX_GRAPH_OPTIMIZATIONS

    def build(self, job: BuildJob) -> dict:
        if job.spec.calibrated:
            details = quantize_onnx(job.source.path, job.target, job.manifest,
                                    job.options.calibration)
            return {**details, **source_facts(job.source)}
        if job.source is not None:
            details = rewrite_onnx_file(job.source.path, job.target, job.optimizations,
                                        simplify=job.options.simplify)
            return {**details, **source_facts(job.source)}
        details = export_onnx(job.model, job.manifest, job.frames, job.target,
                              opset=job.options.opset, simplify=job.options.simplify)
        if job.optimizations:  # a 4-D graph: its rewrites apply to the file just written
            details["rewritten"] = rewrite_onnx_file(job.target, job.target, job.optimizations,
                                                     simplify=job.options.simplify)
        return details
