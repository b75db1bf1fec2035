"""Shared pieces of every verb: exit codes, common options, the model-selection options, the
stderr console."""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console

if TYPE_CHECKING:
    from core.zoo import ModelConfig

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

# Progress and status go to stderr so stdout stays clean for --json. A status line stays one
# line when stderr is a pipe or a file (rich would fold it at 80 columns there).
console = Console(stderr=True, soft_wrap=True)
stdout = Console()


def parse_int_list(text: str, what: str) -> list[int]:
    """'1,4,8' -> [1, 4, 8]; a bad list is a usage error naming the option."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise typer.BadParameter(f"{what} must be comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise typer.BadParameter(f"{what} must be integers >= 1, got {text!r}")
    return values


JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
ThreadsOpt = Annotated[Optional[int], typer.Option(
    help="Intra-op threads (default: the library's).", min=1)]
ClipFramesOpt = Annotated[Optional[int], typer.Option(
    "--clip-frames", help="Frames per call: the clip length L of a base model (required there), "
                          "or T > 1 for a stream model fed in chunks.", min=1)]
OpsetOpt = Annotated[int, typer.Option(help="ONNX opset.", min=13)]
SimplifyOpt = Annotated[bool, typer.Option(help="Simplify the ONNX graph with onnxslim.")]
VerboseOpt = Annotated[bool, typer.Option(
    "--verbose", help="Show the libraries' own log lines (TensorFlow, absl, MLIR, the "
                      "converters, XNNPACK, Python warnings) here instead of in the log file.")]
# The file the libraries' output goes to, in a verb's output directory.
LIBRARY_LOG = "library.log"


@contextmanager
def library_log(directory: Path, verbose: bool = False) -> Iterator[None]:
    """Run the block with the libraries' output appended to `directory`/library.log
    (core.library_log) and the console still on the terminal; `verbose` leaves everything on
    the terminal. Says where the log is at the end when anything was written to it."""
    if verbose:
        yield
        return
    from core.library_log import library_output_to

    log = Path(directory) / LIBRARY_LOG
    size = log.stat().st_size if log.exists() else 0
    with library_output_to(log) as terminal:
        console.file = terminal
        try:
            yield
        finally:
            # Back to following sys.stderr, which the console did before.
            console.file = None
    if log.stat().st_size > size:
        console.print(f"library output: {log} (--verbose shows it here)", highlight=False,
                      markup=False, soft_wrap=True)


# The options that pick a model, in the order --help lists them. Typer reads each verb's
# parameters from its signature, so `model_options` splices these in where the verb asks.
MODEL_OPTIONS: dict[str, object] = {
    "model": Annotated[Optional[str], typer.Option("--model", "-m", help="Model id: t0, a0..a5.")],
    "variant": Annotated[Optional[str], typer.Option(help="Variant: base, stream or mobile.")],
    "resolution": Annotated[Optional[int], typer.Option(
        help="Input size in pixels (default: the model's).", min=32)],
    "classes": Annotated[Optional[int], typer.Option(
        "--classes", help="Class count of the head (default 600).", min=1)],
    "checkpoint": Annotated[Optional[Path], typer.Option(
        help="tf.train.Checkpoint directory or prefix (official Kinetics-600 or a project checkpoint).")],
    "demo": Annotated[Optional[str], typer.Option(
        help="A shipped demo checkpoint instead of --checkpoint: t0-stream-synth, t0-base-synth, "
             "a0-stream-synth, a0-mobile-synth, a0-base-synth (core/demo_weights).")],
    "conv_type": Annotated[Optional[str], typer.Option(
        "--conv-type", help="3d, 2plus1d or 3d_2plus1d (default: the variant's; a project "
                            "checkpoint records its own). 3d_2plus1d checkpoints export rebuilt "
                            "as 2plus1d.")],
}


@dataclass(frozen=True)
class ModelChoice:
    """The model a command's options name, with --demo already turned into its checkpoint.

    The default instance is what a command gets when no model option is given. `config()`
    resolves the choice; a verb that learns the class count elsewhere (eval: from the dataset)
    sets `classes` first (dataclasses.replace).
    """

    model: str | None = None
    variant: str | None = None
    resolution: int | None = None
    classes: int | None = None
    checkpoint: Path | None = None
    conv_type: str | None = None

    @classmethod
    def from_options(cls, model: str | None = None, variant: str | None = None,
                     resolution: int | None = None, classes: int | None = None,
                     checkpoint: Path | None = None, demo: str | None = None,
                     conv_type: str | None = None) -> ModelChoice:
        """The choice the options name. An unknown model id or variant, an unknown demo, or
        --demo with --checkpoint is a MovibenchError here, before the verb does any work."""
        from core.errors import MovibenchError
        from core.zoo import demo_checkpoint, get_model, get_variant

        if demo is not None:
            if checkpoint is not None:
                raise MovibenchError("give --demo or --checkpoint, not both")
            checkpoint = demo_checkpoint(demo)
        if model is not None:
            get_model(model)
        if variant is not None:
            get_variant(variant)
        return cls(model, variant, resolution, classes, checkpoint, conv_type)

    def config(self) -> ModelConfig:
        """The ModelConfig to build: the zoo's defaults under the options, the architecture
        fixed by a project checkpoint's sidecar (core.zoo.config_for)."""
        from core.checkpoints import resolve_checkpoint_prefix
        from core.zoo import config_for

        if self.checkpoint:
            # A missing checkpoint fails here, in a file read, not after a model build.
            resolve_checkpoint_prefix(self.checkpoint)
        return config_for(self.model, self.variant, self.resolution, self.classes,
                          self.checkpoint, self.conv_type)


# The default of a verb's ModelChoice parameter in its own signature. model_options puts the
# options in that parameter's place, so a command always gets the choice the options name.
FROM_OPTIONS = ModelChoice()


def per_thread_count(thread_counts: list[int], contenders: int, what: str, rounds: int,
                     measure: Callable[[int, Callable[[], None]], list]) -> list:
    """`measure(threads, on_block)` for each thread count, with a progress bar of its rounds
    (`contenders` blocks of `what` per round); the rows of all, in order."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    rows: list = []
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        console=console, transient=True)
    with progress:
        for threads in thread_counts:
            task = progress.add_task(f"{threads} thread(s): {contenders} {what} x {rounds} rounds",
                                     total=contenders * rounds)
            rows += measure(threads, lambda task=task: progress.advance(task))
    return rows


def model_options(*, classes: bool = True, conv_type: bool = False) -> Callable:
    """Decorator of a verb: its one parameter typed ModelChoice becomes the model options
    (--model, --variant, --resolution, [--classes,] --checkpoint, --demo[, --conv-type]) at
    that place in --help, and the verb is called with the ModelChoice they name.

    classes: offer --classes (off where the class count comes from elsewhere, e.g. a dataset).
    conv_type: offer --conv-type (for verbs that build from foreign 3d_2plus1d checkpoints).
    """
    names = [n for n in MODEL_OPTIONS
             if (n != "classes" or classes) and (n != "conv_type" or conv_type)]

    def decorate(command: Callable) -> Callable:
        signature = inspect.signature(command, eval_str=True)
        slots = [p for p in signature.parameters.values() if p.annotation is ModelChoice]
        if len(slots) != 1:
            raise TypeError(f"{command.__name__} needs exactly one parameter typed ModelChoice")
        slot = slots[0]
        params = []
        for param in signature.parameters.values():
            if param is slot:
                params += [inspect.Parameter(n, slot.kind, default=None, annotation=MODEL_OPTIONS[n])
                           for n in names]
            else:
                params.append(param)

        @functools.wraps(command)
        def verb(*args, **kwargs):
            chosen = {n: kwargs.pop(n, None) for n in names}
            return command(*args, **kwargs, **{slot.name: ModelChoice.from_options(**chosen)})

        # Typer builds the options from inspect.signature (which prefers __signature__) and
        # the type hints (from __annotations__, which functools.wraps copied from `command`).
        verb.__signature__ = signature.replace(parameters=params)
        verb.__annotations__ = {p.name: p.annotation for p in params}
        return verb

    return decorate


def bounded(low: float | None = None, high: float | None = None, *, low_open: bool = False,
            high_open: bool = False) -> Callable[[float | None], float | None]:
    """An option callback taking None or a finite number within the bounds (open or closed).

    typer's ranges have no open ends, and they let NaN and inf through: a NaN compares false
    with every bound, so it would pass any check made later and silently change the run.
    """
    parts = ([f"{'>' if low_open else '>='} {low:g}"] if low is not None else []) + \
            ([f"{'<' if high_open else '<='} {high:g}"] if high is not None else [])
    wanted = "a finite number" + (" " + " and ".join(parts) if parts else "")

    def check(value: float | None) -> float | None:
        if value is None:
            return value
        inside = math.isfinite(value) and \
            (low is None or (value > low if low_open else value >= low)) and \
            (high is None or (value < high if high_open else value <= high))
        if not inside:
            raise typer.BadParameter(f"must be {wanted}, got {value}")
        return value

    return check


positive_finite = bounded(0, low_open=True)
non_negative = bounded(0)
fraction = bounded(0, 1, high_open=True)
