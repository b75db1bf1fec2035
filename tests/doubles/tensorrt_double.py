"""A test double of TensorRT 10 and cuda-python's runtime module, with ONNX Runtime inside.

`install(monkeypatch)` puts fake `tensorrt` and `cuda.bindings.runtime` modules into
sys.modules, so runtimes/tensorrt.py and core/tensorrt_cuda.py run unmodified against them.
Only the part of both APIs that those modules call exists, with the real signatures and return
conventions: cuda-python returns (cudaError_t, *values); TensorRT returns None or False and
logs the reason to its ILogger.

The "engine file" is an ONNX model's bytes: deserializing it opens an ONNX Runtime session,
and execute_async_v3 runs that session on the tensors at the addresses bound at that moment,
writing every output to its bound address. Device memory is host memory behind fake pointers:
an unbound tensor, a device pointer used as host memory, a use after free or a graph replaying
stale addresses gives a CUDA error or wrong numbers, as on a GPU. Fresh allocations hold 0xFF
bytes (NaN as float32), so reading a buffer that nothing wrote shows up in the results.

Left out: asynchrony (each operation runs when enqueued; numpy arrays are pageable memory, for
which CUDA's async copies complete before returning, so stream order is all a GPU adds here),
several devices, pointers into the middle of an allocation, pinned host memory.
"""

from __future__ import annotations

import ctypes
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

# Fake device pointers start above any user-space host address, so a device pointer passed as
# host memory (or the reverse) is refused instead of dereferenced.
DEVICE_BASE = 1 << 60
ALIGNMENT = 256  # cudaMalloc's alignment
UNWRITTEN = 0xFF


# -- cuda-python (`cuda.bindings.runtime`) ------------------------------------------------------
# Names below are cuda-python's and TensorRT's own (camelCase included), so the runtime's calls
# resolve against them unchanged.
class cudaError_t(IntEnum):
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2
    cudaErrorNoDevice = 100
    cudaErrorInvalidDevice = 101
    cudaErrorInvalidResourceHandle = 400
    cudaErrorIllegalState = 401
    cudaErrorIllegalAddress = 700
    cudaErrorStreamCaptureUnsupported = 900
    cudaErrorStreamCaptureInvalidated = 901


class cudaMemcpyKind(IntEnum):
    cudaMemcpyHostToHost = 0
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2
    cudaMemcpyDeviceToDevice = 3
    cudaMemcpyDefault = 4


class cudaStreamCaptureMode(IntEnum):
    cudaStreamCaptureModeGlobal = 0
    cudaStreamCaptureModeThreadLocal = 1
    cudaStreamCaptureModeRelaxed = 2


class _Handle:
    """An opaque CUDA handle; int() gives its value, as with cuda-python's handle types."""

    def __init__(self, value: int):
        self._value = value

    def __int__(self) -> int:
        return self._value

    def getPtr(self) -> int:
        return self._value

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._value:#x}>"


class cudaStream_t(_Handle):
    pass


class cudaGraph_t(_Handle):
    pass


class cudaGraphExec_t(_Handle):
    pass


@dataclass
class cudaDeviceProp:
    name: bytes
    totalGlobalMem: int


Op = Callable[[], cudaError_t]  # one operation on a stream: runs, returns its CUDA error


@dataclass
class StreamState:
    captured: list[Op] | None = None  # operations recorded since cudaStreamBeginCapture
    invalidated: bool = False  # an illegal call during capture: EndCapture must fail


class FakeGpu:
    """One fake device: allocations, streams and graphs, open to the tests' inspection."""

    def __init__(self, total_bytes: int = 8 << 30, device_count: int = 1,
                 engine_scratch_bytes: int = 1 << 20):
        self.total_bytes = total_bytes
        self.device_count = device_count
        # What every engine reports as device_memory_size_v2 and each context allocates.
        self.engine_scratch_bytes = engine_scratch_bytes
        self.memory: dict[int, np.ndarray] = {}
        self.streams: dict[int, StreamState] = {}
        self.graphs: dict[int, tuple[Op, ...]] = {}
        self.graph_execs: dict[int, tuple[Op, ...]] = {}
        self.engine_runs = 0  # model executions, graph replays included
        self._next_address = DEVICE_BASE
        self._next_handle = 0x1000

    @property
    def used_bytes(self) -> int:
        return sum(block.nbytes for block in self.memory.values())

    def allocate(self, size: int) -> int | None:
        """A new allocation's address, or None when the device is full."""
        if self.used_bytes + size > self.total_bytes:
            return None
        address = self._next_address
        # Addresses are never reused, so a freed pointer stays invalid for good.
        self._next_address += -(-max(size, 1) // ALIGNMENT) * ALIGNMENT
        self.memory[address] = np.full(size, UNWRITTEN, np.uint8)
        return address

    def release(self, address: int) -> bool:
        return self.memory.pop(int(address), None) is not None

    def block(self, address: int, nbytes: int) -> np.ndarray | None:
        """The first `nbytes` of the live allocation at `address`, or None."""
        memory = self.memory.get(int(address))
        return None if memory is None or memory.nbytes < nbytes else memory[:nbytes]

    def new_handle(self) -> int:
        self._next_handle += 1
        return self._next_handle

    def enqueue(self, stream, op: Op) -> cudaError_t:
        """Run `op` in `stream`'s order, or record it while the stream is capturing."""
        if stream is None or int(stream) == 0:  # the legacy default stream: never captured here
            return op()
        state = self.streams.get(int(stream))
        if state is None:
            return cudaError_t.cudaErrorInvalidResourceHandle
        if state.captured is not None:
            state.captured.append(op)
            return cudaError_t.cudaSuccess
        return op()

    def copy(self, dst, src, count: int, kind) -> cudaError_t:
        """cudaMemcpy's semantics: `kind` says which side is device memory."""
        kind = cudaMemcpyKind(kind)
        if kind == cudaMemcpyKind.cudaMemcpyDefault:  # unified addressing: the pointer tells
            to_device, from_device = int(dst) >= DEVICE_BASE, int(src) >= DEVICE_BASE
        else:
            to_device = kind in (cudaMemcpyKind.cudaMemcpyHostToDevice, cudaMemcpyKind.cudaMemcpyDeviceToDevice)
            from_device = kind in (cudaMemcpyKind.cudaMemcpyDeviceToHost, cudaMemcpyKind.cudaMemcpyDeviceToDevice)
        addresses = []
        for pointer, on_device in ((dst, to_device), (src, from_device)):
            pointer = int(pointer)
            if on_device:
                block = self.block(pointer, count)
                if block is None:
                    return cudaError_t.cudaErrorInvalidValue
                addresses.append(block.ctypes.data)
            elif pointer == 0 or pointer >= DEVICE_BASE:
                return cudaError_t.cudaErrorInvalidValue
            else:
                addresses.append(pointer)
        ctypes.memmove(addresses[0], addresses[1], count)
        return cudaError_t.cudaSuccess


class CudaRuntime(types.ModuleType):
    """The fake `cuda.bindings.runtime` module: cuda-python's names, arguments and returns."""

    cudaError_t = cudaError_t
    cudaMemcpyKind = cudaMemcpyKind
    cudaStreamCaptureMode = cudaStreamCaptureMode
    cudaStream_t = cudaStream_t
    cudaGraph_t = cudaGraph_t
    cudaGraphExec_t = cudaGraphExec_t

    def __init__(self, gpu: FakeGpu):
        super().__init__("cuda.bindings.runtime")
        self.gpu = gpu

    OK = cudaError_t.cudaSuccess

    def cudaGetErrorName(self, error):
        return self.OK, cudaError_t(error).name.encode()

    def cudaGetDeviceCount(self):
        if not self.gpu.device_count:
            return cudaError_t.cudaErrorNoDevice, 0
        return self.OK, self.gpu.device_count

    def cudaGetDeviceProperties(self, device):
        if not 0 <= int(device) < self.gpu.device_count:
            return cudaError_t.cudaErrorInvalidDevice, None
        return self.OK, cudaDeviceProp(b"movibench TensorRT test double", self.gpu.total_bytes)

    def cudaMemGetInfo(self):
        return self.OK, self.gpu.total_bytes - self.gpu.used_bytes, self.gpu.total_bytes

    def cudaMalloc(self, size):
        if int(size) == 0:
            return self.OK, 0
        address = self.gpu.allocate(int(size))
        return (self.OK, address) if address is not None else (cudaError_t.cudaErrorMemoryAllocation, 0)

    def cudaFree(self, devPtr):
        if int(devPtr) == 0 or self.gpu.release(devPtr):
            return (self.OK,)
        return (cudaError_t.cudaErrorInvalidValue,)

    def cudaMemcpy(self, dst, src, count, kind):
        return (self.gpu.copy(dst, src, int(count), kind),)

    def cudaMemcpyAsync(self, dst, src, count, kind, stream):
        state = self.gpu.streams.get(int(stream or 0))
        if state is not None and state.captured is not None:
            # A graph cannot hold a copy from/to pageable host memory, which is all numpy has.
            state.invalidated = True
            return (cudaError_t.cudaErrorStreamCaptureUnsupported,)
        return (self.gpu.enqueue(stream, lambda: self.gpu.copy(dst, src, int(count), kind)),)

    def cudaStreamCreate(self):
        handle = self.gpu.new_handle()
        self.gpu.streams[handle] = StreamState()
        return self.OK, cudaStream_t(handle)

    def cudaStreamDestroy(self, stream):
        found = self.gpu.streams.pop(int(stream), None)
        return (self.OK if found is not None else cudaError_t.cudaErrorInvalidResourceHandle,)

    def cudaStreamSynchronize(self, stream):
        if int(stream) == 0:
            return (self.OK,)
        state = self.gpu.streams.get(int(stream))
        if state is None:
            return (cudaError_t.cudaErrorInvalidResourceHandle,)
        if state.captured is not None:  # waiting on a stream that only records is illegal
            state.invalidated = True
            return (cudaError_t.cudaErrorStreamCaptureUnsupported,)
        return (self.OK,)

    def cudaStreamBeginCapture(self, stream, mode):
        cudaStreamCaptureMode(mode)
        state = self.gpu.streams.get(int(stream))
        if state is None:
            return (cudaError_t.cudaErrorInvalidResourceHandle,)
        if state.captured is not None:
            return (cudaError_t.cudaErrorIllegalState,)
        state.captured, state.invalidated = [], False
        return (self.OK,)

    def cudaStreamEndCapture(self, stream):
        state = self.gpu.streams.get(int(stream))
        if state is None:
            return cudaError_t.cudaErrorInvalidResourceHandle, None
        if state.captured is None:
            return cudaError_t.cudaErrorIllegalState, None
        ops, invalidated = tuple(state.captured), state.invalidated
        state.captured, state.invalidated = None, False
        if invalidated:
            return cudaError_t.cudaErrorStreamCaptureInvalidated, None
        handle = self.gpu.new_handle()
        self.gpu.graphs[handle] = ops
        return self.OK, cudaGraph_t(handle)

    def cudaGraphInstantiate(self, graph, flags):
        ops = self.gpu.graphs.get(int(graph))
        if ops is None:
            return cudaError_t.cudaErrorInvalidValue, None
        handle = self.gpu.new_handle()
        self.gpu.graph_execs[handle] = ops
        return self.OK, cudaGraphExec_t(handle)

    def cudaGraphLaunch(self, graphExec, stream):
        ops = self.gpu.graph_execs.get(int(graphExec))
        if ops is None:
            return (cudaError_t.cudaErrorInvalidValue,)
        for op in ops:
            error = self.gpu.enqueue(stream, op)
            if error != self.OK:
                return (error,)
        return (self.OK,)

    def cudaGraphExecDestroy(self, graphExec):
        found = self.gpu.graph_execs.pop(int(graphExec), None)
        return (self.OK if found is not None else cudaError_t.cudaErrorInvalidValue,)

    def cudaGraphDestroy(self, graph):
        found = self.gpu.graphs.pop(int(graph), None)
        return (self.OK if found is not None else cudaError_t.cudaErrorInvalidValue,)


# -- TensorRT 10 (`tensorrt`) -------------------------------------------------------------------
class Severity(IntEnum):
    INTERNAL_ERROR = 0
    ERROR = 1
    WARNING = 2
    INFO = 3
    VERBOSE = 4


class ILogger:
    """trt.ILogger: subclass it, call ILogger.__init__(self) and implement log(severity, msg)."""

    Severity = Severity
    # TensorRT exports the severities into ILogger's scope too (trt.ILogger.ERROR).
    INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = Severity

    def log(self, severity: Severity, msg: str) -> None:
        raise NotImplementedError("ILogger.log is pure virtual")


class DataType(IntEnum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5
    FP8 = 6
    BF16 = 7
    INT64 = 8
    INT4 = 9


class TensorIOMode(IntEnum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class ExecutionContextAllocationStrategy(IntEnum):
    STATIC = 0
    ON_PROFILE_CHANGE = 1
    USER_MANAGED = 2


NUMPY_TYPES = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8,
               DataType.INT32: np.int32, DataType.BOOL: np.bool_, DataType.UINT8: np.uint8,
               DataType.INT64: np.int64}
ORT_TYPES = {"tensor(float)": DataType.FLOAT, "tensor(float16)": DataType.HALF,
             "tensor(int8)": DataType.INT8, "tensor(int32)": DataType.INT32,
             "tensor(bool)": DataType.BOOL, "tensor(uint8)": DataType.UINT8,
             "tensor(int64)": DataType.INT64}


def nptype(trt_type: DataType):
    """trt.nptype: the numpy type of a TensorRT DataType."""
    if trt_type not in NUMPY_TYPES:
        raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")
    return NUMPY_TYPES[trt_type]


@dataclass(frozen=True)
class _Tensor:
    mode: TensorIOMode
    shape: tuple[int, ...]  # -1 for a dynamic dim, as TensorRT reports it
    dtype: DataType

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * np.dtype(nptype(self.dtype)).itemsize


class Runtime:
    """trt.Runtime(logger); its engines are ONNX models run by ONNX Runtime on a FakeGpu."""

    gpu: FakeGpu  # set on the class that install() builds

    def __init__(self, logger: ILogger):
        if not isinstance(logger, ILogger):
            raise TypeError("__init__(): incompatible constructor arguments (logger must be an ILogger)")
        self.logger = logger

    def deserialize_cuda_engine(self, serialized_engine) -> ICudaEngine | None:
        """The engine, or None after logging an error, as TensorRT does for a bad plan."""
        import onnxruntime as ort

        data = bytes(serialized_engine)
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        try:
            session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own InvalidProtobuf/Fail types
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            self.logger.log(Severity.ERROR, "1: [runtime.cpp::parsePlan] Error Code 1: Serialization "
                                            f"(the test double reads ONNX models only: {first})")
            return None
        tensors = {}
        for mode, args in ((TensorIOMode.INPUT, session.get_inputs()), (TensorIOMode.OUTPUT, session.get_outputs())):
            for arg in args:
                if arg.type not in ORT_TYPES:
                    self.logger.log(Severity.ERROR, f"4: {arg.name}: type {arg.type} has no TensorRT equivalent")
                    return None
                shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in arg.shape)
                tensors[arg.name] = _Tensor(mode, shape, ORT_TYPES[arg.type])
        weights = self.gpu.allocate(len(data))  # an engine's weights live on the device
        if weights is None:
            self.logger.log(Severity.ERROR, "2: Error Code 2: OutOfMemory (engine weights)")
            return None
        return ICudaEngine(self.gpu, self.logger, session, tensors, weights)


class ICudaEngine:
    """The deserialized engine: named I/O tensors, and contexts that run the ONNX model."""

    def __init__(self, gpu: FakeGpu, logger: ILogger, session, tensors: dict[str, _Tensor], weights: int):
        self._gpu, self._logger, self._session = gpu, logger, session
        self._tensors, self._names = tensors, list(tensors)
        self._outputs = [n for n, t in tensors.items() if t.mode == TensorIOMode.OUTPUT]
        self._weights = weights

    @property
    def num_io_tensors(self) -> int:
        return len(self._names)

    @property
    def device_memory_size_v2(self) -> int:
        return self._gpu.engine_scratch_bytes

    def get_tensor_name(self, index: int) -> str | None:
        return self._names[index] if 0 <= index < len(self._names) else None

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        tensor = self._tensors.get(name)
        return tensor.mode if tensor else TensorIOMode.NONE

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return self._tensors[name].shape

    def get_tensor_dtype(self, name: str) -> DataType:
        return self._tensors[name].dtype

    def create_execution_context(
            self, strategy=ExecutionContextAllocationStrategy.STATIC) -> IExecutionContext | None:
        """A context owning `device_memory_size_v2` bytes of scratch (the STATIC strategy)."""
        scratch = self._gpu.allocate(self.device_memory_size_v2)
        if scratch is None:
            self._logger.log(Severity.ERROR, "2: Error Code 2: OutOfMemory (execution context)")
            return None
        return IExecutionContext(self, scratch)

    def run(self, addresses: dict[str, int]) -> cudaError_t:
        """One execution: read the inputs at `addresses`, run ONNX Runtime, write the outputs there."""
        blocks = {}
        for name, tensor in self._tensors.items():
            blocks[name] = self._gpu.block(addresses[name], tensor.nbytes)
            if blocks[name] is None:  # freed, never allocated, or too small
                return cudaError_t.cudaErrorIllegalAddress
        feeds = {name: blocks[name].view(nptype(t.dtype)).reshape(t.shape).copy()
                 for name, t in self._tensors.items() if t.mode == TensorIOMode.INPUT}
        for name, value in zip(self._outputs, self._session.run(self._outputs, feeds)):
            tensor = self._tensors[name]
            blocks[name][:] = np.ascontiguousarray(value, nptype(tensor.dtype)).reshape(-1).view(np.uint8)
        self._gpu.engine_runs += 1
        return cudaError_t.cudaSuccess

    def __del__(self):
        self._gpu.release(self._weights)


class IExecutionContext:
    """Tensor addresses bound by name, and execute_async_v3 on a stream."""

    def __init__(self, engine: ICudaEngine, scratch: int):
        self.engine = engine  # a context keeps its engine alive, as TensorRT's binding does
        self._scratch = scratch
        self._addresses: dict[str, int] = {}

    def set_tensor_address(self, name: str, memory: int) -> bool:
        if name not in self.engine._tensors:
            self.engine._logger.log(Severity.ERROR, f"3: setTensorAddress given invalid tensor name: {name}")
            return False
        self._addresses[name] = int(memory)
        return True

    def get_tensor_address(self, name: str) -> int:
        return self._addresses.get(name, 0)

    def execute_async_v3(self, stream_handle: int) -> bool:
        """Enqueue one execution with the addresses bound now (what a captured graph keeps)."""
        logger = self.engine._logger
        unbound = [n for n in self.engine._names if n not in self._addresses]
        if unbound:
            logger.log(Severity.ERROR, "3: [executionContext.cpp::enqueueV3] Error Code 3: API Usage Error "
                                       f"(address of tensor {unbound[0]!r} is not set)")
            return False
        addresses = dict(self._addresses)
        error = self.engine._gpu.enqueue(stream_handle, lambda: self.engine.run(addresses))
        if error != cudaError_t.cudaSuccess:
            logger.log(Severity.ERROR, f"1: [executionContext.cpp::enqueueV3] Error Code 1: Cuda Runtime ({error.name})")
            return False
        return True

    def __del__(self):
        self.engine._gpu.release(self._scratch)


def tensorrt_module(gpu: FakeGpu) -> types.ModuleType:
    """A `tensorrt` module whose Runtime deserializes onto `gpu`."""
    module = types.ModuleType("tensorrt")
    module.__version__ = "10.0.0+double"
    module.Runtime = type("Runtime", (Runtime,), {"gpu": gpu})
    for name, value in {"ILogger": ILogger, "DataType": DataType, "TensorIOMode": TensorIOMode,
                        "ExecutionContextAllocationStrategy": ExecutionContextAllocationStrategy,
                        "ICudaEngine": ICudaEngine, "IExecutionContext": IExecutionContext,
                        "nptype": nptype, "float32": DataType.FLOAT, "float16": DataType.HALF,
                        "int8": DataType.INT8, "int32": DataType.INT32, "int64": DataType.INT64,
                        "bool": DataType.BOOL, "uint8": DataType.UINT8}.items():
        setattr(module, name, value)
    return module


def install(monkeypatch, gpu: FakeGpu | None = None) -> FakeGpu:
    """Put the double's `tensorrt` and `cuda.bindings.runtime` into sys.modules; return its GPU.

    monkeypatch restores sys.modules after the test, so later tests see the real (absent) ones.
    """
    gpu = gpu or FakeGpu()
    runtime = CudaRuntime(gpu)
    bindings = types.ModuleType("cuda.bindings")
    bindings.__path__ = []
    bindings.runtime = runtime
    cuda = types.ModuleType("cuda")
    cuda.__path__ = []
    cuda.bindings = bindings
    modules = {"cuda": cuda, "cuda.bindings": bindings, "cuda.bindings.runtime": runtime,
               "tensorrt": tensorrt_module(gpu)}
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    return gpu
