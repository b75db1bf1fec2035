"""A TensorFlow checkpoint's files: where its prefix is, and what its bytes hash to.

Plain file reads, no TensorFlow: the artifact cache keys weights by this hash without building
the model, and the Model Garden build checks a checkpoint against a manifest with it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from core.errors import CheckpointMismatchError


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
