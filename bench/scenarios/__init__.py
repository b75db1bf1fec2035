"""What a cell measures: one scenario per kind of cell, each a separate measurement.

- `latency`: once per deployment (model, weights, format, runtime, threads, frames per call):
  first call, warm-up, percentiles of timed engine calls, harness overhead.
- `accuracy`: once per deployment and evaluation protocol: top-1/top-5/mean-class accuracy,
  confusion, model time per video from that protocol's own calls.
- `memory`: one clip of N frames, in one call or frame by frame, for peak memory vs clip length.
- `serving`: N camera streams at f fps, open loop, on a pool of workers: tail latency, deadline
  misses and the largest N that holds one frame period.

Every scenario runs in a cell worker process after the same memory tracker took its idle reading
(bench.launchers.worker), which finds it by the cell's kind in bench.scenarios.registry, and
returns a ScenarioResult: columns of bench.results.schema and its raw tables.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from bench.jobs.deployment import OWN_SOURCE
from bench.jobs.job import CellJob
from bench.jobs.result import ScenarioResult
from bench.trackers import CellTrackers
from runtimes.base import Session

LATENCY, ACCURACY, MEMORY, SERVING = "latency", "accuracy", "memory", "serving"

# Memory-sweep modes: the whole clip in one call, or frame by frame with states carried.
FULL_CLIP_MODE, STREAM_MODE = "full-clip", "stream"
SWEEP_MODES = (FULL_CLIP_MODE, STREAM_MODE)


def no_columns(session: Session, job: CellJob) -> Mapping[str, object]:
    """The default `Scenario.after`: nothing to read once the cell's memory is read."""
    return {}


def artifact_frames(session: Session, job: CellJob) -> int | None:
    """The default `Scenario.frames_per_call`: the artifact's fixed T (None: any T)."""
    return session.manifest.frames_per_call


@dataclass(frozen=True)
class Scenario:
    """One kind of cell: `run` measures it on an open session after its idle and load
    readings; `after` reads columns once the last memory reading is taken (so what it costs
    is not the deployment's); `frames_per_call` is what the row's column of that name says
    one call of this cell takes."""

    kind: str
    run: Callable[[Session, CellJob, CellTrackers], ScenarioResult]
    after: Callable[[Session, CellJob], Mapping[str, object]] = no_columns
    frames_per_call: Callable[[Session, CellJob], int | None] = artifact_frames


def deployment_format(fmt, source=None) -> str:
    """A deployment's format in words: the format, and where its artifact came from when that
    is not movibench ('tflite-fp32 [model-garden-tflite:mg]'), so a foreign file of the same
    format is told apart from movibench's own."""
    foreign = isinstance(source, str) and source not in ("", OWN_SOURCE)
    return f"{fmt} [{source}]" if foreign else str(fmt)


def cell_label(model, variant, fmt, threads, kind, protocol=None, clip_frames=None,
               sweep_mode=None, frames_per_call=None, source=None, serving=None) -> str:
    """A cell in words, e.g. 't0/stream onnx t2 latency@1f', 't0/base onnx t2 multi-clip:2x16',
    't0/stream tensorflow t2 stream@256f' (a memory cell), 't0/stream onnx t1 serving
    sessions@30fps w2 j0.5 queue' (`serving`: the settings' label): console, reports and
    compare."""
    if kind == SERVING:
        what = serving
    elif kind == LATENCY:
        what = f"latency@{frames_per_call}f"
    elif kind == MEMORY:
        what = f"{sweep_mode}@{clip_frames}f"
    else:
        what = protocol
    return f"{model}/{variant} {deployment_format(fmt, source)} t{threads} {what}"
