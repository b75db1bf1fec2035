"""OpenVINO artifacts: the ONNX export itself, which OpenVINO's CPU plugin reads, or its int8.

An fp32 artifact is a copy of the ONNX export's file ('onnx+opt' for 'openvino+opt') under its
own format name, so its manifest (and the runtime loader) pick the OpenVINO runtime. An int8
artifact ('openvino-int8+opt') is that file quantized by NNCF, OpenVINO's own post-training
quantizer, with its ONNX backend: a QDQ ONNX file that the CPU plugin turns into int8 kernels,
one file like every other OpenVINO artifact. Only the int8 build imports NNCF.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from converters.export_onnx import (
    ONNX_GRAPH_OPTIMIZATIONS, graph_key_parts, op_histogram, quieted)
from converters.exporter import BuildJob, Exporter, SourceExport, source_facts
from core.errors import UnsupportedExportError, first_line
from core.formats import ONNX, OPENVINO, FormatSpec
from core.manifest import StateManifest
from core.stages import stage

if TYPE_CHECKING:
    from converters.export import CalibrationData, ExportOptions

# How quantize_nncf quantizes, in the cache key: a change of settings is another artifact.
NNCF_QUANTIZER = "nncf.quantize (ONNX backend, performance preset, every calibration step)"


def quantize_nncf(source: Path, target: Path, manifest: StateManifest,
                  calibration: CalibrationData) -> dict:
    """int8 of the fp32 ONNX file `source` by NNCF, written to `target` as QDQ ONNX.

    Ranges come from every step's inputs as `calibration`'s clips stream through the fp32 model
    (ONNX Runtime), states included, like every other int8 artifact here; the graph's inputs
    and outputs stay float, so the state contract is the fp32 artifact's. NNCF's defaults for
    a CPU target stay: symmetric int8 per-channel weights, its overflow fix (7-bit weights in
    the first layers) and fast bias correction.

    Not accurate on every CPU: on an AVX2 CPU without VNNI, the T0 and A0 stream demos fell to
    chance top-1 in OpenVINO, with these defaults and with the overflow fix on every layer
    (the mixed preset's file OpenVINO refused), and OpenVINO ran ONNX Runtime's own accurate QDQ
    file (`onnx-int8`) to chance as well; so the loss is in OpenVINO's int8 execution of the
    stream graph on that CPU, not only in NNCF's ranges (results/a0-4d/experiments/). Check a
    deployment's accuracy cells before trusting it.
    """
    import nncf
    import onnx

    from converters.calibration import StreamedFeeds

    feeds = StreamedFeeds(source, manifest, calibration)
    steps = calibration.clips * max(1, calibration.frames // (manifest.frames_per_call or 1))
    start = time.perf_counter()
    # NNCF reports its statistics passes with rich progress bars on stdout and INFO lines: the
    # library log's business (stderr, which a run sends to library.log), not the terminal's.
    try:
        with stage("calibrate+quantize"), quieted("nncf", logging.WARNING), \
                contextlib.redirect_stdout(sys.stderr):
            quantized = nncf.quantize(onnx.load(str(source)), nncf.Dataset(feeds),
                                      preset=nncf.QuantizationPreset.PERFORMANCE,
                                      subset_size=steps)
    except (ValueError, RuntimeError, nncf.errors.ValidationError) as exc:
        raise UnsupportedExportError(f"NNCF refused the graph: {first_line(exc)}") from None
    onnx.save(quantized, str(target))
    return {"quantizer": NNCF_QUANTIZER, "calibration_steps": feeds.count,
            "quantize_s": time.perf_counter() - start, "ops": op_histogram(quantized)}


class OpenVINOExporter(Exporter):
    """OpenVINO: a copy of the ONNX export of the same suffix ('onnx+opt' for 'openvino+opt'),
    or NNCF's int8 of it ('openvino-int8+opt')."""

    family = OPENVINO
    support_note = "OpenVINO reads that ONNX export (int8: NNCF's QDQ of it)"

    def key_parts(self, spec: FormatSpec, options: ExportOptions) -> dict:
        key = graph_key_parts(options)
        if spec.calibrated:
            key.update(calibration=options.calibration.key(), quantizer=NNCF_QUANTIZER)
        return key

    def source(self, spec: FormatSpec, options: ExportOptions) -> SourceExport:
        return SourceExport(ONNX + spec.suffix, options)

    def optimizations(self, spec: FormatSpec) -> tuple[str, ...]:
        return ONNX_GRAPH_OPTIMIZATIONS

    def build(self, job: BuildJob) -> dict:
        if job.spec.calibrated:
            details = quantize_nncf(job.source.path, job.target, job.manifest,
                                    job.options.calibration)
        else:
            shutil.copyfile(job.source.path, job.target)
            details = {}
        return {**details, **source_facts(job.source)}
