"""A content-addressed artifact cache: same inputs → same key → the artifact built once.

The key hashes everything that decides an artifact's bytes: the resolved model config, the
weights' identity, format, frames per step, export options and converter versions. Looking a
key up imports no TensorFlow: the weights' identity is the checkpoint files' hash (or
'random-init:seed=N'), not a hash of built weights — building a0 just to hash it costs ~13 s
(5.6 s TF import + 7.6 s build, measured), which would defeat a cache meant to answer in < 5 s.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from converters.errors import CheckpointMismatchError

# Bump when an exporter changes what it writes, so stale artifacts stop matching.
EXPORTER_VERSION = 1
CACHE_ENV = "MOVIBENCH_CACHE"
BUILD_INFO = "build.json"

# Every distribution whose version can change an artifact's bytes or numerics.
KEY_DISTRIBUTIONS = ("tensorflow", "tf-keras", "tf-models-official", "tf2onnx", "onnx",
                     "onnxslim", "ai-edge-litert", "tensorrt")


def default_cache_dir() -> Path:
    """$MOVIBENCH_CACHE, else ~/.cache/movibench."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "movibench"


def library_versions(names: tuple[str, ...] = KEY_DISTRIBUTIONS) -> dict[str, str]:
    """Installed versions by distribution metadata (no imports); 'absent' when not installed."""
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "absent"
    return found


def resolve_checkpoint_prefix(path: str | Path) -> Path:
    """Checkpoint directory or prefix → prefix, reading the 'checkpoint' state file as TF does."""
    path = Path(path)
    if path.is_dir():
        state = path / "checkpoint"
        if state.exists():
            for line in state.read_text().splitlines():
                if line.startswith("model_checkpoint_path:"):
                    name = line.split(":", 1)[1].strip().strip('"')
                    return Path(name) if Path(name).is_absolute() else path / name
        indexes = sorted(path.glob("*.index"))
        if len(indexes) != 1:
            raise CheckpointMismatchError(
                f"no checkpoint found in directory {path}" if not indexes else
                f"{len(indexes)} checkpoints in {path} and no 'checkpoint' file: pass a prefix")
        return indexes[0].with_suffix("")
    if not Path(str(path) + ".index").exists():
        raise CheckpointMismatchError(f"checkpoint not found: {path} (no {path.name}.index)")
    return path


def checkpoint_files_sha256(path: str | Path) -> str:
    """SHA-256 over a checkpoint's index and data files (the manifest's checkpoint_sha256)."""
    prefix = resolve_checkpoint_prefix(path)
    digest = hashlib.sha256()
    for file in sorted(prefix.parent.glob(prefix.name + ".*")):
        digest.update(file.name.encode())
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def weights_identity(checkpoint: str | Path | None, seed: int) -> str:
    """What the weights are, cheaply: 'checkpoint:<sha256>' or 'random-init:seed=<n>'."""
    if checkpoint is None:
        return f"random-init:seed={seed}"
    return "checkpoint:" + checkpoint_files_sha256(checkpoint)


def cache_key(parts: dict) -> str:
    """SHA-256 of the canonical JSON of `parts` (sorted keys, no whitespace)."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    """A finished cache entry: the artifact file and the build record beside it."""

    key: str
    directory: Path
    artifact: Path

    @property
    def build_info(self) -> dict:
        path = self.directory / BUILD_INFO
        return json.loads(path.read_text()) if path.exists() else {}


class ArtifactCache:
    """Directory layout: <root>/<key[:2]>/<key>/{<artifact>, <artifact>.manifest.json, build.json}.

    Entries appear atomically: a build writes into a temporary directory under the root (same
    filesystem) and renames it into place, so a crash or a concurrent builder never leaves a
    half-written entry that a later lookup would trust.
    """

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()

    def entry_dir(self, key: str) -> Path:
        return self.root / key[:2] / key

    def lookup(self, key: str, filename: str) -> CacheEntry | None:
        """The finished entry for `key`, or None. Needs the artifact, its manifest and build.json."""
        from converters.manifest import manifest_path_for

        directory = self.entry_dir(key)
        artifact = directory / filename
        if artifact.exists() and manifest_path_for(artifact).exists() and (directory / BUILD_INFO).exists():
            return CacheEntry(key, directory, artifact)
        return None

    def staging_dir(self) -> Path:
        """A fresh temporary directory on the cache's filesystem for one build."""
        self.root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=".staging-", dir=self.root))

    def commit(self, key: str, staging: Path, filename: str, build_info: dict) -> CacheEntry:
        """Publish a staged build under `key`; if another process won the race, keep theirs."""
        (staging / BUILD_INFO).write_text(json.dumps(build_info, indent=2, default=str) + "\n")
        target = self.entry_dir(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(staging, target)
        except OSError:
            # The target exists: an equal artifact was published first (same key, same inputs).
            shutil.rmtree(staging, ignore_errors=True)
            if self.lookup(key, filename) is None:
                raise
        return CacheEntry(key, target, target / filename)

    def discard(self, staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)
