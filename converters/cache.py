"""A content-addressed artifact cache: same inputs → same key → the artifact built once.

The key hashes everything that decides an artifact's bytes: the resolved model config, the
weights' identity, format, frames per call, export options and converter versions. Looking a
key up imports no TensorFlow: the weights' identity is the checkpoint files' hash (or
'random-init:seed=N'), not a hash of built weights — building a0 just to hash it costs ~13 s
(5.6 s TF import + 7.6 s build, measured), which would defeat a cache meant to answer in < 5 s.

A hit is served only after its files match the sizes and SHA-256 recorded when it was built;
a damaged entry is rebuilt with a warning (see ArtifactCache).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from core.checkpoints import checkpoint_files_sha256
from core.errors import ArtifactError
from converters.filelock import FileLock

log = logging.getLogger(__name__)

# Bump when an exporter changes what it writes, so stale artifacts stop matching.
EXPORTER_VERSION = 1
CACHE_ENV = "MOVIBENCH_CACHE"
BUILD_INFO = "build.json"

# Every distribution whose version can change an artifact's bytes or numerics.
KEY_DISTRIBUTIONS = ("tensorflow", "tf-keras", "tf-models-official", "tf2onnx", "onnx",
                     "onnxslim", "ai-edge-litert", "tensorrt")


def default_cache_dir() -> Path:
    """$MOVIBENCH_CACHE, else ~/.cache/movibench."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "movibench"


def library_versions(names: tuple[str, ...] = KEY_DISTRIBUTIONS) -> dict[str, str]:
    """Installed versions by distribution metadata (no imports); 'absent' when not installed."""
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "absent"
    return found


def weights_identity(checkpoint: str | Path | None, seed: int) -> str:
    """What the weights are, cheaply: 'checkpoint:<sha256>' or 'random-init:seed=<n>'."""
    if checkpoint is None:
        return f"random-init:seed={seed}"
    return "checkpoint:" + checkpoint_files_sha256(checkpoint)


def cache_key(parts: dict) -> str:
    """SHA-256 of the canonical JSON of `parts` (sorted keys, no whitespace)."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class CacheIntegrityWarning(UserWarning):
    """A cache entry failed its check (a file changed or went missing) and is rebuilt."""


# Entry states (`ArtifactCache.check`): 'unverified' is an entry without recorded checksums
# (written before they were recorded): it cannot be proven intact, so it is rebuilt too.
OK, CORRUPT, UNVERIFIED, UNCHECKED = "ok", "corrupt", "unverified", "unchecked"
LOCKS_DIR = "locks"
STAGING_PREFIX = ".staging-"
TRASH_PREFIX = ".trash-"
_HEX = set("0123456789abcdef")


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_records(directory: Path) -> dict[str, dict]:
    """{file name: {'sha256', 'bytes'}} of every file of an entry except its build record."""
    return {p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size}
            for p in sorted(directory.iterdir()) if p.is_file() and p.name != BUILD_INFO}


def file_problem(directory: Path, records: dict[str, dict]) -> str:
    """'' when every recorded file is there with its size and SHA-256, else what differs."""
    for name, record in records.items():
        path = directory / name
        try:
            size = path.stat().st_size
            if size != record["bytes"]:
                return f"{name} is {size} bytes, {record['bytes']} were recorded at build"
            if sha256_file(path) != record["sha256"]:
                return f"{name} does not match the SHA-256 recorded at build"
        except FileNotFoundError:
            return f"{name} is missing"
        except OSError as exc:
            return f"{name} cannot be read: {exc.strerror or exc}"
    return ""


def _is_key(name: str) -> bool:
    return len(name) == 64 and set(name) <= _HEX


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class CacheEntry:
    """A finished cache entry: the artifact file and the build record beside it."""

    key: str
    directory: Path
    artifact: Path

    @property
    def build_info(self) -> dict:
        path = self.directory / BUILD_INFO
        return json.loads(path.read_text()) if path.exists() else {}


@dataclass(frozen=True)
class EntryCheck:
    """What checking one entry found: its state ('ok', 'corrupt', 'unverified', or
    'unchecked' when only the record was read) and why."""

    key: str
    directory: Path
    status: str
    problem: str = ""
    artifact: str = ""  # the artifact's file name, as recorded at build
    info: dict = field(default_factory=dict)
    size_bytes: int = 0

    @property
    def ok(self) -> bool:
        return self.status == OK


@dataclass(frozen=True)
class Leftover:
    """A directory no lookup ever serves: a build in progress or interrupted, or a removal."""

    path: Path
    kind: str  # 'staging' or 'trash'
    key: str  # the key a staging directory builds ('' when unknown)
    in_use: bool  # a live process holds the key's build lock


class BuildSlot:
    """The right to build one key, held under its lock (see `ArtifactCache.build_slot`).

    `entry` is set when the artifact is already there (another process built it while this
    one waited): serve it. Otherwise build into `staging` and `commit`. `replaced` says why a
    damaged entry was removed first ('' when there was none).
    """

    def __init__(self, cache: ArtifactCache, key: str, filename: str):
        self.cache, self.key, self.filename = cache, key, filename
        self.entry: CacheEntry | None = None
        self.replaced = ""
        self.waited = False
        self._staging: Path | None = None

    @property
    def staging(self) -> Path:
        """A fresh directory for the build's files, on the cache's filesystem."""
        if self._staging is None:
            self._staging = self.cache.staging_dir(self.key)
        return self._staging

    def commit(self, build_info: dict) -> CacheEntry:
        """Publish the staged files under the key, with their checksums."""
        self.entry = self.cache.commit(self.key, self.staging, self.filename, build_info)
        self._staging = None
        return self.entry

    def discard(self) -> None:
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None


class ArtifactCache:
    """Directory layout: <root>/<key[:2]>/<key>/{<artifact>, <artifact>.manifest.json, build.json}.

    - Entries appear atomically: a build writes into a staging directory under the root (same
      filesystem) and renames it into place, so a crash or Ctrl-C mid-build leaves only a
      staging directory, which no lookup reads (`prune` removes it).
    - build.json records each file's size and SHA-256; every lookup checks them (~20 ms for
      a 15 MB artifact), so a file truncated or changed on disk is rebuilt, never served.
    - One build per key at a time: builders take <root>/locks/<key>.lock (flock, dropped by
      the kernel if the builder dies); a second process waits, then serves the first's build.
    """

    def __init__(self, root: str | Path | None = None, *,
                 on_wait: Callable[[str], None] | None = None):
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()
        # Told (one line) when a build waits for another process building the same key.
        self.on_wait = on_wait

    def entry_dir(self, key: str) -> Path:
        return self.root / key[:2] / key

    def lock_path(self, key: str) -> Path:
        return self.root / LOCKS_DIR / f"{key}.lock"

    # -- lookups -----------------------------------------------------------------------------
    def check(self, key: str, filename: str | None = None, *,
              contents: bool = True) -> EntryCheck | None:
        """Verify the entry of `key` against its build record; None when there is none.

        `contents=False` reads the record only (no hashing): an entry with checksums is then
        'unchecked' rather than 'ok'.
        """
        directory = self.entry_dir(key)
        if not directory.is_dir():
            return None
        try:
            info = json.loads((directory / BUILD_INFO).read_text())
            if not isinstance(info, dict):
                raise ValueError("not a JSON object")
        except FileNotFoundError:
            return EntryCheck(key, directory, CORRUPT, f"{BUILD_INFO} is missing")
        except (ValueError, UnicodeDecodeError) as exc:
            return EntryCheck(key, directory, CORRUPT, f"{BUILD_INFO} is unreadable: {exc}")
        records = info.get("files")
        artifact = str(info.get("artifact") or filename or "")
        if not isinstance(records, dict) or not records:
            files = [p for p in directory.iterdir() if p.is_file() and p.name != BUILD_INFO]
            artifact = artifact or next(
                (p.name for p in sorted(files) if not p.name.endswith(".manifest.json")), "")
            return EntryCheck(key, directory, UNVERIFIED,
                              "no checksums recorded (built by an older movibench)", artifact, info,
                              sum(p.stat().st_size for p in files))
        size = sum(int(r.get("bytes", 0)) for r in records.values() if isinstance(r, dict))
        if filename is not None and filename not in records:
            return EntryCheck(key, directory, CORRUPT, f"{filename} is not recorded in {BUILD_INFO}",
                              artifact, info, size)
        if not all(isinstance(r, dict) and {"sha256", "bytes"} <= set(r) for r in records.values()):
            return EntryCheck(key, directory, CORRUPT, f"{BUILD_INFO} has malformed file records",
                              artifact, info, size)
        if not contents:
            return EntryCheck(key, directory, UNCHECKED, "", artifact, info, size)
        problem = file_problem(directory, records)
        return EntryCheck(key, directory, CORRUPT if problem else OK, problem, artifact, info, size)

    def lookup(self, key: str, filename: str) -> CacheEntry | None:
        """The entry for `key` if every file matches its recorded checksum, else None."""
        found = self.check(key, filename)
        if found is None or not found.ok:
            return None
        try:
            # The directory's mtime is the entry's last use (what `prune --unused-days` reads).
            os.utime(found.directory)
        except OSError:
            pass
        return CacheEntry(key, found.directory, found.directory / filename)

    # -- building ----------------------------------------------------------------------------
    @contextmanager
    def build_slot(self, key: str, filename: str) -> Iterator[BuildSlot]:
        """Hold the build lock of `key` for one build; see BuildSlot.

        Waits while another process builds the key. Under the lock the entry is checked
        again: intact, it is served (`slot.entry`); damaged, it is removed with a
        CacheIntegrityWarning and `slot.replaced` says why. A build that raises (or is
        interrupted) leaves no entry and no staging directory.
        """
        lock = FileLock(self.lock_path(key))
        slot = BuildSlot(self, key, filename)
        if not lock.acquire(blocking=False):
            slot.waited = True
            message = f"waiting for another process building {filename} ({key[:12]})"
            if self.on_wait is not None:
                self.on_wait(message)
            else:
                log.info(message)
            lock.acquire()
        try:
            found = self.check(key, filename)
            if found is not None and found.ok:
                slot.entry = CacheEntry(key, found.directory, found.directory / filename)
            elif found is not None:
                slot.replaced = found.problem
                warnings.warn(f"cached {filename} ({key[:12]}) failed its check: {found.problem}; "
                              "rebuilding it", CacheIntegrityWarning, stacklevel=3)
                self.remove(key)
            yield slot
        finally:
            slot.discard()
            lock.release()

    def staging_dir(self, key: str = "") -> Path:
        """A fresh temporary directory on the cache's filesystem for one build of `key`."""
        self.root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{key}-", dir=self.root))

    def commit(self, key: str, staging: Path, filename: str, build_info: dict) -> CacheEntry:
        """Publish a staged build under `key` with its files' checksums (call under the lock).

        Files are flushed to disk before the rename, so a power cut cannot publish an entry
        whose files are still empty; an existing intact entry is kept (same key, same inputs).
        """
        info = {**build_info, "artifact": filename, "files": file_records(staging)}
        info.setdefault("built_at", datetime.now(timezone.utc).isoformat(timespec="seconds"))
        (staging / BUILD_INFO).write_text(json.dumps(info, indent=2, default=str) + "\n")
        for path in staging.iterdir():
            _fsync(path)
        target = self.entry_dir(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            if self.lookup(key, filename) is not None:
                shutil.rmtree(staging, ignore_errors=True)
                return CacheEntry(key, target, target / filename)
            self.remove(key)
        os.rename(staging, target)
        _fsync(target.parent)
        return CacheEntry(key, target, target / filename)

    def discard(self, staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)

    # -- moving entries between machines ---------------------------------------------------------
    @staticmethod
    def pack(directory: Path) -> dict[str, bytes]:
        """Every file of the entry in `directory` (its build record too) as bytes, by name:
        what `import_entry` on another machine's cache takes."""
        return {p.name: p.read_bytes() for p in sorted(Path(directory).iterdir()) if p.is_file()}

    def import_entry(self, key: str, filename: str, files: dict[str, bytes]) -> CacheEntry:
        """Publish an entry built elsewhere (`pack` there) under `key` in this cache.

        Held under the key's build lock like a build, so two imports (or an import and a
        build) of one key publish one entry; an intact entry already here is served as is.
        Every file must match the size and SHA-256 its build record lists, else
        ArtifactError names the first that does not and nothing is published.
        """
        try:
            info = json.loads(files[BUILD_INFO])
            records = info.pop("files")  # commit records them again from the staged files
        except (KeyError, TypeError, ValueError, UnicodeDecodeError, AttributeError):
            raise ArtifactError(f"the entry {key[:12]} to import has no readable "
                                f"{BUILD_INFO} with its files' checksums") from None
        if filename not in records:
            raise ArtifactError(f"the entry {key[:12]} to import does not hold {filename}")
        with self.build_slot(key, filename) as slot:
            if slot.entry is not None:
                return slot.entry
            for name, data in files.items():
                (slot.staging / Path(name).name).write_bytes(data)
            problem = file_problem(slot.staging, records)
            if problem:
                raise ArtifactError(f"the entry {key[:12]} to import is damaged: {problem}")
            return slot.commit(info)

    def remove(self, key: str) -> None:
        """Take an entry out of use at once (one rename), then delete its files."""
        directory = self.entry_dir(key)
        trash = Path(tempfile.mkdtemp(prefix=f"{TRASH_PREFIX}{key}-", dir=self.root))
        try:
            os.rename(directory, trash / key)
        except FileNotFoundError:
            pass
        shutil.rmtree(trash, ignore_errors=True)

    # -- maintenance (movibench cache ls|verify|prune) ----------------------------------------
    def keys(self) -> list[str]:
        """Keys with an entry directory, sorted (other folders, e.g. datasets/, are skipped)."""
        if not self.root.is_dir():
            return []
        return sorted(entry.name for shard in self.root.iterdir()
                      if shard.is_dir() and len(shard.name) == 2 and set(shard.name) <= _HEX
                      for entry in shard.iterdir() if entry.is_dir() and _is_key(entry.name))

    def key_busy(self, key: str) -> bool:
        """True while a live process holds the build lock of `key`."""
        lock = FileLock(self.lock_path(key))
        if lock.acquire(blocking=False):
            lock.release()
            return False
        return True

    def leftovers(self) -> list[Leftover]:
        """Staging and trash directories under the root, with whether a live build owns them."""
        if not self.root.is_dir():
            return []
        found = []
        for path in sorted(self.root.iterdir()):
            for prefix, kind in ((STAGING_PREFIX, "staging"), (TRASH_PREFIX, "trash")):
                if path.is_dir() and path.name.startswith(prefix):
                    key = path.name[len(prefix):].split("-", 1)[0]
                    key = key if _is_key(key) else ""
                    busy = kind == "staging" and bool(key) and self.key_busy(key)
                    found.append(Leftover(path, kind, key, busy))
        return found

    def prune_key(self, key: str) -> bool:
        """Remove the entry of `key` unless a build holds its lock; True when removed."""
        lock = FileLock(self.lock_path(key))
        if not lock.acquire(blocking=False):
            return False
        try:
            self.remove(key)
        finally:
            lock.release(unlink=True)
        return True

    def prune_leftover(self, leftover: Leftover) -> bool:
        """Delete a staging/trash directory no live build owns; True when removed."""
        lock = FileLock(self.lock_path(leftover.key)) if leftover.key else None
        if lock is not None and not lock.acquire(blocking=False):
            return False
        try:
            shutil.rmtree(leftover.path)
            return True
        except FileNotFoundError:
            return True
        finally:
            if lock is not None:
                lock.release(unlink=not self.entry_dir(leftover.key).exists())
