"""`movibench eval`: accuracy and per-video cost under evaluation protocols."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from bench.cli_common import (
    CheckpointOpt, DemoOpt, JsonOpt, ModelOpt, ResolutionOpt, ThreadsOpt, VariantOpt, console,
    resolve_checkpoint_option, stdout,
)
from converters.errors import MovibenchError


def register(root: typer.Typer) -> None:
    root.command("eval")(eval_cmd)


def _clip_frames(config, protocols, clip_frames: int | None) -> int | None:
    """Frames per call of an exported artifact: 1 streams; a base model needs one clip length."""
    from bench.protocols import MULTI_CLIP

    if config.causal:
        return clip_frames
    lengths = {p.clip_frames for p in protocols if p.kind == MULTI_CLIP}
    if clip_frames is None and len(lengths) == 1:
        return lengths.pop()
    if clip_frames is None:
        raise MovibenchError("a base model on an exported format runs clips of one fixed length: "
                             "pass --clip-frames L (or multi-clip protocols of one L)")
    return clip_frames


def _open_session(artifact, fmt, clip_frames, protocols, model, variant, resolution, checkpoint,
                  dataset, threads):
    from runtimes.loader import open_session

    if artifact is not None:
        return open_session(artifact, threads=threads)
    from converters.zoo import config_for

    config = config_for(model, variant, resolution, dataset.num_classes, checkpoint)
    if checkpoint is not None:
        from bench.train import CLASSES_TXT

        ckpt_dir = checkpoint if checkpoint.is_dir() else checkpoint.parent
        if (ckpt_dir / CLASSES_TXT).exists():
            trained = tuple(ckpt_dir.joinpath(CLASSES_TXT).read_text().split())
            if trained != tuple(dataset.classes):
                raise MovibenchError(f"checkpoint classes {list(trained)} differ from the "
                                     f"dataset's {list(dataset.classes)}")
    if fmt != "tensorflow":
        from converters.export import export_model

        exported = export_model(config, fmt, checkpoint=checkpoint,
                                frames_per_step=_clip_frames(config, protocols, clip_frames))
        return open_session(exported.path, threads=threads)
    from runtimes.tensorflow import TensorFlowSession

    return TensorFlowSession.from_config(config, checkpoint, threads=threads)


def eval_cmd(
    data: Annotated[Path, typer.Option(help="Dataset folder (DIR/<split>/<class>/*) or Kinetics-style CSV.")],
    protocol: Annotated[list[str], typer.Option(
        "--protocol", "-p", help="Repeatable: stream, stream:C=4, full-clip, multi-clip:KxL[:3crop].")] = ["stream"],
    model: ModelOpt = None,
    variant: VariantOpt = None,
    resolution: ResolutionOpt = None,
    checkpoint: CheckpointOpt = None,
    demo: DemoOpt = None,
    fmt: Annotated[str, typer.Option(
        "--format", "-f", help="tensorflow (the reference), or an export format (onnx, "
                               "tflite-fp32, ...): exported through the cache, then evaluated.")] = "tensorflow",
    clip_frames: Annotated[Optional[int], typer.Option(
        "--clip-frames", help="Base model on an exported format: the clip length L it is "
                              "exported for (default: the multi-clip protocols' L).", min=1)] = None,
    artifact: Annotated[Optional[Path], typer.Option(
        help="An exported artifact (opened with runtimes.loader) instead of a TF model.")] = None,
    split: Annotated[Optional[str], typer.Option(help="Only this split (e.g. val).")] = None,
    fps: Annotated[Optional[float], typer.Option(help="Resample videos to this frame rate.")] = None,
    stride: Annotated[int, typer.Option(help="Keep every n-th decoded frame.", min=1)] = 1,
    limit: Annotated[Optional[int], typer.Option(help="Only the first N videos.", min=1)] = None,
    out: Annotated[Optional[Path], typer.Option(
        help="Per-video rows to .csv/.parquet; a <stem>.summary.<ext> table goes beside it.")] = None,
    threads: ThreadsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Evaluate a model on a labelled dataset under one or more protocols.

    A video that cannot be decoded becomes a failed row with its error; the rest go on.
    """
    from bench.datasets import load_dataset
    from bench.evaluate import evaluate, summary_path, write_table
    from bench.protocols import parse_protocol

    protocols = [parse_protocol(p) for p in protocol]
    checkpoint = resolve_checkpoint_option(checkpoint, demo)
    if artifact is not None and (checkpoint is not None or model is not None):
        raise MovibenchError("--artifact carries its own model: drop --model/--checkpoint/--demo")
    dataset = load_dataset(data, split)
    samples = dataset.samples[:limit] if limit else dataset.samples
    with console.status("loading model"):
        session = _open_session(artifact, fmt, clip_frames, protocols, model, variant,
                                resolution, checkpoint, dataset, threads)
    from tqdm import tqdm

    results = []
    for proto in protocols:
        with tqdm(total=len(samples), desc=proto.name, unit="video", file=sys.stderr,
                  leave=False, disable=as_json) as bar:
            results.append(evaluate(session, samples, proto, classes=dataset.classes, fps=fps,
                                    stride=stride, keep_traces=False,
                                    on_video=lambda _: bar.update(1)))
    summaries = [r.summary() for r in results]
    if out is not None:
        write_table([row for r in results for row in r.rows()], out)
        write_table(summaries, summary_path(out))
    failures = {r.protocol: [f"{v.path}: {v.error}" for v in r.videos if not v.ok] for r in results}
    if as_json:
        print(json.dumps({"data": str(data), "split": split, "videos": len(samples),
                          "summaries": [{**s, "confusion": json.loads(s["confusion"]),
                                         "classes": json.loads(s["classes"])} for s in summaries],
                          "failures": failures}, indent=2))
        return
    m = session.manifest
    table = Table(title=f"{m.model_id}/{m.variant}@{m.resolution} ({session.runtime}) on "
                        f"{data}{f' [{split}]' if split else ''}: {len(samples)} videos")
    for col in ("protocol", "top-1", "top-5", "mean class acc", "failed", "frames/video",
                "model ms/video", "peak RSS MB"):
        table.add_column(col, no_wrap=col == "protocol")
    for s in summaries:
        table.add_row(s["protocol"], f"{s['top1']:.1%}", f"{s['top5']:.1%}",
                      f"{s['mean_class_accuracy']:.1%}", str(s["failed"]),
                      f"{s['frames_processed_per_video']:.1f}",
                      f"{s['model_s_per_video'] * 1e3:.1f}", f"{s['peak_rss_mb']:.0f}")
    stdout.print(table)
    for proto, lines in failures.items():
        for line in lines:
            console.print(f"[yellow]failed[/] {escape(proto)}: {escape(line)}", highlight=False)
    if out is not None:
        stdout.print(f"wrote {out} and {summary_path(out)}")
