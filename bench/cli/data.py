"""`movibench data ...`: generate and inspect labelled video datasets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from bench.cli.options import JsonOpt, console, fraction, stdout

app = typer.Typer(help="Generate and inspect labelled video datasets.", no_args_is_help=True)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="data")


@app.command("synth")
def synth_cmd(
    out: Annotated[Path, typer.Option(help="Folder to write the dataset into.")],
    classes: Annotated[int, typer.Option(help="Number of classes (class k = k flashes).", min=2)] = 4,
    videos_per_class: Annotated[int, typer.Option(help="Videos per class (train + val).", min=1)] = 24,
    frames: Annotated[int, typer.Option(help="Frames per video.", min=6)] = 32,
    size: Annotated[int, typer.Option(help="Frame width and height in pixels.", min=16)] = 64,
    seed: Annotated[int, typer.Option(help="Seed: the same seed writes the same videos.")] = 0,
    val_fraction: Annotated[float, typer.Option(help="Share of each class's videos in split 'val'.",
                                                callback=fraction)] = 0.25,
    fps: Annotated[int, typer.Option(help="Frame rate written into the files.", min=1)] = 25,
    container: Annotated[str, typer.Option(help="File type: mp4, webm, avi or mkv.")] = "mp4",
    as_json: JsonOpt = False,
) -> None:
    """Write a synthetic dataset whose label (number of flashes) needs the whole video.

    Layout: OUT/<split>/<class>/*.<container>, plus labels.csv (Kinetics-style), classes.txt
    and metadata.json.
    """
    from bench.data.synth import SynthConfig, generate

    config = SynthConfig(classes, videos_per_class, frames, size, seed, val_fraction, fps, container)
    with console.status(f"writing {classes * videos_per_class} videos to {out}"):
        videos = generate(out, config)
    counts = {s: sum(v.split == s for v in videos) for s in ("train", "val")}
    if as_json:
        print(json.dumps({"out": str(out), "videos": len(videos), "counts": counts}, indent=2))
    else:
        stdout.print(f"wrote {len(videos)} videos ({counts['train']} train, {counts['val']} val) "
                     f"to {out}")


@app.command("info")
def info_cmd(
    path: Annotated[Path, typer.Argument(help="Dataset folder or Kinetics-style CSV.")],
    split: Annotated[Optional[str], typer.Option(help="Only this split.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Classes, splits and per-class counts of a dataset."""
    from bench.data.datasets import load_dataset

    data = load_dataset(path, split)
    per_split = {s or "-": {c: 0 for c in data.classes} for s in (data.splits or (None,))}
    for sample in data.samples:
        per_split[sample.split or "-"][sample.label] += 1
    if as_json:
        print(json.dumps({"root": str(data.root), "classes": list(data.classes),
                          "videos": len(data), "counts": per_split}, indent=2))
        return
    table = Table(title=f"{data.root}: {len(data)} videos, {data.num_classes} classes")
    table.add_column("index")
    table.add_column("class")
    for s in per_split:
        table.add_column(s)
    for i, c in enumerate(data.classes):
        table.add_row(str(i), c, *(str(per_split[s][c]) for s in per_split))
    stdout.print(table)
