"""The model-selection options (bench.cli.options.model_options): every verb that takes them
lists them in --help and turns a bad choice into one 'error:' line with exit code 2."""

from __future__ import annotations

import inspect

import pytest
import typer

from bench.cli.app import app
from bench.cli.options import MODEL_OPTIONS, ModelChoice

# Arguments a verb needs before it looks at the model (eval requires --data).
REQUIRED = {("eval",): ["--data", "."]}


def model_verbs(group=None, prefix=()):
    """(verb path, click command) of every verb whose function takes a ModelChoice."""
    group = group or typer.main.get_command(app)
    for name, cmd in group.commands.items():
        path = (*prefix, name)
        if hasattr(cmd, "commands"):
            yield from model_verbs(cmd, path)
            continue
        # Typer wraps the command's function, which model_options wrapped around the verb.
        verb = inspect.unwrap(cmd.callback)
        if any(p.annotation is ModelChoice
               for p in inspect.signature(verb, eval_str=True).parameters.values()):
            yield path, cmd


VERBS = dict(model_verbs())


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """`movibench ARGS` in this process through the real entry point (exit-code mapping)."""
    from bench.cli.app import main

    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setattr("sys.argv", ["movibench", *args])
    with pytest.raises(SystemExit) as done:
        main()
    captured = capsys.readouterr()
    return done.value.code, captured.out, captured.err


def test_the_verbs_that_repeated_the_options_take_them_from_one_place():
    assert set(VERBS) == {("export",), ("eval",), ("validate", "equivalence"),
                          ("validate", "cross-runtime"), ("validate", "official-recipe"),
                          ("validate", "tensorrt"), ("validate", "gpu-delegate"),
                          ("tune", "onnxruntime")}


@pytest.mark.parametrize("verb", list(VERBS), ids=" ".join)
def test_help_lists_the_model_options(verb, monkeypatch, capsys):
    code, out, _ = run_main(monkeypatch, capsys, *verb, "--help")
    assert code == 0
    text = " ".join(out.split())
    offered = [n for n in MODEL_OPTIONS if n in {p.name for p in VERBS[verb].params}]
    # Every verb offers these; --classes and --conv-type only where the verb asks for them.
    assert {"model", "variant", "resolution", "checkpoint", "demo"} <= set(offered)
    for name in offered:
        option = next(p for p in VERBS[verb].params if p.name == name)
        assert option.opts[0] in text and option.help[:25] in text, name
    # One block, in MODEL_OPTIONS' order, with none of the verb's own options inside it.
    order = [p.name for p in VERBS[verb].params]
    start = order.index("model")
    assert order[start:start + len(offered)] == offered


@pytest.mark.parametrize("verb", list(VERBS), ids=" ".join)
@pytest.mark.parametrize("args, message", [
    (["--model", "a9"], "error: unknown model id 'a9'; known ids: t0, a0, a1, a2, a3, a4, a5"),
    (["--model", "t0", "--demo", "t0-stream-synth", "--checkpoint", "ckpt"],
     "error: give --demo or --checkpoint, not both"),
], ids=["unknown-model", "demo-and-checkpoint"])
def test_a_bad_model_choice_is_one_line_exit_2(verb, args, message, monkeypatch, capsys):
    code, out, err = run_main(monkeypatch, capsys, *verb, *REQUIRED.get(verb, []), *args)
    assert code == 2
    assert err.strip().splitlines() == [message] and out == ""


def test_the_choice_reaches_the_verb(monkeypatch, capsys):
    # Resolved by the verb (config_for), refused before any model is built.
    code, _, err = run_main(monkeypatch, capsys, "validate", "equivalence", "--model", "t0",
                            "--variant", "BASE", "--resolution", "64")
    assert code == 2
    assert err.strip() == "error: variant 'base' is not causal: equivalence needs stream or mobile"


@pytest.mark.parametrize("option", [["--variant", "mobile"], ["--resolution", "96"],
                                    ["--model", "t0"]], ids=lambda o: o[0])
def test_eval_refuses_model_options_beside_an_artifact_that_carries_its_own(
        option, monkeypatch, capsys, tmp_path):
    code, out, err = run_main(monkeypatch, capsys, "eval", "--data", str(tmp_path),
                              "--artifact", str(tmp_path / "model.tflite"), *option)
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [
        "error: --artifact carries its own model: drop "
        "--model/--variant/--resolution/--checkpoint/--demo"]
