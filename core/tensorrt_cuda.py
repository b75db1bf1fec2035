"""TensorRT and the little CUDA runtime its builder and runtime need, through cuda-python.

cuda-python (NVIDIA's own bindings, wheels on PyPI) replaces pycuda, which is source-only and
needs a CUDA toolkit. Imported lazily: nothing here loads until a TensorRT path runs.
"""

from __future__ import annotations

import sys

import numpy as np

from core.errors import MissingDependencyError, MovibenchError


def cudart():
    """cuda-python's runtime module (`cuda.bindings.runtime`, or `cuda.cudart` before 12.6)."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        try:
            from cuda import cudart as runtime
        except ImportError as exc:
            raise MissingDependencyError(
                f"cuda-python is not installed (needed for TensorRT buffers): {exc}") from None
    return runtime


def cuda_call(result):
    """Unpack a cuda-python call's (error, *values); raise naming the CUDA error if it failed."""
    rt = cudart()
    err, *values = result
    if err != rt.cudaError_t.cudaSuccess:
        name = rt.cudaGetErrorName(err)[1]
        raise MovibenchError(f"CUDA call failed: {name.decode() if isinstance(name, bytes) else name}")
    return values[0] if len(values) == 1 else (tuple(values) or None)


def cuda_device_problem() -> str | None:
    """Why no CUDA GPU can be used here (no driver, no device), or None when one can."""
    rt = cudart()
    err, count = rt.cudaGetDeviceCount()
    if err != rt.cudaError_t.cudaSuccess:
        name = rt.cudaGetErrorName(err)[1]
        return f"no usable CUDA GPU ({name.decode() if isinstance(name, bytes) else name})"
    return None if count > 0 else "no CUDA GPU found"


def create_stream():
    """A new CUDA stream (cudaStream_t); pass int(stream) where TensorRT wants a handle."""
    return cuda_call(cudart().cudaStreamCreate())


def destroy_stream(stream) -> None:
    cuda_call(cudart().cudaStreamDestroy(stream))


def synchronize(stream) -> None:
    cuda_call(cudart().cudaStreamSynchronize(stream))


def device_memory() -> tuple[int, int]:
    """(free, total) bytes of the current device, as cudaMemGetInfo reports them."""
    return cuda_call(cudart().cudaMemGetInfo())


class DeviceBuffer:
    """A cudaMalloc'd block of `nbytes`, with host↔device copies on a stream; free() releases it."""

    def __init__(self, nbytes: int):
        self.nbytes = int(nbytes)
        # cudaMalloc(0) may return a null pointer, which TensorRT rejects as a tensor address.
        self.ptr = int(cuda_call(cudart().cudaMalloc(max(self.nbytes, 1))))

    def upload(self, array: np.ndarray, stream=None) -> None:
        """Copy a host array in (asynchronously on `stream`; the array must outlive the copy)."""
        array = np.ascontiguousarray(array)
        if array.nbytes != self.nbytes:
            raise MovibenchError(f"host array of {array.nbytes} bytes for a {self.nbytes}-byte buffer")
        rt = cudart()
        kind = rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        if stream is None:
            cuda_call(rt.cudaMemcpy(self.ptr, array.ctypes.data, self.nbytes, kind))
        else:
            cuda_call(rt.cudaMemcpyAsync(self.ptr, array.ctypes.data, self.nbytes, kind, stream))

    def download(self, array: np.ndarray, stream=None) -> np.ndarray:
        """Copy the buffer into contiguous host `array` (synchronize `stream` before reading it)."""
        rt = cudart()
        kind = rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        if stream is None:
            cuda_call(rt.cudaMemcpy(array.ctypes.data, self.ptr, self.nbytes, kind))
        else:
            cuda_call(rt.cudaMemcpyAsync(array.ctypes.data, self.ptr, self.nbytes, kind, stream))
        return array

    def free(self) -> None:
        if self.ptr:
            cuda_call(cudart().cudaFree(self.ptr))
            self.ptr = 0


def device_name(device: int = 0) -> str:
    """The GPU's name (engines are built for one GPU model; recorded with each build)."""
    name = cuda_call(cudart().cudaGetDeviceProperties(device)).name
    return name.decode(errors="replace").rstrip("\x00") if isinstance(name, bytes) else str(name)


def require_tensorrt():
    """Import TensorRT (10 or newer) and check that a CUDA GPU is usable; return the module.

    Raises MissingDependencyError saying which is missing: TensorRT, cuda-python or a GPU.
    """
    try:
        import tensorrt as trt
    except (ImportError, OSError) as exc:  # OSError: the wheel's shared libraries are missing
        raise MissingDependencyError(
            f"TensorRT is not installed ({exc}): install the 'tensorrt' extra on a machine with "
            "a CUDA GPU and NVIDIA's package index reachable") from None
    major = trt.__version__.split(".")[0]
    if not major.isdigit() or int(major) < 10:
        raise MissingDependencyError(
            f"TensorRT {trt.__version__} is too old: this code uses the TensorRT 10 API")
    problem = cuda_device_problem()
    if problem:
        raise MissingDependencyError(f"TensorRT {trt.__version__} is installed but there is {problem}")
    return trt


def recording_logger(trt):
    """A trt.ILogger that prints warnings and errors and keeps the errors to name a failure."""

    class RecordingLogger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity, msg):
            if severity <= trt.ILogger.ERROR:
                self.errors.append(msg)
            if severity <= trt.ILogger.WARNING:
                print(f"[TensorRT] {msg}", file=sys.stderr)

        def last_error(self, default: str) -> str:
            return self.errors[-1].strip().splitlines()[0] if self.errors else default

    return RecordingLogger()
