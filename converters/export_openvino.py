"""OpenVINO artifacts: the ONNX export itself, which OpenVINO's CPU plugin reads.

The artifact is a copy of the ONNX export's file ('onnx+opt' for 'openvino+opt') under its own
format name, so its manifest (and the runtime loader) pick the OpenVINO runtime. Nothing here
imports OpenVINO: converting would add a second graph to keep equal to the first.
"""

from __future__ import annotations

import shutil

from converters.export_onnx import ONNX_GRAPH_OPTIMIZATIONS, graph_key_parts
from converters.exporter import BuildJob, Exporter, SourceExport, source_facts
from core.formats import ONNX, OPENVINO, FormatSpec


class OpenVINOExporter(Exporter):
    """OpenVINO: the ONNX export of the same name's suffix, copied."""

    family = OPENVINO
    support_note = "OpenVINO reads that ONNX export"

    def key_parts(self, spec: FormatSpec, options) -> dict:
        return graph_key_parts(options)

    def source(self, spec: FormatSpec, options) -> SourceExport:
        return SourceExport(ONNX + spec.suffix, options)

    def optimizations(self, spec: FormatSpec) -> tuple[str, ...]:
        return ONNX_GRAPH_OPTIMIZATIONS

    def build(self, job: BuildJob) -> dict:
        shutil.copyfile(job.source.path, job.target)
        return source_facts(job.source)
