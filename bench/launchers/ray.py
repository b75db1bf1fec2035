"""Run a matrix's exports and cells, and sharded evaluations, as tasks on a Ray cluster.

What runs where:
- An export is a Ray task that runs anywhere (one CPU). It runs the same worker process as the
  local executor (`python -m bench.launchers.worker`) on its node, then puts the finished cache entry
  (artifact, manifest, build record) into Ray's object store.
- A cell is a Ray task that holds the node's one `movibench_slot` (a custom resource each
  node offers once), so no two timed cells ever share a node. On its node it first brings the
  artifact into that node's cache from the object store (keyed by the artifact's content key,
  so it is fetched once per node), then runs the same worker process as the local executor,
  with the same timeout; a crash or hang stays a failed row of that cell.
- A task whose node dies, or whose Ray worker dies, becomes a failed row marked `lost_node`:
  `--resume` runs it again. Ray retries exports (they are idempotent), never cells.

Every row records the node that ran it (bench.results.environment.node_facts plus the Ray node id) and
when its worker process started and ended, so overlaps can be checked afterwards.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from bench.jobs.job import CellJob, ExportJob, Job
from bench.launchers.executor import Executor, JobOutcome
from bench.launchers.local import LocalProcessExecutor
from core.errors import MovibenchError, first_line

# Ray must not phone home from a benchmark run; a user who wants usage stats sets it to 1.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import ray  # noqa: E402  (after the usage-stats default above)
import ray.exceptions as rex  # noqa: E402
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy  # noqa: E402

SLOT = "movibench_slot"  # the per-node custom resource a timed cell holds
POLL_S = 2.0  # how often a cell waiting for a node checks that slots still exist
GRACE_S = 60.0  # past cell_timeout_s, how long the driver waits for a node that stopped answering
# Errors that say the machine (or the Ray worker on it) went away, not that the cell failed.
LOST = (rex.NodeDiedError, rex.WorkerCrashedError, rex.ObjectLostError, rex.RaySystemError,
        rex.LocalRayletDiedError)


class RayClusterError(MovibenchError):
    """The Ray cluster cannot run the matrix (unreachable, no timing slots...)."""


# --- connecting ----------------------------------------------------------------------------

@contextmanager
def ray_session(address: str | None) -> Iterator[None]:
    """Connect this process to the Ray cluster at `address` (host:port of its head, or
    'auto'); without one, start a Ray instance on this machine with one timing slot. Leaves
    an existing connection alone, and disconnects on exit only if it connected."""
    if ray.is_initialized():
        yield
        return
    if address and ":" in address and "://" not in address:
        host, _, port = address.rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=5).close()
        except (OSError, ValueError) as exc:
            raise RayClusterError(f"no Ray cluster answers at {address}: {exc}") from None
    options = dict(include_dashboard=False, log_to_driver=False, logging_level="warning")
    try:
        if address:
            ray.init(address=address, **options)
        else:
            ray.init(resources={SLOT: 1}, **options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise RayClusterError(f"cannot connect to Ray at {address or 'a new local instance'}: "
                              f"{first_line(exc)}") from None
    try:
        yield
    finally:
        ray.shutdown()


def cluster_slots() -> int:
    """Timing slots in the cluster now: at most this many cells run at once."""
    return int(ray.cluster_resources().get(SLOT, 0))


def cluster_cpus() -> int:
    """CPUs the cluster offers now (exports and evaluation shards take one each)."""
    return int(ray.cluster_resources().get("CPU", 0))


# --- on the node ---------------------------------------------------------------------------

def _initial_environ() -> set[str]:
    """Names set in this process's environment when it started (Linux), or the current ones."""
    try:
        raw = Path("/proc/self/environ").read_bytes()
    except OSError:
        return set(os.environ)
    return {item.split(b"=", 1)[0].decode(errors="replace") for item in raw.split(b"\0") if item}


def _node_executor(env: dict) -> LocalProcessExecutor:
    """The local executor as this node runs it: the node's environment, without the
    OMP_NUM_THREADS Ray sets for the length of a task (the worker would not have it locally)."""
    executor = LocalProcessExecutor(env=env, die_with_parent=True)
    if "OMP_NUM_THREADS" not in env and "OMP_NUM_THREADS" not in _initial_environ():
        executor.env.pop("OMP_NUM_THREADS", None)
    return executor


def _here() -> dict:
    return {"node_id": ray.get_runtime_context().get_node_id(), "node_host": socket.gethostname()}


def _pack_entry(artifact: str) -> dict[str, bytes]:
    """The cache entry of `artifact` as bytes, for another node's cache (ArtifactCache.pack)."""
    from converters.cache import ArtifactCache

    return ArtifactCache.pack(Path(artifact).parent)


def _unpack_entry(box: list) -> tuple[str, float]:
    """The artifact of `box` ([cache key, file name, object ref of its packed entry]) in this
    node's cache: taken from there when present, else fetched from the object store and
    imported under the key's build lock with every file's SHA-256 checked
    (ArtifactCache.import_entry). Returns (path, seconds spent fetching)."""
    from converters.cache import ArtifactCache

    cache = ArtifactCache()
    key, filename, ref = box
    hit = cache.lookup(key, filename)
    if hit is not None:
        return str(hit.artifact), 0.0
    start = time.perf_counter()
    entry = cache.import_entry(key, filename, ray.get(ref))
    return str(entry.artifact), time.perf_counter() - start


@ray.remote(num_cpus=1, max_retries=2)
def _export_task(job: ExportJob, timeout_s: float, env: dict):
    """Build one artifact on this node; yield its outcome, then (if built) its cache entry."""
    outcome = _node_executor(env).run(job, timeout_s)
    outcome.result.update(_here())
    yield asdict(outcome)
    if outcome.ok:
        yield _pack_entry(outcome.result["artifact"])


@ray.remote(num_cpus=0, resources={SLOT: 1}, max_retries=0)
def _cell_task(job: CellJob, timeout_s: float, env: dict, artifact_box: list | None):
    """Run one cell on this node: yield a 'started' record once the slot is held and the
    artifact is here, then the outcome."""
    here = _here()
    fetch, artifact = {}, None
    problem = ""
    if job.data and job.data.path and not Path(job.data.path).exists():
        problem = (f"dataset not found on node {here['node_host']}: {job.data.path} (every "
                   "node reads the data at the same path)")
    elif artifact_box:
        artifact, seconds = _unpack_entry(artifact_box)
        job = job.with_artifact(artifact)
        fetch = {"artifact_fetch_s": seconds}
    yield {**here, "started_at": time.time()}
    if problem:
        yield asdict(JobOutcome(False, dict(here), problem, None, 0.0))
        return
    outcome = _node_executor(env).run(job, timeout_s)
    outcome.result.update(here, **fetch)
    outcome.artifact = artifact
    yield asdict(outcome)


@ray.remote(num_cpus=0)
def _describe_task() -> dict:
    from bench.results.environment import environment

    return {**_here(), **environment()}


# --- on the driver -------------------------------------------------------------------------

def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:300] if text else ''}".rstrip(": ")


def _failure(exc: BaseException, where: dict, wall_s: float) -> JobOutcome:
    """A Ray error as a failed outcome; a lost node or worker is marked for --resume."""
    if isinstance(exc, rex.RayTaskError):  # raised in our task code: the cause is the story
        exc = exc.cause
        if not isinstance(exc, LOST):
            return JobOutcome(False, dict(where), f"task failed: {_one_line(exc)}", None, wall_s)
    lost = isinstance(exc, LOST)
    on = f" on node {where['node_id'][:8]} ({where.get('node_host')})" if where.get("node_id") else ""
    what = "lost its node" if lost else "Ray could not run it"
    return JobOutcome(False, dict(where), f"{what}{on}: {_one_line(exc)}", None, wall_s,
                      lost_node=lost)


class RayExecutor(Executor):
    """The Executor on a Ray cluster (connect first, e.g. with `ray_session`).

    `env` is added to each worker process's environment on the nodes (as for the local
    executor). `running` maps the label of each cell now running to its node id.
    """

    def __init__(self, env: dict | None = None, grace_s: float = GRACE_S):
        self.env = dict(env or {})
        self.grace_s = grace_s
        self.running: dict[str, str] = {}
        self._payloads: dict[str, list] = {}  # artifact path as built -> [key, filename, ref]
        self._live: set = set()
        self._lock = threading.Lock()
        self._nodes: dict[str, dict] = {}

    def run(self, job: Job, timeout_s: float) -> JobOutcome:
        """Run an export or a cell as a Ray task and wait for its outcome (thread-safe)."""
        start = time.perf_counter()
        export = isinstance(job, ExportJob)
        if export and job.is_cached():
            return self._export_served_here(job, timeout_s)
        if export:
            gen = _export_task.options(num_returns="streaming").remote(job, timeout_s, self.env)
        else:
            box = self._payloads.get(job.artifact or "")
            gen = _cell_task.options(num_returns="streaming").remote(job, timeout_s, self.env, box)
        with self._lock:
            self._live.add(gen)
        try:
            return self._follow(gen, job, timeout_s, export, start)
        finally:
            with self._lock:
                self._live.discard(gen)
                self.running.pop(job.label, None)

    def _export_served_here(self, job: ExportJob, timeout_s: float) -> JobOutcome:
        """An export this machine's cache already holds: served here (a cache hit, in a worker
        process like any export) and put in the object store for the cells' nodes, instead of
        a task that a node with an empty cache would spend a rebuild on."""
        outcome = _node_executor(self.env).run(job, timeout_s)
        outcome.result.update(_here())
        if outcome.ok:
            artifact = Path(outcome.result["artifact"])
            with self._lock:
                self._payloads[str(artifact)] = [artifact.parent.name, artifact.name,
                                                 ray.put(_pack_entry(str(artifact)))]
        return outcome

    def _follow(self, gen, job: Job, timeout_s: float, export: bool, start: float) -> JobOutcome:
        where: dict = {}
        try:
            if not export:
                # Queued until a node's slot is free: no deadline, as long as slots exist.
                while not ray.wait([gen], timeout=POLL_S)[0]:
                    if cluster_slots() == 0:
                        ray.cancel(gen)
                        return JobOutcome(False, {}, f"no node with a {SLOT} left in the Ray "
                                          "cluster", None, time.perf_counter() - start)
                where = ray.get(next(gen))
                where.pop("started_at", None)
                with self._lock:
                    self.running[job.label] = where["node_id"]
                # The node kills a worker at timeout_s itself; this only catches a node that
                # stopped answering.
                if not ray.wait([gen], timeout=timeout_s + self.grace_s)[0]:
                    ray.cancel(gen, force=True)
                    return JobOutcome(False, dict(where), f"no answer from node "
                                      f"{where['node_id'][:8]} ({where['node_host']}) within "
                                      f"{timeout_s + self.grace_s:g} s (task cancelled)", None,
                                      time.perf_counter() - start)
            outcome = JobOutcome(**ray.get(next(gen)))
            if export and outcome.ok:
                ref = next(gen)
                with self._lock:
                    self._payloads[outcome.result["artifact"]] = [
                        Path(outcome.result["artifact"]).parent.name,
                        Path(outcome.result["artifact"]).name, ref]
            return outcome
        except rex.RayError as exc:
            return _failure(exc, where, time.perf_counter() - start)
        except StopIteration:  # the task ended without saying how: never expected
            return JobOutcome(False, dict(where), "the Ray task ended without an outcome", None,
                              time.perf_counter() - start)

    def stop_all(self) -> None:
        """Cancel every task still queued or running (an interrupted run): a running task's
        node-side executor kills its worker process group."""
        with self._lock:
            live = list(self._live)
        for gen in live:
            ray.cancel(gen)

    def describe_nodes(self) -> list[dict]:
        """Every node that was alive while this executor ran: its Ray facts and the
        environment block (bench.results.environment.environment) measured on it."""
        alive = {n["NodeID"]: n for n in ray.nodes() if n["Alive"]}
        new = [nid for nid in alive if nid not in self._nodes]
        refs = {nid: _describe_task.options(
                    scheduling_strategy=NodeAffinitySchedulingStrategy(nid, soft=False)).remote()
                for nid in new}
        for nid, ref in refs.items():
            node = alive[nid]
            facts = {"node_id": nid, "host": node["NodeManagerHostname"],
                     "address": node["NodeManagerAddress"],
                     "cpus": node["Resources"].get("CPU", 0),
                     "slots": node["Resources"].get(SLOT, 0)}
            try:
                facts["environment"] = ray.get(ref, timeout=120)
            except rex.RayError as exc:
                facts["environment_error"] = _one_line(exc)
            self._nodes[nid] = facts
        for nid, facts in self._nodes.items():
            facts["alive"] = nid in alive
        return list(self._nodes.values())


def version_mismatches(nodes: list[dict], driver: dict) -> list[str]:
    """One line per node whose code or libraries differ from the driver's environment."""
    def differs(what: str, theirs, mine) -> str:
        return f"{what} {theirs or 'absent'} vs {mine or 'absent'}"

    lines = []
    for node in nodes:
        env = node.get("environment")
        if not env:
            continue
        diffs = []
        if env.get("git_revision") != driver.get("git_revision"):
            diffs.append(differs("git", env.get("git_revision"), driver.get("git_revision")))
        libs, mine = env.get("libraries", {}), driver.get("libraries", {})
        diffs += [differs(lib, libs.get(lib), mine.get(lib))
                  for lib in sorted(set(libs) | set(mine)) if libs.get(lib) != mine.get(lib)]
        if diffs:
            lines.append(f"node {node['node_id'][:8]} ({node['host']}): " + ", ".join(diffs))
    return lines


# --- sharded evaluation --------------------------------------------------------------------

@ray.remote(num_cpus=1)
def _eval_shard(open_session: Callable, samples: list, protocols: list, classes: tuple,
                fps: float | None, stride: int) -> list:
    from bench.evaluation.evaluate import evaluate

    session = open_session()
    try:
        return [evaluate(session, samples, p, classes=classes, fps=fps, stride=stride,
                         keep_traces=False) for p in protocols]
    finally:
        session.close()


def evaluate_sharded(open_session: Callable, samples: Sequence, protocols: Sequence, *,
                     classes: Sequence[str], shards: int, fps: float | None = None,
                     stride: int = 1, cpus: int = 1) -> list:
    """Evaluate `samples` under each protocol in `shards` Ray tasks of consecutive videos.

    `open_session` (picklable, e.g. a functools.partial of a module-level function) opens the
    model on the node. Per-video rows come back in the samples' order and the metrics are
    computed from all of them at once, exactly as one process would. Returns one
    bench.evaluation.evaluate.EvalResult per protocol.
    """
    import numpy as np

    from bench.evaluation.evaluate import EvalResult, compute_metrics

    if shards < 1:
        raise MovibenchError(f"--shards must be >= 1, got {shards}")
    if not samples:
        raise MovibenchError("no videos to evaluate")
    began = time.perf_counter()
    parts = [list(ix) for ix in np.array_split(np.arange(len(samples)), shards) if len(ix)]
    task = _eval_shard.options(num_cpus=cpus)
    refs = [task.remote(open_session, [samples[i] for i in ix], list(protocols), tuple(classes),
                        fps, stride) for ix in parts]
    try:
        shard_results = ray.get(refs)
    except rex.RayTaskError as exc:
        if isinstance(exc.cause, MovibenchError):  # bad input found on the node: one line
            raise exc.cause from None
        raise
    wall = time.perf_counter() - began
    merged = []
    for i, first in enumerate(shard_results[0]):
        videos = [v for shard in shard_results for v in shard[i].videos]
        merged.append(EvalResult(first.model, first.runtime, first.protocol, first.classes,
                                 videos, compute_metrics(videos, first.classes), wall))
    return merged
