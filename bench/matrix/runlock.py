"""One live run per run directory, and a clean handover when a run was killed.

`matrix run` holds `<out>/.movibench-run.lock` (an flock, which the kernel drops when the
process dies, however it dies) for its whole life. The file also says who holds it (pid, host,
start time, command) and which worker processes it has running, so that:

- a second run into the same --out is refused with one line naming the live run;
- a run that finds the file but no lock knows the last holder died (SIGKILL, OOM, power): it
  takes the lock over, and stops that run's leftover workers (they run in sessions of their
  own, so they outlive it) before they skew the timings of the cells it is about to run.

SIGTERM is turned into the same path as Ctrl-C while the lock is held: workers are stopped,
finished cells are consolidated, and the lock is released.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from core.errors import MovibenchError
from converters.filelock import FileLock

LOCK_NAME = ".movibench-run.lock"
log = logging.getLogger(__name__)


class RunDirLockedError(MovibenchError):
    """The run directory is held by another live run."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, delivered like Ctrl-C so the same cleanup runs; the CLI exits 143."""

    exit_code = 128 + signal.SIGTERM


@dataclass
class Holder:
    """Who holds (or last held) a run directory."""

    pid: int
    host: str
    started: str
    command: str = ""
    # [pid, process start time] of each live worker, so that a successor can tell a leftover
    # worker from an unrelated process that got its pid later.
    workers: list[list[float]] = field(default_factory=list)

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, started {self.started}"

    @classmethod
    def parse(cls, text: str) -> Holder | None:
        try:
            # The first JSON value: a holder killed while rewriting the file leaves its new
            # description followed by the tail of the old one (FileLock.write).
            data, _ = json.JSONDecoder().raw_decode(text)
            return cls(int(data["pid"]), str(data["host"]), str(data["started"]),
                       str(data.get("command", "")), [list(w) for w in data.get("workers", [])])
        except (ValueError, KeyError, TypeError):
            return None


def _process_started(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def stop_leftover_workers(holder: Holder) -> int:
    """SIGKILL the process groups of `holder`'s workers that still run; how many were."""
    if holder.host != socket.gethostname():
        return 0  # pids of another machine mean nothing here
    stopped = 0
    for pid, started in holder.workers:
        now = _process_started(int(pid))
        # The same pid and start time: the worker itself, not a later process reusing its pid.
        if now is None or abs(now - started) > 0.01:
            continue
        try:
            os.killpg(int(pid), signal.SIGKILL)
            stopped += 1
        except (ProcessLookupError, PermissionError):
            pass
    return stopped


class RunLock:
    """The lock of one run directory (see the module docstring)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._lock = FileLock(self.root / LOCK_NAME)
        self._holder: Holder | None = None
        self._guard = threading.Lock()

    def holder(self) -> Holder | None:
        """What the lock file says about its (last) holder."""
        return Holder.parse(self._lock.read())

    def acquire(self, command: str = "") -> str:
        """Take the run directory; returns a note when a dead run's lock was taken over.

        Raises RunDirLockedError naming the live run that holds it, or MovibenchError when
        the directory cannot be created.
        """
        if self.root.exists() and not self.root.is_dir():
            raise MovibenchError(f"--out {self.root} is not a folder")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            got = self._lock.acquire(blocking=False)
        except OSError as exc:
            raise MovibenchError(f"cannot use --out {self.root}: {exc.strerror or exc}") from None
        if not got:
            holder = self.holder()
            who = holder.describe() if holder else "a process that has not yet said who it is"
            raise RunDirLockedError(f"{self.root} is in use by another run ({who}); "
                                    "wait for it to end or choose another --out")
        note = ""
        previous = self.holder()
        if previous is not None:
            stopped = stop_leftover_workers(previous)
            note = f"took over {self.root} from a run that is no longer running ({previous.describe()})"
            if stopped:
                note += f"; stopped {stopped} worker(s) it left running"
        self._holder = Holder(os.getpid(), socket.gethostname(),
                              datetime.now(timezone.utc).isoformat(timespec="seconds"), command)
        self._write()
        return note

    def set_workers(self, pids: list[int]) -> None:
        """Record the run's live worker processes (called whenever they change)."""
        with self._guard:
            if self._holder is None:
                return
            known = {int(p): t for p, t in self._holder.workers}
            workers = []
            for pid in pids:
                started = known.get(pid) or _process_started(pid)
                if started is not None:
                    workers.append([pid, started])
            self._holder.workers = workers
            self._write()

    def _write(self) -> None:
        self._lock.write(json.dumps(asdict(self._holder)) + "\n")

    def release(self) -> None:
        """Let go, leaving no description behind: the next run finds nothing to take over."""
        with self._guard:
            if self._holder is None:
                return
            self._holder = None
            self._lock.write("")
            self._lock.release(unlink=True)


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises Terminated (a KeyboardInterrupt) in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def hold_run_dir(root: str | Path, command: str = "",
                 on_note: Callable[[str], None] | None = None) -> Iterator[RunLock]:
    """Hold the run directory for the block (SIGTERM acts like Ctrl-C meanwhile)."""
    lock = RunLock(root)
    note = lock.acquire(command)
    try:
        if note:
            (on_note or log.warning)(note)
        with sigterm_as_interrupt():
            yield lock
    finally:
        lock.release()
