"""The `movibench` command line.

Each verb lives in `bench/cli/<verb>.py` and registers itself here. Verbs import their
heavy dependencies (TensorFlow, engines) inside the command, so `movibench --help` is instant.
Exit codes: 0 success/PASS, 1 a check or gate FAILED, 2 bad usage or bad input (printed as one
line starting with 'error:'), 130 interrupted (143 by SIGTERM during a matrix run).
"""

from __future__ import annotations

import importlib
import os
import sys

# TensorFlow's C++ start-up chatter (oneDNN notes, a CUDA probe failing on CPU-only machines)
# drowns the tool's own output; set TF_CPP_MIN_LOG_LEVEL yourself to see it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import typer
import typer.rich_utils
from rich.markup import escape
from typer.exceptions import TyperException

from bench.cli.options import EXIT_USAGE, console
from core.errors import MovibenchError

app = typer.Typer(
    name="movibench",
    help="Export streaming MoViNets with explicit states to TFLite/ONNX/TensorRT and "
         "benchmark every deployment for latency, memory and accuracy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# One line per verb module; each exposes register(app).
COMMAND_MODULES = [
    "bench.cli.models",
    "bench.cli.validate",
    "bench.cli.export",
    "bench.cli.cache",
    "bench.cli.matrix",
    "bench.cli.data",
    "bench.cli.train",
    "bench.cli.eval",
    "bench.cli.report",
    "bench.cli.compare",
    "bench.cli.tune",
    "bench.cli.race",
    "bench.cli.triton_repo",
]
for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)

# Help written to a pipe or a log (no terminal, no COLUMNS) is laid out at rich's fallback of 80
# columns, where the option panels' narrow help column cuts format names and paths with an
# ellipsis; 120 columns hold every option's longest word.
HELP_WIDTH_OFF_TERMINAL = 120


def _help_width() -> int | None:
    if os.environ.get("COLUMNS") or os.environ.get("TERMINAL_WIDTH") or sys.stdout.isatty():
        return typer.rich_utils.MAX_WIDTH
    return HELP_WIDTH_OFF_TERMINAL


def main() -> None:
    """Console entry point: bad input becomes one 'error:' line and exit code 2."""
    typer.rich_utils.MAX_WIDTH = _help_width()
    try:
        # Without standalone mode, click returns the code of typer.Exit instead of raising it.
        code = app(standalone_mode=False)
    except MovibenchError as exc:
        # Escaped: messages name TOML sections like [data], which are rich markup.
        console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(EXIT_USAGE)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        console.print("aborted")
        sys.exit(130)
    except TyperException as exc:  # usage errors arrive here in non-standalone mode
        # One line, like every other bad input (`VERB --help` shows the usage).
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        console.print(f"[red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
        sys.exit(getattr(exc, "exit_code", EXIT_USAGE))
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
