"""The command line as a user meets it: help texts, exit codes, machine-readable output."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import typer

from bench.cli.app import app


def run_cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "bench.cli.app", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def all_verbs(group=None, prefix=()):
    group = group or typer.main.get_command(app)
    for name, cmd in group.commands.items():
        path = (*prefix, name)
        yield path
        if hasattr(cmd, "commands"):
            yield from all_verbs(cmd, path)


def test_top_level_help_lists_verbs():
    result = run_cli("--help")
    assert result.returncode == 0
    for verb in ("models", "validate"):
        assert verb in result.stdout


@pytest.mark.parametrize("verb", list(all_verbs()), ids=" ".join)
def test_every_verb_explains_itself(verb):
    result = run_cli(*verb, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout
    # The first docstring line must be there: a verb without help text fails this.
    command = typer.main.get_command(app)
    for name in verb:
        command = command.commands[name]
    summary = (command.help or "").strip().splitlines()[0]
    assert summary and summary[:40] in " ".join(result.stdout.split())


def test_help_does_not_import_tensorflow():
    code = ("import sys; from bench.cli.app import app; import typer; "
            "print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False"


def test_unknown_model_is_one_line_exit_2():
    result = run_cli("validate", "equivalence", "--model", "a9")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown model id 'a9'" in lines[0]


def test_bad_option_value_is_usage_error():
    result = run_cli("validate", "equivalence", "--model", "t0", "--chunks", "0,x")
    assert result.returncode == 2
    assert "--chunks" in result.stderr


def test_models_json():
    result = run_cli("models", "--json")
    assert result.returncode == 0
    data = json.loads(result.stdout)
    assert set(data["models"]) == {"t0", "a0", "a1", "a2", "a3", "a4", "a5"}
    assert set(data["variants"]) == {"base", "stream", "mobile"}


@pytest.mark.slow
def test_validate_equivalence_fails_at_zero_tolerance_with_exit_1():
    args = ["validate", "equivalence", "--model", "t0", "--resolution", "64", "--classes", "5",
            "--frames", "8", "--chunks", "1,4", "--synthetic", "1", "--json"]
    # One process (a model build and three traces): frame by frame reassociates float sums,
    # so the last bits differ and a zero tolerance FAILs (exit 1) while every row is within
    # 1e-4 (the exit-0 path of validate verbs: tests/test_export_cli.py).
    failed = run_cli(*args, "--atol", "0", "--rtol", "0")
    assert failed.returncode == 1, failed.stderr
    report = json.loads(failed.stdout)
    assert report["passed"] is False and len(report["rows"]) == 2
    assert all(r["max_abs"] <= 1e-4 for r in report["rows"])
    assert any(r["max_abs"] > 0 for r in report["rows"])


@pytest.mark.parametrize("args, message", [
    (["eval", "--demo", "t0-stream-synth", "--data", "x", "--threads", "-3"],
     "Invalid value for '--threads'"),
    (["eval", "--demo", "t0-stream-synth", "--data", "x", "--threads", "0"],
     "Invalid value for '--threads'"),
    (["eval", "--demo", "t0-stream-synth", "--data", "x", "--fps", "0"],
     "'--fps': must be a finite number > 0, got 0.0"),
    (["eval", "--demo", "t0-stream-synth", "--data", "x", "--fps", "-5"],
     "'--fps': must be a finite number > 0, got -5.0"),
    (["eval", "--demo", "t0-stream-synth", "--data", "x", "--fps", "nan"],
     "'--fps': must be a finite number > 0, got nan"),
    (["validate", "equivalence", "--model", "t0", "--threads", "-1"], "Invalid value for '--threads'"),
    (["race", "a.onnx", "b.onnx", "--iterations", "0"], "Invalid value for '--iterations'"),
    (["models", "--colour"], "No such option: --colour"),
])
def test_bad_option_values_are_one_line_exit_2(args, message):
    """Out-of-range options are refused before any work, in one 'error:' line (a negative
    thread count used to abort TensorFlow with exit 134, --fps 0 to fail every video)."""
    result = run_cli(*args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
