"""Artifacts movibench did not convert: a `.tflite` or `.onnx` file made elsewhere, or the file
Model Garden's own recipe builds (converters.official_recipe), as entries of the artifact cache.

Either way the file is copied (or built) into a cache entry with a state manifest beside it that
is read off the file's own signature (runtimes.loader.load_manifest: LiteRT's signature of a
`.tflite`, the graph of an `.onnx`), after the signature was checked against what the matrix
declares the file to be (model, variant, resolution, classes, frames per call, precision). From
then on runtimes open it like any export. A user's file is keyed by its content and the
declaration; a recipe build by the weights' content, the model config, the recipe and the
converter versions, so a rerun neither copies nor builds again.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from converters.cache import (
    EXPORTER_VERSION, ArtifactCache, cache_key, library_versions, sha256_file, weights_identity,
)
from core.errors import ArtifactError, UnsupportedExportError
from converters.export import Artifact, serve_entry
from converters.gpu_delegate_compat import check_gpu_delegate_compat
from core.formats import ONNX, OPENVINO, TFLITE, get_export_format, plain_format
from core.manifest import StateManifest, StateSpec, manifest_path_for, state_name_from_tensor
from core.zoo import ModelConfig

FILE = "file"  # the source kind of a user's file
MODEL_GARDEN_TFLITE = "model-garden-tflite"
# Recipe name -> the format of the file it builds.
RECIPES = {MODEL_GARDEN_TFLITE: plain_format(TFLITE).name}
# File suffix -> the format families that run such a file, and the format it is by default.
SUFFIXES = {".tflite": ((TFLITE,), plain_format(TFLITE).name),
            ".onnx": ((ONNX, OPENVINO), plain_format(ONNX).name)}
# The seed of movibench's random-init weights (ExportOptions.seed, the TF reference's).
RANDOM_INIT_SEED = 0


def source_name(kind: str, name: str) -> str:
    """How rows name a foreign artifact: '<kind>:<name>' (kind 'file' or a recipe name)."""
    return f"{kind}:{name}"


def parse_source(source: str) -> tuple[str, str]:
    """'<kind>:<name>' -> (kind, name); ArtifactError for a kind that is neither 'file' nor a
    recipe."""
    kind, sep, name = source.partition(":")
    if not sep or not name or (kind != FILE and kind not in RECIPES):
        raise ArtifactError(f"unknown artifact source {source!r}: expected '{FILE}:<name>' or "
                            f"'<recipe>:<name>' with a recipe of {', '.join(RECIPES)}")
    return kind, name


def default_format(path: str | Path) -> str:
    """The format a file of this suffix is unless declared otherwise; ArtifactError for a suffix
    no runtime here reads."""
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise ArtifactError(f"{Path(path).name}: a bring-your-own artifact is a "
                            f"{' or '.join(SUFFIXES)} file, not {suffix or 'a file without suffix'}")
    return SUFFIXES[suffix][1]


def check_format_fits(path: str | Path, fmt: str) -> None:
    """ArtifactError unless format `fmt` runs a file of this suffix (and is not one of
    movibench's optimized builds, which a foreign file cannot be)."""
    default_format(path)
    families = SUFFIXES[Path(path).suffix.lower()][0]
    spec = get_export_format(fmt)
    if spec.family not in families:
        raise ArtifactError(f"format {spec.name!r} does not run a {Path(path).suffix} file; "
                            f"formats of the {'/'.join(families)} family do")
    if spec.optimized:
        raise ArtifactError(f"format {spec.name!r} names movibench's optimized build; a foreign "
                            f"file is {spec.plain} or another plain format")


@dataclass(frozen=True)
class ForeignRequest:
    """One foreign artifact as a matrix declares it: where it comes from (`kind`: 'file' or a
    recipe name, and the entry's `name`), what model it is, its format, and the frames per call
    its cells will feed it."""

    kind: str
    name: str
    config: ModelConfig
    format: str
    checkpoint: str | None = None  # recipe: the weights (None: movibench's random init)
    path: str = ""  # file: where it is
    frames: int | None = None

    @classmethod
    def from_source(cls, source: str, config: ModelConfig, fmt: str, *,
                    checkpoint: str | None = None, path: str = "",
                    frames: int | None = None) -> ForeignRequest:
        """The request of a matrix cell's source ('<kind>:<name>', see `parse_source`)."""
        kind, name = parse_source(source)
        return cls(kind, name, config, fmt, checkpoint=checkpoint, path=path, frames=frames)

    @property
    def source(self) -> str:
        return source_name(self.kind, self.name)

    def key(self) -> tuple[str, str]:
        """The cache key and file name of this artifact."""
        config = self.config.resolved()
        parts = {"exporter_version": EXPORTER_VERSION, "foreign": self.kind,
                 "model": config.to_dict(), "format": self.format, "frames_per_call": self.frames}
        if self.kind == FILE:
            path = Path(self.path)
            if not path.is_file():
                raise ArtifactError(f"artifact file not found: {path}")
            parts["file_sha256"] = sha256_file(path)
            return cache_key(parts), path.name
        parts.update(weights=weights_identity(self.checkpoint, RANDOM_INIT_SEED),
                     versions=library_versions())
        spec = get_export_format(self.format)
        return cache_key(parts), (f"{config.model_id}-{config.variant}-{config.resolution}px-"
                                  f"{config.num_classes}c-t1-{self.kind}{spec.extension}")

    def produce(self, target: Path) -> dict:
        """Write the artifact's file to `target`; returns facts about how."""
        if self.kind == FILE:
            shutil.copyfile(self.path, target)
            return {"source_file": str(self.path)}
        from converters.official_recipe import export_official_tflite

        config = self.config.resolved()
        if not config.causal:
            raise UnsupportedExportError(f"recipe {self.kind!r} builds a stream model; "
                                         f"{config.variant} is not causal")
        facts = export_official_tflite(config, self.checkpoint, target, seed=RANDOM_INIT_SEED)
        return {"recipe": self.kind, "flags": facts["flags"], "recipe_s": facts["seconds"]}


def is_foreign_cached(request: ForeignRequest, cache: ArtifactCache | None = None) -> bool:
    """True when `foreign_artifact` would serve `request` from the cache (hashes a file's
    content; imports nothing heavy)."""
    key, filename = request.key()
    return (cache or ArtifactCache()).lookup(key, filename) is not None


def foreign_artifact(request: ForeignRequest, read_manifest: Callable[[Path], StateManifest],
                     cache: ArtifactCache | None = None) -> Artifact:
    """The cache entry of `request`: copied or built once, its signature read and checked
    (`check_declared`), its manifest written beside it.

    `read_manifest` reads a manifest off a bare file's signature; it is the runtimes' reader
    (`runtimes.loader.load_manifest`), passed in because reading a signature takes the file's
    own engine and converters import none.

    Raises ArtifactError for a file that is missing, unreadable or not what the matrix declares
    (naming the first difference); a recipe's own errors as they come.
    """
    start = time.perf_counter()
    cache = cache or ArtifactCache()
    spec = get_export_format(request.format)
    key, filename = request.key()
    hit = cache.lookup(key, filename)
    if hit is not None:
        return serve_entry(hit, spec, key, start)
    with cache.build_slot(key, filename) as slot:
        if slot.entry is not None:
            return serve_entry(slot.entry, spec, key, start)
        target = slot.staging / filename
        details = request.produce(target)
        # Nothing lies beside the staged copy yet: the manifest is read off its signature.
        manifest = check_declared(read_manifest(target), request)
        manifest.save(manifest_path_for(target))
        if spec.family == TFLITE:
            details["gpu_delegate"] = check_gpu_delegate_compat(target).to_record()
        build_seconds = time.perf_counter() - start
        entry = slot.commit({"key": key, "format": spec.name, "build_seconds": build_seconds,
                             "details": details, "model": request.config.resolved().to_dict(),
                             "source": request.source,
                             "checkpoint": str(request.checkpoint) if request.checkpoint else None})
    return Artifact(entry.artifact, manifest, spec.name, False, build_seconds,
                    entry.artifact.stat().st_size, key, time.perf_counter() - start, details)


def check_declared(found: StateManifest, request: ForeignRequest) -> StateManifest:
    """The manifest to keep beside the file: `found` (read off its signature) once it agrees
    with what `request` declares, under the declared model and format.

    Checks the variant (states or none), resolution, classes, frames per call, precision, and
    for a stream model its states against those movibench's build of the declared model has
    (names, shapes, dtypes: this is what tells one MoViNet from another). Raises ArtifactError
    naming the first difference.
    """
    config = request.config.resolved()
    spec = get_export_format(request.format)
    what = f"{config.model_id}/{config.variant}"
    if config.causal != bool(found.states):
        has = "no state inputs (a clip model)" if not found.states else \
            f"{len(found.states)} state inputs (a stream model)"
        raise ArtifactError(f"the file has {has}, but {what} is "
                            f"{'causal' if config.causal else 'not causal'}")
    if found.resolution != config.resolution:
        raise ArtifactError(f"the file takes {found.resolution} px frames, the model entry "
                            f"{what} is at {config.resolution} px")
    if found.num_classes != config.num_classes:
        raise ArtifactError(f"the file has {found.num_classes} classes, the model entry {what} "
                            f"has {config.num_classes}")
    if found.frames_per_call is not None and request.frames is not None \
            and found.frames_per_call != request.frames:
        taken = found.frames_per_call
        raise ArtifactError(f"the file takes {taken} frame{'s' if taken > 1 else ''} per call, "
                            f"these cells give it {request.frames}")
    if found.precision != spec.precision:
        raise ArtifactError(f"the file is {found.format} ({found.precision}), the config "
                            f"declares {spec.name} ({spec.precision})")
    if found.states:
        _check_states(found, expected_states(config), what, config.resolution)
    return replace(found, model_id=config.model_id, variant=config.variant,
                   model_config=config.to_dict(), format=spec.name, precision=spec.precision,
                   source=f"{request.source}: {found.source}")


def expected_states(config: ModelConfig) -> list[StateSpec]:
    """The stream states of `config` (names, shapes, dtypes), as movibench's build has them.

    Read from Model Garden's own table of a backbone's states, the function its `init_states`
    calls, without building the model: the build costs about a minute for t0 on a busy 2-core
    machine, this only the TensorFlow import. The function reads nothing of the model but its
    conv and SE types, so it is given those alone.
    """
    from types import SimpleNamespace

    from official.projects.movinet.modeling import movinet

    config = config.resolved()
    res = config.resolution
    shapes = movinet.Movinet._get_initial_state_shapes(
        SimpleNamespace(_conv_type=config.conv_type, _se_type=config.se_type),
        movinet.BLOCK_SPECS[config.model_id], [1, 1, res, res, 3],
        use_positional_encoding=config.use_positional_encoding)
    # Movinet._get_state_dtype: frame counters are int32, the rest the model's float32.
    return sorted((StateSpec(state_name_from_tensor(name), tuple(int(d) for d in shape),
                             "int32" if "frame_count" in name else "float32")
                   for name, shape in shapes.items()), key=lambda s: s.name)


def _check_states(found: StateManifest, expected, what: str, resolution: int) -> None:
    have = {s.name: s for s in found.states}
    want = {s.name: s for s in expected}
    model = f"{what} at {resolution} px"
    if set(have) != set(want):
        odd = sorted(set(have) - set(want)) or sorted(set(want) - set(have))
        side = "the file has" if set(have) - set(want) else "the file lacks"
        raise ArtifactError(f"the file's {len(have)} states are not the {len(want)} of {model}: "
                            f"{side} {odd[0]!r}")
    for name, spec in want.items():
        got = have[name]
        if tuple(got.shape) != tuple(spec.shape) or got.dtype != spec.dtype:
            raise ArtifactError(f"state {name!r} is {list(got.shape)} {got.dtype} in the file, "
                                f"{list(spec.shape)} {spec.dtype} in {model}")

