"""The Executor interface: where jobs run (bench.launchers.local, bench.launchers.ray).

The matrix (bench.matrix.run) talks to an executor through this class only: `run` and
`stop_all` are what every executor does; `watch_workers` and `describe_nodes` are hooks with a
default for executors that have nothing to say, so the matrix calls them on every executor
instead of probing which one it has.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from bench.jobs.job import Job


@dataclass
class JobOutcome:
    """What came back from one job.

    `result` holds results columns (a cell: the worker's and the launcher's facts of where and
    when it ran; an export: its build facts); `samples_ms` and `predictions` a cell's raw
    tables. `artifact` is the file a cell ran on where it ran when that is not the export's
    own path (Ray: the node's copy); `lost_node` says its machine went away mid-job.
    """

    ok: bool
    result: dict
    error: str
    exit_code: int | None  # None: no worker process to ask (its node was lost, ...)
    wall_s: float
    samples_ms: tuple[float, ...] = ()
    predictions: tuple[dict, ...] = ()
    artifact: str | None = None
    lost_node: bool = False


class Executor(ABC):
    """Runs jobs (cells and exports) to their outcomes; `run` may be called from several
    threads at once."""

    # Whether it runs an ExportBatch (one process for several exports of a model); the
    # matrix sends one ExportJob at a time otherwise.
    runs_export_batches: ClassVar[bool] = False

    @abstractmethod
    def run(self, job: Job, timeout_s: float) -> JobOutcome:
        """Run one job to its outcome: a failure of the job is a failed outcome, not an
        exception."""

    @abstractmethod
    def stop_all(self) -> None:
        """Stop every job still running (called when the run is interrupted)."""

    def watch_workers(self, on_workers: Callable[[list[int]], None]) -> None:
        """Tell `on_workers` the pids of this machine's live worker processes whenever they
        change (the run directory's lock records them, so a run that takes over after a
        crash can stop the leftovers). Default: this executor starts none here."""

    def describe_nodes(self) -> list[dict] | None:
        """The machines this executor spreads jobs over, for run.json; None (default): only
        this one, which the run's environment block already describes."""
        return None
