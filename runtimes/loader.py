"""Open any exported artifact as a Session: read its manifest, import only its own engine.

The format named in the manifest picks the runtime (runtimes.registry), so a
deployment box with only onnxruntime installed can open an ONNX artifact without TensorFlow.
A `.tflite` file without a manifest (e.g. an official MoViNet stream binary) gets one read off
its own signature by the LiteRT runtime; a bare `.onnx` file one read off its graph's inputs
and outputs (runtimes.onnx_file).
"""

from __future__ import annotations

import importlib
from pathlib import Path

from core.errors import ArtifactError, MissingDependencyError
from core.formats import get_format
from core.manifest import StateManifest, manifest_path_for
from core.zoo import ModelConfig
from runtimes.base import Session
from runtimes.registry import RUNTIME_SESSIONS


def load_manifest(artifact: str | Path) -> StateManifest:
    """The manifest beside `artifact`, or one read off a bare `.tflite` or `.onnx` file's
    signature."""
    path = Path(artifact)
    if not path.exists():
        raise ArtifactError(f"artifact not found: {path}")
    manifest_path = manifest_path_for(path)
    if manifest_path.exists():
        return StateManifest.load(manifest_path)
    if path.suffix == ".tflite":
        from runtimes.litert import manifest_from_tflite

        return manifest_from_tflite(path)
    if path.suffix == ".onnx":
        from runtimes.onnx_file import manifest_from_onnx

        return manifest_from_onnx(path)
    raise ArtifactError(f"no state manifest for {path} (expected {manifest_path.name} beside it)")


def session_class(runtime: str) -> type[Session]:
    """The Session class of `runtime`, importing its module (and engine) only now."""
    target = RUNTIME_SESSIONS.get(runtime)
    if target is None:
        raise ArtifactError(f"no runtime named {runtime!r}; known: {', '.join(RUNTIME_SESSIONS)}")
    module_name, class_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise MissingDependencyError(f"runtime {runtime!r} cannot be imported here: {exc}") from None
    return getattr(module, class_name)


def open_session(artifact: str | Path, *, threads: int | None = None, **options) -> Session:
    """Load `artifact` with the runtime its manifest's format names.

    Args:
        artifact: path of an exported file (.onnx, .tflite, .engine) with its manifest beside it.
        threads: intra-op threads for the engine (None: the engine's default).
        **options: runtime-specific knobs (e.g. ONNX Runtime `providers`, `io_binding`).

    Raises:
        ArtifactError for a missing/corrupt artifact, a manifest that does not match it or one
        naming the TensorFlow reference (which has no artifact); MissingDependencyError when
        the runtime's engine is not installed. `Session.open` makes these checks.
    """
    manifest = load_manifest(artifact)
    runtime = get_format(manifest.format).runtime
    return session_class(runtime).open(Path(artifact), manifest, threads=threads, **options)


def open_model(fmt: str, config: ModelConfig, *, checkpoint: str | Path | None = None,
               artifact: str | Path | None = None, threads: int | None = None) -> Session:
    """Open model `config` deployed in format `fmt`, the one way for every format: its
    `artifact` when there is one (`open_session`), else the model built from `config` and
    `checkpoint` by the runtime of `fmt` (`Session.from_config`: the TensorFlow reference;
    the runtime of an exported format refuses, an ArtifactError)."""
    if artifact is not None:
        return open_session(artifact, threads=threads)
    return session_class(get_format(fmt).runtime).from_config(config, checkpoint,
                                                              threads=threads)
