"""TensorRT: runs a serialized engine with TensorRT 10 and cuda-python; imports lazily.

Every I/O tensor gets one device buffer, and every state two: step k reads `state_*` from one
and writes `next_state_*` into the other, and step k+1 swaps them (ping-pong), so states never
leave the GPU. Returned states are handles on those buffers; a handle stays valid until a later
step writes into its buffer (two steps on), after which using it raises StateError.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core.errors import ArtifactError, MovibenchError, StateError
from core.manifest import IMAGE_INPUT, LOGITS_OUTPUT, StateManifest
from runtimes.base import DeviceMemoryInfo, Session, StateHandle, States, TensorInfo

if TYPE_CHECKING:
    from core.tensorrt_cuda import DeviceBuffer


class DeviceState(StateHandle):
    """One state living in slot 0 or 1 of a session's ping-pong pair, as of one step."""

    def __init__(self, session: TensorRTSession, name: str, slot: int, generation: int):
        spec = session.manifest.state(name)
        self.shape, self.dtype = spec.shape, np.dtype(spec.dtype)
        self.session, self.name, self.slot, self.generation = session, name, slot, generation

    @property
    def valid(self) -> bool:
        return self.session.slot_generation(self.name, self.slot) == self.generation

    def numpy(self) -> np.ndarray:
        self.session.require_valid(self)
        host = np.empty(self.shape, self.dtype)
        return self.session.state_buffer(self.name, self.slot).download(host)


def _engine_io(trt, engine) -> tuple[list[TensorInfo], list[TensorInfo]]:
    """(inputs, outputs) an engine declares; a dynamic dim (-1) is None."""
    inputs, outputs = [], []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        info = TensorInfo(name, tuple(d if d >= 0 else None for d in engine.get_tensor_shape(name)),
                          np.dtype(trt.nptype(engine.get_tensor_dtype(name))).name)
        is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
        (inputs if is_input else outputs).append(info)
    return inputs, outputs


class TensorRTSession(Session):
    """A deserialized engine with its own CUDA stream, buffers and (optionally) CUDA graphs.

    Options (keywords of `open`; `threads` is accepted like every runtime's and ignored, the
    GPU runs the step):
        cuda_graphs: capture each step's enqueue as a CUDA graph and replay it (default False).

    Opening needs TensorRT 10, cuda-python and a CUDA GPU (MissingDependencyError naming the
    one missing); an engine built by another TensorRT version or for another GPU is an
    ArtifactError, as is one with dynamic input shapes (engines here are built static).
    """

    runtime = "tensorrt"
    engine_name = "TensorRT"
    artifact_kind = "TensorRT"
    engine_modules = ("tensorrt",)
    distribution = "tensorrt"

    def __init__(self, trt, runtime, engine, manifest: StateManifest, logger, cuda_graphs: bool):
        super().__init__(manifest)
        # The engine must not outlive its runtime, nor either of them the logger.
        self._runtime, self._engine, self._logger = runtime, engine, logger
        self.cuda_graphs = cuda_graphs
        self._declared = _engine_io(trt, engine)
        # Device memory TensorRT reserves for activations (reported by benchmarks).
        self.device_memory_bytes = int(getattr(engine, "device_memory_size_v2", 0) or
                                       getattr(engine, "device_memory_size", 0))
        # Device resources come in _prepare, once the engine is known to match the manifest;
        # close() frees whatever of them exists, so a half-prepared session is freed too.
        self._context = None
        self._stream = None
        self._buffers: list[DeviceBuffer] = []  # every buffer this session allocated
        self._states: dict[str, tuple[DeviceBuffer, DeviceBuffer]] = {}  # name -> (slot 0, slot 1)
        # Per state and slot, the write that last filled it; a handle is valid while it matches.
        self._generations = {s.name: [0, 0] for s in manifest.states}
        self._writes = 0
        self._graphs: dict[tuple[int, ...], tuple] = {}  # input slots → (graph, graph exec)
        self._bound: tuple[int, ...] | None = None

    @classmethod
    def _load(cls, path: Path, manifest: StateManifest, threads: int | None,
              cuda_graphs: bool = False) -> TensorRTSession:
        """The engine at `path` deserialized, with the options in the class docstring."""
        from core.tensorrt_cuda import recording_logger, require_tensorrt

        trt = require_tensorrt()
        logger = recording_logger(trt)
        runtime = trt.Runtime(logger)
        engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise ArtifactError(
                f"cannot deserialize TensorRT engine {path}: "
                f"{logger.last_error('not an engine of this TensorRT version and GPU')}")
        return cls(trt, runtime, engine, manifest, logger, cuda_graphs)

    def declared_io(self) -> tuple[list[TensorInfo], list[TensorInfo]]:
        """The engine's I/O tensors as it declares them (a dynamic dim is None)."""
        return self._declared

    def _prepare(self, path: Path) -> None:
        """The execution context, stream and device buffers: one per I/O tensor, two (ping-pong)
        per state, sized from the manifest the engine was just checked against."""
        from core.tensorrt_cuda import create_stream

        if any(None in t.shape for t in self._declared[0]):
            raise ArtifactError(f"{path} has dynamic input shapes; engines here are built static")
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise MovibenchError(f"TensorRT cannot create an execution context for {path}: "
                                 f"{self._logger.last_error('no reason given')}")
        self._stream = create_stream()
        self._image = self._allocate(int(np.prod(self.manifest.image_shape)) * 4)
        self._logits_host = np.empty((1, self.manifest.num_classes), np.float32)
        self._logits = self._allocate(self._logits_host.nbytes)
        self._context.set_tensor_address(IMAGE_INPUT, self._image.ptr)
        self._context.set_tensor_address(LOGITS_OUTPUT, self._logits.ptr)
        for spec in self.manifest.states:
            self._states[spec.name] = (self._allocate(spec.nbytes), self._allocate(spec.nbytes))

    def _allocate(self, nbytes: int) -> DeviceBuffer:
        from core.tensorrt_cuda import DeviceBuffer

        buffer = DeviceBuffer(nbytes)
        self._buffers.append(buffer)
        return buffer

    @classmethod
    def device_memory(cls) -> DeviceMemoryInfo:
        """The GPU's free and total memory now (cudaMemGetInfo), e.g. before loading an engine."""
        from core.tensorrt_cuda import device_memory

        free, total = device_memory()
        return DeviceMemoryInfo(free, total)

    def device_memory_info(self) -> DeviceMemoryInfo:
        """The GPU's free and total memory now, and the device memory the engine reserves."""
        return replace(self.device_memory(), engine_bytes=self.device_memory_bytes)

    # -- state bookkeeping (used by DeviceState) -------------------------------------------
    def slot_generation(self, name: str, slot: int) -> int:
        return self._generations[name][slot]

    def state_buffer(self, name: str, slot: int):
        return self._states[name][slot]

    def require_open(self) -> None:
        if self._engine is None:
            raise StateError("this TensorRT session is closed")

    def require_valid(self, handle: DeviceState) -> None:
        self.require_open()
        if handle.session is self and not handle.valid:
            raise StateError(
                f"state {handle.name!r} from an earlier step was overwritten by later steps; "
                "pass the states the previous step returned, or keep a copy with np.asarray()")

    # -- the step --------------------------------------------------------------------------
    def _input_slots(self, states: States) -> tuple[int, ...]:
        """Per state, the slot holding its input: a valid own handle's, or 0 after an upload."""
        slots = []
        for spec in self.manifest.states:
            value = states[spec.name]
            if isinstance(value, DeviceState) and value.session is self:
                self.require_valid(value)
                slots.append(value.slot)
            else:  # host array or another runtime's state: upload into slot 0
                self._states[spec.name][0].upload(np.asarray(value, spec.dtype), self._stream)
                self._mark_written(spec.name, 0)
                slots.append(0)
        return tuple(slots)

    def _mark_written(self, name: str, slot: int) -> int:
        self._writes += 1
        self._generations[name][slot] = self._writes
        return self._writes

    def _bind(self, slots: tuple[int, ...]) -> None:
        if slots == self._bound:
            return
        for spec, slot in zip(self.manifest.states, slots):
            pair = self._states[spec.name]
            self._context.set_tensor_address(spec.input_name, pair[slot].ptr)
            self._context.set_tensor_address(spec.output_name, pair[1 - slot].ptr)
        self._bound = slots

    def _enqueue(self, slots: tuple[int, ...]) -> None:
        from core.tensorrt_cuda import cuda_call, cudart

        graph = self._graphs.get(slots)
        if graph is not None:
            cuda_call(cudart().cudaGraphLaunch(graph[1], self._stream))
            return
        if not self._context.execute_async_v3(int(self._stream)):
            raise StateError(f"TensorRT failed to run the step: {self._logger.last_error('no reason given')}")
        if self.cuda_graphs:
            self._capture(slots)

    def _capture(self, slots: tuple[int, ...]) -> None:
        """Record this binding's enqueue as a CUDA graph, after one plain run did lazy setup."""
        from core.tensorrt_cuda import cuda_call, cudart, synchronize

        rt = cudart()
        synchronize(self._stream)
        cuda_call(rt.cudaStreamBeginCapture(
            self._stream, rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal))
        self._context.execute_async_v3(int(self._stream))
        graph = cuda_call(rt.cudaStreamEndCapture(self._stream))
        self._graphs[slots] = (graph, cuda_call(rt.cudaGraphInstantiate(graph, 0)))

    def _step(self, frames: np.ndarray, states: States) -> tuple[np.ndarray, States]:
        from core.tensorrt_cuda import synchronize

        self.require_open()
        self._image.upload(frames, self._stream)
        slots = self._input_slots(states)
        self._bind(slots)
        self._enqueue(slots)
        self._logits.download(self._logits_host, self._stream)
        synchronize(self._stream)
        next_states = {spec.name: DeviceState(self, spec.name, 1 - slot,
                                              self._mark_written(spec.name, 1 - slot))
                       for spec, slot in zip(self.manifest.states, slots)}
        return self._logits_host.copy(), next_states

    def _predict(self, clip: np.ndarray) -> np.ndarray:
        return self._step(clip, {})[0]

    def close(self) -> None:
        """Free graphs, buffers and the stream; the session cannot run afterwards."""
        from core.tensorrt_cuda import cuda_call, cudart, destroy_stream

        if self._engine is None:
            return
        rt = cudart()
        for graph, graph_exec in self._graphs.values():
            cuda_call(rt.cudaGraphExecDestroy(graph_exec))
            cuda_call(rt.cudaGraphDestroy(graph))
        self._graphs.clear()
        for buffer in self._buffers:
            buffer.free()
        self._buffers.clear()
        if self._stream is not None:
            destroy_stream(self._stream)
            self._stream = None
        self._context = self._engine = self._runtime = None
