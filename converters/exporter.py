"""The one interface every format family's exporter implements, and the registry of them.

`converters.export.export_model` is the generic path (cache lookup, build slot, manifest,
Artifact); what differs by family is asked of its exporter: what of the ExportOptions decides
the artifact's bytes, which artifact it is made from, what it refuses and which graph
optimizations it can carry, and how it writes the file. A new engine is one exporter here,
one runtime in runtimes.registry and its formats in core.formats.

The registry names each exporter's class by module path, imported on first use: exporter
modules import their converters (TensorFlow, tf2onnx, TensorRT) only inside `build`, so asking
an exporter for a cache key or a refusal stays as cheap as importing this module.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from core.formats import ONNX, OPENVINO, TENSORRT, TFLITE, FormatSpec
from core.manifest import StateManifest
from core.zoo import ModelConfig

if TYPE_CHECKING:
    from converters.export import Artifact, ExportOptions

EXPORTERS: dict[str, str] = {
    ONNX: "converters.export_onnx:OnnxExporter",
    OPENVINO: "converters.export_openvino:OpenVINOExporter",
    TFLITE: "converters.export_tflite:TFLiteExporter",
    TENSORRT: "converters.export_tensorrt:TensorRTExporter",
}


@dataclass(frozen=True)
class SourceExport:
    """The export an artifact is made from: its format and the options it is exported with."""

    format: str
    options: ExportOptions


@dataclass(frozen=True)
class BuildJob:
    """What an exporter's `build` is given: the artifact to write and what it is made from.

    An exporter without a source gets the convertible Keras `model` (built with the job's
    optimizations) and its reference manifest; one with a source gets that `source` artifact
    and its manifest.
    """

    spec: FormatSpec
    frames: int | None
    options: ExportOptions
    target: Path
    manifest: StateManifest
    optimizations: tuple[str, ...]
    model: object | None = None
    source: Artifact | None = None


class Exporter(ABC):
    """How the formats of one family are built."""

    family: ClassVar[str]
    # Whether the artifact can leave T symbolic (ExportOptions.dynamic_frames).
    dynamic_frames: ClassVar[bool] = False
    # How the support table says an artifact of this family is made, after the route's note.
    support_note: ClassVar[str] = ""

    @abstractmethod
    def key_parts(self, spec: FormatSpec, options: ExportOptions) -> dict:
        """The options that decide the bytes of `spec`'s artifact (part of its cache key)."""

    def source(self, spec: FormatSpec, options: ExportOptions) -> SourceExport | None:
        """The export `spec`'s artifact is made from; None: from the model itself."""
        return None

    def optimizations(self, spec: FormatSpec) -> tuple[str, ...]:
        """The graph optimizations (converters.optimize) an artifact of `spec` can carry."""
        return ()

    def takes_dynamic_frames(self, spec: FormatSpec) -> bool:
        """Whether an artifact of `spec` can leave T symbolic (the family's, by default)."""
        return self.dynamic_frames

    def refusal(self, config: ModelConfig, spec: FormatSpec, options: ExportOptions) -> str | None:
        """Why `config` cannot be exported to `spec` with `options`, in one line; None if it can."""
        if options.dynamic_frames and not self.dynamic_frames:
            return f"dynamic_frames is ONNX-only; {spec.name} needs static shapes"
        return None

    def max_tensor_rank(self, spec: FormatSpec) -> int:
        """The highest tensor rank in `spec`'s graphs: 5 for Model Garden's layout, whose image
        [1, T, H, W, 3] and stream states keep a time axis (the LiteRT GPU delegate takes <= 4),
        4 for the single-frame graph (converters.stream4d)."""
        return 4 if spec.four_d else 5

    def prepare(self) -> None:
        """Fail before any build (its source's included) when this machine cannot build one."""

    @abstractmethod
    def build(self, job: BuildJob) -> dict:
        """Write the artifact to `job.target`; return facts about the build (its details)."""


def source_facts(source: Artifact) -> dict:
    """The details that name the ONNX export an artifact was made from."""
    return {"onnx_source": str(source.path), "onnx_key": source.key}


def exporter_for(spec: FormatSpec) -> Exporter:
    """The exporter of `spec`'s family (KeyError for the TensorFlow reference, which has none)."""
    return _exporter(spec.family)


@cache
def _exporter(family: str) -> Exporter:
    module, name = EXPORTERS[family].split(":")
    return getattr(importlib.import_module(module), name)()
