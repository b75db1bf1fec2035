"""`movibench validate ...`: equivalence checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from bench.cli_common import (
    EXIT_FAILED, EXIT_OK, CheckpointOpt, ClassesOpt, JsonOpt, ModelOpt, ResolutionOpt,
    ThreadsOpt, VariantOpt, console, parse_int_list, stdout,
)
from converters.errors import MovibenchError

app = typer.Typer(help="Check that streamed and exported models say what the original says.",
                  no_args_is_help=True)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="validate")


@app.command("equivalence")
def validate_equivalence_cmd(
    model: ModelOpt = None,
    variant: VariantOpt = None,
    resolution: ResolutionOpt = None,
    frames: Annotated[int, typer.Option(help="Frames per clip.", min=1)] = 16,
    chunk_sizes: Annotated[str, typer.Option("--chunks", help="Chunk sizes to stream with, e.g. 1,4,8.")] = "1,4,8",
    checkpoint: CheckpointOpt = None,
    classes: ClassesOpt = None,
    videos: Annotated[Optional[Path], typer.Option(help="Folder of real videos to decode and use.")] = None,
    synthetic: Annotated[int, typer.Option(help="Number of generated clips when --videos is not given.", min=1)] = 2,
    atol: Annotated[float, typer.Option(help="Max |Δlogit| allowed.")] = 1e-4,
    threads: ThreadsOpt = None,
    seed: Annotated[int, typer.Option(help="Seed of random-init weights and synthetic clips.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Stream a causal MoViNet frame by frame and in chunks; compare with one full-clip call.

    PASS when every chunk size gives the full clip's logits within --atol. Exit 0 on PASS,
    1 on FAIL, 2 on bad input.
    """
    from bench.compare_logits import Tolerance
    from bench.validate import synthetic_clips, validate_equivalence
    from converters.zoo import config_for
    from runtimes.tensorflow import TensorFlowSession

    sizes = parse_int_list(chunk_sizes, "--chunks")
    config = config_for(model, variant, resolution, classes, checkpoint)
    if not config.causal:
        raise MovibenchError(f"variant {config.variant!r} is not causal: equivalence needs stream or mobile")
    if videos is not None:
        from bench.video import list_videos, read_clip

        paths = list_videos(videos)
        if not paths:
            raise MovibenchError(f"no video files in {videos}")
        clips = [read_clip(p, config.resolution, max_frames=frames) for p in paths]
        frames = min(c.shape[0] for c in clips)
        clips = [c[:frames] for c in clips]
    else:
        clips = synthetic_clips(synthetic, frames, config.resolution, seed)
    with console.status(f"building {config.model_id}/{config.variant} and streaming {len(clips)} clip(s)"):
        session = TensorFlowSession.from_config(config, checkpoint, threads=threads, seed=seed)
        report = validate_equivalence(session, clips, sizes, Tolerance(atol=atol))
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        table = Table(title=f"Stream vs full clip — {report.model}, {report.frames} frames, "
                            f"{report.videos} clip(s), {report.runtime}")
        for col in ("comparison", "max |Δlogit|", "mean |Δlogit|", "max rel", "top-1 agree", "result"):
            table.add_column(col)
        for r in report.rows:
            table.add_row(r.label, f"{r.max_abs:.2e}", f"{r.mean_abs:.2e}", f"{r.max_rel:.2e}",
                          f"{r.top1_agreement:.0%}", "[green]PASS" if r.passed else "[red]FAIL")
        stdout.print(table)
        stdout.print(("PASS" if report.passed else "FAIL") + f" ({r.tolerance})")
    raise typer.Exit(EXIT_OK if report.passed else EXIT_FAILED)
