"""The matrix and sharded evaluation on a Ray cluster of two local nodes (loopback only).

Each node has its own artifact cache, as two machines would, so an artifact a cell needs on
the node that did not build it must come through Ray's object store.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

import pandas as pd
import psutil
import pytest

from bench.matrix.config import apply_filter, expand, load_config, parse_config
from bench.matrix.run import run_matrix
from bench.results.store import ResultsStore
from tiny_matrix import tiny_matrix

# Tests that start the cluster (tens of seconds) or the matrix on it (a conversion).
cluster = pytest.mark.slow

PROTOCOLS = ["stream", "full-clip", "multi-clip:2x4"]
CONFIG = tiny_matrix("ray-tiny", ["onnx"], PROTOCOLS, timeout_s=300)


def config_of(fmt: str, only: str | None = None):
    """CONFIG with another format, and its cells (those matching `only`)."""
    text = tiny_matrix("ray-tiny", [fmt], PROTOCOLS, timeout_s=300)
    config = parse_config(tomllib.loads(text), text)
    return config, apply_filter(expand(config), only)


def _no_overlap_per_node(table: pd.DataFrame) -> None:
    for node, rows in table.groupby("node_id"):
        rows = rows.sort_values("started_at")
        ends, starts = rows["finished_at"].to_numpy()[:-1], rows["started_at"].to_numpy()[1:]
        assert (starts >= ends).all(), f"timed cells overlapped on node {node}"


@pytest.fixture(scope="module")
def matrix_run(ray_cluster, tmp_path_factory):
    """`movibench matrix run CONFIG --executor ray --address ...` in a process of its own,
    once: (the run directory, the config file, the finished command)."""
    root = tmp_path_factory.mktemp("ray-matrix")
    config, out = root / "tiny.toml", root / "run"
    config.write_text(CONFIG)
    result = subprocess.run(
        [sys.executable, "-m", "bench.cli.app", "matrix", "run", str(config), "--out", str(out),
         "--executor", "ray", "--address", ray_cluster.address, "--json"],
        capture_output=True, text=True, timeout=900, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    return out, config, result


def onnx_artifact(out: Path) -> Path:
    """The ONNX artifact the matrix run built, where a cell of the run found it."""
    return Path(pd.read_parquet(out / "cells.parquet")["artifact"].iloc[0])


@cluster
def test_matrix_on_two_nodes_through_the_cli(ray_cluster, matrix_run):
    """The CLI connects to the cluster, exports once, runs every cell on one of the two nodes
    (never two at once on one), and the artifact reaches the node that did not build it
    through the object store, whole."""
    out, config, result = matrix_run
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout) == {"out": str(out), "cells": 4, "failed": 0}

    table = pd.read_parquet(out / "cells.parquet")
    assert set(table["cell_id"]) == {c.cell_id for c in expand(load_config(config))}
    assert (table["status"] == "ok").all() and not table["lost_node"].any()
    assert set(table["node_id"]) == ray_cluster.node_ids()  # both nodes ran cells
    for col in ("node_host", "node_cpu", "node_cores", "runtime_version"):
        assert table[col].notna().all(), col
    assert (table["started_at"] < table["finished_at"]).all()
    _no_overlap_per_node(table)

    # The first two cells start at once, one per slot: the node that did not export the
    # artifact fetched it, into its own cache, byte for byte.
    for _, row in table.iterrows():
        assert Path(row["artifact"]).is_relative_to(ray_cluster.cache_of(row["node_id"]))
    assert (table["artifact_fetch_s"] > 0).any() and (table["artifact_fetch_s"] == 0).any()
    copies = {Path(a).read_bytes() for a in table["artifact"]}
    assert len(set(table["artifact"])) == 2 and len(copies) == 1

    meta = json.loads((out / "run.json").read_text())
    assert meta["executor"] == "RayExecutor"
    assert {n["node_id"] for n in meta["nodes"]} == ray_cluster.node_ids()
    assert all(n["alive"] and n["environment"]["cpu_model"] for n in meta["nodes"])


@cluster
def test_artifact_travels_through_the_object_store(ray_cluster, tmp_path, monkeypatch):
    """A cache entry packed on one side is committed whole into another cache by its key."""
    import ray

    from bench.launchers.ray import _pack_entry, _unpack_entry
    from converters.cache import ArtifactCache

    source = ArtifactCache(tmp_path / "built")
    staging = source.staging_dir()
    (staging / "m.onnx").write_bytes(b"\x08model bytes" * 1000)
    (staging / "m.onnx.manifest.json").write_text("{}")
    entry = source.commit("ab" + "0" * 62, staging, "m.onnx", {"build_seconds": 1.5})
    monkeypatch.setenv("MOVIBENCH_CACHE", str(tmp_path / "other-node"))
    box = [entry.key, "m.onnx", ray.put(_pack_entry(str(entry.artifact)))]
    path, seconds = _unpack_entry(box)
    assert Path(path) == ArtifactCache().entry_dir(entry.key) / "m.onnx" and seconds > 0
    assert Path(path).read_bytes() == entry.artifact.read_bytes()
    # The entry's record travels whole (its build time, file hashes and build date).
    built = json.loads((Path(path).parent / "build.json").read_text())
    assert built == json.loads((entry.artifact.parent / "build.json").read_text())
    assert built["build_seconds"] == 1.5
    assert _unpack_entry(box) == (path, 0.0)  # already on this node: nothing fetched



@cluster
def test_an_export_the_driver_has_cached_is_shipped_not_rebuilt(ray_cluster, t0_stream_onnx):
    """A node with an empty cache would rebuild an artifact the driver's cache holds: it is
    served on the driver instead and put in the object store for the cells' nodes."""
    import ray

    from bench.jobs.deployment import Deployment
    from bench.jobs.job import ExportJob
    from bench.launchers.ray import RayExecutor
    from conftest import T0_STREAM

    job = ExportJob(Deployment(T0_STREAM, "onnx"))
    assert job.is_cached()
    executor = RayExecutor()
    outcome = executor.run(job, 300)
    assert outcome.ok and outcome.result["cached"], outcome.error
    assert outcome.result["node_id"] == ray.get_runtime_context().get_node_id()
    key, filename, ref = executor._payloads[str(t0_stream_onnx.path)]
    assert (key, filename) == (t0_stream_onnx.path.parent.name, t0_stream_onnx.path.name)
    assert ray.get(ref)[filename] == t0_stream_onnx.path.read_bytes()


@cluster
def test_crash_and_hang_on_a_node_are_failed_rows(ray_cluster, tmp_path):
    from bench.launchers.ray import RayExecutor, cluster_slots

    config, cells = config_of("tensorflow")  # faults strike before TensorFlow loads
    out = tmp_path / "run"
    crash = RayExecutor(env={"MOVIBENCH_FAULT": "crash:multi-clip"})
    table = run_matrix(config, out, cells=apply_filter(cells, "protocol=multi-clip:2x4"),
                       executor=crash, cell_jobs=cluster_slots(), command="test")
    row = table.iloc[0]
    assert row["status"] == "failed" and "SIGABRT" in row["error"] and not row["lost_node"]
    assert row["node_id"] in ray_cluster.node_ids()

    hang = RayExecutor(env={"MOVIBENCH_FAULT": "hang:full-clip"})
    table = run_matrix(config, out, cells=apply_filter(cells, "protocol=full-clip"), resume=True,
                       executor=hang, cell_jobs=cluster_slots(), cell_timeout_s=3)
    row = table.set_index("protocol").loc["full-clip"]
    assert row["status"] == "failed" and "timed out after 3 s" in row["error"]


@cluster
def test_a_lost_node_is_a_failed_row_and_resume_runs_it_once(ray_cluster, matrix_run, tmp_path):
    """A worker node is removed while its cell runs: that cell becomes a failed row marked
    lost_node, its worker process dies with the node, and --resume runs that cell, and only
    that one, once a new node has joined."""
    from bench.launchers.ray import RayExecutor, cluster_slots

    # ONNX cells (cheap) whose artifact both nodes already hold: the export is a cache hit.
    built = onnx_artifact(matrix_run[0]).parent
    for node in (ray_cluster.head, ray_cluster.worker):
        entry = ray_cluster.cache_of(node.node_id) / built.parent.name / built.name
        if not entry.exists():
            shutil.copytree(built, entry)
    config, cells = config_of("onnx", "protocol=stream|full-clip")
    # A worker whose cells hang, so that one is surely still running when its node goes.
    ray_cluster.remove_worker()
    worker = ray_cluster.add_worker(MOVIBENCH_FAULT="hang:t0/")
    executor = RayExecutor()
    orphans = []

    def kill_when_busy():
        deadline = time.monotonic() + 600
        while (worker.node_id not in list(executor.running.values())
               and time.monotonic() < deadline):
            time.sleep(0.1)
        raylet = psutil.Process(worker.all_processes["raylet"][0].process.pid)
        orphans.extend(raylet.children(recursive=True))
        ray_cluster.remove_worker()

    killer = threading.Thread(target=kill_when_busy)
    killer.start()
    out = tmp_path / "run"
    table = run_matrix(config, out, cells=cells, executor=executor, cell_jobs=cluster_slots())
    killer.join()
    assert len(table) == 2
    lost = table[table["lost_node"]]
    assert len(lost) == 1 and lost.iloc[0]["status"] == "failed"
    assert "lost its node" in lost.iloc[0]["error"] and lost.iloc[0]["node_id"] == worker.node_id
    assert (table.loc[~table["lost_node"], "status"] == "ok").all()
    _, alive = psutil.wait_procs(orphans, timeout=30)
    assert not alive, "a worker process outlived its node"

    replacement = ray_cluster.add_worker()
    started = []
    table = run_matrix(config, out, cells=cells, resume=True, executor=RayExecutor(),
                       cell_jobs=cluster_slots(), on_start=started.append)
    assert started == [1]
    assert (table["status"] == "ok").all() and table["cell_id"].is_unique and len(table) == 2
    rerun = table.set_index("cell_id").loc[lost.iloc[0]["cell_id"]]
    assert rerun["node_id"] in (ray_cluster.head.node_id, replacement.node_id)
    nodes = {n["node_id"]: n for n in ResultsStore(out).meta()["nodes"]}
    assert not nodes[worker.node_id]["alive"] and nodes[replacement.node_id]["alive"]
    _no_overlap_per_node(table)


@cluster
def test_sharded_evaluation_matches_one_process(ray_cluster, matrix_run, tmp_path):
    from typer.testing import CliRunner

    from bench.cli.app import app
    from bench.data.synth import SynthConfig, generate

    data = tmp_path / "videos"
    generate(data, SynthConfig(classes=2, videos_per_class=4, frames=8, size=32, seed=3,
                               val_fraction=0.0))
    # The matrix run's ONNX artifact, one thread: the same arithmetic in every process.
    common = ["eval", "--data", str(data), "--artifact", str(onnx_artifact(matrix_run[0])),
              "--threads", "1", "-p", "stream", "-p", "full-clip", "--json"]
    runner = CliRunner()
    local = runner.invoke(app, [*common, "--out", str(tmp_path / "local.csv")])
    assert local.exit_code == 0, local.output
    sharded = runner.invoke(app, [*common, "--out", str(tmp_path / "ray.csv"), "--executor", "ray",
                                  "--shards", "2", "--address", ray_cluster.address])
    assert sharded.exit_code == 0, sharded.output
    a, b = pd.read_csv(tmp_path / "local.csv"), pd.read_csv(tmp_path / "ray.csv")
    assert len(a) == len(b) == 16  # 8 videos x 2 protocols
    key = ["protocol", "path", "label_index", "pred_index", "correct", "top5_correct", "probs"]
    pd.testing.assert_frame_equal(a[key], b[key])
    sa, sb = (pd.read_csv(tmp_path / f"{n}.summary.csv") for n in ("local", "ray"))
    metrics = ["protocol", "videos", "evaluated", "failed", "top1", "top5",
               "mean_class_accuracy", "confusion"]
    pd.testing.assert_frame_equal(sa[metrics], sb[metrics])


@pytest.mark.parametrize("args, message", [
    (["eval", "--data", ".", "--shards", "2"], "--shards and --address need --executor ray"),
    (["eval", "--data", ".", "--executor", "dask"], "--executor must be local or ray"),
    (["matrix", "run", "default", "--address", "127.0.0.1:1"], "--address needs --executor ray"),
])
def test_ray_options_without_ray_are_usage_errors(args, message):
    from typer.testing import CliRunner

    from bench.cli.app import app

    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0 and message in str(result.exception)


def test_nodes_whose_code_differs_from_the_driver_are_named():
    from bench.launchers.ray import version_mismatches

    driver = {"git_revision": "abc", "libraries": {"onnxruntime": "1.32.0", "ray": "2.60.0"}}
    nodes = [{"node_id": "a" * 16, "host": "same", "environment": driver},
             {"node_id": "b" * 16, "host": "old",
              "environment": {"git_revision": "abd", "libraries": {"onnxruntime": "1.31.0"}}},
             {"node_id": "c" * 16, "host": "silent", "environment_error": "timed out"}]
    assert version_mismatches(nodes, driver) == [
        "node bbbbbbbb (old): git abd vs abc, onnxruntime 1.31.0 vs 1.32.0, ray absent vs 2.60.0"]
