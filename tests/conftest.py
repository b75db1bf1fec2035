"""Session-wide fixtures: small models built once, an isolated artifact cache."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from converters.zoo import ModelConfig  # noqa: E402

# t0 at 64² with a small head: the cheapest model that still has every kind of stream state.
T0_STREAM = ModelConfig("t0", "stream", 64, 5)


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """Artifacts built by tests go to a per-session cache, never the user's."""
    path = tmp_path_factory.mktemp("movibench-cache")
    old = os.environ.get("MOVIBENCH_CACHE")
    os.environ["MOVIBENCH_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("MOVIBENCH_CACHE", None)
    else:
        os.environ["MOVIBENCH_CACHE"] = old


@pytest.fixture(scope="session")
def t0_stream_session():
    """The TF reference session of t0 stream at 64², random-init (seed 0), 5 classes."""
    from runtimes.tensorflow import TensorFlowSession

    return TensorFlowSession.from_config(T0_STREAM)


@pytest.fixture(scope="session")
def t0_stream_onnx():
    """T0_STREAM exported to ONNX (static T=1) in the session cache; other tests build the
    same key, so within one session this is built once."""
    from converters.export import export_model

    return export_model(T0_STREAM, "onnx")


@pytest.fixture(scope="session")
def t0_stream_tflite():
    """T0_STREAM exported to TFLite fp32 in the session cache (shared like t0_stream_onnx)."""
    from converters.export import export_model

    return export_model(T0_STREAM, "tflite-fp32")


@pytest.fixture
def fake_gpu(monkeypatch):
    """TensorRT 10 and cuda-python replaced, for one test, by the ONNX Runtime-backed double.

    Returns the double's FakeGpu (allocations, streams, graphs) for the test to inspect.
    """
    from doubles.tensorrt_double import install

    return install(monkeypatch)


# Property-based suites (hypothesis): the same examples on every run (derandomize), so CI is
# reproducible and a failure replays; HYPOTHESIS_PROFILE=explore draws new ones each run.
from hypothesis import settings  # noqa: E402

settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True)
settings.register_profile("explore", deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
