"""The CPU's measured matrix-multiply peak, fp32 and int8, at a thread count: the roofline a
deployment's speed is held against.

One square matrix product at a time through ONNX Runtime's MLAS kernels (`MatMul` in fp32,
`MatMulInteger` u8×s8→s32 for int8), the best of several timed calls: what this CPU's vector
units deliver on the friendliest shape, with its ISA (AVX2, AVX-512, VNNI, AMX) as MLAS uses it.
A deployment's share of it is its multiply-adds per frame (counted from its graph) over its
per-frame time, against the peak of its precision at its thread count.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

# A product of N×N by N×N: 2 N³ operations (2.1 G at 1024), large enough to leave the caches'
# and call overheads out, small enough to time in tens of milliseconds.
SIZE = 1024
CALLS = 7


@dataclass(frozen=True)
class GemmPeak:
    """Measured multiply-add rates of one thread count, in G multiply-adds per second."""

    threads: int
    fp32_gmacs: float
    int8_gmacs: float
    size: int = SIZE

    def for_precision(self, precision: str) -> float:
        """The peak a deployment of `precision` is held against: int8's for full int8, fp32's
        for everything else (fp16 and dynamic-range weights run fp32 arithmetic on x86)."""
        return self.int8_gmacs if precision == "int8" else self.fp32_gmacs

    def to_dict(self) -> dict:
        return asdict(self)


def _matmul_model(integer: bool):
    from onnx import TensorProto, helper

    a_type, b_type, out_type = ((TensorProto.UINT8, TensorProto.INT8, TensorProto.INT32)
                                if integer else (TensorProto.FLOAT,) * 3)
    op = "MatMulInteger" if integer else "MatMul"
    graph = helper.make_graph(
        [helper.make_node(op, ["a", "b"], ["c"])], "gemm_peak",
        [helper.make_tensor_value_info("a", a_type, [SIZE, SIZE]),
         helper.make_tensor_value_info("b", b_type, [SIZE, SIZE])],
        [helper.make_tensor_value_info("c", out_type, [SIZE, SIZE])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _rate(integer: bool, threads: int) -> float:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(_matmul_model(integer).SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    if integer:
        feeds = {"a": rng.integers(0, 255, (SIZE, SIZE), dtype=np.uint8),
                 "b": rng.integers(-127, 127, (SIZE, SIZE), dtype=np.int8)}
    else:
        feeds = {"a": rng.random((SIZE, SIZE), dtype=np.float32),
                 "b": rng.random((SIZE, SIZE), dtype=np.float32)}
    session.run(None, feeds)  # packs, allocates
    best = min(_timed(session, feeds) for _ in range(CALLS))
    return SIZE ** 3 / best / 1e9


def _timed(session, feeds) -> float:
    start = time.perf_counter()
    session.run(None, feeds)
    return time.perf_counter() - start


def gemm_peak(threads: int) -> GemmPeak:
    """The fp32 and int8 matrix-product peaks of this CPU at `threads` threads (about a
    second of work)."""
    return GemmPeak(threads, round(_rate(False, threads), 2), round(_rate(True, threads), 2))
