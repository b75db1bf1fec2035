"""export_model: one entry point that turns a ModelConfig into a cached artifact + manifest.

Steps compose (checkpoint → Keras model → traced step function → artifact, or the artifact
another export made) with one cache in front. This is the path every format takes; what
differs by format family is asked of the family's exporter (converters.exporter). A cache hit
reads two small files and imports no TensorFlow.
"""

from __future__ import annotations

import time
from functools import lru_cache
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from converters.cache import (
    EXPORTER_VERSION, ArtifactCache, CacheEntry, cache_key, library_versions, weights_identity,
)
from converters.exporter import BuildJob, Exporter, exporter_for
from core.errors import UnsupportedExportError
from core.formats import FormatSpec, get_export_format
from core.manifest import StateManifest, manifest_path_for
from core.stages import stage
from converters.tensorrt_config import TensorRTBuildConfig
from core.zoo import ModelConfig

@dataclass(frozen=True)
class CalibrationData:
    """Clips [T, H, W, 3] float32 for int8 calibration, with a name that identifies them.

    The name goes into the cache key, so two different clip sources must not share one.
    `source(resolution)` yields the clips; None means `converters.calibration.synthetic_clips`.
    """

    name: str = "synthetic"
    clips: int = 8
    frames: int = 16
    seed: int = 0
    source: Callable[[int], Iterable[np.ndarray]] | None = field(default=None, compare=False)

    def iter_clips(self, resolution: int) -> Iterable[np.ndarray]:
        if self.source is not None:
            return self.source(resolution)
        from converters.calibration import synthetic_clips

        return synthetic_clips(self.clips, self.frames, resolution, self.seed)

    def key(self) -> dict:
        return {"name": self.name, "clips": self.clips, "frames": self.frames, "seed": self.seed}


@dataclass(frozen=True)
class ExportOptions:
    """Knobs that change an artifact; only those relevant to a format enter its cache key."""

    opset: int = 17
    simplify: bool = False
    # ONNX only: leave T symbolic so one artifact takes 1 frame or a whole clip.
    dynamic_frames: bool = False
    # int8: keep image, logits and states float at the boundary (quantize inside the graph).
    # Quantized state I/O would add a rounding step to every carried state on every frame.
    int8_float_io: bool = True
    calibration: CalibrationData = CalibrationData()
    seed: int = 0
    tensorrt: TensorRTBuildConfig = TensorRTBuildConfig()

    def key(self, spec: FormatSpec) -> dict:
        """The options that decide this format's bytes."""
        return exporter_for(spec).key_parts(spec, self)


@dataclass
class Artifact:
    """An exported model file, its state manifest, and where it came from."""

    path: Path
    manifest: StateManifest
    format: str
    cached: bool
    build_seconds: float
    size_bytes: int
    key: str = ""
    # Seconds this call took (a cache hit's lookup, or the build itself).
    elapsed_seconds: float = 0.0
    details: dict = field(default_factory=dict)

    @property
    def manifest_path(self) -> Path:
        return manifest_path_for(self.path)

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(path=str(self.path), manifest=str(self.manifest_path))
        return data


def resolve_frames(config: ModelConfig, spec: FormatSpec, frames_per_call: int | None,
                   options: ExportOptions) -> int | None:
    """The static T the artifact takes (None: any T), or UnsupportedExportError saying why not."""
    if frames_per_call is not None and frames_per_call < 1:
        raise UnsupportedExportError(f"frames_per_call must be >= 1, got {frames_per_call}")
    refusal = exporter_for(spec).refusal(config, spec, options)
    if refusal is None and spec.four_d:
        from converters.stream4d import refusal as four_d_refusal

        refusal = four_d_refusal(config, frames_per_call, options.dynamic_frames)
    if refusal:
        raise UnsupportedExportError(refusal)
    if options.dynamic_frames:
        if not config.causal:
            raise UnsupportedExportError("dynamic_frames applies to causal (stream/mobile) variants")
        return None
    if not config.causal and frames_per_call is None:
        raise UnsupportedExportError(
            f"variant {config.variant!r} is a clip model: pass its clip length L as "
            "frames_per_call (--clip-frames)")
    return frames_per_call or 1


def artifact_filename(config: ModelConfig, spec: FormatSpec, frames: int | None) -> str:
    t = "tdyn" if frames is None else f"t{frames}"
    return (f"{config.model_id}-{config.variant}-{config.resolution}px-{config.num_classes}c-"
            f"{t}-{spec.name}{spec.extension}")


def artifact_key(config: ModelConfig, spec: FormatSpec, checkpoint: str | Path | None,
                 frames: int | None, options: ExportOptions,
                 versions: dict[str, str]) -> tuple[str, str]:
    """The cache key and file name of an artifact: everything that decides its bytes."""
    parts = {
        "exporter_version": EXPORTER_VERSION,
        "model": config.to_dict(),
        "weights": weights_identity(checkpoint, options.seed),
        "format": spec.name,
        "frames_per_call": frames,
        "options": options.key(spec),
        "versions": versions,
    }
    optimizations = applied_optimizations(config, spec, frames)
    if optimizations:  # absent otherwise, so the keys of plain artifacts stay what they were
        parts["optimizations"] = list(optimizations)
    if spec.four_d:
        from converters.stream4d import GRAPH

        parts["graph"] = GRAPH
    return cache_key(parts), artifact_filename(config, spec, frames)


def applied_optimizations(config: ModelConfig, spec: FormatSpec,
                          frames: int | None = 1) -> tuple[str, ...]:
    """The graph optimizations an export to `spec` of `frames` frames per call applies: those
    of converters.optimize that fit the model, for an optimized format ('+opt'); none otherwise.

    Raises UnsupportedExportError for an optimized format none of whose optimizations fits
    the model (its artifact would be the plain format's under another name).
    """
    if not spec.optimized:
        return ()
    from converters.optimize import applicable, describe

    names = applicable(config, spec, frames)
    if not names and not spec.four_d:  # a 4-D graph differs from the plain one in any case
        per_call = "any number of" if frames is None else str(frames)
        raise UnsupportedExportError(
            f"{spec.name}: no graph optimization applies to a {config.variant} model with "
            f"{config.activation} activations at {per_call} frame(s) per call ({describe()}); "
            f"export {spec.plain}")
    return names


def is_cached(config: ModelConfig, fmt: str, *, checkpoint: str | Path | None = None,
              frames_per_call: int | None = None, options: ExportOptions | None = None,
              cache: ArtifactCache | None = None) -> bool:
    """True when `export_model` with these arguments would be served from the cache."""
    spec = get_export_format(fmt)
    options = options or ExportOptions()
    config = config.resolved()
    frames = resolve_frames(config, spec, frames_per_call, options)
    key, filename = artifact_key(config, spec, checkpoint, frames, options, library_versions())
    return (cache or ArtifactCache()).lookup(key, filename) is not None


def export_model(config: ModelConfig, fmt: str, *, checkpoint: str | Path | None = None,
                 frames_per_call: int | None = None, options: ExportOptions | None = None,
                 cache: ArtifactCache | None = None) -> Artifact:
    """Export `config` to format `fmt`, serving it from the artifact cache when it is there.

    Args:
        config: the model to export (zoo defaults fill unset fields).
        fmt: a format name from core.formats (e.g. 'onnx', 'tflite-int8').
        checkpoint: tf.train.Checkpoint directory/prefix; None exports seeded random weights.
        frames_per_call: frames per call; defaults to 1 for causal variants; required (= clip
            length L) for the base variant.
        options: ExportOptions (opset, simplify, int8 calibration, TensorRT build config).
        cache: where artifacts live; default $MOVIBENCH_CACHE or ~/.cache/movibench.

    Returns:
        Artifact with its path inside the cache and the manifest written beside it.

    Raises:
        UnknownFormatError, UnsupportedExportError, CheckpointMismatchError,
        MissingDependencyError (TensorRT formats without TensorRT).
    """
    start = time.perf_counter()
    spec = get_export_format(fmt)
    options = options or ExportOptions()
    cache = cache or ArtifactCache()
    config = config.resolved()
    frames = resolve_frames(config, spec, frames_per_call, options)
    versions = library_versions()
    key, filename = artifact_key(config, spec, checkpoint, frames, options, versions)
    hit = cache.lookup(key, filename)
    if hit is not None:
        return serve_entry(hit, spec, key, start)

    exporter = exporter_for(spec)
    exporter.prepare()
    with cache.build_slot(key, filename) as slot:
        if slot.entry is not None:  # built by another process while this one waited
            return serve_entry(slot.entry, spec, key, start)
        target = slot.staging / filename
        details, manifest = _build(exporter, config, spec, checkpoint, frames, options, cache,
                                   target)
        manifest = manifest.with_format(spec.name, spec.precision, frames,
                                        {k: v for k, v in versions.items() if v != "absent"},
                                        applied_optimizations(config, spec, frames))
        manifest.save(manifest_path_for(target))
        build_seconds = time.perf_counter() - start
        entry = slot.commit({
            "key": key, "format": spec.name, "build_seconds": build_seconds, "details": details,
            "model": config.to_dict(), "checkpoint": str(checkpoint) if checkpoint else None})
    if slot.replaced:
        # Said on this build only (the stored record keeps the converter's details).
        details = {**details, "cache_rebuilt": slot.replaced}
    return Artifact(entry.artifact, manifest, spec.name, False, build_seconds,
                    entry.artifact.stat().st_size, key, time.perf_counter() - start, details)


def serve_entry(hit: CacheEntry, spec: FormatSpec, key: str, start: float) -> Artifact:
    """An Artifact for a verified cache entry of format `spec` (`start`: when the call that
    serves it began, by time.perf_counter)."""
    info = hit.build_info
    return Artifact(hit.artifact, StateManifest.load(manifest_path_for(hit.artifact)), spec.name,
                    True, float(info.get("build_seconds", 0.0)), hit.artifact.stat().st_size,
                    key, time.perf_counter() - start, info.get("details", {}))


def build_reference(config: ModelConfig, checkpoint: str | Path | None, seed: int,
                    frames: int | None, optimizations: tuple[str, ...] = ()):
    """The Keras model (restoring `checkpoint`, built under `optimizations`' layer patches)
    and its reference manifest for `frames` per call.

    One process exporting a model to several formats or clip lengths builds it once: the
    build (TensorFlow's import, Model Garden's layers, the checkpoint) is a third of a small
    export, and no exporter changes the model it converts.
    """
    with stage("build"):
        from core.build import make_manifest

        model, ckpt_hash = _built(config, str(checkpoint) if checkpoint else "", seed,
                                  optimizations)
        return model, make_manifest(model, config, ckpt_hash, frames_per_call=frames)


@lru_cache(maxsize=2)
def _built(config: ModelConfig, checkpoint: str, seed: int, optimizations: tuple[str, ...]):
    from converters.optimize import optimized_build
    from core.build import build_model, load_checkpoint

    with optimized_build(optimizations):
        model = build_model(config, seed=seed)
    return model, load_checkpoint(model, checkpoint) if checkpoint else ""


def _build(exporter: Exporter, config: ModelConfig, spec: FormatSpec, checkpoint,
           frames: int | None, options: ExportOptions, cache: ArtifactCache,
           target: Path) -> tuple[dict, StateManifest]:
    """Write `spec`'s artifact to `target` with `exporter`: from its source export (built or
    served by the cache) when it has one, else from the model. Returns details and manifest."""
    optimizations = applied_optimizations(config, spec, frames)
    source = exporter.source(spec, options)
    if source is not None:
        made = export_model(config, source.format, checkpoint=checkpoint, frames_per_call=frames,
                            options=source.options, cache=cache)
        job = BuildJob(spec, frames, options, target, made.manifest, optimizations, source=made)
        return exporter.build(job), made.manifest
    from converters.optimize import optimized_build
    from converters.rewrite3d import exportable

    model, manifest = build_reference(config, checkpoint, options.seed, frames, optimizations)
    # The optimizations patch how layers are built: the reference's and any convertible twin's.
    with optimized_build(optimizations):
        # 3D conv types trace a convertible twin of the same weights (converters/rewrite3d.py).
        with exportable(model, config) as graph:
            traced = graph.model
            if spec.four_d:
                from converters.stream4d import float_counts, four_d_manifest, single_frame_graph

                traced = single_frame_graph(graph.model, manifest)
                manifest = four_d_manifest(manifest, float_counts(spec))
            details = exporter.build(BuildJob(spec, frames, options, target, manifest,
                                              optimizations, model=traced))
    return {**details, **graph.details}, manifest
