"""The command line under generated input (hypothesis): every number a verb takes is checked
where it is parsed, and every refused number or unusable path is one 'error:' line, exit 2.

The verbs and their numeric options are read off the command tree, so an option added later is
covered without a line here. A refused value stops before any work, so the end-to-end cases run
`main()` in this process; an accepted value is checked by parsing alone (running the verb would
build models).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
import typer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.cli.app import app, main

ROOT = typer.main.get_command(app)
# Options where any integer means something: a seed picks weights and clips.
ANY_INTEGER = {"--seed"}
CASES = settings(max_examples=25, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])


def leaf_commands(group=ROOT, prefix=()):
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from leaf_commands(command, (*prefix, name))
        else:
            yield (*prefix, name), command


def numeric_options() -> list[tuple[tuple[str, ...], object]]:
    found = []
    for path, command in leaf_commands():
        for param in command.params:
            if param.type_descriptor.annotation in (int, float) and param.opts[0].startswith("--"):
                found.append((path, param))
    return found


NUMERIC = numeric_options()
IDS = [" ".join(path) + " " + param.opts[0] for path, param in NUMERIC]


def required_arguments(command) -> list[str]:
    """Stand-ins for the positional arguments and required options a parse needs."""
    args = []
    for param in command.params:
        if param.required:
            args += ([] if not param.opts[0].startswith("-") else [param.opts[0]]) + ["x"]
    return args


def parse(path, command, option: str, value: str):
    """The value the option parses to, or the usage error that refuses it."""
    try:
        context = command.make_context(" ".join(path), [*required_arguments(command), option, value])
    except typer.exceptions.TyperException as exc:
        return exc
    name = next(p.name for p in command.params if option in p.opts)
    return context.params[name]


def run_main(argv: list[str], capsys) -> tuple[int, list[str]]:
    """Exit code and output lines of `movibench ARGV`, run in this process."""
    old = sys.argv
    sys.argv = ["movibench", *argv]
    try:
        with pytest.raises(SystemExit) as exited:
            main()
    finally:
        sys.argv = old
    captured = capsys.readouterr()
    lines = [line for line in (captured.out + captured.err).splitlines() if line.strip()]
    return exited.value.code, lines


def numbers_as_text() -> st.SearchStrategy[str]:
    """What a user may type for a number: integers, floats (NaN and infinities too), junk."""
    return st.one_of(
        st.integers(-10**9, 10**9).map(str),
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.sampled_from(["nan", "inf", "-inf", "1e400", "-0", "0x10", "", " ", "3.5.1", "ten"]),
        st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=8),
    )


def test_numeric_options_are_found():
    # The tree has dozens; an empty list would make every property below vacuous.
    assert len(NUMERIC) > 30
    assert any(param.opts[0] == "--threads" for _, param in NUMERIC)


@pytest.mark.parametrize(("path", "param"), NUMERIC, ids=IDS)
@CASES
@given(text=numbers_as_text())
def test_a_number_is_accepted_only_when_it_means_something(path, param, text):
    command = dict(leaf_commands())[path]
    option = param.opts[0]
    result = parse(path, command, option, text)
    if isinstance(result, Exception):
        assert result.exit_code == 2
        message = result.format_message()
        assert "\n" not in message and option in message, message
        return
    if result is None:
        return
    if param.type_descriptor.annotation is float:
        # NaN compares false with every bound, so a NaN let through would pass any later check.
        assert math.isfinite(result), f"{option} accepted {text!r}"
    if option not in ANY_INTEGER:
        assert result >= 0, f"{option} accepted {text!r}"
    if param.min is not None:
        assert result >= param.min, f"{option} accepted {text!r} below its minimum {param.min}"


@pytest.mark.parametrize(("path", "param"), NUMERIC, ids=IDS)
@settings(max_examples=6, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.sampled_from(["nan", "inf", "-7", "ten", "", "1e400"]))
def test_a_refused_number_is_one_error_line_and_exit_2(path, param, text, capsys):
    command = dict(leaf_commands())[path]
    if not isinstance(parse(path, command, param.opts[0], text), Exception):
        return  # accepted here (e.g. -7 as a seed): parsing alone says so above
    code, lines = run_main([*path, *required_arguments(command), param.opts[0], text], capsys)
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("error:"), lines


# Verbs whose input is a path, with the options that make the rest of the command valid.
PATH_INPUTS = {
    "report": ["report", "{}"],
    "compare": ["compare", "{}", "{}"],
    "data info": ["data", "info", "{}"],
    "matrix plan": ["matrix", "plan", "{}"],
    "race": ["race", "{}"],
    "tune": ["tune", "onnxruntime", "--artifact", "{}"],
    "eval --data": ["eval", "--demo", "t0-stream-synth", "--data", "{}"],
    "validate --videos": ["validate", "equivalence", "--demo", "t0-stream-synth", "--videos", "{}"],
    "validate --checkpoint": ["validate", "equivalence", "--model", "t0", "--checkpoint", "{}"],
    "export --checkpoint": ["export", "--model", "t0", "--checkpoint", "{}", "--formats", "onnx"],
    "triton-repo": ["triton-repo", "{}", "--out", "{}"],
}
PATH_KINDS = ("missing", "folder", "empty file", "random bytes", "missing parent")


def make_path(tmp_path, kind: str, name: str, payload: bytes):
    target = tmp_path / name
    if kind == "folder":
        target.mkdir(exist_ok=True)
    elif kind == "empty file":
        target.write_bytes(b"")
    elif kind == "random bytes":
        target.write_bytes(payload or b"\x00")
    elif kind == "missing parent":
        target = tmp_path / "absent" / name
    return target


@pytest.mark.parametrize("verb", list(PATH_INPUTS))
@settings(max_examples=5, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(PATH_KINDS),
       name=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e,
                                  exclude_characters="/\\"), min_size=1, max_size=12)
       .filter(lambda n: n not in (".", "..")),
       payload=st.binary(max_size=512))
def test_an_unusable_path_is_one_error_line_and_exit_2(verb, kind, name, payload, tmp_path,
                                                       capsys):
    # One folder per kind: examples reuse names, and a name must not change kind.
    folder = tmp_path / kind.replace(" ", "-")
    folder.mkdir(exist_ok=True)
    target = make_path(folder, kind, name, payload)
    argv = [part.format(target) for part in PATH_INPUTS[verb]]
    code, lines = run_main(argv, capsys)
    text = "\n".join(lines)
    assert "Traceback" not in text
    assert code == 2, text
    assert len(lines) == 1 and lines[0].startswith("error:"), lines


def test_help_off_a_terminal_cuts_no_word():
    """Help written to a pipe lays out wide enough that no format name or path is cut."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "TERMINAL_WIDTH")}
    for verb in (["export"], ["race"], ["matrix", "run"]):
        out = subprocess.run([sys.executable, "-m", "bench.cli.app", *verb, "--help"],
                             capture_output=True, text=True, env=env, timeout=120)
        assert out.returncode == 0
        assert "…" not in out.stdout, verb
