"""The cell worker: runs ONE benchmark cell (or one export) in its own process.

`python -m bench.launchers.worker JOB.json RESULT.json`. The launcher (bench.launchers.local)
turns a crash, hang or out-of-memory of this process into a failed row; nothing here needs to
survive those. Only the runtime the cell names is imported, so memory is that runtime's own.

Every cell, whatever its scenario, is measured the same way: the runtime's engine and the
harness's libraries are imported, the memory tracker takes its idle reading, the session loads
(timed), the scenario runs, the tracker reads the peak. Nothing resets the process's peak.
Only then does the scenario read what must not count in the cell's memory (a latency cell asks
the runtime how it runs the deployment: the `exec_*` columns). The scenario is looked up by the
cell's kind in bench.scenarios.registry.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from pathlib import Path

from bench.jobs.job import CellJob, ExportBatch, ExportJob, job_from_dict
from bench.jobs.result import ScenarioResult
from bench.trackers import CellTrackers
from bench.trackers.memory import END, IDLE, LOADED

FAULT_ENV = "MOVIBENCH_FAULT"  # testing hook: '<kind>:<label substring>', kinds below
BALLOON_MB = 256  # 'balloon': this much memory allocated, touched and freed right after load
# Imported by every cell before the idle reading, whatever it measures, so idle memory is the
# same harness everywhere (PyAV, the dataset and protocol code, numpy, psutil).
HARNESS_MODULES = ("numpy", "psutil", "av", "bench.data.datasets", "bench.data.video",
                   "bench.evaluation.evaluate", "bench.jobs.deployment")


def inject_fault(label: str, phase: str) -> None:
    """Make this worker really crash, hang or allocate, so the harness can be tested.

    'crash' and 'hang' act before load; 'balloon' allocates BALLOON_MB right after load and
    frees it, which a peak that covers load must show.
    """
    spec = os.environ.get(FAULT_ENV, "")
    kind, _, target = spec.partition(":")
    if not (kind and target and target in label):
        return
    if phase == "start" and kind == "crash":
        os.abort()
    if phase == "start" and kind == "hang":
        time.sleep(10**6)
    if phase == "loaded" and kind == "balloon":
        import numpy as np

        block = np.ones(BALLOON_MB * 2**20, dtype=np.uint8)
        del block


def run_export(job: ExportJob) -> dict:
    """Export (or fetch from the cache) one artifact; return its path, build facts and the
    seconds of each stage it went through (core.stages; none for a cache hit).

    A deployment with a `source` is an [[artifacts]] entry: a user's file copied into the
    cache, or a recipe's build, with the manifest read off the file's signature
    (converters.foreign)."""
    from core.stages import StageTimes, listening

    start = time.perf_counter()
    stages = StageTimes()
    with listening(stages):
        artifact = _export(job)
    return {"artifact": str(artifact.path), "cached": artifact.cached,
            "build_s": artifact.build_seconds, "wall_s": time.perf_counter() - start,
            "artifact_mb": artifact.size_bytes / 2**20, "stages": stages.seconds,
            # Why a cached copy was thrown away and rebuilt ("" when it was not).
            "cache_rebuilt": artifact.details.get("cache_rebuilt", "")}


def _export(job: ExportJob):
    d = job.deployment
    if d.source:
        from converters.foreign import ForeignRequest, foreign_artifact
        from runtimes.loader import load_manifest

        request = ForeignRequest.from_source(
            d.source, d.config, d.format, checkpoint=d.checkpoint or None,
            path=d.source_path, frames=d.frames_per_call)
        return foreign_artifact(request, load_manifest)
    from bench.data.calibration_clips import export_options
    from converters.export import export_model

    options = export_options(d.format, job.calibration_videos, job.calibration_frames)
    return export_model(d.config, d.format, checkpoint=d.checkpoint or None,
                        frames_per_call=d.frames_per_call, options=options)


def run_batch(batch: ExportBatch, result_path: Path) -> dict:
    """Run the batch's exports in turn; each one's result or one-line error is written to
    `result_path` as soon as it is known, so a crash of this process keeps those before it."""
    done = []
    for job in batch.exports:
        try:
            done.append({"ok": True, "result": run_export(job)})
        except Exception as exc:  # one export failing leaves the others to run
            done.append({"ok": False, "error": _error_line(exc)})
        _write(result_path, {"result": {"exports": done}})
    return {"exports": done}


def _error_line(exc: Exception) -> str:
    from core.errors import first_line

    return f"{type(exc).__name__}: {first_line(exc)}"[:500]


def _write(result_path: str | Path, sent: dict) -> None:
    tmp = Path(result_path).with_suffix(".tmp")
    tmp.write_text(json.dumps(sent, default=float))
    tmp.replace(result_path)


def run_cell(job: CellJob) -> ScenarioResult:
    """Measure one cell; its columns are bench.results.schema's, each written once."""
    from bench.jobs.deployment import open_deployment
    from runtimes.loader import session_class

    inject_fault(job.label, "start")
    engine = session_class(job.deployment.runtime)
    engine.import_engine()
    for name in HARNESS_MODULES:
        importlib.import_module(name)
    # After the engine, like the harness: what a process imports before the engine moves
    # where the engine's memory lands (TF's load and peak RSS shift by tens of MB).
    from bench.scenarios.registry import get_scenario

    scenario = get_scenario(job.kind)
    trackers = CellTrackers()
    trackers.mark(IDLE)
    trackers.gpu.before_load(engine)
    start = time.perf_counter()
    session = open_deployment(job.deployment, job.artifact)
    try:
        loaded = {"load_s": time.perf_counter() - start,
                  "frames_per_call": scenario.frames_per_call(session, job),
                  "runtime_settings": json.dumps(session.settings(), sort_keys=True)}
        inject_fault(job.label, "loaded")
        trackers.session = session
        trackers.mark(LOADED)
        result = scenario.run(session, job, trackers).with_columns(loaded)
        trackers.mark(END)
        result = result.with_columns(trackers.columns())
        return result.with_columns(scenario.after(session, job))
    finally:
        session.close()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the worker process."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    job_path, result_path = (argv or sys.argv[1:])[:2]
    job = job_from_dict(json.loads(Path(job_path).read_text()))
    code = 0
    try:
        if isinstance(job, ExportBatch):
            sent = {"result": run_batch(job, result_path)}
        elif isinstance(job, ExportJob):
            sent = {"result": run_export(job)}
        else:
            measured = run_cell(job)
            sent = {"result": dict(measured.columns), "samples_ms": list(measured.samples_ms),
                    "predictions": list(measured.predictions)}
    except Exception as exc:  # any failure of the thing measured becomes a failed row
        sent = {"error": _error_line(exc)}
        code = 1
    _write(result_path, sent)
    return code


if __name__ == "__main__":
    sys.exit(main())
