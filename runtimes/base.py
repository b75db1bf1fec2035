"""The streaming interface shared by every runtime.

`Session` does the shared work once: `open` loads an artifact and checks it against its state
manifest, each call's inputs are checked against the manifest, and the engine call alone is
timed. Each runtime fills in `_load` and `declared_io` (loading) and `_step` (causal models) or
`_predict` (clip models).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from core.errors import (
    ArtifactError, MissingDependencyError, MovibenchError, StateError, first_line,
)
from core.formats import FORMATS, get_format
from core.manifest import IMAGE_INPUT, LAYOUT_4D, LOGITS_OUTPUT, StateManifest

States = Mapping[str, Any]
# Calls a profiling session runs (Session.execution_facts); the first is left out of the shares.
PROFILE_CALLS = 8
# Where a profiling runtime's shares come from, in the words of its facts_legend.
_PROFILED = (f"over {PROFILE_CALLS} calls on the timed calls' input (a stream model's states "
            "carried from call to call), the first call left out; on a second session opened "
            "like the timed one, so the timed calls are never profiled.")


class StateHandle(ABC):
    """A state kept in a runtime's own memory (an ORT OrtValue, a TensorRT device buffer).

    It has `shape` and `dtype` like an array, so `Session.check_states` validates it, and
    passing it back to the session that made it avoids any host copy. `numpy()` (or
    `np.asarray(handle)`) copies it to the host, e.g. to hand states to another runtime.
    """

    shape: tuple[int, ...]
    dtype: np.dtype

    @abstractmethod
    def numpy(self) -> np.ndarray:
        """The state's value, copied to a host array."""

    def __array__(self, dtype=None, copy=None):
        value = self.numpy()
        return value if dtype is None else value.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={list(self.shape)}, dtype={np.dtype(self.dtype)})"


@dataclass(frozen=True)
class TensorInfo:
    """One graph input or output as an artifact declares it; None marks a symbolic dim.

    `dtype` is a numpy dtype name ('float32'), or the engine's own name for a type numpy lacks.
    """

    name: str
    shape: tuple[int | None, ...]
    dtype: str


@dataclass(frozen=True)
class DeviceMemoryInfo:
    """One reading of a GPU's memory (bytes), with what the loaded engine reserves on it.

    `engine_bytes` is None for a device-wide reading taken without an engine (before loading).
    """

    free_bytes: int
    total_bytes: int
    engine_bytes: int | None = None

    @property
    def used_bytes(self) -> int:
        """Memory in use on the whole device (every process), not only this engine's."""
        return self.total_bytes - self.free_bytes


@dataclass(frozen=True)
class ExecutionFacts:
    """How an engine runs a loaded artifact, in the engine's own terms (`Session.execution_facts`).

    LiteRT fills the delegation fields from its node table, ONNX Runtime and OpenVINO the time
    fields from their own profilers; a field the runtime cannot tell is None. Mappings are
    ordered largest value first.
    """

    nodes: int  # graph nodes the engine runs (LiteRT: the file's ops; ORT/OpenVINO: after fusions)
    partitions: int | None = None  # delegate kernels the graph was cut into (LiteRT: XNNPACK's)
    delegated_nodes: int | None = None  # nodes run inside those delegate kernels
    builtin_ops: Mapping[str, int] | None = None  # 'OP dtype' -> nodes left on built-in kernels
    op_time: Mapping[str, float] | None = None  # op type -> share of the profiled node time
    # execution provider (OpenVINO: kernel implementation) -> share of node time
    provider_time: Mapping[str, float] | None = None


def profile_legend(engine: str, source: str, nodes: str) -> tuple[str, str]:
    """`Session.facts_legend` of a runtime whose own profiler fills `op_time` and
    `provider_time`: `source` names that profiler, `nodes` says what its nodes are."""
    return (f"{engine}: {source}, {_PROFILED} {nodes}",
            f"{engine}: share of node time per op type, largest first")


def profile_columns(facts: ExecutionFacts, providers: str) -> dict[str, Any] | None:
    """`Session.facts_columns` of a runtime whose own profiler fills `op_time` and
    `provider_time` (`providers`: what the latter's keys are, e.g. 'kernels')."""
    if facts.op_time is None:
        return None
    return {"share of node time (%)": facts.op_time,
            f"{providers} (% of node time)": facts.provider_time}


def manifest_io(manifest: StateManifest) -> tuple[list[TensorInfo], list[TensorInfo]]:
    """The inputs and outputs an artifact of `manifest` must have, per the state contract."""
    inputs = [TensorInfo(IMAGE_INPUT, manifest.image_shape, "float32")]
    inputs += [TensorInfo(s.input_name, s.shape, s.dtype) for s in manifest.states]
    outputs = [TensorInfo(LOGITS_OUTPUT, (1, manifest.num_classes), "float32")]
    outputs += [TensorInfo(s.output_name, s.shape, s.dtype) for s in manifest.states]
    return inputs, outputs


def check_artifact_io(path, manifest: StateManifest, inputs: list[TensorInfo],
                      outputs: list[TensorInfo]) -> None:
    """Raise ArtifactError naming the first way the artifact's I/O differs from `manifest`.

    A symbolic dim in the artifact where the manifest has a number is fine (the artifact is
    more general); the reverse is not: the manifest would promise shapes the artifact refuses.
    """
    expected_in, expected_out = manifest_io(manifest)
    for kind, expected, found in (("input", expected_in, inputs), ("output", expected_out, outputs)):
        have = {t.name: t for t in found}
        want = {t.name: t for t in expected}
        missing = [n for n in want if n not in have]
        extra = [n for n in have if n not in want]
        if missing or extra:
            what = (f"has no {kind} {missing[0]!r} that the manifest names" if missing else
                    f"has an {kind} {extra[0]!r} that the manifest does not name")
            raise ArtifactError(f"{path} does not match its manifest: it {what}")
        for name, spec in want.items():
            got = have[name]
            dims_ok = len(got.shape) == len(spec.shape) and all(
                g is None and s is not None or g == s for g, s in zip(got.shape, spec.shape))
            if not dims_ok:
                raise ArtifactError(
                    f"{path} does not match its manifest: {kind} {name!r} has shape "
                    f"{_dims(got.shape)}, the manifest says {_dims(spec.shape)}")
            if got.dtype != np.dtype(spec.dtype).name:
                raise ArtifactError(
                    f"{path} does not match its manifest: {kind} {name!r} has dtype "
                    f"{got.dtype}, the manifest says {spec.dtype}")


def _dims(shape: tuple[int | None, ...]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


class Session(ABC):
    """A loaded artifact that predicts logits; subclasses implement `_step` or `_predict`.

    `step_ns` holds the duration of every engine call (perf_counter_ns around `_step` /
    `_predict` only, excluding input checks), so harness overhead can be measured, not assumed.
    """

    runtime: str = "base"
    engine_name: str = ""  # the engine as its users call it ('ONNX Runtime'), for reports
    # What this runtime's artifacts are called in messages ('TFLite' -> 'TFLite artifact').
    artifact_kind: str = "exported"
    # The modules that are this runtime's engine: importing them is what a process pays before
    # it can load any model (benchmarks take their idle memory baseline after this import).
    engine_modules: tuple[str, ...] = ()
    # The installed distribution whose version decides the numbers (a row's runtime_version).
    distribution: str = ""

    @classmethod
    def import_engine(cls) -> None:
        """Import this runtime's engine; MissingDependencyError names what is not installed."""
        import importlib

        for name in cls.engine_modules:
            try:
                importlib.import_module(name)
            except ImportError as exc:
                raise MissingDependencyError(
                    f"runtime {cls.runtime!r} needs {name}, which cannot be imported: {exc}") from None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # `open` is the one loading sequence, closing a refused session included: a runtime
        # fills in its steps (`_load`, `declared_io`, `_prepare`) and never replaces it.
        if "open" in vars(cls):
            raise TypeError(f"{cls.__name__} overrides Session.open; implement _load and "
                            "declared_io instead")

    def __init__(self, manifest: StateManifest):
        self.manifest = manifest
        self.step_ns: list[int] = []
        # The read-only states this session handed out last: passed back untouched, they are
        # known to fit the manifest, so the per-state check (tens of microseconds for ~40
        # states, several % of a sub-millisecond step) is skipped for them.
        self._issued: Mapping[str, Any] | None = None
        # A 4-D artifact's image tensor is its one frame: callers still pass [1, 1, H, W, 3].
        self._engine_image = manifest.image_shape if manifest.layout == LAYOUT_4D else None

    # -- checks against the manifest -------------------------------------------------------
    def check_frames(self, frames: np.ndarray) -> None:
        """Raise StateError unless `frames` is float32 [1, T, H, W, 3] that this artifact takes."""
        m = self.manifest
        if not isinstance(frames, np.ndarray):
            raise StateError(f"image must be a numpy array, got {type(frames).__name__}")
        if frames.dtype != np.float32:
            raise StateError(f"image dtype must be float32, got {frames.dtype}")
        if frames.ndim != 5 or frames.shape[0] != 1 or frames.shape[2:] != (m.resolution, m.resolution, 3):
            raise StateError(
                f"image shape must be [1, T, {m.resolution}, {m.resolution}, 3], got {list(frames.shape)}")
        if frames.shape[1] < 1:
            raise StateError("image must hold at least one frame")
        if m.frames_per_call is not None and frames.shape[1] != m.frames_per_call:
            raise StateError(
                f"this {m.format} artifact takes exactly {m.frames_per_call} frame(s) per call, "
                f"got {frames.shape[1]}")

    def check_states(self, states: States) -> None:
        """Raise StateError naming the first missing, extra or mis-shaped/typed state."""
        expected = {s.name: s for s in self.manifest.states}
        missing = sorted(set(expected) - set(states))
        extra = sorted(set(states) - set(expected))
        if missing:
            raise StateError(f"missing state {missing[0]!r} ({len(missing)} missing in all)")
        if extra:
            raise StateError(f"unexpected state {extra[0]!r}; the manifest has no such state")
        for name, spec in expected.items():
            value = states[name]
            if not hasattr(value, "shape") or not hasattr(value, "dtype"):
                raise StateError(f"state {name!r} must be an array, got {type(value).__name__}")
            shape = tuple(value.shape)
            if shape != spec.shape:
                raise StateError(f"state {name!r} has shape {list(shape)}, expected {list(spec.shape)}")
            if np.dtype(value.dtype) != np.dtype(spec.dtype):
                raise StateError(f"state {name!r} has dtype {np.dtype(value.dtype)}, expected {spec.dtype}")

    # -- public calls ----------------------------------------------------------------------
    def _issue(self, states: dict[str, Any]) -> Mapping[str, Any]:
        self._issued = MappingProxyType(states)
        return self._issued

    def init_states(self) -> States:
        """Fresh states from the manifest (zeros), as a read-only mapping."""
        return self._issue(self.manifest.init_states())

    def step(self, frames: np.ndarray, states: States) -> tuple[np.ndarray, States]:
        """Run T frames with `states`; return (logits [1, classes], next states).

        The next states come back as a read-only mapping; copy it (`dict(states)`) to change
        an entry — a changed mapping is checked against the manifest again.
        """
        if not self.manifest.causal:
            raise StateError(f"{self.manifest.model_id}/{self.manifest.variant} is not causal: "
                             "it has no states; use predict(clip)")
        self.check_frames(frames)
        if states is not self._issued:
            self.check_states(states)
        start = time.perf_counter_ns()
        try:
            logits, next_states = self._step(self.engine_frames(frames), states)
        except MovibenchError:
            raise
        except Exception as exc:  # the engine's own error types (ORT Fail, LiteRT RuntimeError)
            raise self._engine_error(exc) from None
        self.step_ns.append(time.perf_counter_ns() - start)
        return logits, self._issue(next_states)

    def predict(self, clip: np.ndarray) -> np.ndarray:
        """Logits of a whole clip [1, T, H, W, 3]; causal models start from fresh states."""
        self.check_frames(clip)
        if self.manifest.causal:
            logits, _ = self.step(clip, self.init_states())
            return logits
        start = time.perf_counter_ns()
        try:
            logits = self._predict(clip)
        except MovibenchError:
            raise
        except Exception as exc:
            raise self._engine_error(exc) from None
        self.step_ns.append(time.perf_counter_ns() - start)
        return logits

    def engine_frames(self, frames: np.ndarray) -> np.ndarray:
        """`frames` [1, T, H, W, 3] as the artifact's image tensor takes them (a view)."""
        return frames if self._engine_image is None else frames.reshape(self._engine_image)

    def _engine_error(self, exc: Exception) -> ArtifactError:
        """An engine that fails on inputs the manifest accepts: the artifact is broken (a
        damaged file can still load) or does not do what its manifest says."""
        m = self.manifest
        return ArtifactError(f"{self.runtime} failed to run the {m.format} artifact of "
                             f"{m.model_id}/{m.variant}: {first_line(exc)}")

    def step_unchecked(self, frames: np.ndarray, states: States) -> tuple[np.ndarray, States]:
        """The engine call of `step` alone: no input checks, no timing, no state bookkeeping.

        For harnesses that measure their own overhead against the bare engine: pass only
        inputs that `step` accepted (the states the last call returned).
        """
        logits, next_states = self._step(self.engine_frames(frames), states)
        # Issued like step's, so a harness call that follows takes them without re-checking.
        return logits, self._issue(next_states)

    def predict_unchecked(self, clip: np.ndarray) -> np.ndarray:
        """The engine call of `predict` alone (see `step_unchecked`)."""
        if self.manifest.causal:
            return self._step(self.engine_frames(clip), self.manifest.init_states())[0]
        return self._predict(clip)

    @classmethod
    def device_memory(cls) -> DeviceMemoryInfo | None:
        """The device's memory now, readable before any model is loaded; None: no device."""
        return None

    def device_memory_info(self) -> DeviceMemoryInfo | None:
        """The device's memory now and this engine's share of it; None for CPU runtimes."""
        return None

    def settings(self) -> dict[str, Any]:
        """How the engine was set up to run this session, as JSON-ready values (a results
        row keeps them in `runtime_settings`): what the engine reports back where it can, else
        what the session was opened with, under the names of `open`'s keywords where the
        runtime has them. Empty for a runtime with nothing to tell beyond the cell's threads.
        """
        return {}

    def multiply_adds(self) -> int | None:
        """Multiply-adds one call does in the artifact's convolutions and matrix products,
        counted from its graph (elementwise ops not counted); None: the runtime cannot tell."""
        return None

    def execution_facts(self, frames: np.ndarray) -> ExecutionFacts | None:
        """How the engine runs calls on `frames` (a timed call's input); None: nothing to tell.

        May run calls of its own (on a separate profiling session), so never call it inside a
        timed loop; the states and `step_ns` of this session are left as they were.
        """
        return None

    # What a report says of a latency cell's recorded ExecutionFacts is the runtime's to tell:
    # only it knows what its own profiler's or node table's figures mean. These classmethods
    # need neither a session nor the engine.
    @classmethod
    def facts_legend(cls) -> tuple[str, str] | None:
        """How a report introduces this runtime's ExecutionFacts: the paragraph before their
        table and the table's caption; None: the runtime records none."""
        return None

    @classmethod
    def facts_columns(cls, facts: ExecutionFacts) -> dict[str, Any] | None:
        """This runtime's columns of one deployment's row in that table: header -> a count
        (int), a share of 1 (float) or a mapping of either, largest first; None: `facts`
        hold nothing the table shows."""
        return None

    @classmethod
    def facts_reading(cls, facts: ExecutionFacts) -> str | None:
        """What `facts` say keeps the deployment off this runtime's fast kernels, in one
        sentence; None: nothing to say."""
        return None

    def close(self) -> None:
        """Release engine resources (no-op unless a runtime holds device memory)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- loading: one template, the engine-specific steps filled in by each runtime ------------
    @classmethod
    def open(cls, path, manifest: StateManifest, *, threads: int | None = None,
             **options) -> Session:
        """Load the artifact at `path` described by `manifest` (runtimes.loader calls this).

        The same sequence for every runtime: the manifest's format must be one this runtime
        runs, the file must exist, `_load` loads it with the engine, the session's
        `declared_io` is checked against the manifest (`check_artifact_io`), and `_prepare`
        sets up what needs an artifact known to match (TensorRT's device buffers). Whatever
        fails after loading, the session is closed before the error propagates, so a refused
        artifact leaves no engine resource behind.

        Args:
            path: the artifact file.
            manifest: its state manifest.
            threads: CPU threads for the engine (None: the engine's default).
            **options: this runtime's own options, listed in its class docstring.

        Raises:
            ArtifactError for a format of another runtime, a missing or corrupt file, or one
            whose inputs/outputs differ from the manifest (naming the first difference);
            MissingDependencyError when the engine (or a device it needs) is not available.
        """
        path = Path(path)
        spec = get_format(manifest.format)
        if spec.runtime != cls.runtime:
            own = [name for name, fmt in FORMATS.items() if fmt.runtime == cls.runtime]
            article = "an" if cls.artifact_kind[:1].upper() in "AEIOU" else "a"
            raise ArtifactError(
                f"the manifest of {path} names format {spec.name!r}, which is not {article} "
                f"{cls.artifact_kind} format (runtime {cls.runtime!r} runs "
                f"{', '.join(own) or 'no exported format'})")
        if not spec.exported:
            raise ArtifactError(f"the manifest of {path} names format {spec.name!r}, which has "
                                "no artifact to load")
        if not path.is_file():
            raise ArtifactError(f"{cls.artifact_kind} artifact not found: {path}")
        session = cls._load(path, manifest, threads, **options)
        try:
            check_artifact_io(path, manifest, *session.declared_io())
            session._prepare(path)
        except BaseException as exc:
            try:
                session.close()
            except Exception as close_exc:  # the refusal stays the error the caller sees
                exc.add_note(f"closing the refused session failed too: {first_line(close_exc)}")
            raise
        return session

    @classmethod
    def from_config(cls, config, checkpoint: str | Path | None = None, *,
                    threads: int | None = None) -> Session:
        """Build the model of `config` (a core.zoo.ModelConfig), restoring `checkpoint`: the
        way into a runtime that runs the model itself rather than an artifact (the TensorFlow
        reference; runtimes.loader.open_model picks it by format). A runtime of exported
        formats has nothing to build and refuses."""
        raise ArtifactError(f"runtime {cls.runtime!r} runs exported artifacts: open the "
                            f"{cls.artifact_kind} artifact of the model instead of its config")

    @classmethod
    def _load(cls, path: Path, manifest: StateManifest, threads: int | None,
              **options) -> Session:
        """Load the existing file at `path` with the engine and return the session around it
        (`open`'s runtime-specific step; `options` are the runtime's own, checked here).

        A file the engine cannot read is an ArtifactError naming the file and the engine's
        first line. Nothing that needs the artifact to match the manifest happens here: that
        is `_prepare`'s, after the check.
        """
        raise NotImplementedError(f"{cls.runtime} does not load artifacts")

    def declared_io(self) -> tuple[list[TensorInfo], list[TensorInfo]]:
        """The loaded artifact's inputs and outputs as its engine declares them, under the
        state contract's names (`open` checks them against the manifest)."""
        raise NotImplementedError(f"{self.runtime} does not load artifacts")

    def _prepare(self, path: Path) -> None:
        """Set up what needs an artifact whose I/O matches the manifest (default: nothing);
        `path` is for messages. `open` closes the session if this raises."""

    def _step(self, frames: np.ndarray, states: States) -> tuple[np.ndarray, States]:
        raise NotImplementedError(f"{self.runtime} does not run causal models")

    def _predict(self, clip: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{self.runtime} does not run clip models")


def chunks(frames: np.ndarray, size: int) -> Iterator[np.ndarray]:
    """Split [T, H, W, 3] (or [1, T, ...]) into [1, <=size, H, W, 3] chunks in order."""
    if frames.ndim == 5:
        frames = frames[0]
    for start in range(0, frames.shape[0], size):
        yield np.ascontiguousarray(frames[None, start:start + size], dtype=np.float32)


def run_calls(session: Session, frames: np.ndarray, calls: int,
              after_call: Callable[[], None] | None = None) -> None:
    """`calls` calls of `session` on `frames` (a causal model's states carried from call to
    call, a clip model's `predict`), `after_call()` after each: a profiling session's work."""
    states = session.init_states() if session.manifest.causal else None
    for _ in range(calls):
        if states is None:
            session.predict(frames)
        else:
            states = session.step(frames, states)[1]
        if after_call is not None:
            after_call()


def stream(session: Session, frame_chunks: Iterable[np.ndarray],
           states: States | None = None) -> tuple[np.ndarray, States]:
    """Feed chunks [1, C, H, W, 3] through `session.step`, carrying states.

    Returns (per-step logits [n_steps, classes], final states). The video's prediction under
    the `stream` protocol is the last row.
    """
    states = session.init_states() if states is None else states
    rows = []
    for chunk in frame_chunks:
        logits, states = session.step(chunk, states)
        rows.append(np.asarray(logits).reshape(-1))
    if not rows:
        raise StateError("stream() got no frames")
    return np.stack(rows), states
