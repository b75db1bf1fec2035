"""`movibench compare`: two real run directories (written with bench.results.store from generated
samples), a noise-aware latency verdict per cell, and the exit code a CI gate relies on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.matrix.config import Cell
from bench.results.regression import (
    IMPROVED, NOISY, REGRESSED, UNCHANGED, LatencyTest, compare_runs, environment_differences,
    latency_verdict,
)
from bench.results.rundir import load_run
from bench.results.store import ResultsStore

BASE_MS = {"tensorflow": 20.0, "onnx": 4.5, "tflite-fp32": 3.3}
SAMPLES = 60


def cell(fmt: str) -> Cell:
    return Cell("latency", "t0", "stream", "", 64, 4, fmt, 2, frames_per_call=1)


def baseline(seed: int) -> dict[str, np.ndarray]:
    """Step latencies of each format with 3% multiplicative noise, like a quiet machine."""
    rng = np.random.default_rng(seed)
    return {fmt: ms * rng.lognormal(0, 0.03, SAMPLES) for fmt, ms in BASE_MS.items()}


def write_run(root: Path, samples: dict[str, np.ndarray], *, failed: dict[str, str] | None = None,
              rss: dict[str, float] | None = None, cpu: str = "Test CPU",
              node_cpu: dict[str, str] | None = None) -> Path:
    """A run directory with one stream cell per format in `samples` (plus failed ones)."""
    store = ResultsStore(root)
    store.init({"run_id": root.name, "environment": {"cpu_model": cpu, "libraries": {}}}, "")
    for fmt in sorted(set(samples) | set(failed or {})):
        c = cell(fmt)
        row = {"cell_id": c.cell_id, "run_id": root.name, "kind": "latency", "model": "t0",
               "variant": "stream", "checkpoint": "", "resolution": 64, "format": fmt,
               "precision": "fp32", "runtime": fmt, "threads": 2, "frames_per_call": 1}
        if fmt in (failed or {}):
            store.append({**row, "status": "failed", "exit_code": 1, "error": failed[fmt]})
            continue
        ms = samples[fmt]
        if node_cpu:
            row["node_cpu"] = node_cpu[fmt]
        store.append({**row, "status": "ok", "step_n": len(ms), "step_p50_ms": float(np.median(ms)),
                      "peak_rss_mb": (rss or {}).get(fmt, 400.0)}, list(ms))
    store.consolidate()
    return root


def verdicts(result) -> dict[str, str]:
    return {c.label.split()[1]: c.verdict for c in result.cells}


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """`movibench ARGS` in this process through the real entry point (exit-code mapping)."""
    from bench.cli.app import main

    monkeypatch.setattr("sys.argv", ["movibench", *args])
    with pytest.raises(SystemExit) as done:
        main()
    captured = capsys.readouterr()
    return done.value.code, captured.out, captured.err


@pytest.fixture(scope="module")
def run_a(tmp_path_factory) -> Path:
    return write_run(tmp_path_factory.mktemp("runs") / "a", baseline(0))


def test_identical_rerun_is_unchanged_and_exits_0(run_a, tmp_path, monkeypatch, capsys):
    run_b = write_run(tmp_path / "b", baseline(0))
    code, out, _ = run_main(monkeypatch, capsys, "compare", str(run_a), str(run_b), "--json")
    assert code == 0
    data = json.loads(out)
    assert data["counts"][UNCHANGED] == 3 and not data["regressed"]
    assert all(c["latency_ratio"] == 1.0 for c in data["cells"])


def test_fresh_rerun_with_the_same_noise_passes(run_a, tmp_path):
    result = compare_runs(load_run(run_a), load_run(write_run(tmp_path / "b", baseline(1))))
    assert set(verdicts(result).values()) == {UNCHANGED}
    assert not result.regressed


def test_injected_20pct_regression_fails_the_gate(run_a, tmp_path):
    samples = baseline(0)
    rng = np.random.default_rng(7)
    samples["onnx"] = samples["onnx"] * 1.2 + rng.normal(0, 0.02 * BASE_MS["onnx"], SAMPLES)
    run_b = write_run(tmp_path / "b", samples)
    table = tmp_path / "compare.csv"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-m", "bench.cli.app", "compare", str(run_a), str(run_b),
                           "--threshold", "10", "--out", str(table)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "REGRESSED: 1 regressed" in proc.stdout
    rows = pd.read_csv(table).set_index("label")
    onnx = rows.loc["t0/stream onnx t2 latency@1f"]
    assert onnx["verdict"] == REGRESSED
    assert 1.15 < onnx["latency_ratio"] < 1.25 and onnx["latency_ci_low"] > 1.1
    assert 15 < onnx["step_p50_ms_change_pct"] < 25
    assert (rows.drop(index="t0/stream onnx t2 latency@1f")["verdict"] == UNCHANGED).all()
    # The same slowdown under a looser threshold is no regression.
    assert not compare_runs(load_run(run_a), load_run(run_b), threshold_pct=25).regressed


def test_improvement_and_a_significant_change_within_threshold(run_a, tmp_path):
    samples = baseline(0)
    samples["onnx"] = samples["onnx"] * 0.8
    samples["tflite-fp32"] = samples["tflite-fp32"] * 1.05
    result = compare_runs(load_run(run_a), load_run(write_run(tmp_path / "b", samples)))
    assert verdicts(result) == {"onnx": IMPROVED, "tflite-fp32": UNCHANGED, "tensorflow": UNCHANGED}
    small = next(c for c in result.cells if "tflite-fp32" in c.label)
    # Clearly significant, yet within the 10% threshold: not a regression.
    assert small.latency.significant(0.05) and 4 < small.latency.change_pct < 6


def test_too_few_samples_or_no_significance_is_noisy():
    few = latency_verdict(LatencyTest(5, 60, 1.4, 1.2, 1.6, 1e-4), 10, 0.05)
    assert few[0] == NOISY and "5 latency samples" in few[1]
    wide = latency_verdict(LatencyTest(60, 60, 1.3, 0.9, 1.8, 0.2), 10, 0.05)
    assert wide[0] == NOISY and "not significant" in wide[1]
    assert latency_verdict(LatencyTest(60, 60, 1.3, 1.2, 1.4, 1e-6), 10, 0.05)[0] == REGRESSED
    assert latency_verdict(None, 10, 0.05)[0] == NOISY


def test_noisy_samples_beyond_threshold_are_not_called_a_regression(run_a, tmp_path):
    samples = baseline(0)
    rng = np.random.default_rng(11)
    # 12 samples with 60% spread: the median lands 15-30% higher, but nothing is significant.
    samples["tensorflow"] = BASE_MS["tensorflow"] * 1.2 * rng.lognormal(0, 0.6, 12)
    result = compare_runs(load_run(run_a), load_run(write_run(tmp_path / "b", samples)))
    tf = next(c for c in result.cells if "tensorflow" in c.label)
    assert tf.latency.change_pct > 10
    assert tf.verdict == NOISY and not result.regressed


def test_cells_only_in_one_run_failures_metrics_and_environment(run_a, tmp_path):
    samples = baseline(0)
    del samples["tflite-fp32"]
    samples["tflite-fp16"] = 6.6 * np.ones(SAMPLES)
    run_b = write_run(tmp_path / "b", samples, failed={"tensorflow": "MemoryError: out of memory"},
                      rss={"onnx": 440.0}, cpu="Other CPU")
    result = compare_runs(load_run(run_a), load_run(run_b))
    assert result.only_a == ["t0/stream tflite-fp32 t2 latency@1f"]
    assert result.only_b == ["t0/stream tflite-fp16 t2 latency@1f"]
    tf = next(c for c in result.cells if "tensorflow" in c.label)
    assert tf.verdict == REGRESSED and "out of memory" in tf.reason
    onnx = next(c for c in result.cells if "onnx" in c.label)
    assert onnx.changes["peak_rss_mb"] == (400.0, 440.0, pytest.approx(10.0))
    # A latency cell measures no accuracy: compare reports only the metrics a cell has.
    assert "top1" not in onnx.changes
    assert result.environment_differences["cpu_model"] == ("Test CPU", "Other CPU")
    assert result.to_frame()["verdict"].iloc[0] == REGRESSED  # most urgent first


def test_cells_on_different_cpu_models_get_no_latency_verdict(run_a, tmp_path):
    """A cell that ran on another CPU model in B is not tested against A, even when slower,
    and the runs' hardware is reported as different."""
    same = {fmt: "EPYC" for fmt in BASE_MS}
    a = write_run(tmp_path / "a", baseline(0), node_cpu=same)
    slower = {fmt: ms * (1.5 if fmt == "onnx" else 1.0) for fmt, ms in baseline(0).items()}
    b = write_run(tmp_path / "b", slower, node_cpu={**same, "onnx": "Xeon"})
    result = compare_runs(load_run(a), load_run(b))
    onnx = next(c for c in result.cells if c.label.split()[1] == "onnx")
    assert onnx.verdict == NOISY and "different CPU models (EPYC vs Xeon)" in onnx.reason
    assert onnx.latency is None and not result.regressed
    assert result.environment_differences["node_cpu"] == ("EPYC", "EPYC, Xeon")
    # The same slowdown on the same CPU model is a regression.
    c = write_run(tmp_path / "c", slower, node_cpu=same)
    assert verdicts(compare_runs(load_run(a), load_run(c)))["onnx"] == REGRESSED


def test_a_busy_machine_is_an_environment_difference():
    def meta(load1: float) -> dict:
        return {"environment": {"load_average": [load1, 0.5, 0.5], "affinity_cores": 2}}

    assert environment_differences(meta(0.2), meta(0.6)) == {}  # both quiet enough
    assert environment_differences(meta(0.3), meta(1.9)) == {"load_average_1m_per_core": (0.15, 0.95)}
    assert environment_differences(meta(1.9), meta(1.8)) == {}  # equally busy: comparable
    assert "load_average_1m_per_core" not in environment_differences({}, meta(1.9))  # no field


def test_bad_input_is_one_line_exit_2(run_a, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(monkeypatch, capsys, "compare", str(run_a), "missing-run")
    assert code == 2 and err.strip().splitlines() == ["error: run directory not found: missing-run"]
    code, _, err = run_main(monkeypatch, capsys, "compare", str(run_a), str(run_a), "--metric", "speed")
    # One message (bench.cli.app's console may wrap a long line at the terminal width).
    assert code == 2 and err.count("error:") == 1 and "Traceback" not in err
    assert "unknown metric(s) speed; known: step_p50_ms" in err
    code, _, err = run_main(monkeypatch, capsys, "compare", str(run_a), str(run_a), "--threshold", "-5")
    assert code == 2 and "Invalid value for '--threshold': must be a finite number >= 0" in err
    Path("empty").mkdir()
    code, _, err = run_main(monkeypatch, capsys, "compare", "empty", str(run_a))
    assert code == 2 and "not a movibench run directory" in err
    other = write_run(Path("other"), {"tflite-fp16": np.ones(SAMPLES)})
    code, _, err = run_main(monkeypatch, capsys, "compare", str(run_a), str(other))
    assert code == 2 and "no cell in common" in err


def write_serving_run(root: Path, max_streams: dict[str, int]) -> Path:
    """A run directory with one serving cell per format, holding `max_streams[fmt]` streams."""
    from bench.jobs.job import ServingSettings
    from bench.matrix.run import serving_plan_columns

    settings = ServingSettings(fps=30, workers=2)
    store = ResultsStore(root)
    store.init({"run_id": root.name, "environment": {"cpu_model": "Test CPU", "libraries": {}}}, "")
    for fmt, streams in sorted(max_streams.items()):
        c = Cell("serving", "t0", "stream", "", 64, 4, fmt, 1, serving=settings)
        store.append({"cell_id": c.cell_id, "run_id": root.name, "kind": "serving", "model": "t0",
                      "variant": "stream", "checkpoint": "", "resolution": 64, "format": fmt,
                      "precision": "fp32", "runtime": fmt, "threads": 1, "status": "ok",
                      "serve_max_streams": streams, "serve_max_streams_capped": False,
                      **serving_plan_columns(settings)})
    store.consolidate()
    return root


def test_compare_gates_serving_cells_on_max_streams(tmp_path, monkeypatch, capsys):
    run_a = write_serving_run(tmp_path / "a", {"onnx": 20, "tflite-fp32": 30, "openvino": 10})
    run_b = write_serving_run(tmp_path / "b", {"onnx": 19, "tflite-fp32": 24, "openvino": 12})
    result = compare_runs(load_run(run_a), load_run(run_b), metrics=("serve_max_streams",))
    got = {c.label.split()[1]: (c.verdict, c.reason) for c in result.cells}
    assert got["onnx"][0] == UNCHANGED  # 5% fewer: within the 10% threshold
    assert got["tflite-fp32"] == (REGRESSED, "max streams 30 -> 24")
    assert got["openvino"][0] == IMPROVED
    assert "serving sessions@30fps w2" in result.cells[0].label
    code, out, _ = run_main(monkeypatch, capsys, "compare", str(run_a), str(run_b), "--json")
    assert code == 1 and json.loads(out)["regressed"]
