"""OpenVINO artifacts: the ONNX export itself, which OpenVINO's CPU plugin reads.

The artifact is a copy of the ONNX export's file ('onnx+opt' for 'openvino+opt') under its own
format name, so its manifest (and the runtime loader) pick the OpenVINO runtime. Nothing here
imports OpenVINO.
"""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

from converters.export_onnx import ONNX_GRAPH_OPTIMIZATIONS, graph_key_parts
from converters.exporter import BuildJob, Exporter, SourceExport, source_facts
from core.formats import ONNX, OPENVINO, FormatSpec

if TYPE_CHECKING:
    from converters.export import ExportOptions


class OpenVINOExporter(Exporter):
    """OpenVINO: a copy of the ONNX export of the same suffix ('onnx+opt' for 'openvino+opt')."""

    family = OPENVINO
    support_note = "OpenVINO reads that ONNX export"

    def key_parts(self, spec: FormatSpec, options: ExportOptions) -> dict:
        return graph_key_parts(options)

    def source(self, spec: FormatSpec, options: ExportOptions) -> SourceExport:
        return SourceExport(ONNX + spec.suffix, options)

    def optimizations(self, spec: FormatSpec) -> tuple[str, ...]:
        return ONNX_GRAPH_OPTIMIZATIONS

    def build(self, job: BuildJob) -> dict:
        shutil.copyfile(job.source.path, job.target)
        return source_facts(job.source)
