"""`movibench export` and `movibench validate cross-runtime` end to end (ONNX: seconds)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pandas as pd
import pytest
from typer.testing import CliRunner

from bench.cli.app import app

T0 = ["--model", "t0", "--variant", "stream", "--resolution", "64", "--classes", "5"]


def invoke(*args):
    """Run the CLI in-process; `.code` is what `movibench` would exit with."""
    result = CliRunner().invoke(app, list(args), standalone_mode=False, catch_exceptions=True)
    exc = result.exception
    result.code = getattr(exc, "exit_code", None) if exc is not None else (result.return_value or 0)
    return result


def test_export_twice_second_is_cached(tmp_path):
    first = invoke("export", *T0, "--formats", "onnx", "--out", str(tmp_path / "a"), "--json")
    assert first.code == 0, first.output
    data = json.loads(first.stdout)["artifacts"][0]
    assert data["ok"] and (tmp_path / "a" / (data["path"].rsplit("/", 1)[-1])).exists()
    again = json.loads(invoke("export", *T0, "--formats", "onnx", "--json").stdout)["artifacts"][0]
    assert again["cached"] and again["key"] == data["key"]


def test_export_help_names_only_registered_formats():
    import re

    import typer

    from core.formats import FORMATS

    option = next(p for p in typer.main.get_command(app).commands["export"].params
                  if p.name == "formats")
    listed = option.help.split(":", 1)[1]
    named = set(re.findall(r"[a-z0-9]+(?:[-+][a-z0-9]+)+|\b(?:onnx|openvino)\b", listed))
    assert named and named <= set(FORMATS), named - set(FORMATS)
    assert set(option.default.split(",")) <= set(FORMATS)


def test_export_reports_a_format_that_cannot_be_built_and_keeps_the_rest():
    result = invoke("export", *T0, "--formats", "trt-fp16,onnx", "--json")
    rows = {r["format"]: r for r in json.loads(result.stdout)["artifacts"]}
    assert result.code == 1
    assert rows["onnx"]["ok"]
    assert not rows["trt-fp16"]["ok"] and "tensorrt" in rows["trt-fp16"]["error"].lower()


def test_cross_runtime_onnx_and_openvino_pass_and_write_rows(tmp_path):
    out = tmp_path / "validation.parquet"
    result = invoke("validate", "cross-runtime", *T0, "--formats", "onnx,openvino", "--frames",
                    "8", "--synthetic", "1", "--full-clip", "onnx,openvino", "--out", str(out),
                    "--json")
    report = json.loads(result.stdout)
    assert report["passed"], report
    assert result.code == 0
    table = pd.read_parquet(out)
    assert set(zip(table["runtime"], table["comparison"])) == {
        (runtime, comparison) for runtime in ("onnxruntime", "openvino")
        for comparison in ("stream vs tensorflow", "stream vs full-clip")}
    assert (table["max_abs"] <= 1e-4).all() and (table["n"] >= 1).all()


def test_cross_runtime_clip_length_longer_than_the_clips_is_refused():
    result = invoke("validate", "cross-runtime", "--model", "t0", "--variant", "base",
                    "--frames", "8", "--clip-frames", "9")
    assert "--clip-frames 9 is longer than --frames 8" in str(result.exception)


@pytest.fixture(scope="module")
def four_videos(tmp_path_factory):
    """One real encoded video per class of the demo models' flash-count task."""
    from bench.data.synth import SynthConfig, generate

    root = tmp_path_factory.mktemp("eval-data")
    generate(root, SynthConfig(classes=4, videos_per_class=1, frames=32, size=64, seed=21,
                               val_fraction=0.0))
    return root


def test_eval_runs_an_exported_format_of_the_demo_model(four_videos):
    """Export (cached) → ONNX Runtime → stream protocol over real decoded videos."""
    result = invoke("eval", "--data", str(four_videos), "--demo", "t0-stream-synth",
                    "--format", "onnx", "--protocol", "stream", "--limit", "2", "--json")
    assert result.code == 0, result.output
    summary = json.loads(result.stdout)["summaries"][0]
    assert summary["protocol"] == "stream" and summary["videos"] == 2 and summary["failed"] == 0


def test_eval_with_a_broken_video_keeps_the_rest_names_it_once_and_exits_1(four_videos, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(four_videos, data)
    broken = next(data.rglob("*.mp4"))
    broken.write_bytes(b"not a video" * 100)
    result = invoke("eval", "--data", str(data), "--demo", "t0-stream-synth", "--protocol", "stream",
                    "--split", "train")
    assert result.code == 1, result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("failed")]
    assert line.count(broken.name) == 1 and "cannot open video" in line


def test_eval_base_model_on_an_exported_format_needs_one_clip_length(four_videos):
    result = invoke("eval", "--data", str(four_videos), "--demo", "t0-base-synth",
                    "--format", "onnx", "--protocol", "multi-clip:2x8", "--protocol", "multi-clip:2x16")
    assert "--clip-frames" in str(result.exception)


# What the libraries write to stderr on their own during an export: absl/TensorFlow C++ log
# lines (I0000 / W0000 ...), absl's note on its own set-up, XNNPACK's delegate line.
LIBRARY_LINE = re.compile(r"^[IWEF]\d{4} |absl::|XNNPACK|tf_tfl_flatbuffer|mlir", re.M)
TINY = ["--model", "t0", "--variant", "stream", "--resolution", "32", "--classes", "2"]


def export_process(tmp_path, *args):
    """`movibench export` of tiny T0 in a process of its own, into a fresh cache."""
    env = dict(os.environ, MOVIBENCH_CACHE=str(tmp_path / "cache"))
    return subprocess.run([sys.executable, "-m", "bench", "export", *TINY, *args],
                          capture_output=True, text=True, env=env, timeout=900)


@pytest.mark.slow
def test_an_export_prints_its_stages_and_no_library_line_which_go_to_its_log(tmp_path):
    done = export_process(tmp_path, "--formats", "tflite-fp32", "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    for stage in ("build", "trace", "convert", "validate"):
        assert re.search(rf"^t0/stream tflite-fp32: {stage} \d+\.\d s$", done.stderr, re.M), \
            done.stderr
    assert not LIBRARY_LINE.search(done.stdout + done.stderr), done.stdout + done.stderr
    log = (tmp_path / "out" / "library.log").read_text()
    assert "XNNPACK" in log and re.search(r"^[IW]0000 ", log, re.M), log
    assert f"library output: {tmp_path / 'out' / 'library.log'}" in done.stderr


@pytest.mark.slow
def test_an_export_with_verbose_shows_the_library_lines(tmp_path):
    done = export_process(tmp_path, "--formats", "onnx", "--verbose")
    assert done.returncode == 0, done.stderr
    assert LIBRARY_LINE.search(done.stderr), done.stderr
    assert re.search(r"^t0/stream onnx: convert \d+\.\d s$", done.stderr, re.M)
    assert not (tmp_path / "cache" / "library.log").exists()


@pytest.mark.slow
def test_one_process_builds_a_model_once_for_all_its_exports():
    from converters.export import build_reference
    from core.zoo import ModelConfig

    config = ModelConfig("t0", "stream", 32, 2).resolved()
    model, one = build_reference(config, None, 0, 1)
    again, eight = build_reference(config, None, 0, 8)
    assert again is model and (one.frames_per_call, eight.frames_per_call) == (1, 8)
