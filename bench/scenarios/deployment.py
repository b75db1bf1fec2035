"""One way to open the Session a job measures: the TF reference or an exported artifact.

Both the matrix's cell worker and `movibench eval` open sessions through `open_deployment`, and
both ask `frames_per_call` what an exported artifact must take, so a deployment means the same
thing everywhere.
"""

from __future__ import annotations

from pathlib import Path

from bench.evaluation.protocols import FULL_CLIP, MULTI_CLIP, Protocol
from core.errors import MovibenchError
from core.formats import get_format
from core.zoo import ModelConfig
from runtimes.base import Session


def frames_per_call(causal: bool, protocol: Protocol | None = None, *,
                    clip_frames: int | None = None, video_frames: int | None = None) -> int:
    """Frames one call of an exported artifact takes.

    Causal models take 1 (they stream, carrying states). A base model takes one fixed clip
    length L: `clip_frames` when given (a memory sweep's clip, a latency cell's L), else the
    protocol's subclip length, else — for full-clip — the videos' fixed length.

    Raises MovibenchError when a base model's length cannot be known.
    """
    if causal:
        return 1
    if clip_frames is not None:
        return clip_frames
    if protocol is not None and protocol.kind == MULTI_CLIP:
        return protocol.clip_frames
    if protocol is not None and protocol.kind == FULL_CLIP and video_frames is not None:
        return video_frames
    raise MovibenchError(
        f"a base model's {protocol or 'clip'} on an exported format needs one fixed clip "
        "length: videos of one fixed length (synthetic data), multi-clip, or --clip-frames L")


def open_deployment(config: ModelConfig, fmt: str, *, checkpoint: str | Path | None = None,
                    artifact: str | Path | None = None, frames: int | None = None,
                    threads: int | None = None, export_options=None) -> Session:
    """Open `config` in format `fmt` with `threads` intra-op threads.

    The TensorFlow reference is built from the config and checkpoint; any other format opens
    `artifact` when given, else exports it first (through the artifact cache) for `frames`
    frames per call.
    """
    spec = get_format(fmt)
    if not spec.exported:
        from runtimes.tensorflow import TensorFlowSession

        return TensorFlowSession.from_config(config, checkpoint or None, threads=threads)
    if artifact is None:
        from converters.export import export_model

        artifact = export_model(config, spec.name, checkpoint=checkpoint or None,
                                frames_per_call=frames, options=export_options).path
    from runtimes.loader import open_session

    return open_session(artifact, threads=threads)
