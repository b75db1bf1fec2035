"""`movibench eval`: accuracy and per-video cost under evaluation protocols."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from bench.cli.options import (
    EXIT_FAILED, EXIT_OK, FROM_OPTIONS, JsonOpt, ModelChoice, ThreadsOpt, console, model_options,
    positive_finite, stdout,
)
from core.errors import MovibenchError
from core.formats import TENSORFLOW


def register(root: typer.Typer) -> None:
    root.command("eval")(eval_cmd)


def _clip_frames(config, protocols, clip_frames: int | None) -> int | None:
    """Frames per call of an exported artifact that must serve every protocol asked for."""
    from bench.jobs.deployment import fixed_frames, frames_per_call

    if clip_frames is not None or config.causal:
        return frames_per_call(config.causal, clip_frames=clip_frames)
    lengths = {fixed_frames(False, p) for p in protocols} - {None}
    if len(lengths) != 1:
        raise MovibenchError("a base model on an exported format runs clips of one fixed length: "
                             "pass --clip-frames L (or multi-clip protocols of one L)")
    return lengths.pop()


def _open_session(artifact, fmt, clip_frames, protocols, choice: ModelChoice, dataset, threads):
    from bench.jobs.deployment import Deployment, open_deployment
    from core.formats import get_format

    if artifact is not None:
        from runtimes.loader import open_session

        return open_session(artifact, threads=threads)
    # The dataset fixes the head's class count.
    config = replace(choice, classes=dataset.num_classes).config()
    checkpoint = choice.checkpoint
    if checkpoint is not None:
        from bench.train.trainer import CLASSES_TXT

        ckpt_dir = checkpoint if checkpoint.is_dir() else checkpoint.parent
        if (ckpt_dir / CLASSES_TXT).exists():
            trained = tuple(ckpt_dir.joinpath(CLASSES_TXT).read_text().split())
            if trained != tuple(dataset.classes):
                raise MovibenchError(f"checkpoint classes {list(trained)} differ from the "
                                     f"dataset's {list(dataset.classes)}")
    # TF takes any T: only an exported artifact is built for one clip length.
    frames = _clip_frames(config, protocols, clip_frames) if get_format(fmt).exported else None
    return open_deployment(Deployment(config, fmt, str(checkpoint or ""), threads, frames))


def _evaluate_on_ray(open_session, samples, protocols, classes, shards, address, fps, stride,
                     threads):
    """The evaluation as Ray tasks, one per shard of consecutive videos (merged results)."""
    from bench.launchers.ray import cluster_cpus, evaluate_sharded, ray_session

    cpus = threads or 1
    with ray_session(address):
        shards = shards or max(1, cluster_cpus() // cpus)
        with console.status(f"evaluating {len(samples)} videos in {shards} shard(s) on Ray"):
            return evaluate_sharded(open_session, samples, protocols, classes=classes,
                                    shards=shards, fps=fps, stride=stride, cpus=cpus)


@model_options(classes=False)
def eval_cmd(
    data: Annotated[Path, typer.Option(help="Dataset folder (DIR/<split>/<class>/*) or Kinetics-style CSV.")],
    protocol: Annotated[list[str], typer.Option(
        "--protocol", "-p", help="Repeatable: stream, stream:C=4, full-clip, multi-clip:KxL[:3crop].")] = ["stream"],
    choice: ModelChoice = FROM_OPTIONS,
    fmt: Annotated[str, typer.Option(
        "--format", "-f", help="tensorflow (the reference), or an export format (onnx, "
                               "tflite-fp32, ...): exported through the cache, then evaluated.")] = TENSORFLOW,
    clip_frames: Annotated[Optional[int], typer.Option(
        "--clip-frames", help="Base model on an exported format: the clip length L it is "
                              "exported for (default: the multi-clip protocols' L).", min=1)] = None,
    artifact: Annotated[Optional[Path], typer.Option(
        help="An exported artifact (opened with runtimes.loader) instead of a TF model.")] = None,
    split: Annotated[Optional[str], typer.Option(help="Only this split (e.g. val).")] = None,
    fps: Annotated[Optional[float], typer.Option(
        help="Resample videos to this frame rate (> 0).", callback=positive_finite)] = None,
    stride: Annotated[int, typer.Option(help="Keep every n-th decoded frame.", min=1)] = 1,
    limit: Annotated[Optional[int], typer.Option(help="Only the first N videos.", min=1)] = None,
    out: Annotated[Optional[Path], typer.Option(
        help="Per-video rows to .csv/.parquet; a <stem>.summary.<ext> table goes beside it.")] = None,
    threads: ThreadsOpt = None,
    executor: Annotated[str, typer.Option(
        "--executor", help="local (this process) or ray (the videos split into --shards "
                           "evaluated in parallel as Ray tasks).")] = "local",
    shards: Annotated[Optional[int], typer.Option(
        help="With --executor ray: parts of consecutive videos evaluated at once "
             "(default: the cluster's CPUs / --threads).", min=1)] = None,
    address: Annotated[Optional[str], typer.Option(
        help="With --executor ray: the cluster head (host:port or 'auto'); default: start "
             "Ray on this machine.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Evaluate a model on a labelled dataset under one or more protocols.

    A video that cannot be decoded (or is missing) becomes a failed row with its error; the rest
    go on, and the exit code is 1 when any video failed. With --executor ray the per-video rows of all shards are merged in the dataset's order
    and the metrics computed over all of them, as in one process.
    """
    from bench.data.datasets import load_dataset
    from bench.evaluation.evaluate import evaluate, summary_path, write_table
    from bench.evaluation.protocols import parse_protocol
    from bench.trackers.memory import peak_rss_mb

    protocols = [parse_protocol(p) for p in protocol]
    if executor not in ("local", "ray"):
        raise MovibenchError(f"--executor must be local or ray, got {executor!r}")
    if executor == "local" and (shards is not None or address is not None):
        raise MovibenchError("--shards and --address need --executor ray")
    if artifact is not None and any(v is not None for v in (
            choice.checkpoint, choice.model, choice.variant, choice.resolution)):
        raise MovibenchError("--artifact carries its own model: drop "
                             "--model/--variant/--resolution/--checkpoint/--demo")
    dataset = load_dataset(data, split)
    samples = dataset.samples[:limit] if limit else dataset.samples
    if executor == "ray":
        results = _evaluate_on_ray(
            partial(_open_session, artifact, fmt, clip_frames, protocols, choice, dataset,
                    threads),
            samples, protocols, dataset.classes, shards, address, fps, stride, threads)
    else:
        with console.status("loading model"):
            session = _open_session(artifact, fmt, clip_frames, protocols, choice, dataset,
                                    threads)
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
    # Decoding errors name their file already; others get it in front.
    failures = {r.protocol: [v.error if str(v.path) in v.error else f"{v.path}: {v.error}"
                             for v in r.videos if not v.ok] for r in results}
    code = EXIT_FAILED if any(failures.values()) else EXIT_OK
    if as_json:
        print(json.dumps({"data": str(data), "split": split, "videos": len(samples),
                          "summaries": [{**s, "confusion": json.loads(s["confusion"]),
                                         "classes": json.loads(s["classes"])} for s in summaries],
                          "failures": failures}, indent=2))
        raise typer.Exit(code)
    table = Table(title=f"{results[0].model} ({results[0].runtime}) on "
                        f"{data}{f' [{split}]' if split else ''}: {len(samples)} videos")
    for col in ("protocol", "top-1", "top-5", "mean class acc", "failed", "frames/video",
                "model ms/video"):
        table.add_column(col, no_wrap=col == "protocol")
    for s in summaries:
        table.add_row(s["protocol"], f"{s['top1']:.1%}",
                      "–" if s["top5"] != s["top5"] else f"{s['top5']:.1%}",
                      f"{s['mean_class_accuracy']:.1%}", str(s["failed"]),
                      f"{s['frames_processed_per_video']:.1f}",
                      f"{s['model_s_per_video'] * 1e3:.1f}")
    stdout.print(table)
    # One process ran every protocol, so only the whole run's peak is known (never reset);
    # on Ray the shards' processes are elsewhere.
    peak = (f"peak RSS of this process (load and every protocol): {peak_rss_mb():.0f} MB; "
            if executor == "local" else "")
    stdout.print(f"{peak}top-5 is shown only for more than 5 classes")
    for proto, lines in failures.items():
        for line in lines:
            console.print(f"[yellow]failed[/] {escape(proto)}: {escape(line)}", highlight=False,
                          soft_wrap=True)
    if out is not None:
        stdout.print(f"wrote {out} and {summary_path(out)}")
    raise typer.Exit(code)
