"""`movibench train`: fine-tune or train a MoViNet on a labelled video dataset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from bench.cli.options import JsonOpt, ThreadsOpt, console, fraction, positive_finite, stdout


def register(root: typer.Typer) -> None:
    root.command("train")(train_cmd)


def train_cmd(
    data: Annotated[Path, typer.Option(help="Dataset folder (DIR/<split>/<class>/*) or Kinetics-style CSV.")],
    out: Annotated[Path, typer.Option(help="Folder for checkpoints, history.csv and the config sidecar.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Model id: t0, a0..a5.")] = "t0",
    variant: Annotated[str, typer.Option(help="base or stream (or mobile).")] = "stream",
    conv_type: Annotated[Optional[str], typer.Option(
        help="Conv type (default: the variant's; 2plus1d for base, since 3D backward is unusable on CPU).")] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 8,
    frames: Annotated[int, typer.Option(help="Frames per training clip.", min=1)] = 32,
    frame_stride: Annotated[int, typer.Option(help="Keep every n-th decoded frame.", min=1)] = 1,
    resolution: Annotated[int, typer.Option(help="Input size in pixels.", min=32)] = 64,
    epochs: Annotated[Optional[int], typer.Option(min=1, help="Epochs (ignored when --steps is given).")] = None,
    steps: Annotated[Optional[int], typer.Option(min=1, help="Total optimizer steps.")] = None,
    lr: Annotated[float, typer.Option(help="Peak learning rate (warm-up, then cosine decay).",
                                      callback=positive_finite)] = 1e-3,
    warmup_steps: Annotated[Optional[int], typer.Option(help="Warm-up steps (default: 10% of steps, at most 50).", min=0)] = None,
    norm_momentum: Annotated[float, typer.Option(help="Batch-norm momentum; 0.9 for short runs.",
                                                 callback=fraction)] = 0.9,
    seed: Annotated[int, typer.Option(help="Seed of initial weights, data order and flips.")] = 0,
    train_split: Annotated[str, typer.Option(help="Split to train on.")] = "train",
    val_split: Annotated[str, typer.Option(help="Split to validate on each epoch (skipped if absent).")] = "val",
    init_checkpoint: Annotated[Optional[Path], typer.Option(
        help="Start from this checkpoint (a different class count keeps only the backbone).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out where it stopped.")] = False,
    threads: ThreadsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Train a MoViNet; writes OUT/ckpt.* + movibench_model.json after every epoch."""
    from bench.data.datasets import load_dataset
    from bench.train.trainer import TrainConfig, train

    dataset = load_dataset(data)
    config = TrainConfig(
        model_id=model, variant=variant, conv_type=conv_type, resolution=resolution,
        frames=frames, frame_stride=frame_stride, batch_size=batch_size, epochs=epochs,
        steps=steps, lr=lr, warmup_steps=warmup_steps, norm_momentum=norm_momentum, seed=seed,
        train_split=train_split, val_split=val_split,
        init_checkpoint=str(init_checkpoint) if init_checkpoint else None)
    result = train(config, dataset, out, resume=resume, threads=threads)
    for line in result.skipped_videos:
        console.print(f"[yellow]skipped[/] {line}", highlight=False)
    last = result.history[-1] if result.history else None
    summary = {"out": str(result.out), "checkpoint": result.checkpoint, "steps": result.steps,
               "resumed_from_step": result.resumed_from_step,
               "skipped_videos": len(result.skipped_videos),
               "last_epoch": last.__dict__ if last else None}
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        val = f", val acc {last.val_acc:.1%}" if last and last.val_acc is not None else ""
        stdout.print(f"trained to step {result.steps}; checkpoint {result.checkpoint}{val}")
