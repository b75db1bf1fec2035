"""ONNX Runtime session settings: the options are checked, each session reports what it was
really built with (`Session.settings`), and `movibench tune onnxruntime` times a grid of them
on the real tiny T0 export, checking each setting's logits against the default's."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from core.errors import MovibenchError
from runtimes.loader import open_session
from runtimes.onnxruntime import OrtSettings
from test_cli import run_cli
from test_cli_model_options import run_main

# A run short enough for a unit test: what is checked is the bookkeeping, never the speed.
QUICK = ["--iterations", "2", "--warmup", "1", "--rounds", "2"]


@pytest.mark.parametrize("options, message", [
    ({"execution_mode": "sideways"},
     "unknown ONNX Runtime execution mode 'sideways'; known: sequential, parallel"),
    ({"optimization_level": "max"},
     "unknown ONNX Runtime optimization level 'max'; known: disable, basic, extended, all"),
    ({"spinning": "0"}, "ONNX Runtime spinning must be True or False, got '0'"),
    ({"inter_op_threads": 0}, "ONNX Runtime inter-op threads must be an integer >= 1"),
    ({"inter_op_threads": True}, "ONNX Runtime inter-op threads must be an integer >= 1"),
], ids=["mode", "level", "spinning", "inter-op-0", "inter-op-bool"])
def test_bad_session_options_are_one_line_errors(t0_stream_onnx, options, message):
    with pytest.raises(MovibenchError) as refused:
        open_session(t0_stream_onnx.path, threads=1, **options)
    assert str(refused.value).startswith(message) and "\n" not in str(refused.value)


def test_ort_settings_are_read_back_from_the_session(t0_stream_onnx):
    asked = open_session(t0_stream_onnx.path, threads=1, optimization_level="basic",
                         execution_mode="parallel", spinning=False, inter_op_threads=2)
    assert asked.settings() == {
        "threads": 1, "inter_op_threads": 2, "execution_mode": "parallel",
        "optimization_level": "basic", "spinning": False,
        "providers": ["CPUExecutionProvider"], "io_binding": True}
    default = open_session(t0_stream_onnx.path, threads=2).settings()
    assert {k: default[k] for k in OrtSettings().to_dict()} == OrtSettings().to_dict()
    assert default["threads"] == 2
    # The settings are open's keywords: opening with them builds the same session.
    assert open_session(t0_stream_onnx.path, **asked.settings()).settings() == asked.settings()


def test_litert_settings_say_threads_and_xnnpack(t0_stream_tflite):
    assert open_session(t0_stream_tflite.path, threads=2).settings() == \
        {"threads": 2, "xnnpack": True, "state_io": "buffers"}
    assert open_session(t0_stream_tflite.path, xnnpack=False).settings() == \
        {"threads": None, "xnnpack": False, "state_io": "host"}


def test_tune_times_each_setting_per_thread_count_against_the_default(t0_stream_onnx, tmp_path):
    out = tmp_path / "tune.parquet"
    result = run_cli("tune", "onnxruntime", "--artifact", str(t0_stream_onnx.path),
                     "--threads", "1,2", "--levels", "all", "--modes", "sequential,parallel",
                     "--spinning", "on", *QUICK, "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    rows = report["rows"]
    assert [(r["threads"], r["execution_mode"]) for r in rows] == \
        [(1, "sequential"), (1, "parallel"), (2, "sequential"), (2, "parallel")]
    assert report["frames_per_call"] == 1 and report["model"] == "t0"
    for row in rows:
        assert not row["error"] and row["calls"] == 2
        assert 0 < row["p50_ms"] <= row["p90_ms"] and row["ratio_to_default"] > 0
        assert row["same_logits"] and row["max_abs_diff"] <= 1e-4
        assert row["settings"]["threads"] == row["threads"]
    # The default settings are the reference: first, ratio 1, logits equal to themselves.
    defaults = [r for r in rows if r["default"]]
    assert [r["threads"] for r in defaults] == [1, 2]
    assert all(r["ratio_to_default"] == 1.0 and r["max_abs_diff"] == 0.0 for r in defaults)
    # A parallel setting gets as many inter-op threads as the thread count tuned; with one,
    # ONNX Runtime runs it sequentially, which the session's own settings say, and the row too.
    assert [r["settings"]["inter_op_threads"] for r in rows] == [1, 1, 1, 2]
    assert [r["settings"]["execution_mode"] for r in rows] == \
        ["sequential", "sequential", "sequential", "parallel"]
    assert [r["ran_as"] for r in rows] == ["", "all/sequential/spin", "", ""]
    assert [sum(r["fastest"] for r in rows if r["threads"] == t) for t in (1, 2)] == [1, 1]
    assert rows[0]["fastest"]  # at 1 thread the other setting is the default again
    table = pd.read_parquet(out)
    assert len(table) == 4 and list(table["p50_ms"]) == [r["p50_ms"] for r in rows]


def test_tune_flags_a_setting_that_changes_the_logits(t0_stream_onnx):
    # Basic optimizations fuse less than 'all', so float sums round differently: with no
    # tolerance at all the logits differ, which must be flagged (exit 1), and never fastest.
    result = run_cli("tune", "onnxruntime", "--artifact", str(t0_stream_onnx.path),
                     "--threads", "1", "--levels", "basic", "--modes", "sequential",
                     "--spinning", "on", "--atol", "0", *QUICK, "--json")
    assert result.returncode == 1, result.stderr
    default, basic = json.loads(result.stdout)["rows"]
    assert default["default"] and default["same_logits"] and default["fastest"]
    assert basic["max_abs_diff"] > 0 and basic["same_logits"] is False and not basic["fastest"]


@pytest.mark.parametrize("args, message", [
    (["--levels", "all,max"],
     "error: unknown optimization level 'max'; known: disable, basic, extended, all"),
    (["--modes", "sideways"], "error: unknown execution mode 'sideways'; known: sequential, parallel"),
    (["--spinning", "maybe"], "error: unknown spinning value 'maybe'; known: on, off"),
    (["--out", "tune.txt"], "error: --out must end in .csv or .parquet, got tune.txt"),
    (["--model", "t0"], "error: give --artifact or the model options, not both"),
], ids=["level", "mode", "spinning", "out", "artifact-and-model"])
def test_tune_refuses_bad_input_before_measuring(t0_stream_onnx, args, message, monkeypatch,
                                                 capsys):
    code, out, err = run_main(monkeypatch, capsys, "tune", "onnxruntime",
                              "--artifact", str(t0_stream_onnx.path), *args)
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [message]


def test_tune_refuses_an_artifact_onnx_runtime_does_not_run(t0_stream_tflite, monkeypatch,
                                                            capsys):
    code, _, err = run_main(monkeypatch, capsys, "tune", "onnxruntime",
                            "--artifact", str(t0_stream_tflite.path))
    assert code == 2
    assert err.strip() == (f"error: {t0_stream_tflite.path} is a tflite-fp32 artifact, run by "
                           "litert; tune onnxruntime takes an ONNX artifact (format onnx)")
