"""Shared pieces of every verb: exit codes, common options, the stderr console."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

# Progress and status go to stderr so stdout stays clean for --json.
console = Console(stderr=True)
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


ModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", help="Model id: t0, a0..a5.")]
VariantOpt = Annotated[Optional[str], typer.Option(help="Variant: base, stream or mobile.")]
ResolutionOpt = Annotated[Optional[int], typer.Option(help="Input size in pixels (default: the model's).")]
CheckpointOpt = Annotated[Optional[Path], typer.Option(
    help="tf.train.Checkpoint directory or prefix (official Kinetics-600 or a project checkpoint).")]
ClassesOpt = Annotated[Optional[int], typer.Option("--classes", help="Class count of the head (default 600).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
ThreadsOpt = Annotated[Optional[int], typer.Option(help="Intra-op threads (default: the library's).")]
DemoOpt = Annotated[Optional[str], typer.Option(
    help="A shipped demo checkpoint instead of --checkpoint: t0-stream-synth, t0-base-synth.")]
ClipFramesOpt = Annotated[Optional[int], typer.Option(
    "--clip-frames", help="Frames per call: the clip length L of a base model (required there), "
                          "or T > 1 for a stream model fed in chunks.", min=1)]
OpsetOpt = Annotated[int, typer.Option(help="ONNX opset.", min=13)]
SimplifyOpt = Annotated[bool, typer.Option(help="Simplify the ONNX graph with onnxslim.")]


def resolve_checkpoint_option(checkpoint: Path | None, demo: str | None) -> Path | None:
    """--checkpoint or --demo (never both) → the checkpoint path to load, or None."""
    if demo is None:
        return checkpoint
    from converters.errors import MovibenchError
    from converters.zoo import demo_checkpoint

    if checkpoint is not None:
        raise MovibenchError("give --demo or --checkpoint, not both")
    return demo_checkpoint(demo)


def model_config(model: str | None, variant: str | None, resolution: int | None,
                 classes: int | None, checkpoint: Path | None, demo: str | None):
    """The model the options name and the checkpoint to load it from: (ModelConfig, path|None)."""
    from converters.zoo import config_for

    checkpoint = resolve_checkpoint_option(checkpoint, demo)
    return config_for(model, variant, resolution, classes, checkpoint), checkpoint
