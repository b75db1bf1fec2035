"""Run a benchmark matrix: prepare data and artifacts, run each cell isolated, store rows.

Nothing is lost: an export or cell that fails becomes a failed row with its one-line error, a
Ctrl-C leaves every finished cell in the store, and `resume` runs only what is missing.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from bench.jobs.deployment import Deployment, frames_per_call
from bench.jobs.job import CellJob, DataSource, ExportBatch, ExportJob, Job, ServingSettings
from bench.jobs.result import join_columns
from bench.launchers.executor import Executor, JobOutcome
from bench.launchers.local import LocalProcessExecutor
from bench.matrix.config import Cell, MatrixConfig, MatrixConfigError
from bench.matrix.runlock import hold_run_dir
from bench.results.environment import environment
from bench.results.store import ResultsStore
from bench.scenarios import LATENCY
from converters.cache import default_cache_dir
from core.errors import MovibenchError
from converters.filelock import FileLock
from core.formats import get_format


def checkpoint_path(ref: str) -> str:
    """'demo:<name>' -> the shipped demo checkpoint; a path stays a path; '' = random init."""
    if ref.startswith("demo:"):
        from core.zoo import demo_checkpoint

        return str(demo_checkpoint(ref[len("demo:"):]))
    return ref


CALIBRATION_VIDEOS = 8
# Candidates for a latency cell's input frames (the first that decodes is used).
TIMING_VIDEOS = 8


def synth_root(synth: dict) -> Path:
    """Where a synthetic dataset of these parameters is generated (once) in the cache."""
    key = hashlib.sha256(json.dumps(synth, sort_keys=True).encode()).hexdigest()[:12]
    return default_cache_dir() / "datasets" / f"synth-{key}"


def prepare_data(config: MatrixConfig) -> DataSource | None:
    """The dataset path; a synthetic one is generated once into the cache, keyed by its config."""
    data = config.data
    if not data.path and not data.synth:
        return None
    frames = None
    if data.synth:
        from bench.data.synth import SynthConfig, generate

        synth = SynthConfig(**data.synth)
        root = synth_root(data.synth)
        if not (root / ".complete").exists():
            # Two runs wanting the same set at once: one writes it, the other waits for it.
            with FileLock(root.with_name(root.name + ".lock")):
                if not (root / ".complete").exists():
                    shutil.rmtree(root, ignore_errors=True)  # a killed generator's half set
                    generate(root, synth)
                    (root / ".complete").write_text("ok\n")
        path, frames = root, synth.frames
    else:
        path = Path(data.path)
        if not path.exists():
            raise MatrixConfigError(f"[data] path not found: {path}")
    from bench.data.datasets import load_dataset

    dataset = load_dataset(path, data.split)
    if not dataset.samples:
        raise MatrixConfigError(f"[data] no videos in split {data.split!r} of {path}")
    everything = load_dataset(path)
    train = [s for s in everything.samples if s.split == "train"] or list(dataset.samples)
    calibration = tuple(str(s.path) for s in train[:CALIBRATION_VIDEOS])
    timing = tuple(str(s.path) for s in dataset.samples[:TIMING_VIDEOS])
    return DataSource(str(path), data.split, data.max_videos, frames, timing, calibration)


def calibration_frames(data: DataSource | None) -> int:
    """Frames per int8 calibration clip: whole videos of fixed-length data, else 16."""
    return (data.frames if data else None) or 16


def export_job(deployment: Deployment, data: DataSource | None) -> ExportJob:
    """The export that builds `deployment`'s artifact, calibrated (int8) on the run's data."""
    return ExportJob(deployment, data.calibration_videos if data else (), calibration_frames(data))


def planned_data(config: MatrixConfig) -> DataSource | None:
    """What `prepare_data` will resolve, without generating anything (for plans): the real
    thing once a synthetic dataset exists in the cache, else its expected shape."""
    data = config.data
    if data.path or (data.synth and synth_root(data.synth).joinpath(".complete").exists()):
        return prepare_data(config)
    if not data.path and not data.synth:
        return None
    frames = data.synth.get("frames") if data.synth else None
    if frames is None and data.synth:
        from bench.data.synth import SynthConfig

        frames = SynthConfig().frames
    return DataSource(data.path, data.split, data.max_videos, frames, ())


def resolve_deployment(cell: Cell, data: DataSource | None) -> tuple[Deployment, str]:
    """The deployment `cell` measures, resolved once (model config from the checkpoint's
    sidecar, no TF import), and why it cannot run as configured ('' when it can).

    Frames per call are fixed for an exported artifact and for a latency cell: 1 for causal
    models; for base models the latency cell's, sweep's or protocol's clip length, or the
    fixed video length for full-clip. Elsewhere TF takes any T (full-clip: each video in one
    call).
    """
    from bench.evaluation.protocols import parse_protocol
    from core.zoo import config_for, get_variant

    ckpt = checkpoint_path(cell.checkpoint)
    config = config_for(cell.model, cell.variant, cell.resolution, cell.classes, ckpt or None)
    frames, error = None, ""
    if get_format(cell.format).exported or cell.kind == LATENCY:
        try:
            frames = frames_per_call(
                get_variant(cell.variant).causal,
                parse_protocol(cell.protocol) if cell.protocol else None,
                clip_frames=cell.frames_per_call or cell.clip_frames,
                video_frames=data.frames if data else None)
        except MovibenchError as exc:
            error = str(exc)
    return Deployment(config, cell.format, ckpt, cell.threads, frames, cell.source,
                      cell.source_path), error


@dataclass
class CellPlan:
    """A cell with everything resolved that it needs to run."""

    cell: Cell
    deployment: Deployment
    status: str  # 'done', 'todo'
    error: str = ""  # a cell that cannot run as configured: recorded as a failed row
    # 'cached', 'to build', 'to import' (a user's file), or '' (the tensorflow reference
    # needs no artifact)
    artifact: str = ""


def plan_cells(cells: list[Cell], data: DataSource | None, done: set[str]) -> list[CellPlan]:
    """Resolve each cell's deployment and whether its artifact is in the cache."""
    plans = []
    # Cells share artifacts, and a cache lookup hashes the artifact's files: look each up once.
    cached: dict[tuple, bool | MovibenchError] = {}
    for cell in cells:
        deployment, error = resolve_deployment(cell, data)
        artifact = ""
        if deployment.spec.exported and not error:
            key = deployment.artifact_key
            if key not in cached:
                try:
                    cached[key] = export_job(deployment, data).is_cached()
                except MovibenchError as exc:  # a format this model cannot be exported to
                    cached[key] = exc
            if isinstance(cached[key], MovibenchError):
                error = str(cached[key])
            elif cached[key]:
                artifact = "cached"
            else:
                artifact = "to import" if _from_file(deployment) else "to build"
        plans.append(CellPlan(cell, deployment, "done" if cell.cell_id in done else "todo",
                              error, artifact))
    return plans


def _from_file(deployment: Deployment) -> bool:
    """True for a deployment of a user's file (imported, not built)."""
    from converters.foreign import FILE, parse_source

    return bool(deployment.source) and parse_source(deployment.source)[0] == FILE


def _row(plan: CellPlan, run_id: str, outcome: JobOutcome, artifact: dict | None) -> dict:
    """The results row of `plan`'s cell: what the plan fixed, the export of its artifact, and
    what its worker and launcher measured, each column from exactly one of them."""
    cell, deployment = plan.cell, plan.deployment
    measured = dict(outcome.result)
    planned = {
        "cell_id": cell.cell_id, "run_id": run_id, "kind": cell.kind, "model": cell.model,
        "variant": cell.variant, "checkpoint": cell.checkpoint,
        "resolution": deployment.config.resolution, "format": deployment.format,
        "precision": deployment.precision, "runtime": deployment.runtime,
        "threads": deployment.threads, "protocol": cell.protocol or None,
        "clip_frames": cell.clip_frames, "sweep_mode": cell.sweep_mode or None,
        # What the worker's session took per call (a file of dynamic T takes any: empty);
        # a cell whose worker never loaded it keeps the frames it was to take.
        "frames_per_call": measured.pop("frames_per_call", deployment.frames_per_call),
        "status": "ok" if outcome.ok else "failed", "error": outcome.error or None,
        "exit_code": outcome.exit_code, "cell_wall_s": outcome.wall_s,
        "lost_node": outcome.lost_node, "artifact_source": deployment.artifact_source,
        **serving_plan_columns(cell.serving),
    }
    exported = {}
    if artifact:
        # The copy the cell ran on where it ran (a Ray node's), else the export's own file.
        exported = {"artifact": outcome.artifact or artifact.get("artifact"),
                    "artifact_mb": artifact.get("artifact_mb"),
                    "export_s": artifact.get("build_s"), "export_cached": artifact.get("cached")}
    return join_columns(planned, exported, measured)


def serving_plan_columns(settings: ServingSettings | None) -> dict:
    """A serving cell's settings as its row's serve_* columns (none for other cells)."""
    if settings is None:
        return {}
    return {"serve_strategy": settings.strategy, "serve_fps": settings.fps,
            "serve_workers": settings.workers, "serve_jitter": settings.jitter,
            "serve_policy": settings.policy, "serve_duration_s": settings.duration_s,
            "serve_search": settings.search}


def _artifact_of(plan: CellPlan, artifacts: dict[tuple, JobOutcome]) -> dict | None:
    """The export result of the artifact `plan` runs on; None for TF or a failed export."""
    if plan.error or not plan.deployment.spec.exported:
        return None
    exported = artifacts[plan.deployment.artifact_key]
    return exported.result if exported.ok else None


def _cell_job(plan: CellPlan, artifact: dict | None, data: DataSource | None) -> CellJob:
    """The job a worker runs for `plan` (see bench.launchers.worker)."""
    cell = plan.cell
    return CellJob(cell.kind, cell.label, plan.deployment,
                   artifact["artifact"] if artifact else None, warmup=cell.warmup,
                   iterations=cell.iterations, protocol=cell.protocol,
                   clip_frames=cell.clip_frames, sweep_mode=cell.sweep_mode, data=data,
                   serving=cell.serving)


def summary_line(row: dict) -> str:
    """One line per finished cell for the console."""
    if row["status"] != "ok":
        return f"FAILED {row['error']}"
    parts = []
    if row.get("step_p50_ms") is not None:
        parts.append(f"p50 {row['step_p50_ms']:.2f} ms/step")
    if row.get("top1") is not None:
        parts.append(f"top-1 {row['top1']:.1%}")
    if row.get("sweep_s") is not None:
        parts.append(f"{row['sweep_s']:.2f} s")
    if row.get("serve_max_streams") is not None:
        parts.append(f"max {row['serve_max_streams']} streams, p99 {row['serve_p99_ms']:.2f} ms "
                     f"at {row['serve_streams']}")
    parts.append(f"peak Δ{row.get('peak_rss_delta_mb', float('nan')):.0f} MB")
    return ", ".join(parts)


def export_artifacts(plans: list[CellPlan], data: DataSource | None, executor: Executor,
                     timeout: float, jobs: int = 1,
                     on_start: Callable[[int], None] | None = None,
                     on_export: Callable[[ExportJob, JobOutcome], None] | None = None
                     ) -> dict[tuple, JobOutcome]:
    """Build (or take from the cache) every artifact `plans` need, `jobs` processes at a time.

    Exports run in processes of their own, like cells. Conversions run on one core (tf2onnx
    and the TFLite converter are single-threaded), so on a 2-core machine two at once take
    about half the wall time, and each export's own time (`export_s`) barely changes. An
    executor that runs export batches gets the exports of one model in as few processes as
    keep `jobs` busy (export_batches), so the model is built once per process, not once per
    artifact; a batch's exports are told (`on_export`) when its process ends.
    """
    pending: dict[tuple, ExportJob] = {}
    for plan in plans:
        if plan.error or not plan.deployment.spec.exported:
            continue
        # Threads are not part of an artifact: the first cell's deployment stands for all.
        job = export_job(plan.deployment, data)
        pending.setdefault(plan.deployment.artifact_key, job)
    if on_start:
        on_start(len(pending))
    outcomes: dict[tuple, JobOutcome] = {}

    def done(key: tuple, outcome: JobOutcome) -> None:
        outcomes[key] = outcome
        if on_export:
            on_export(pending[key], outcome)

    if not executor.runs_export_batches:
        run_jobs(executor, list(pending.items()), timeout, jobs, done, "export")
        return outcomes
    batches = export_batches(pending, jobs)

    def batch_done(keys: tuple, outcome: JobOutcome) -> None:
        entries = outcome.result.get("exports", [])
        # Where and when the batch ran is each export's too.
        facts = {k: v for k, v in outcome.result.items() if k != "exports"}
        for i, key in enumerate(keys):
            if i < len(entries):
                entry = entries[i]
                done(key, JobOutcome(entry["ok"], {**facts, **entry.get("result", {})},
                                     entry.get("error", ""), 0 if entry["ok"] else 1,
                                     outcome.wall_s))
            else:  # the process stopped before this export: the batch's reason is its own
                done(key, JobOutcome(False, facts, outcome.error or "its export batch stopped "
                                     "before it", outcome.exit_code, outcome.wall_s,
                                     lost_node=outcome.lost_node))

    longest = max((len(batch.exports) for _, batch in batches), default=1)
    run_jobs(executor, batches, timeout * longest, jobs, batch_done, "export")
    return outcomes


def export_batches(pending: dict[tuple, ExportJob], workers: int
                   ) -> list[tuple[tuple, ExportBatch]]:
    """The exports grouped by the model they build (model config, weights, source), each
    group cut round-robin into as many batches as its share of `workers` (at least one), so
    a run of one model still keeps every worker busy. Pairs of (the artifact keys, in the
    batch's order; the batch)."""
    groups: dict[tuple, list[tuple[tuple, ExportJob]]] = {}
    for key, job in pending.items():
        d = job.deployment
        groups.setdefault((d.config, d.checkpoint, d.source), []).append((key, job))
    share = max(1, workers // max(1, len(groups)))
    batches = []
    for members in groups.values():
        count = min(share, len(members))
        for i in range(count):
            part = members[i::count]
            batches.append((tuple(key for key, _ in part),
                            ExportBatch(tuple(job for _, job in part))))
    return batches


def run_jobs(executor: Executor, jobs: list[tuple[object, Job]], timeout: float, workers: int,
             on_done: Callable[[object, JobOutcome], None], name: str) -> None:
    """Run (key, job) pairs through `executor`, `workers` at a time. Ctrl-C stops the jobs
    still running.

    `on_done(key, outcome)` runs (one call at a time) in the thread that ran the job, before
    that thread starts its next job: a result is stored before the next job's worker exists,
    so the store's writes never overlap a timed cell and a run killed between two cells keeps
    the first.
    """
    if not jobs:
        return
    recording = threading.Lock()
    stopping = threading.Event()  # an interrupted run records none of the jobs it killed

    def run_and_record(key: object, job: Job) -> None:
        outcome = executor.run(job, timeout)
        with recording:
            if not stopping.is_set():
                on_done(key, outcome)

    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix=name)
    try:
        futures = [pool.submit(run_and_record, key, job) for key, job in jobs]
        for future in as_completed(futures):
            future.result()  # re-raises what a job or its recording raised
    except BaseException:
        # Ctrl-C reaches this thread only: stop the jobs still running in the others.
        stopping.set()
        pool.shutdown(wait=False, cancel_futures=True)
        executor.stop_all()
        raise
    pool.shutdown()


def merge_nodes(before: list[dict] | None, now: list[dict]) -> list[dict]:
    """The nodes of a run across its sessions (a resumed run keeps those it ran on before)."""
    nodes = {n["node_id"]: {**n, "alive": False} for n in before or []}
    nodes.update({n["node_id"]: n for n in now})
    return list(nodes.values())


def run_matrix(config: MatrixConfig, out: str | Path, *, cells: list[Cell],
               executor: Executor | None = None, command: str = "",
               on_note: Callable[[str], None] | None = None, **options) -> pd.DataFrame:
    """Run `cells` of `config` into the store at `out`; returns the consolidated table.

    The artifacts the cells need are exported first (`export_jobs` at a time; `on_exports`
    gets their number, `on_export` each outcome), then the cells run one at a time, so no
    cell is timed while anything else runs; `cell_jobs` > 1 only for an executor that keeps
    concurrent cells on different machines. Options: resume, cell_timeout_s, export_jobs,
    cell_jobs, on_cell, on_start, on_exports, on_export.

    The run holds `out` meanwhile (bench.matrix.runlock): a second run into it raises
    RunDirLockedError; the lock of a killed run is taken over (`on_note` is told) and its
    leftover workers stopped. SIGTERM is handled like Ctrl-C.
    """
    command = command or " ".join(sys.argv)
    with hold_run_dir(out, command, on_note) as lock:
        executor = executor or LocalProcessExecutor()
        executor.watch_workers(lock.set_workers)
        return _run_matrix(config, out, cells=cells, executor=executor, command=command, **options)


def _run_matrix(config: MatrixConfig, out: str | Path, *, cells: list[Cell], resume: bool = False,
                cell_timeout_s: float | None = None, executor: Executor, command: str,
                export_jobs: int = 1, cell_jobs: int = 1,
                on_cell: Callable[[CellPlan, dict], None] | None = None,
                on_start: Callable[[int], None] | None = None,
                on_exports: Callable[[int], None] | None = None,
                on_export: Callable[[ExportJob, JobOutcome], None] | None = None) -> pd.DataFrame:
    store = ResultsStore(out)
    if store.exists() and not resume:
        raise MovibenchError(f"{out} already holds results: pass --resume to continue it, "
                             "or choose another --out")
    timeout = cell_timeout_s or config.cell_timeout_s
    data = prepare_data(config)
    plans = plan_cells(cells, data, store.done_cells())
    todo = [p for p in plans if p.status == "todo"]
    meta = store.meta() if resume and store.exists() else {}
    run_id = meta.get("run_id") or datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    meta.update(run_id=run_id, name=config.name, config_hash=config.config_hash(),
                command=command, environment=environment(),
                started=meta.get("started") or datetime.now(timezone.utc).isoformat(timespec="seconds"),
                dataset=data.path if data else None, cells_planned=len(plans))
    # Executors that spread cells over machines list them in run.json (Ray: every node).
    nodes = executor.describe_nodes()
    if nodes is not None:
        meta["executor"] = type(executor).__name__
        meta["nodes"] = merge_nodes(meta.get("nodes"), nodes)
    store.init(meta, config.source)
    try:
        artifacts = export_artifacts(todo, data, executor, timeout, export_jobs, on_exports,
                                     on_export)
        if on_start:
            on_start(len(todo))

        def record(plan: CellPlan, outcome: JobOutcome) -> None:
            artifact = _artifact_of(plan, artifacts)
            row = _row(plan, run_id, outcome, artifact)
            store.append(row, outcome.samples_ms, outcome.predictions)
            store.consolidate()
            if on_cell:
                on_cell(plan, row)

        runnable = []
        for plan in todo:
            artifact = _artifact_of(plan, artifacts)
            if plan.error:
                record(plan, JobOutcome(False, {}, plan.error, 0, 0.0))
            elif plan.deployment.spec.exported and artifact is None:
                exported = artifacts[plan.deployment.artifact_key]
                # The export's own facts (its node, its times) are not the cell's; a lost
                # node is, so that --resume exports and runs it again.
                what = "import" if _from_file(plan.deployment) else "export"
                record(plan, JobOutcome(False, {}, f"{what} failed: {exported.error}",
                                        exported.exit_code, 0.0, lost_node=exported.lost_node))
            else:
                runnable.append((plan, _cell_job(plan, artifact, data)))
        # One cell at a time unless the executor keeps timed cells apart itself (Ray: one
        # timing slot per node).
        run_jobs(executor, runnable, timeout, cell_jobs, record, "cell")
    finally:
        meta["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        if nodes is not None:
            meta["nodes"] = merge_nodes(meta.get("nodes"), executor.describe_nodes())
        store.write_meta(meta)
        table = store.consolidate()
    return table

