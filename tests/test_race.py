"""`movibench race`: deployments timed side by side in one process (bench.race.interleaved),
on the real tiny T0 exports; what is checked is the bookkeeping, never the speed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from test_cli import run_cli
from test_cli_model_options import run_main

QUICK = ["--iterations", "4", "--warmup", "1", "--rounds", "2", "--no-roofline"]


def test_race_times_each_deployment_per_thread_count(t0_stream_onnx, t0_stream_tflite,
                                                     tmp_path):
    out = tmp_path / "race.csv"
    result = run_cli("race", str(t0_stream_tflite.path), str(t0_stream_onnx.path),
                     "--threads", "1,2", *QUICK, "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)["rows"]
    assert [(r["threads"], r["label"]) for r in rows] == [
        (t, f"t0/stream {fmt}") for t in (1, 2) for fmt in ("tflite-fp32", "onnx")]
    for row in rows:
        assert not row["error"] and row["calls"] == 4 and row["frames_per_call"] == 1
        assert 0 < row["call_p50_ms"] <= row["call_p90_ms"]
        assert row["frame_p50_ms"] == row["call_p50_ms"] and row["ratio_to_fastest"] >= 1.0
        assert row["settings"]["threads"] == row["threads"]
    assert [r["runtime"] for r in rows[:2]] == ["litert", "onnxruntime"]
    for t in (1, 2):
        mine = [r for r in rows if r["threads"] == t]
        assert sum(r["fastest"] for r in mine) == 1
        assert next(r for r in mine if r["fastest"])["ratio_to_fastest"] == 1.0
        # The same weights in two formats: the same logits as the first, on the same inputs.
        assert mine[0]["max_abs_diff_to_first"] == 0.0
        assert mine[1]["max_abs_diff_to_first"] < 1e-4
    assert len(pd.read_csv(out)) == 4


def test_race_varies_a_runtime_option_against_a_baseline_with_roofline_shares(
        t0_stream_onnx, t0_stream_tflite, tmp_path):
    out = tmp_path / "race.csv"
    result = run_cli("race", str(t0_stream_tflite.path), str(t0_stream_onnx.path),
                     "--vary", "litert:state_io=host,buffers", "--baseline", "state_io=host",
                     "--threads", "1", "--iterations", "4", "--warmup", "1", "--rounds", "2",
                     "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    rows = report["rows"]
    assert [r["label"] for r in rows] == ["t0/stream tflite-fp32 [state_io=host]",
                                          "t0/stream tflite-fp32 [state_io=buffers]",
                                          "t0/stream onnx"]
    assert [r["settings"].get("state_io") for r in rows] == ["host", "buffers", None]
    assert [r["baseline"] for r in rows] == [True, False, False]
    assert rows[0]["speedup_vs_baseline"] == 1.0 and rows[1]["speedup_vs_baseline"] > 0
    # One model in three deployments: the same graph, the same multiply-adds, the same logits
    # bit for bit between the two state I/O modes of one file.
    assert len({r["macs_per_frame"] for r in rows}) == 1 and rows[0]["macs_per_frame"] > 0
    assert rows[1]["max_abs_diff_to_first"] == 0.0
    (peak,) = report["gemm_peaks"]
    assert peak["threads"] == 1 and peak["fp32_gmacs"] > 0 and peak["int8_gmacs"] > 0
    for row in rows:
        assert row["peak_gmacs"] == peak["fp32_gmacs"]
        assert row["roofline_share"] == pytest.approx(
            row["macs_per_frame"] / (row["frame_p50_ms"] * 1e6) / peak["fp32_gmacs"])
    written = json.loads(out.with_name("race.csv.json").read_text())
    assert written["gemm_peaks"] == report["gemm_peaks"] and written["environment"]["cpu_flags"]


@pytest.mark.parametrize("args, message", [
    (["--vary", "litert:state_io"], "--vary takes RUNTIME:OPTION=VALUE"),
    (["--vary", "litert:state_io=host", "--vary", "litert:xnnpack=true"], "names runtime 'litert' twice"),
    (["--baseline", "nothing-like-it"], "--baseline 'nothing-like-it' must match exactly one"),
])
def test_race_refuses_bad_vary_and_baseline(t0_stream_tflite, t0_stream_onnx, args, message):
    result = run_cli("race", str(t0_stream_tflite.path), str(t0_stream_onnx.path), *args, *QUICK)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def _run_with(tmp_path: Path, artifacts: dict[tuple[str, str], str]) -> Path:
    """A copy of the committed default run whose latency cells of (variant, format) point at
    `artifacts` (the session's T0 exports), every other artifact left where it was made."""
    run = tmp_path / "run"
    shutil.copytree("results/default-full", run, ignore=shutil.ignore_patterns("report", "parts"))
    cells = pd.read_parquet(run / "cells.parquet")
    for (variant, fmt), path in artifacts.items():
        cells.loc[(cells["variant"] == variant) & (cells["format"] == fmt), "artifact"] = path
    cells.to_parquet(run / "cells.parquet", index=False)
    return run


def test_race_takes_the_artifacts_of_a_runs_latency_cells(t0_stream_onnx, t0_stream_tflite,
                                                          tmp_path):
    run = _run_with(tmp_path, {("stream", "onnx"): str(t0_stream_onnx.path),
                               ("stream", "tflite-fp32"): str(t0_stream_tflite.path)})
    result = run_cli("race", "--run", str(run), "--only", "variant=stream,format=onnx|tflite-fp32",
                     "--threads", "1", *QUICK, "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)["rows"]
    # Once per artifact, in the format registry's order, labelled like the run's report.
    assert [r["label"] for r in rows] == ["t0/stream onnx", "t0/stream tflite-fp32"]
    assert rows[0]["max_abs_diff_to_first"] == 0.0 and rows[1]["max_abs_diff_to_first"] < 1e-4
    assert all(r["calls"] == 4 and not r["error"] for r in rows)


@pytest.mark.parametrize("args, message", [
    ([], "error: give artifact paths or --run, one of the two"),
    (["--run", "results/default-full", "--only", "format=onnx", "x.onnx"],
     "error: give artifact paths or --run, one of the two"),
    (["x.onnx", "--only", "format=onnx"], "error: --only needs --run"),
    (["x.onnx", "y.onnx"], "error: artifact not found: x.onnx"),
    (["--run", "results/default-full", "--out", "race.txt"],
     "error: --out must end in .csv or .parquet, got race.txt"),
    (["--run", "results/default-full", "--only", "format=onxx"],
     # the run's 12 latency cells that have an artifact (the TF reference has none)
     "error: --only 'format=onxx' matches none of the 12 cells (format values: onnx, "
     "tflite-fp32, tflite-int8)"),
    (["--run", "results/default-full", "--only", "variant=stream,format=onnx|tflite-int8"],
     "error: 2 artifact(s) of results/default-full are not on this machine (first: "),
], ids=["none", "both", "only-without-run", "missing-file", "out", "bad-filter", "not-here"])
def test_race_refuses_bad_input_in_one_line(args, message, monkeypatch, capsys):
    code, out, err = run_main(monkeypatch, capsys, "race", *args)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), lines


def test_a_race_needs_two_deployments(t0_stream_onnx, monkeypatch, capsys):
    code, _, err = run_main(monkeypatch, capsys, "race", str(t0_stream_onnx.path))
    assert code == 2
    assert err.strip() == "error: a race needs two deployments or more, got 1"


def test_race_rows_have_the_schemas_columns_in_order():
    """race.csv is written from RaceRow: its fields are bench.results.schema.RACE_COLUMNS."""
    from dataclasses import fields

    from bench.race.race import RaceRow
    from bench.results.schema import RACE_COLUMNS

    assert [f.name for f in fields(RaceRow)] == [c.name for c in RACE_COLUMNS]
