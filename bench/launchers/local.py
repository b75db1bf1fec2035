"""Where cells run on this machine: one local subprocess per job, with a timeout.

The interface is bench.launchers.executor's, so a distributed executor (Ray tasks) replaces
this one without touching the matrix or the store.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bench.jobs.job import CellJob, Job
from bench.launchers.executor import Executor, JobOutcome


def _describe_exit(code: int) -> str:
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
        hint = " (out of memory?)" if -code == signal.SIGKILL else ""
        return f"worker killed by {name}{hint}"
    return f"worker exited with status {code}"


def _parent_death_signal():
    """A preexec_fn that makes the worker get SIGKILL when its launcher dies (Linux only).

    A launcher that is itself killed (a Ray worker on a lost node) cannot kill the worker's
    process group, and the worker runs in a session of its own: without this it would go on
    measuring with nobody to read the result.
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)  # loaded before fork: the child only calls it
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def preexec() -> None:
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
        if os.getppid() != parent:  # the launcher died before the signal was armed
            os._exit(1)

    return preexec


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


_passing_on = threading.Lock()


def _pass_on(job: Job, stderr: str) -> None:
    """A worker's stderr (its libraries' log lines) onto this process's, as one block headed
    by the job: the matrix verb points that at the run's library.log."""
    if stderr.strip():
        with _passing_on:
            sys.stderr.write(f"--- {job.label}\n{stderr.rstrip()}\n")
            sys.stderr.flush()


class LocalProcessExecutor(Executor):
    """Runs each job as `python -m bench.launchers.worker` in a fresh process group.

    A timeout kills the whole group (a runtime's own threads/children included) and reports
    the cell as timed out; a crash reports the signal or status and the last stderr line.
    """

    runs_export_batches = True

    def __init__(self, python: str = sys.executable, env: dict | None = None,
                 die_with_parent: bool = False):
        self.python = python
        self.env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
        self.die_with_parent = die_with_parent
        # Workers alive now (jobs may run from several threads at once, e.g. exports).
        self._live: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        self._on_workers: Callable[[list[int]], None] | None = None

    def watch_workers(self, on_workers: Callable[[list[int]], None]) -> None:
        """Tell `on_workers` the pids of the live workers whenever they change."""
        self._on_workers = on_workers

    def _workers_changed(self) -> None:
        if self._on_workers is not None:
            self._on_workers(sorted(proc.pid for proc in self._live))

    def stop_all(self) -> None:
        """Kill every worker still running (their process groups): an interrupted run stops."""
        with self._lock:
            live = list(self._live)
        for proc in live:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:  # not yet its own group leader: kill the process itself
                proc.kill()

    def run(self, job: Job, timeout_s: float) -> JobOutcome:
        """Run `job` in a worker process; the result also says where and when it ran
        (bench.results.environment.node_facts, started_at/finished_at in epoch seconds)."""
        from bench.results.environment import node_facts

        # An export runs no runtime: its node facts name none.
        facts = node_facts(job.deployment.runtime if isinstance(job, CellJob) else None)
        started = time.time()
        outcome = self._run(job, timeout_s)
        outcome.result.update(facts, started_at=started, finished_at=time.time())
        return outcome

    def _run(self, job: Job, timeout_s: float) -> JobOutcome:
        with tempfile.TemporaryDirectory(prefix="movibench-cell-") as tmp:
            job_path, result_path = Path(tmp) / "job.json", Path(tmp) / "result.json"
            job_path.write_text(json.dumps(job.to_dict()))
            start = time.perf_counter()
            proc = subprocess.Popen(
                [self.python, "-m", "bench.launchers.worker", str(job_path), str(result_path)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                env=self.env, start_new_session=True,
                preexec_fn=_parent_death_signal() if self.die_with_parent else None)
            with self._lock:
                self._live.add(proc)
                self._workers_changed()
            try:
                _, stderr = proc.communicate(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
                return JobOutcome(False, {}, f"timed out after {timeout_s:g} s (killed)",
                                  -signal.SIGKILL, time.perf_counter() - start)
            except KeyboardInterrupt:
                # The worker has its own session, so Ctrl-C does not reach it: stop it here.
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
                raise
            finally:
                with self._lock:
                    self._live.discard(proc)
                    self._workers_changed()
            wall = time.perf_counter() - start
            _pass_on(job, stderr)
            sent = json.loads(result_path.read_text()) if result_path.exists() else {}
            error = sent.get("error", "")
            if proc.returncode and not error:
                error = f"{_describe_exit(proc.returncode)}: {_last_line(stderr)}"
            return JobOutcome(proc.returncode == 0, sent.get("result", {}), error,
                              proc.returncode, wall, tuple(sent.get("samples_ms", ())),
                              tuple(sent.get("predictions", ())))
