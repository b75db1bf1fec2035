"""The jobs a launcher runs in a worker process: an export, or one cell of a matrix.

A job is built once by the matrix (bench.matrix.run) from a planned cell, crosses to its
worker as JSON (`to_dict`, `job_from_dict`) and is read there by attribute: the worker and
the scenarios never index a dict for a setting. The JSON names its kind under "job" and, for a
cell, its label at the top, which is what an operator (or a test) looking at a live worker's
job file reads first.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import ClassVar

from bench.jobs.deployment import Deployment


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
    and `sweep_mode` a memory cell's; `data` is the run's evaluation data (None: none).
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
        return cls(**values)


Job = CellJob | ExportJob | ExportBatch


def job_from_dict(data: dict) -> Job:
    """The job `to_dict` wrote."""
    kinds = {kind.JOB: kind for kind in (CellJob, ExportJob, ExportBatch)}
    return kinds[data["job"]].from_dict(data)
