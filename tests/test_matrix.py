"""The benchmark matrix: config parsing, expansion, and isolated cells that crash or hang."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.jobs.deployment import Deployment
from bench.jobs.job import CellJob, DataSource, ExportBatch, ExportJob, job_from_dict
from bench.launchers.executor import Executor, JobOutcome
from bench.launchers.local import LocalProcessExecutor
from bench.matrix.config import MatrixConfigError, apply_filter, expand, load_config, parse_config
from bench.matrix.run import plan_cells, planned_data, run_matrix
from bench.results.store import ResultsStore, load_cells
from bench.scenarios import LATENCY
from core.errors import MovibenchError
from core.formats import TENSORFLOW
from core.zoo import ModelConfig
from tiny_matrix import tiny_matrix

CONFIG = tiny_matrix("tiny", ["tensorflow"], ["stream", "multi-clip:2x4", "full-clip"])


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(CONFIG)
    return path


def test_shipped_default_config_expands():
    from bench.cli.matrix import config_path

    config = load_config(config_path("default"))
    cells = expand(config)
    # The base model has no states: stream cells of it are excluded by the config's rules.
    assert not [c for c in cells if c.variant == "base" and c.protocol == "stream"]
    assert {c.kind for c in cells} == {"latency", "accuracy", "memory"}
    assert len({c.cell_id for c in cells}) == len(cells)
    # Latency is measured once per deployment, not once per protocol.
    latency = [(c.model, c.variant, c.format, c.threads, c.frames_per_call)
               for c in cells if c.kind == "latency"]
    assert len(latency) == len(set(latency))
    assert {c.frames_per_call for c in cells if c.kind == "latency" and c.variant == "stream"} == {1}
    # The base model's clip lengths: multi-clip 2x16 and the 32-frame full clip.
    assert {c.frames_per_call for c in cells if c.kind == "latency" and c.variant == "base"} == {16, 32}
    # The lean default sweeps memory on LiteRT only (default-full: on three runtimes).
    assert {c.format for c in cells if c.kind == "memory"} == {"tflite-fp32"}


def test_cell_ids_are_stable_and_ignore_timing(config_file):
    first = expand(load_config(config_file))
    again = expand(parse_config(__import__("tomllib").loads(CONFIG.replace("iterations = 5", "iterations = 9"))))
    assert [c.cell_id for c in first] == [c.cell_id for c in again]
    assert len(apply_filter(first, "protocol=stream|full-clip")) == 2
    assert [c.kind for c in first] == ["latency", "accuracy", "accuracy", "accuracy"]


@pytest.mark.parametrize("text, message", [
    ('name = "x"\n', "at least one"),
    ('[[models]]\nmodel = "z9"\n', "unknown model id"),
    ('[[models]]\nmodel = "t0"\n[axes]\nformats = ["onnx", "tflite-int4"]\n', "unknown format"),
    ('[[models]]\nmodel = "t0"\n[axes]\nprotocols = ["multi-clip:4"]\n', "multi-clip needs"),
    ('[[models]]\nmodel = "t0"\n[axes]\ncolours = [1]\n', "unknown axes"),
    ('[[models]]\nmodel = "t0"\n[axes]\nthreads = [0]\n', "threads must be >= 1"),
    ('[[models]]\nmodel = "t0"\n[timing]\niterations = 0\n', "iterations must be >= 1"),
    ('[[models]]\nmodel = "t0"\n[timing]\nrepeats = 3\n', "unknown \\[timing\\] key"),
])
def test_bad_configs_name_the_problem(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(MovibenchError, match=message):
        expand(load_config(path))


def test_bad_filter_is_a_usage_error(config_file):
    with pytest.raises(MatrixConfigError, match="key=value"):
        apply_filter(expand(load_config(config_file)), "colour")


def test_crash_and_hang_become_failed_rows_and_resume_runs_nothing(config_file, tmp_path):
    """One real cell, one that aborts and one that hangs: the run completes with all three."""
    config = load_config(config_file)
    cells = expand(config)
    out = tmp_path / "run"
    executor = LocalProcessExecutor(env={"MOVIBENCH_FAULT": "crash:multi-clip"})
    finished = []
    table = run_matrix(config, out, cells=[c for c in cells if c.protocol != "full-clip"],
                       executor=executor, command="test", on_cell=lambda p, r: finished.append(r))
    assert len(finished) == 3 and len(table) == 3
    by_protocol = table[table["kind"] == "accuracy"].set_index("protocol")
    assert by_protocol.at["stream", "status"] == "ok"
    assert by_protocol.at["stream", "top1"] >= 0
    # Accuracy cells do not time steps (the latency cell does), but measure memory.
    assert pd.isna(by_protocol.at["stream", "step_p50_ms"])
    assert by_protocol.at["stream", "peak_rss_mb"] >= by_protocol.at["stream", "rss_loaded_mb"]
    assert by_protocol.at["multi-clip:2x4", "status"] == "failed"
    assert "SIGABRT" in by_protocol.at["multi-clip:2x4", "error"]
    # Where and when each cell ran, also locally (no Ray node id).
    stream = by_protocol.loc["stream"]
    assert stream["node_host"] and stream["node_cpu"] and stream["runtime_version"]
    assert stream["started_at"] < stream["finished_at"] and pd.isna(stream["node_id"])

    hang = LocalProcessExecutor(env={"MOVIBENCH_FAULT": "hang:full-clip"})
    table = run_matrix(config, out, cells=cells, resume=True, executor=hang, cell_timeout_s=3)
    assert len(table) == 4
    row = table[table["protocol"] == "full-clip"].iloc[0]
    assert row["status"] == "failed" and "timed out" in row["error"]
    latency = table[table["kind"] == "latency"].iloc[0]
    assert latency["status"] == "ok" and latency["step_p50_ms"] > 0
    assert latency["frames_per_call"] == 1 and pd.isna(latency["top1"])

    # Nothing is missing any more: a resumed run starts no cell and keeps every row.
    started = []
    table = run_matrix(config, out, cells=cells, resume=True, executor=hang,
                       on_start=started.append)
    assert started == [0] and len(table) == 4
    assert len(load_cells(out)) == 4 and len(pd.read_csv(out / "cells.csv")) == 4
    assert ResultsStore(out).meta()["name"] == "tiny"


def test_a_row_whose_node_was_lost_is_not_done(config_file, tmp_path):
    """--resume runs a cell again when its row says its node was lost, and only then."""
    cells = expand(load_config(config_file))
    store = ResultsStore(tmp_path / "run")
    store.init({}, CONFIG)
    for cell, lost in zip(cells, (True, False, None)):
        row = {"cell_id": cell.cell_id, "run_id": "r", "status": "failed", "error": "x"}
        store.append(row if lost is None else {**row, "lost_node": lost})
    assert store.done_cells() == {cells[1].cell_id, cells[2].cell_id}


def test_existing_run_needs_resume(config_file, tmp_path):
    out = tmp_path / "run"
    store = ResultsStore(out)
    store.init({}, CONFIG)
    (store.parts / "x.parquet").write_bytes(b"")
    with pytest.raises(MovibenchError, match="--resume"):
        run_matrix(load_config(config_file), out, cells=[])


def test_jobs_cross_to_their_worker_as_json_and_come_back_equal():
    """Every job a planned matrix sends (cells of each scenario, an export with calibration
    videos) is the same typed job after the trip through the worker's JSON file."""
    import json

    config = parse_config({
        "name": "jobs", "models": [{"model": "t0", "variant": "stream"},
                                   {"model": "t0", "variant": "base", "checkpoint": "ckpt"}],
        "axes": {"protocols": ["stream", "multi-clip:2x4"], "threads": [1, 2]},
        "memory_sweep": {"clip_frames": [4]}})
    data = DataSource("videos", "val", 3, 8, ("videos/val/a/0.mp4",), ("videos/train/a/0.mp4",))
    jobs = [CellJob(p.cell.kind, p.cell.label, p.deployment, "/art/x.onnx", warmup=1,
                    iterations=2, protocol=p.cell.protocol, clip_frames=p.cell.clip_frames,
                    sweep_mode=p.cell.sweep_mode, data=data)
            for p in plan_cells(expand(config), planned_data(config), set())]
    export = ExportJob(replace(jobs[0].deployment, format="onnx"), data.calibration_videos, 8)
    jobs += [export, ExportBatch((export, replace(export, calibration_frames=4))),
             CellJob(LATENCY, "no data", Deployment(ModelConfig("t0"), TENSORFLOW, threads=2))]
    assert {j.kind for j in jobs if isinstance(j, CellJob)} == {"latency", "accuracy", "memory"}
    for job in jobs:
        assert job_from_dict(json.loads(json.dumps(job.to_dict()))) == job


def test_measure_latency_times_every_call_and_the_harness_against_a_bare_loop(t0_stream_session):
    from bench.scenarios.latency import measure_latency

    frames = np.random.default_rng(0).random((1, 1, 64, 64, 3), dtype=np.float32)
    out = measure_latency(t0_stream_session, frames, warmup=2, iterations=12)
    assert out["step_n"] == len(out.samples_ms) == 12 and out["warmup_steps"] == 2
    assert 0 < out["step_p50_ms"] <= out["step_p90_ms"] <= out["step_p99_ms"]
    assert out["frame_p50_ms"] == out["step_p50_ms"]  # one frame per call
    assert out["harness_step_ms"] > 0 and out["bare_step_ms"] > 0
    expected = 100 * (out["harness_step_ms"] - out["bare_step_ms"]) / out["bare_step_ms"]
    assert out["harness_overhead_pct"] == pytest.approx(expected)


class RecordingExecutor(Executor):
    """Where jobs run, replaced for this test only: exports succeed (but one), cells return a
    row's worth of numbers, and every job is recorded with the peak number at once."""

    def __init__(self, fail_format: str):
        self.fail_format, self.jobs, self.running, self.peak = fail_format, [], 0, 0
        self._lock = threading.Lock()

    def run(self, job, timeout_s):
        with self._lock:
            self.jobs.append(job)
            self.running += 1
            self.peak = max(self.peak, self.running)
        time.sleep(0.2 if isinstance(job, ExportJob) else 0)
        with self._lock:
            self.running -= 1
        if isinstance(job, ExportJob):
            if job.deployment.format == self.fail_format:
                return JobOutcome(False, {}, "ConverterError: op not supported", 1, 0.2)
            return JobOutcome(True, {"artifact": f"/art/{job.deployment.format}", "cached": False,
                                     "build_s": 0.2, "artifact_mb": 1.0}, "", 0, 0.2)
        return JobOutcome(True, {"step_p50_ms": 1.0, "top1": 0.5}, "", 0, 0.01)

    def stop_all(self):
        pass


def test_exports_run_first_in_parallel_once_per_artifact_and_a_failed_one_fails_its_cells(tmp_path):
    config = parse_config({
        "name": "exports", "models": [{"model": "t0", "variant": "stream", "resolution": 32, "classes": 2}],
        "axes": {"formats": ["tensorflow", "onnx", "tflite-fp32", "tflite-int8"],
                 "protocols": ["stream", "full-clip"]}})
    executor = RecordingExecutor(fail_format="tflite-int8")
    exports = []
    table = run_matrix(config, tmp_path / "run", cells=expand(config), executor=executor,
                       export_jobs=3, on_exports=exports.append, command="test")
    kinds = [job.JOB for job in executor.jobs]
    # Three artifacts for nine exported cells (a latency cell and two protocols each), all
    # built before the first cell ran, at once.
    assert exports == [3] and kinds == ["export"] * 3 + ["cell"] * 9
    assert executor.peak == 3
    rows = table[table["kind"] == "accuracy"].set_index(["format", "protocol"])
    assert rows.loc[("onnx", "stream"), "status"] == "ok"
    assert rows.loc[("onnx", "stream"), "export_s"] == 0.2
    assert rows.loc[("tflite-int8", "full-clip"), "status"] == "failed"
    assert rows.loc[("tflite-int8", "full-clip"), "error"] == "export failed: ConverterError: op not supported"
    assert len(table) == 12


class BatchingExecutor(RecordingExecutor):
    """RecordingExecutor that takes export batches; the batch holding `crash_format` dies
    right before that export, as a worker killed mid-batch does."""

    runs_export_batches = True

    def __init__(self, crash_format: str):
        super().__init__(fail_format="")
        self.crash_format = crash_format

    def run(self, job, timeout_s):
        if not isinstance(job, ExportBatch):
            return super().run(job, timeout_s)
        with self._lock:
            self.jobs.append(job)
        entries = []
        for export in job.exports:
            if export.deployment.format == self.crash_format:
                return JobOutcome(False, {"exports": entries, "node_host": "here"},
                                  "worker killed by SIGSEGV", -11, 0.1)
            entries.append({"ok": True, "result": {"artifact": f"/art/{export.deployment.format}",
                                                   "cached": False, "build_s": 0.2,
                                                   "artifact_mb": 1.0}})
        return JobOutcome(True, {"exports": entries, "node_host": "here"}, "", 0, 0.1)


def test_exports_of_one_model_share_a_process_and_a_crash_fails_only_those_after_it(tmp_path):
    from bench.matrix.run import export_batches

    config = parse_config({
        "name": "batches", "models": [
            {"model": "t0", "variant": "stream", "resolution": 32, "classes": 2},
            {"model": "t0", "variant": "stream", "resolution": 48, "classes": 2}],
        "axes": {"formats": ["tensorflow", "onnx", "tflite-fp32", "tflite-int8"],
                 "protocols": ["stream"]}})
    plans = plan_cells(expand(config), None, set())
    pending = {p.deployment.artifact_key: ExportJob(p.deployment) for p in plans
               if p.deployment.spec.exported}
    models = lambda batches: [{j.deployment.config for j in b.exports} for _, b in batches]  # noqa: E731
    # Two models, two workers: one process per model, with all three of its exports.
    two = export_batches(pending, 2)
    assert [len(b.exports) for _, b in two] == [3, 3] and all(len(m) == 1 for m in models(two))
    # One model, two workers: its exports split over both (round-robin), no worker idle.
    one = export_batches({k: j for k, j in pending.items() if j.deployment.config.resolution == 32}, 2)
    assert sorted(len(b.exports) for _, b in one) == [1, 2]
    assert all(keys == tuple(j.deployment.artifact_key for j in b.exports) for keys, b in one)

    executor = BatchingExecutor(crash_format="tflite-fp32")
    table = run_matrix(config, tmp_path / "run", cells=expand(config), executor=executor,
                       export_jobs=2, command="test")
    assert [job.JOB for job in executor.jobs[:2]] == ["exports", "exports"]
    rows = table[table["kind"] == "accuracy"].set_index(["resolution", "format"])
    # The export before the crash is kept; the crashed one and the one after fail with its reason.
    assert rows.loc[(32, "onnx"), "status"] == "ok" and rows.loc[(32, "onnx"), "export_s"] == 0.2
    for fmt in ("tflite-fp32", "tflite-int8"):
        assert rows.loc[(32, fmt), "error"] == "export failed: worker killed by SIGSEGV"


def test_stop_all_kills_the_workers_still_running():
    executor = LocalProcessExecutor(env={"MOVIBENCH_FAULT": "hang:stuck"})
    outcomes = []
    worker = threading.Thread(target=lambda: outcomes.append(
        executor.run(CellJob(LATENCY, "stuck", Deployment(ModelConfig("t0"), TENSORFLOW)), 120)))
    worker.start()
    while not executor._live:
        time.sleep(0.05)
    executor.stop_all()
    worker.join(30)
    assert not worker.is_alive() and not executor._live
    assert not outcomes[0].ok and "SIGKILL" in outcomes[0].error


def test_a_cells_peak_memory_covers_load(config_file, tmp_path):
    """Memory allocated (and freed) right after load shows in the cell's peak: nothing resets
    the process's high-water mark before it is read."""
    from bench.launchers.worker import BALLOON_MB

    config = load_config(config_file)
    cells = apply_filter(expand(config), "protocol=multi-clip:2x4")
    table = run_matrix(config, tmp_path / "run", cells=cells, command="test",
                       executor=LocalProcessExecutor(env={"MOVIBENCH_FAULT": "balloon:multi-clip"}))
    row = table.iloc[0]
    assert row["status"] == "ok", row["error"]
    assert row["peak_rss_delta_mb"] >= BALLOON_MB
    assert row["peak_rss_mb"] - row["rss_loaded_mb"] >= BALLOON_MB * 0.9  # freed after load
    assert row["uss_idle_mb"] > 0 and row["uss_max_mb"] >= row["uss_idle_mb"]


def test_plan_says_why_a_cell_cannot_run_and_class_folders_take_split_all(tmp_path):
    """A folder of class folders (no split folders, no fixed length) is usable with
    split = "all"; a base model's full-clip cell on it cannot run, and the plan says why."""
    import os
    import shutil
    import subprocess
    import sys

    from bench.data.synth import SynthConfig, generate

    generate(tmp_path / "synth", SynthConfig(classes=2, videos_per_class=1, frames=8, size=32))
    for i, video in enumerate(sorted((tmp_path / "synth").rglob("*.mp4"))[:2]):
        (tmp_path / "data" / f"class{i}").mkdir(parents=True)
        shutil.copy(video, tmp_path / "data" / f"class{i}" / video.name)
    (tmp_path / "cfg.toml").write_text(
        'name = "plan"\n[[models]]\nmodel = "t0"\nvariant = "base"\nresolution = 32\nclasses = 2\n'
        '[axes]\nformats = ["onnx"]\nthreads = [1]\nprotocols = ["full-clip"]\n'
        '[data]\npath = "data"\nsplit = "all"\n')
    out = subprocess.run([sys.executable, "-m", "bench.cli.app", "matrix", "plan", "cfg.toml"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "COLUMNS": "200"})
    assert out.returncode == 0, out.stderr
    assert "cannot run 1 cell: a base model's full-clip on an exported format needs one fixed " \
           "clip length" in " ".join(out.stdout.split())


def test_a_broken_first_video_does_not_fail_timing_or_calibration(tmp_path):
    """The latency cell's frames and int8 calibration come from the videos that decode."""
    from types import SimpleNamespace

    from bench.data.calibration_clips import calibration_from_videos
    from bench.data.synth import SynthConfig, generate
    from bench.scenarios.latency import step_input
    from core.errors import VideoError

    generate(tmp_path / "synth", SynthConfig(classes=2, videos_per_class=1, frames=8, size=32))
    good = str(sorted((tmp_path / "synth").rglob("*.mp4"))[0])
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 1000)
    session = SimpleNamespace(manifest=SimpleNamespace(resolution=32))
    frames = step_input(session, 4, (str(broken), str(tmp_path / "missing.mp4"), good))
    assert frames.shape == (1, 4, 32, 32, 3)
    noise = step_input(session, 4, (str(broken),))
    assert noise.shape == (1, 4, 32, 32, 3) and not np.allclose(frames, noise)
    calibration = calibration_from_videos([broken, Path(good)], 4)
    assert [clip.shape for clip in calibration.source(32)] == [(4, 32, 32, 3)]
    with pytest.raises(VideoError, match="none of the 1 calibration videos decodes"):
        list(calibration_from_videos([broken], 4).source(32))
