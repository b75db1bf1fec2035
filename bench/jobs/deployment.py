"""A deployment: the one thing a cell, an export and `movibench eval` open, resolved once.

Model config, weights, format (hence precision and runtime), threads, frames per call and
where the artifact comes from are fixed together when a matrix is planned (bench.matrix.run)
or an eval starts, then carried as they are: the cell worker, the scenarios and the results
row read them off the `Deployment` instead of working them out again. Frames per call are
derived here alone (`fixed_frames`), so a deployment means the same thing everywhere.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import MovibenchError
from core.formats import FormatSpec, get_format
from core.manifest import StateManifest
from core.zoo import ModelConfig
from runtimes.base import Session

if TYPE_CHECKING:
    from bench.evaluation.protocols import Protocol

# The artifact source of movibench's own deployments (results column artifact_source).
OWN_SOURCE = "movibench"


def fixed_frames(causal: bool, protocol: Protocol | None = None, *,
                 clip_frames: int | None = None, video_frames: int | None = None) -> int | None:
    """Frames one call of an exported artifact takes; None where a base model's is unknown.

    Causal models take 1 (they stream, carrying states). A base model takes one fixed clip
    length L: `clip_frames` when given (a memory sweep's clip, a latency cell's L), else the
    multi-clip protocol's subclip length, else — for full-clip — the videos' fixed length.
    """
    # Imported here, not with this module: a cell worker reads its job (this module) before
    # it imports the runtime's engine, and every module imported before the engine moves
    # where the engine's memory lands (TF's load and peak RSS shift by tens of MB).
    from bench.evaluation.protocols import FULL_CLIP, MULTI_CLIP

    if causal:
        return 1
    if clip_frames is not None:
        return clip_frames
    if protocol is not None and protocol.kind == MULTI_CLIP:
        return protocol.clip_frames
    if protocol is not None and protocol.kind == FULL_CLIP:
        return video_frames
    return None


def frames_per_call(causal: bool, protocol: Protocol | None = None, *,
                    clip_frames: int | None = None, video_frames: int | None = None) -> int:
    """`fixed_frames`, for a deployment that cannot run without one.

    Raises MovibenchError when a base model's length cannot be known.
    """
    frames = fixed_frames(causal, protocol, clip_frames=clip_frames, video_frames=video_frames)
    if frames is None:
        raise MovibenchError(
            f"a base model's {protocol or 'clip'} on an exported format needs one fixed clip "
            "length: videos of one fixed length (synthetic data), multi-clip, or --clip-frames L")
    return frames


@dataclass(frozen=True)
class Deployment:
    """One model in one format on one runtime, as it is opened and recorded.

    `checkpoint` is the weights file ('' = random init); `frames_per_call` the artifact's
    fixed T (None for the TF reference where it takes any T); `source` an [[artifacts]]
    entry's '<recipe or file>:<name>' ('' for movibench's own export or the TF reference) and
    `source_path` where such a file lies.
    """

    config: ModelConfig
    format: str
    checkpoint: str = ""
    threads: int | None = None
    frames_per_call: int | None = None
    source: str = ""
    source_path: str = ""

    @property
    def spec(self) -> FormatSpec:
        return get_format(self.format)

    @property
    def precision(self) -> str:
        return self.spec.precision

    @property
    def runtime(self) -> str:
        return self.spec.runtime

    @property
    def artifact_source(self) -> str:
        """Where the model comes from, as the results column `artifact_source` says it."""
        return self.source or OWN_SOURCE

    @property
    def artifact_key(self) -> tuple:
        """What makes two deployments share one artifact (threads do not)."""
        return (json.dumps(self.config.to_dict(), sort_keys=True), self.checkpoint, self.format,
                self.frames_per_call, self.source)

    def call_frames(self, manifest: StateManifest) -> int:
        """Frames one call of the opened session takes: the artifact's fixed T, else this
        deployment's (the TF reference takes any T), else one frame."""
        return manifest.frames_per_call or self.frames_per_call or 1

    def to_dict(self) -> dict:
        return {**asdict(self), "config": self.config.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> Deployment:
        return cls(**{**data, "config": ModelConfig.from_dict(data["config"])})


def open_deployment(deployment: Deployment, artifact: str | Path | None = None, *,
                    export_options=None) -> Session:
    """Open `deployment` with `deployment.threads` intra-op threads, through the runtime
    registry (runtimes.loader.open_model) whatever its format: `artifact` when given; an
    exported format without one is exported first (through the artifact cache); the TF
    reference is built from its config and checkpoint.
    """
    from runtimes.loader import open_model

    d = deployment
    if artifact is None and d.spec.exported:
        from converters.export import export_model

        artifact = export_model(d.config, d.format, checkpoint=d.checkpoint or None,
                                frames_per_call=d.frames_per_call, options=export_options).path
    return open_model(d.format, d.config, checkpoint=d.checkpoint or None, artifact=artifact,
                      threads=d.threads)
