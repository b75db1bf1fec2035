"""The jobs a launcher runs in a worker process: an export, or one cell of a matrix.

A job is built once by the matrix (bench.matrix.run) from a planned cell, crosses to its
worker as JSON (`to_dict`, `job_from_dict`) and is read there by attribute: the worker and
the scenarios never index a dict for a setting. The JSON names its kind under "job" and, for a
cell, its label at the top, which is what an operator (or a test) looking at a live worker's
job file reads first.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import ClassVar

from bench.jobs.deployment import Deployment
from core.errors import MovibenchError

# Serving strategies (bench.scenarios.serving): 'sessions' = a session per stream, its states
# kept in it, the streams' frames served by a pool of worker threads.
SESSIONS_STRATEGY = "sessions"
SERVING_STRATEGIES = (SESSIONS_STRATEGY,)
# What a stream does with frames that arrive while its previous frame is still being served:
# 'queue' serves every frame in order (latency grows under overload); 'latest' drops the
# waiting frames but the newest, as a live camera feed does.
QUEUE_POLICY, LATEST_POLICY = "queue", "latest"
SERVING_POLICIES = (QUEUE_POLICY, LATEST_POLICY)
# Bounds beyond which a serving setting is a typo that would open thousands of sessions or
# measure for hours.
MAX_SERVING_STREAMS = 1024
MAX_SERVING_WORKERS = 256
MAX_SERVING_FPS = 1000.0
MAX_SERVING_DURATION_S = 3600.0


def serving_label(strategy, fps, workers, jitter, policy) -> str:
    """A serving cell's settings in words, from a job's settings or a results row's columns."""
    return f"serving {strategy}@{float(fps):g}fps w{workers} j{float(jitter):g} {policy}"


class ServingError(MovibenchError, ValueError):
    """A serving setting that cannot be measured, naming it."""


@dataclass(frozen=True)
class ServingSettings:
    """How a serving cell loads a deployment (bench.scenarios.serving).

    `fps` frames per second arrive on each stream's own clock; stream starts are spread
    uniformly over `jitter` of a frame period (0: synchronised, 1: over a whole period).
    `streams` are the stream counts measured (empty: search for the largest count that holds
    the deadline, up to `max_streams`); each count is served for `duration_s` seconds of
    arrivals by `workers` threads, under `policy`.
    """

    fps: float = 30.0
    streams: tuple[int, ...] = ()
    max_streams: int = 64
    workers: int = 1
    jitter: float = 0.0
    duration_s: float = 2.0
    policy: str = QUEUE_POLICY
    strategy: str = SESSIONS_STRATEGY

    def __post_init__(self):
        object.__setattr__(self, "streams", tuple(self.streams))

    @property
    def searched(self) -> bool:
        """True when the stream count is searched for rather than listed."""
        return not self.streams

    @property
    def search(self) -> str:
        """How the stream counts measured are chosen, in words (the row's serve_search)."""
        if self.searched:
            return f"doubling from 1 then bisection, up to {self.max_streams}"
        return "listed " + ",".join(map(str, self.streams))

    @property
    def label(self) -> str:
        """The settings in words, e.g. 'serving sessions@30fps w2 j0.5 queue'."""
        return serving_label(self.strategy, self.fps, self.workers, self.jitter, self.policy)

    def check(self) -> ServingSettings:
        """These settings, or a one-line ServingError naming the first bad one."""
        def bad(name, value, want):
            raise ServingError(f"serving {name} must be {want}, got {value!r}")

        if self.strategy not in SERVING_STRATEGIES:
            raise ServingError(f"unknown serving strategy {self.strategy!r}; known: "
                               f"{', '.join(SERVING_STRATEGIES)}")
        if self.policy not in SERVING_POLICIES:
            raise ServingError(f"unknown serving policy {self.policy!r}; known: "
                               f"{', '.join(SERVING_POLICIES)}")
        if not (isinstance(self.fps, (int, float)) and 0 < self.fps <= MAX_SERVING_FPS):
            bad("fps", self.fps, f"> 0 and <= {MAX_SERVING_FPS:g}")
        if not (isinstance(self.duration_s, (int, float))
                and 0 < self.duration_s <= MAX_SERVING_DURATION_S):
            bad("duration_s", self.duration_s, f"> 0 and <= {MAX_SERVING_DURATION_S:g}")
        if not (isinstance(self.jitter, (int, float)) and math.isfinite(self.jitter)
                and 0 <= self.jitter <= 1):
            bad("jitter", self.jitter, "between 0 and 1 (a fraction of a frame period)")
        for name, value, hi in (("workers", self.workers, MAX_SERVING_WORKERS),
                                ("max_streams", self.max_streams, MAX_SERVING_STREAMS),
                                *(("streams", n, MAX_SERVING_STREAMS) for n in self.streams)):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= hi:
                bad(name, value, f"an integer from 1 to {hi}")
        if len(set(self.streams)) != len(self.streams):
            bad("streams", list(self.streams), "a list without repeats")
        return self

    @classmethod
    def from_dict(cls, data: dict) -> ServingSettings:
        return cls(**{**data, "streams": tuple(data.get("streams", ()))})


@dataclass(frozen=True)
class DataSource:
    """The resolved evaluation data of a run."""

    path: str
    split: str | None
    max_videos: int | None
    frames: int | None  # fixed video length, known for synthetic data
    # The latency cell's input comes from the first of these that decodes to enough frames,
    # so one broken video does not fail it.
    timing_videos: tuple[str, ...]
    # int8 calibration streams these (the train split when there is one, so the evaluated
    # videos are not the ones the quantization ranges were fitted on).
    calibration_videos: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, data: dict) -> DataSource:
        return cls(**{**data, "timing_videos": tuple(data.get("timing_videos", ())),
                      "calibration_videos": tuple(data.get("calibration_videos", ()))})


@dataclass(frozen=True)
class ExportJob:
    """Build (or take from the cache) the artifact of `deployment`; an [[artifacts]] entry's
    file or recipe when it has a source (converters.foreign). int8 calibrates on
    `calibration_videos`, `calibration_frames` frames each."""

    JOB: ClassVar[str] = "export"  # the "job" entry of its JSON
    deployment: Deployment
    calibration_videos: tuple[str, ...] = ()
    calibration_frames: int = 16

    @property
    def label(self) -> str:
        """The export in words, e.g. 'export t0/stream tflite-fp32 [file:mine] (T=1)'."""
        d = self.deployment
        what = f"export {d.config.model_id}/{d.config.variant} {d.format}"
        if d.source:  # an [[artifacts]] file or recipe, not movibench's own export
            what += f" [{d.source}]"
        return what + (f" (T={d.frames_per_call})" if d.frames_per_call else "")

    def is_cached(self) -> bool:
        """True when this machine's artifact cache serves the export as it is: an
        [[artifacts]] file or recipe build (converters.foreign), or movibench's own export.
        Hashes files; imports no TensorFlow."""
        d = self.deployment
        if d.source:
            from converters.foreign import ForeignRequest, is_foreign_cached

            return is_foreign_cached(ForeignRequest.from_source(
                d.source, d.config, d.format, checkpoint=d.checkpoint or None,
                path=d.source_path, frames=d.frames_per_call))
        from bench.data.calibration_clips import export_options
        from converters.export import is_cached

        options = export_options(d.format, self.calibration_videos, self.calibration_frames)
        return is_cached(d.config, d.format, checkpoint=d.checkpoint or None,
                         frames_per_call=d.frames_per_call, options=options)

    def to_dict(self) -> dict:
        return {"job": self.JOB, **asdict(self), "deployment": self.deployment.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> ExportJob:
        return cls(Deployment.from_dict(data["deployment"]),
                   tuple(data.get("calibration_videos", ())), data.get("calibration_frames", 16))


@dataclass(frozen=True)
class ExportBatch:
    """Several exports of one model run one after another in one worker process, which builds
    the model once for all of them (converters.export keeps the last builds). Each export's
    result or error comes back on its own, in order."""

    JOB: ClassVar[str] = "exports"
    exports: tuple[ExportJob, ...]

    @property
    def label(self) -> str:
        """The batch in words: its exports' labels, joined."""
        return "; ".join(job.label for job in self.exports)

    def to_dict(self) -> dict:
        return {"job": self.JOB, "exports": [job.to_dict() for job in self.exports]}

    @classmethod
    def from_dict(cls, data: dict) -> ExportBatch:
        return cls(tuple(ExportJob.from_dict(job) for job in data["exports"]))


@dataclass(frozen=True)
class CellJob:
    """Measure one cell: scenario `kind` (bench.scenarios) on `deployment`, opened from
    `artifact` (the exported file on the machine that runs it; None for the TF reference).

    `warmup`/`iterations` time a latency cell, `protocol` is an accuracy cell's, `clip_frames`
    and `sweep_mode` a memory cell's, `serving` a serving cell's; `data` is the run's
    evaluation data (None: none).
    """

    JOB: ClassVar[str] = "cell"
    kind: str
    label: str
    deployment: Deployment
    artifact: str | None = None
    warmup: int = 5
    iterations: int = 50
    protocol: str = ""
    clip_frames: int | None = None
    sweep_mode: str = ""
    data: DataSource | None = None
    serving: ServingSettings | None = None

    def with_artifact(self, artifact: str) -> CellJob:
        """The same job on this machine's copy of the artifact."""
        return replace(self, artifact=artifact)

    def to_dict(self) -> dict:
        return {"job": self.JOB, **asdict(self), "deployment": self.deployment.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> CellJob:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["deployment"] = Deployment.from_dict(data["deployment"])
        if data.get("data") is not None:
            values["data"] = DataSource.from_dict(data["data"])
        if data.get("serving") is not None:
            values["serving"] = ServingSettings.from_dict(data["serving"])
        return cls(**values)


Job = CellJob | ExportJob | ExportBatch


def job_from_dict(data: dict) -> Job:
    """The job `to_dict` wrote."""
    kinds = {kind.JOB: kind for kind in (CellJob, ExportJob, ExportBatch)}
    return kinds[data["job"]].from_dict(data)
