"""An advisory lock on a file (flock), released by the kernel when its holder dies.

Used by the artifact cache (one builder per key) and the run directory (one run per --out).
Because the kernel drops the lock with the process, a SIGKILLed holder never leaves a lock
that blocks the next process: whatever is still written in the file is only a description
of the last holder, for messages.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path


class FileLock:
    """An exclusive lock on `path` (created if missing); `acquire()` then `release()`.

    Locks are per open file, so two FileLocks on one path exclude each other even inside one
    process (two threads, or a test holding a lock the code under test wants).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, blocking: bool = True, timeout: float | None = None,
                poll_s: float = 0.1) -> bool:
        """Take the lock; False when `blocking` is off (or `timeout` passes) and another holds it."""
        if self._fd is not None:
            raise RuntimeError(f"lock {self.path} is already held by this object")
        deadline = None if timeout is None else time.monotonic() + timeout
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                wait = blocking and deadline is None
                fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                if not blocking or (deadline is not None and time.monotonic() >= deadline):
                    return False
                time.sleep(poll_s)
                continue
            # The file may have been unlinked (and recreated) between open and flock by a
            # holder cleaning up: a lock on a dead inode excludes nobody, so try again.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
                return True
            os.close(fd)

    def release(self, unlink: bool = False) -> None:
        """Drop the lock; `unlink` removes the file first (safe: others re-check the inode)."""
        if self._fd is None:
            return
        if unlink:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
        os.close(self._fd)  # closing the descriptor releases the flock
        self._fd = None

    def read(self) -> str:
        """The lock file's text (what its last holder wrote); '' if absent."""
        try:
            return self.path.read_text()
        except (FileNotFoundError, UnicodeDecodeError):
            return ""

    def write(self, text: str) -> None:
        """Replace the lock file's content in place (only while held: the inode must stay)."""
        if self._fd is None:
            raise RuntimeError(f"write to {self.path} without holding its lock")
        data = text.encode()
        # New text first, then cut what is left of the old one: a holder killed in between
        # leaves the whole new text followed by a stale tail (which readers of a first JSON
        # value ignore), never the empty file that truncating first would leave.
        os.pwrite(self._fd, data, 0)
        os.ftruncate(self._fd, len(data))
        os.fsync(self._fd)

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
