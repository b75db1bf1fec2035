"""Micro-benchmarks: one streaming step per runtime and format (pytest-benchmark).

Excluded from the default test run (pyproject addopts). Run and save JSON that
`pytest-benchmark compare` reads:

    .venv/bin/python -m pytest tests/benchmarks --benchmark-only \
        --benchmark-json results/benchmarks/step_latency.json

MOVIBENCH_BENCH_MODEL / _RESOLUTION / _THREADS pick the model (default t0 stream at 64²,
random init, 600 classes: seconds to convert); `a0` at 172 is the size users deploy
and shares its artifacts with `movibench validate cross-runtime --model a0`.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from core.zoo import ModelConfig

MODEL = os.environ.get("MOVIBENCH_BENCH_MODEL", "t0")
RESOLUTION = int(os.environ.get("MOVIBENCH_BENCH_RESOLUTION", "64"))
THREADS = int(os.environ.get("MOVIBENCH_BENCH_THREADS", "2"))
CONFIG = ModelConfig(MODEL, "stream", RESOLUTION)
FORMATS = ["onnx", "tflite-fp32", "tflite-fp16", "tflite-dynamic", "tflite-int8", "trt-fp16"]


def _bench_step(benchmark, session):
    frames = np.random.default_rng(0).random(
        (1, session.manifest.frames_per_call or 1, RESOLUTION, RESOLUTION, 3), dtype=np.float32)
    states = {"value": session.init_states()}

    def step():
        _, states["value"] = session.step(frames, states["value"])

    for _ in range(5):
        step()
    benchmark.extra_info.update(model=MODEL, resolution=RESOLUTION, threads=THREADS,
                                runtime=session.runtime, format=session.manifest.format)
    benchmark.pedantic(step, rounds=100, iterations=1, warmup_rounds=0)


def test_tensorflow_step(benchmark):
    from runtimes.tensorflow import TensorFlowSession

    _bench_step(benchmark, TensorFlowSession.from_config(CONFIG, threads=THREADS))


@pytest.mark.parametrize("fmt", FORMATS)
def test_artifact_step(benchmark, fmt):
    from core.errors import MissingDependencyError
    from converters.export import export_model
    from runtimes.loader import open_session

    try:
        artifact = export_model(CONFIG, fmt)
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
    with open_session(artifact.path, threads=THREADS) as session:
        _bench_step(benchmark, session)
