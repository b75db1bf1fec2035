"""Session-wide fixtures: small models built once, an isolated artifact cache."""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Ray in tests: no usage reports, and every address on loopback. Ray resolves "127.0.0.1" to
# the machine's outward address unless multi-host clustering is off; read when ray is imported.
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

import pytest  # noqa: E402

from core.zoo import ModelConfig  # noqa: E402

# t0 at 64² with a small head: the cheapest model that still has every kind of stream state.
T0_STREAM = ModelConfig("t0", "stream", 64, 5)


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """Artifacts built by tests go to a per-session cache, never the user's. The xdist workers
    of one session share it: its file lock builds each key once (the others wait for it)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        path = tmp_path_factory.getbasetemp().parent / "movibench-cache"
        path.mkdir(exist_ok=True)
    else:
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
def demo_calibration(tmp_path_factory):
    """The T0 stream demo checkpoint, its model config, and ExportOptions that calibrate int8
    on four videos of the demo task (generated noise calibrates ranges the task never
    reaches)."""
    from bench.data.calibration_clips import calibration_from_videos
    from bench.data.synth import SynthConfig, generate
    from bench.data.video import list_videos
    from converters.export import ExportOptions
    from core.zoo import config_for, demo_checkpoint

    root = tmp_path_factory.mktemp("calibration")
    generate(root, SynthConfig(classes=4, videos_per_class=1, frames=32, size=64, seed=7,
                               val_fraction=0.0))
    path = demo_checkpoint("t0-stream-synth")
    options = ExportOptions(calibration=calibration_from_videos(list_videos(root), 32))
    return path, config_for(None, None, checkpoint=path), options


@pytest.fixture(scope="session")
def demo_task_videos(tmp_path_factory):
    """Eight videos of the demo task that no calibration saw, as a loaded dataset."""
    from bench.data.datasets import load_folder
    from bench.data.synth import SynthConfig, generate

    root = tmp_path_factory.mktemp("demo-task")
    generate(root, SynthConfig(classes=4, videos_per_class=2, frames=32, size=64, seed=99,
                               val_fraction=0.0))
    return load_folder(root)


@pytest.fixture(scope="session")
def t0_stream_tflite():
    """T0_STREAM exported to TFLite fp32 in the session cache (shared like t0_stream_onnx)."""
    from converters.export import export_model

    return export_model(T0_STREAM, "tflite-fp32")


@pytest.fixture(scope="session")
def t0_stream_openvino(t0_stream_onnx):
    """The `openvino` artifact of T0_STREAM: the cached ONNX export under its own format."""
    from converters.export import export_model

    return export_model(T0_STREAM, "openvino")


@pytest.fixture
def fake_gpu(monkeypatch):
    """TensorRT 10 and cuda-python replaced, for one test, by the ONNX Runtime-backed double.

    Returns the double's FakeGpu (allocations, streams, graphs) for the test to inspect.
    """
    from doubles.tensorrt_double import install

    return install(monkeypatch)


# Small nodes on loopback only: one CPU (one export or shard at a time), one timing slot.
RAY_NODE = dict(num_cpus=1, node_ip_address="127.0.0.1", include_dashboard=False,
                object_store_memory=100 * 2**20)


@dataclass
class RayTestCluster:
    """Two Ray nodes on this machine, a head and a worker, each with its own artifact cache
    (as two machines would have); this test process is connected as the driver."""

    cluster: object  # ray.cluster_utils.Cluster
    root: Path

    @property
    def address(self) -> str:
        return self.cluster.address

    @property
    def head(self):
        return self.cluster.head_node

    @property
    def worker(self):
        return next(iter(self.cluster.worker_nodes))

    def node_ids(self) -> set[str]:
        return {node.node_id for node in self.cluster.list_all_nodes()}

    def cache_of(self, node_id: str) -> Path:
        """The artifact cache of a node (the head's, or the worker's)."""
        return self.root / ("head-cache" if node_id == self.head.node_id else "worker-cache")

    def add_worker(self, **env: str):
        """Start the worker node (again, after remove_worker), `env` added to its processes'."""
        from bench.launchers.ray import SLOT

        with _environ(MOVIBENCH_CACHE=str(self.root / "worker-cache"), **env):
            return self.cluster.add_node(**RAY_NODE, resources={SLOT: 1})

    def remove_worker(self) -> None:
        """Kill the worker node and every process on it, as a lost machine."""
        self.cluster.remove_node(self.worker)


@contextmanager
def _environ(**values: str):
    """Extra environment variables for the processes started inside (a Ray node's raylet
    passes its environment to the workers it starts)."""
    saved = dict(os.environ)
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory, isolated_cache):
    """The two-node cluster; at the end of the session it is shut down and every process it
    started is checked gone."""
    import psutil
    import ray
    from ray.cluster_utils import Cluster

    from bench.launchers.ray import SLOT

    root = tmp_path_factory.mktemp("ray-nodes")
    with _environ(MOVIBENCH_CACHE=str(root / "head-cache")):
        cluster = Cluster(initialize_head=True, head_node_args={**RAY_NODE, "resources": {SLOT: 1}})
    nodes = RayTestCluster(cluster, root)
    nodes.add_worker()
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    yield nodes
    started = []  # each node's Ray processes and everything they started (workers, cells)
    for node in cluster.list_all_nodes():
        for process in (info.process for infos in node.all_processes.values() for info in infos):
            try:
                own = psutil.Process(process.pid)
                started += [own, *own.children(recursive=True)]
            except psutil.NoSuchProcess:
                pass
    assert started, "no Ray process found to check"
    ray.shutdown()
    cluster.shutdown()
    _, alive = psutil.wait_procs(started, timeout=30)
    assert not alive, f"Ray left processes behind: {[p.pid for p in alive]}"


# Property-based suites (hypothesis): the same examples on every run (derandomize), so CI is
# reproducible and a failure replays; HYPOTHESIS_PROFILE=explore draws new ones each run.
from hypothesis import settings  # noqa: E402

settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True)
settings.register_profile("explore", deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


# The files that take minutes, longest first (measured with --durations on 2 cores). The README's
# test command runs two xdist workers that each take one file at a time in collection order: a
# long file collected last would run alone at the end while the other worker idles.
LONGEST_FILES = ["test_train.py", "test_export_tflite.py",
                 "test_export_onnx.py", "test_export_base3d.py", "test_cache.py", "test_matrix.py",
                 "test_export_cli.py", "test_optimize.py", "test_cli.py", "test_evaluate.py",
                 "test_ray.py", "test_byo_artifacts.py"]


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable within a file
