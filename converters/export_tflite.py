"""Export a traced step function to TFLite at fp32, fp16, dynamic-range or full-int8 precision.

The file's `serving_default` signature takes `image` + `state_*` and returns `logits` +
`next_state_*`. Every converted file is opened with LiteRT and run for one step before it is
returned, so a model that converts but cannot run (e.g. int8 'RESHAPE num_input_elements !=
num_output_elements' at prepare) fails here with the reason instead of being cached; its
build record also says whether the LiteRT GPU delegate would take it whole.
`TFLiteExporter` is the TFLite family's exporter (converters.exporter).
"""

from __future__ import annotations

import time
import warnings
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from converters.calibration import stream_feeds
from converters.exporter import BuildJob, Exporter
from converters.gpu_delegate_compat import check_gpu_delegate_compat
from core.errors import ArtifactError, UnsupportedExportError, first_line
from core.formats import (
    CAUSAL_POOL_STEP, DYNAMIC, FP16, FP32, INT8, INT8_HARD_SWISH, TFLITE, FormatSpec,
)
from core.manifest import IMAGE_INPUT, StateManifest
from core.stages import stage

if TYPE_CHECKING:
    from converters.export import ExportOptions

SIGNATURE_KEY = "serving_default"
PRECISIONS = (FP32, FP16, DYNAMIC, INT8)
# The build patches for XNNPACK's int8 kernels (converters.optimize): full int8 only.
INT8_OPTIMIZATIONS = (INT8_HARD_SWISH, CAUSAL_POOL_STEP)
# Ops that only move values across the float/int8 boundary; any other op reading float32
# in an int8 model is a float fallback.
BOUNDARY_OPS = ("QUANTIZE", "DEQUANTIZE")


def function_holder(step, model):
    """A bare tf.Module that tracks only `step` and the model's variables.

    The converter saves its trackable object as a SavedModel before converting. Handed the
    Keras model itself, it serialises every layer's call functions too (Keras' legacy SavedModel
    path): 130-170 s for t0 at 64² against ~26 s with this holder, byte-identical output
    (measured on a loaded 2-core machine).
    """
    import tensorflow as tf

    holder = tf.Module()
    holder.step = step
    holder.weights = list(model.variables)
    return holder


def configure(converter, precision: str, feeds=None) -> None:
    """Set the converter's optimizations for `precision` (feeds: int8 calibration samples)."""
    import tensorflow as tf

    if precision == FP32:
        return
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if precision == FP16:
        converter.target_spec.supported_types = [tf.float16]
    elif precision == INT8:
        converter.representative_dataset = feeds
        # Full integer: conversion fails rather than silently leaving float kernels behind.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]


def graph_facts(data: bytes, precision: str) -> dict:
    """Op histogram and tensor dtypes of a converted model, read off its flatbuffer.

    For int8 also the float fallbacks: ops other than QUANTIZE/DEQUANTIZE that read float32,
    i.e. work the int8 kernels do not do (candidates when int8 is no faster than fp32).
    """
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    graph = model.subgraphs[0]
    ops = Counter()
    float_ops = Counter()
    for op in graph.operators:
        name = flatbuffer_utils.opcode_to_name(model, op.opcodeIndex)
        ops[name] += 1
        if name not in BOUNDARY_OPS and any(
                graph.tensors[i].type == schema.TensorType.FLOAT32 for i in op.inputs if i >= 0):
            float_ops[name] += 1
    facts = {"op_histogram": dict(ops.most_common()), "operators": sum(ops.values()),
             "tensor_dtypes": dict(Counter(flatbuffer_utils.type_to_name(t.type).lower()
                                           for t in graph.tensors).most_common())}
    if precision == INT8:
        facts["float_ops"] = dict(float_ops.most_common())
        facts["boundary_ops"] = {name: ops[name] for name in BOUNDARY_OPS if ops[name]}
    return facts


def verify_tflite(path: Path, manifest: StateManifest, feed: dict[str, np.ndarray]) -> None:
    """Open `path` with LiteRT, check its signature names, run one step; ArtifactError if not."""
    from ai_edge_litert.interpreter import Interpreter

    try:
        interpreter = Interpreter(model_path=str(path))
        signatures = interpreter.get_signature_list()
    except (ValueError, RuntimeError) as exc:
        raise ArtifactError(f"LiteRT cannot load the converted model {path.name}: "
                            f"{first_line(exc)}") from None
    if SIGNATURE_KEY not in signatures:
        raise ArtifactError(f"converted model {path.name} has no {SIGNATURE_KEY!r} signature "
                            f"(has {sorted(signatures)})")
    found = signatures[SIGNATURE_KEY]
    for kind, names, expected in (("input", found["inputs"], manifest.input_names),
                                  ("output", found["outputs"], manifest.output_names)):
        missing = [n for n in expected if n not in names]
        extra = [n for n in names if n not in expected]
        if missing or extra:
            what = f"lacks {kind} {missing[0]!r}" if missing else f"has unexpected {kind} {extra[0]!r}"
            raise ArtifactError(f"converted model {path.name} breaks the state contract: its "
                                f"{SIGNATURE_KEY} signature {what}")
    try:
        interpreter.get_signature_runner(SIGNATURE_KEY)(**feed)
    except (ValueError, RuntimeError) as exc:
        raise ArtifactError(f"converted model {path.name} fails to run in LiteRT: "
                            f"{first_line(exc)}") from None


def export_tflite(model, manifest: StateManifest, frames: int, target: Path, precision: str, *,
                  calibration, int8_float_io: bool = True) -> dict:
    """Convert `model`'s step function to a TFLite file at `target`.

    Args:
        model: the built Keras MovinetClassifier.
        manifest: its reference manifest (state names, shapes, dtypes).
        frames: static frames per call (1 for streaming; the clip length L for base models).
        target: the .tflite file to write.
        precision: 'fp32', 'fp16' (float16 weights), 'dynamic' (int8 weights, float
            activations) or 'int8' (full integer post-training quantization).
        calibration: a converters.export.CalibrationData; its clips are streamed through the
            TF model to calibrate int8 ranges, carried states included.
        int8_float_io: int8 only: keep image, logits and states float32 at the boundary.

    Returns:
        details: convert seconds (calibration included), file bytes, op histogram, tensor
        dtypes, the LiteRT GPU-delegate verdict (converters.gpu_delegate_compat) and, for
        int8, the float ops left, the boundary ops and the calibration used.

    Raises:
        UnsupportedExportError for an unknown precision or int8 I/O; ArtifactError when the
        converted file breaks the state contract or fails to run one step in LiteRT.
    """
    if precision not in PRECISIONS:
        raise UnsupportedExportError(
            f"unknown TFLite precision {precision!r}; known: {', '.join(PRECISIONS)}")
    if precision == INT8 and not int8_float_io:
        raise UnsupportedExportError(
            "int8 TFLite with int8 image/logits/state I/O is not supported: the state manifest "
            "has no per-tensor scale/zero-point, and a quantized state's initial value is its "
            "zero point, not the zeros the manifest promises; export with float I/O")
    if frames is None:
        raise UnsupportedExportError("TFLite needs a static number of frames per call")
    import tensorflow as tf

    from core.build import step_function

    with stage("trace"):
        step = step_function(model, manifest, frames)
        concrete = step.get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [concrete], function_holder(step, model))
    calibrated = 0

    def next_states(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = concrete(feed[IMAGE_INPUT], *(feed[s.input_name] for s in manifest.states))
        return {s.name: out[s.output_name].numpy() for s in manifest.states}

    def feeds():
        nonlocal calibrated
        for feed in stream_feeds(next_states, manifest, frames,
                                 calibration.iter_clips(manifest.resolution)):
            calibrated += 1
            yield feed

    configure(converter, precision, feeds)
    start = time.perf_counter()
    # The converter draws int8's calibration feeds as it quantizes: one stage, not two.
    try:
        with stage("calibrate+convert" if precision == INT8 else "convert"), \
                warnings.catch_warnings():
            # int8 calibration runs TF's own deprecated tf.lite.Interpreter internally.
            warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
            data = converter.convert()
    except Exception as exc:  # the converter raises ConverterError and assorted others
        raise UnsupportedExportError(
            f"TFLite conversion ({precision}) failed: {first_line(exc)}") from None
    convert_seconds = time.perf_counter() - start
    target = Path(target)
    target.write_bytes(data)
    first = {IMAGE_INPUT: np.zeros(manifest.image_shape, np.float32),
             **{s.input_name: s.initial_value() for s in manifest.states}}
    with stage("validate"):
        verify_tflite(target, manifest, first)
        facts = graph_facts(data, precision)
    details = {"convert_seconds": round(convert_seconds, 3), "precision": precision,
               "file_bytes": len(data), **facts,
               "gpu_delegate": check_gpu_delegate_compat(target).to_record()}
    if precision == INT8:
        details.update(int8_float_io=int8_float_io, calibration=calibration.key(),
                       calibration_samples=calibrated)
    return details


class TFLiteExporter(Exporter):
    """TFLite for LiteRT: the TFLite converter of the traced step function, at the format's
    precision."""

    family = TFLITE

    def key_parts(self, spec: FormatSpec, options: ExportOptions) -> dict:
        if spec.calibrated:
            return {"int8_float_io": options.int8_float_io, "calibration": options.calibration.key()}
        return {}

    def optimizations(self, spec: FormatSpec) -> tuple[str, ...]:
        # Both avoid ops XNNPACK has no int8 kernel for; at other precisions it delegates them.
        return INT8_OPTIMIZATIONS if spec.precision == INT8 else ()

    def build(self, job: BuildJob) -> dict:
        return export_tflite(job.model, job.manifest, job.frames, job.target, job.spec.precision,
                             calibration=job.options.calibration,
                             int8_float_io=job.options.int8_float_io)
