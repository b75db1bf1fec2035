"""ONNX Runtime: runs an exported .onnx artifact; imports onnxruntime only, never TensorFlow.

With IO binding (the default) the next states stay OrtValues in the provider's memory (host for
the CPU provider, device for CUDA/TensorRT) and are bound straight back as the next step's
inputs, so carrying 40-odd stream buffers costs no numpy conversion or host round trip.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ArtifactError, MissingDependencyError, MovibenchError, first_line
from core.manifest import IMAGE_INPUT, LOGITS_OUTPUT, StateManifest
from runtimes.base import (
    PROFILE_CALLS, ExecutionFacts, Session, StateHandle, States, TensorInfo, profile_columns,
    profile_legend, run_calls,
)

# ORT's type strings ('tensor(float)') → numpy dtype names.
ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
             "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(int16)": "int16",
             "tensor(int32)": "int32", "tensor(int64)": "int64", "tensor(bool)": "bool"}
PROVIDER_ALIASES = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
                    "tensorrt": "TensorrtExecutionProvider"}
# Providers whose outputs live in CUDA device memory when bound by device.
CUDA_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")
OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")
EXECUTION_MODES = ("sequential", "parallel")
# Nodes that move data between layouts (the blocked NCHWc convolutions and the plain NCHW/NHWC of
# everything else) rather than compute.
LAYOUT_NODES = ("ReorderInput", "ReorderOutput", "Transpose")
# The session config entry of intra-op spinning: idle pool threads busy-wait for the next op
# ('1', ONNX Runtime's default) instead of sleeping ('0').
SPINNING_ENTRY = "session.intra_op.allow_spinning"


def _inference_session(path: Path, options, providers: list[str]):
    """An InferenceSession of the file at `path`, or a one-line ArtifactError."""
    import onnxruntime as ort

    try:
        # On a load error ORT prints four lines to stdout and retries with its fallback
        # providers (the same CPU one here): keep stdout clean for --json.
        with contextlib.redirect_stdout(io.StringIO()):
            return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # ORT raises its own Fail/InvalidProtobuf/... types
        raise ArtifactError(f"cannot load ONNX model {path}: {first_line(exc)}") from None


class OrtState(StateHandle):
    """A state held as an OrtValue (host or device memory, wherever the provider put it)."""

    def __init__(self, value):
        self.value = value
        self.shape = tuple(value.shape())
        self.dtype = np.dtype(ORT_TYPES.get(value.data_type(), "void"))

    def numpy(self) -> np.ndarray:
        return self.value.numpy()


def resolve_providers(providers: list[str] | tuple[str, ...] | str | None) -> list[str]:
    """Provider names ('cpu', 'cuda', 'tensorrt' or ORT's full names), CPU appended as fallback.

    Raises MissingDependencyError naming a provider this onnxruntime build does not have.
    """
    import onnxruntime as ort

    if providers is None:
        return ["CPUExecutionProvider"]
    names = [providers] if isinstance(providers, str) else list(providers)
    resolved = [PROVIDER_ALIASES.get(p.lower(), p) for p in names]
    available = ort.get_available_providers()
    for name in resolved:
        if name not in available:
            raise MissingDependencyError(
                f"ONNX Runtime provider {name} is not available in this onnxruntime build "
                f"(available: {', '.join(available)})")
    if "CPUExecutionProvider" not in resolved:
        resolved.append("CPUExecutionProvider")  # runs the nodes a GPU provider does not take
    return resolved


@dataclass(frozen=True)
class OrtSettings:
    """How a session runs its graph, besides intra-op threads, providers and IO binding: the
    knobs `movibench tune onnxruntime` measures. The defaults are what every benchmark cell
    uses: one op at a time (a streaming step is a chain; parallel ops only fight for the
    cores), every graph optimization, idle intra-op threads spinning (ORT's own default).

    Fields are keywords of `OnnxRuntimeSession.open`; an invalid value is a one-line
    MovibenchError when the settings are made, before any file is read.
    """

    optimization_level: str = "all"  # 'disable', 'basic', 'extended' or 'all'
    execution_mode: str = "sequential"  # 'sequential' or 'parallel' (independent nodes at once)
    spinning: bool = True  # idle intra-op threads busy-wait for work instead of sleeping
    # Threads running independent nodes at once (parallel mode only; None: one per core).
    inter_op_threads: int | None = 1

    def __post_init__(self):
        if self.optimization_level not in OPTIMIZATION_LEVELS:
            raise MovibenchError(f"unknown ONNX Runtime optimization level "
                                 f"{self.optimization_level!r}; known: {', '.join(OPTIMIZATION_LEVELS)}")
        if self.execution_mode not in EXECUTION_MODES:
            raise MovibenchError(f"unknown ONNX Runtime execution mode {self.execution_mode!r}; "
                                 f"known: {', '.join(EXECUTION_MODES)}")
        if not isinstance(self.spinning, bool):
            raise MovibenchError(f"ONNX Runtime spinning must be True or False, got {self.spinning!r}")
        threads = self.inter_op_threads
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                    or threads < 1):
            raise MovibenchError("ONNX Runtime inter-op threads must be an integer >= 1 (or None "
                                 f"for one per core), got {threads!r}")

    @property
    def label(self) -> str:
        """The settings in words: 'all/sequential/spin', 'basic/parallel×2/no-spin'."""
        mode = self.execution_mode
        if mode == "parallel":
            mode += f"×{self.inter_op_threads or 'auto'}"
        return f"{self.optimization_level}/{mode}/{'spin' if self.spinning else 'no-spin'}"

    def to_dict(self) -> dict[str, Any]:
        """The settings as `open` keywords."""
        return asdict(self)


def session_options(threads: int | None, settings: OrtSettings = OrtSettings()):
    """The SessionOptions a session of this runtime is opened with: `threads` intra-op
    threads (None or 0: ONNX Runtime's default of one per core) and `settings`."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or 0
    options.inter_op_num_threads = settings.inter_op_threads or 0
    options.execution_mode = {"sequential": ort.ExecutionMode.ORT_SEQUENTIAL,
                              "parallel": ort.ExecutionMode.ORT_PARALLEL}[settings.execution_mode]
    options.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[settings.optimization_level]
    # Always set, so a session's options say it either way (an unset entry cannot be read).
    options.add_session_config_entry(SPINNING_ENTRY, "1" if settings.spinning else "0")
    return options


def options_settings(options) -> dict[str, Any]:
    """What a session's SessionOptions hold, under `open`'s keyword names ('threads': intra-op,
    0 meaning ONNX Runtime's default of one per core)."""
    import onnxruntime as ort

    modes = {ort.ExecutionMode.ORT_SEQUENTIAL: "sequential",
             ort.ExecutionMode.ORT_PARALLEL: "parallel"}
    levels = {ort.GraphOptimizationLevel.ORT_DISABLE_ALL: "disable",
              ort.GraphOptimizationLevel.ORT_ENABLE_BASIC: "basic",
              ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED: "extended",
              ort.GraphOptimizationLevel.ORT_ENABLE_ALL: "all"}
    try:
        spinning = options.get_session_config_entry(SPINNING_ENTRY) != "0"
    except RuntimeError:  # ORT raises for an entry never set: its default, spinning, applies
        spinning = True
    level = options.graph_optimization_level
    return {"threads": options.intra_op_num_threads,
            "inter_op_threads": options.inter_op_num_threads,
            "execution_mode": modes.get(options.execution_mode, str(options.execution_mode)),
            "optimization_level": levels.get(level, str(level)),
            "spinning": spinning}


def profile_facts(events: list[dict]) -> ExecutionFacts:
    """Shares of node time per op type and per execution provider, from the trace ONNX
    Runtime's profiler writes (`end_profiling`: Chrome trace events, durations in µs).

    Only the node events of the second run on count: the first run allocates and initialises
    lazily, which is not what a streamed step costs. Raises MovibenchError for a trace with
    fewer than two runs.
    """
    runs = sorted(e["ts"] for e in events if e.get("cat") == "Session" and e["name"] == "model_run")
    if len(runs) < 2:
        raise MovibenchError("an ONNX Runtime profile needs two runs or more, this one has "
                             f"{len(runs)}")
    nodes = [e for e in events if e.get("cat") == "Node" and e["ts"] >= runs[1]
             and e["name"].endswith("_kernel_time")]
    if not nodes:
        raise MovibenchError("the ONNX Runtime profile has no node events after its first run")
    op_time, provider_time = Counter(), Counter()
    for event in nodes:
        op_time[event["args"]["op_name"]] += event["dur"]
        provider_time[event["args"].get("provider", "unknown")] += event["dur"]
    # Nodes under a microsecond are recorded as 0 µs: a trace of only those gives zero shares.
    total = sum(op_time.values()) or 1
    return ExecutionFacts(
        nodes=len({e["args"]["node_index"] for e in nodes}),
        op_time={op: t / total for op, t in op_time.most_common()},
        provider_time={p: t / total for p, t in provider_time.most_common()})


def _tensor_infos(node_args) -> list[TensorInfo]:
    return [TensorInfo(a.name, tuple(d if isinstance(d, int) else None for d in a.shape),
                       ORT_TYPES.get(a.type, a.type)) for a in node_args]


class OnnxRuntimeSession(Session):
    """An InferenceSession behind the streaming interface.

    Options (keywords of `open`, besides `threads`: intra-op threads, None for ONNX Runtime's
    default of one per core):
        providers: 'cpu' (default), 'cuda', 'tensorrt' or ORT provider names, in priority
            order; an unavailable one is a MissingDependencyError.
        io_binding: keep states as OrtValues between steps instead of numpy arrays (default True).
        optimization_level: graph optimizations: 'disable', 'basic', 'extended' or 'all' (default).
        execution_mode: 'sequential' (default: one node at a time) or 'parallel'.
        spinning: idle intra-op threads busy-wait for work (default True) or sleep (False).
        inter_op_threads: threads of the parallel mode (default 1; None: one per core).
    The last four are OrtSettings' fields; `settings()` reads them back from the session.
    """

    runtime = "onnxruntime"
    engine_name = "ONNX Runtime"
    artifact_kind = "ONNX"
    engine_modules = ("onnxruntime",)
    distribution = "onnxruntime"

    @classmethod
    def facts_legend(cls) -> tuple[str, str]:
        return profile_legend(
            cls.engine_name, "its own profiler's node times per op type",
            "Nodes are those of the graph after ONNX Runtime's optimizations (fused and layout "
            "nodes such as ReorderInput included); the time between nodes is not in the shares.")

    @classmethod
    def facts_columns(cls, facts: ExecutionFacts) -> dict[str, Any] | None:
        return profile_columns(facts, "providers")

    @classmethod
    def facts_reading(cls, facts: ExecutionFacts) -> str | None:
        if facts.op_time is None:
            return None
        shares = facts.op_time
        layout = sum(shares.get(op, 0.0) for op in LAYOUT_NODES)
        return (f"{100 * layout:.1f} % of node time converts layouts ({', '.join(LAYOUT_NODES)}), "
                f"{100 * shares.get('Conv', 0.0):.1f} % is convolution; the rest is elementwise "
                "and shape nodes the runtime did not fuse into them")

    def __init__(self, session, manifest: StateManifest, io_binding: bool, path: Path,
                 threads: int | None, settings: OrtSettings):
        super().__init__(manifest)
        self.session = session
        # How it was opened, for a profiling session opened the same way (execution_facts).
        self.path = path
        self._threads = threads
        self._settings = settings
        self.providers = session.get_providers()
        on_cuda = self.providers[0] in CUDA_PROVIDERS
        self._device = "cuda" if on_cuda else "cpu"
        self._binding = session.io_binding() if io_binding else None
        self._outputs = manifest.output_names

    @property
    def io_binding(self) -> bool:
        return self._binding is not None

    @classmethod
    def _load(cls, path: Path, manifest: StateManifest, threads: int | None,
              providers: list[str] | str | None = None, io_binding: bool = True,
              optimization_level: str = "all", execution_mode: str = "sequential",
              spinning: bool = True, inter_op_threads: int | None = 1) -> OnnxRuntimeSession:
        """An InferenceSession of the .onnx file at `path`, with the options in the class
        docstring."""
        settings = OrtSettings(optimization_level, execution_mode, spinning, inter_op_threads)
        options = session_options(threads, settings)
        session = _inference_session(path, options, resolve_providers(providers))
        return cls(session, manifest, io_binding, path, threads, settings)

    def settings(self) -> dict[str, Any]:
        """What the session was really built with, read back from ONNX Runtime (the session's
        own copy of its SessionOptions, `options_settings`), plus its providers and IO binding:
        the keywords of `open`, so `open_session(path, **settings())` opens it alike."""
        return {**options_settings(self.session.get_session_options()),
                "providers": list(self.providers), "io_binding": self.io_binding}

    def declared_io(self) -> tuple[list[TensorInfo], list[TensorInfo]]:
        """The graph's inputs and outputs as ONNX Runtime reads them."""
        return _tensor_infos(self.session.get_inputs()), _tensor_infos(self.session.get_outputs())

    def multiply_adds(self) -> int:
        """Multiply-adds per call, counted from the ONNX file's graph
        (runtimes.onnx_file.onnx_multiply_adds)."""
        from runtimes.onnx_file import onnx_multiply_adds

        return onnx_multiply_adds(self.path)

    def execution_facts(self, frames: np.ndarray, calls: int = PROFILE_CALLS) -> ExecutionFacts:
        """Where a call's time goes by op type and provider, from ONNX Runtime's own profiler
        (`profile_facts`) over `calls` calls on `frames`, states carried from call to call.

        The calls run on a second session opened like this one (file, threads, OrtSettings,
        providers, IO binding) with profiling on: profiling records an event per node
        and call, and this session, the timed one, never does.
        """
        options = session_options(self._threads, self._settings)
        options.enable_profiling = True
        with tempfile.TemporaryDirectory(prefix="movibench-ort-profile-") as tmp:
            options.profile_file_prefix = str(Path(tmp) / "profile")
            profiled = type(self)(_inference_session(self.path, options, self.providers),
                                  self.manifest, self.io_binding, self.path, self._threads,
                                  self._settings)
            run_calls(profiled, frames, calls)
            events = json.loads(Path(profiled.session.end_profiling()).read_text())
        return profile_facts(events)

    def _step(self, frames: np.ndarray, states: States) -> tuple[np.ndarray, States]:
        if self._binding is None:
            feeds = {IMAGE_INPUT: np.ascontiguousarray(frames)}
            feeds.update({s.input_name: np.asarray(states[s.name]) for s in self.manifest.states})
            values = dict(zip(self._outputs, self.session.run(self._outputs, feeds)))
            return values[LOGITS_OUTPUT], {s.name: values[s.output_name] for s in self.manifest.states}
        binding = self._binding
        binding.bind_cpu_input(IMAGE_INPUT, np.ascontiguousarray(frames))
        for spec in self.manifest.states:
            value = states[spec.name]
            if isinstance(value, OrtState):
                binding.bind_ortvalue_input(spec.input_name, value.value)
            else:
                binding.bind_cpu_input(spec.input_name, np.ascontiguousarray(value))
        # Rebind outputs every step: ORT then allocates fresh OrtValues, so the states returned
        # last step (bound as inputs now) are never overwritten while being read.
        binding.clear_binding_outputs()
        for name in self._outputs:
            binding.bind_output(name, self._device)
        self.session.run_with_iobinding(binding)
        if self._device != "cpu":
            binding.synchronize_outputs()
        outputs = binding.get_outputs()
        next_states = {s.name: OrtState(v) for s, v in zip(self.manifest.states, outputs[1:])}
        return outputs[0].numpy(), next_states

    def _predict(self, clip: np.ndarray) -> np.ndarray:
        return self.session.run([LOGITS_OUTPUT], {IMAGE_INPUT: clip})[0]
