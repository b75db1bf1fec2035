"""`movibench export`: turn a MoViNet into cached artifacts (+ state manifests) per format."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from bench.cli.options import (
    EXIT_FAILED, EXIT_OK, FROM_OPTIONS, ClipFramesOpt, JsonOpt, ModelChoice, OpsetOpt, SimplifyOpt,
    VerboseOpt, console, library_log, model_options, stdout,
)
from core.formats import ONNX, TFLITE, plain_format

DEFAULT_FORMATS = f"{plain_format(ONNX).name},{plain_format(TFLITE).name}"


def register(root: typer.Typer) -> None:
    root.command("export")(export_cmd)


def copy_artifact(artifact: Path, manifest: Path, out: Path) -> Path:
    """Copy an artifact and its manifest into `out`, each under a temporary name first, so an
    interrupted copy (full disk, Ctrl-C) never leaves a partial file under the real name."""
    out.mkdir(parents=True, exist_ok=True)
    for source in (manifest, artifact):
        tmp = out / f".{source.name}.partial"
        try:
            shutil.copy2(source, tmp)
            tmp.replace(out / source.name)
        finally:
            tmp.unlink(missing_ok=True)
    return out / artifact.name


@model_options(conv_type=True)
def export_cmd(
    # The help names formats as docs/optimization.md groups them, which no registry order
    # gives; test_export_cli checks that every name in it is a registered format.
    formats: Annotated[str, typer.Option(
        "--formats", "-f", help="Comma-separated: onnx, onnx-int8 (QDQ, calibrated), openvino, "
                                "tflite-fp32, tflite-fp16, "
                                "tflite-dynamic, tflite-int8, tflite-int8+opt (every exact graph "
                                "optimization that fits; tflite-int8+int8-hard-swish and "
                                "tflite-int8+causal-pool-step apply one each: "
                                "docs/optimization.md), trt-fp32, trt-fp16, "
                                "trt-int8.")] = DEFAULT_FORMATS,
    choice: ModelChoice = FROM_OPTIONS,
    clip_frames: ClipFramesOpt = None,
    out: Annotated[Optional[Path], typer.Option(
        help="Also copy each artifact and its manifest into this folder.")] = None,
    opset: OpsetOpt = 17,
    simplify: SimplifyOpt = False,
    dynamic_frames: Annotated[bool, typer.Option(
        help="ONNX only: leave T symbolic (one artifact for 1 frame or a whole clip).")] = False,
    int8_float_io: Annotated[bool, typer.Option(
        help="int8: keep image, logits and states float at the boundary.")] = True,
    calib_videos: Annotated[Optional[Path], typer.Option(
        help="int8 calibration: stream real clips from this folder (default: generated clips).")] = None,
    calib_clips: Annotated[int, typer.Option(help="int8 calibration clips.", min=1)] = 8,
    calib_frames: Annotated[int, typer.Option(help="Frames per calibration clip.", min=1)] = 16,
    seed: Annotated[int, typer.Option(help="Seed of random-init weights (no checkpoint).")] = 0,
    verbose: VerboseOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Export a model to each format, served from the content-addressed cache when built before.

    Every artifact is written with its state manifest (<artifact>.manifest.json). Each stage
    (build, trace, convert, calibrate, validate) is printed with its time; the libraries' own
    output goes to library.log in --out (else the cache), or here with --verbose. A format
    that fails is reported with its reason and the others go on. Exit 0 when every format
    exported, 1 when any failed, 2 on bad input.
    """
    from converters.cache import ArtifactCache, CacheIntegrityWarning
    from core.errors import MovibenchError
    from converters.export import CalibrationData, ExportOptions, export_model
    from core.formats import parse_formats

    specs = parse_formats(formats)
    config, checkpoint = choice.config(), choice.checkpoint
    if calib_videos is not None:
        from bench.data.calibration_clips import calibration_from_videos
        from bench.data.video import list_videos

        paths = list_videos(calib_videos)[:calib_clips]
        if not paths:
            raise MovibenchError(f"no video files in {calib_videos} for int8 calibration")
        calibration = calibration_from_videos(paths, calib_frames)
    else:
        calibration = CalibrationData(clips=calib_clips, frames=calib_frames, seed=seed)
        if checkpoint is not None and any(spec.calibrated for spec in specs):
            # Activation ranges fitted to noise clip a trained model's real activations.
            console.print("warning: int8 calibrates on generated clips; for trained weights pass "
                          "--calib-videos DIR (videos like the ones it will see)",
                          highlight=False, soft_wrap=True, markup=False)
    options = ExportOptions(opset=opset, simplify=simplify, dynamic_frames=dynamic_frames,
                            int8_float_io=int8_float_io, calibration=calibration, seed=seed)
    cache = ArtifactCache(on_wait=lambda message: console.print(message, highlight=False))
    rows = []
    with library_log(out or cache.root, verbose):
        for spec in specs:
            with warnings.catch_warnings():
                # Said below in one line of our own, not as a Python warning with a source line.
                warnings.simplefilter("ignore", CacheIntegrityWarning)
                try:
                    artifact = _export_telling_stages(
                        f"{config.model_id}/{config.variant} {spec.name}",
                        lambda: export_model(config, spec.name, checkpoint=checkpoint,
                                             frames_per_call=clip_frames, options=options,
                                             cache=cache))
                except MovibenchError as exc:
                    rows.append({"format": spec.name, "ok": False, "error": str(exc)})
                    continue
            rows.append(_row(spec.name, artifact, out))
    _print(config, rows, as_json)
    raise typer.Exit(EXIT_FAILED if any(not r["ok"] for r in rows) else EXIT_OK)


def _export_telling_stages(label: str, export):
    """Run `export()` with a live line of its current stage and the time so far; each stage
    that ends is printed with its seconds (core.stages)."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from core.stages import listening

    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                        console=console, transient=True)
    task = progress.add_task(label)

    def tell(name: str, seconds: float | None) -> None:
        if seconds is None:
            progress.update(task, description=f"{label}: {name}")
        else:
            progress.console.print(f"{label}: {name} {seconds:.1f} s", highlight=False,
                                   markup=False)

    with progress, listening(tell):
        return export()


def _row(fmt: str, artifact, out: Path | None) -> dict:
    """The verb's row of one exported `artifact`, copied into `out` when given."""
    rebuilt = artifact.details.get("cache_rebuilt", "")
    if rebuilt:
        console.print(f"warning: the cached {fmt} artifact failed its check ({rebuilt}): "
                      "rebuilt it", highlight=False, soft_wrap=True, markup=False)
    path = artifact.path
    if out is not None:
        try:
            path = copy_artifact(artifact.path, artifact.manifest_path, out)
        except OSError as exc:
            return {"format": fmt, "ok": False,
                    "error": f"cannot copy the artifact into {out}: {exc.strerror or exc}"}
    return {"format": fmt, "ok": True, "cached": artifact.cached,
            "seconds": round(artifact.elapsed_seconds, 3),
            "build_seconds": round(artifact.build_seconds, 3),
            "size_mb": round(artifact.size_bytes / 2**20, 3),
            "frames_per_call": artifact.manifest.frames_per_call,
            "optimizations": artifact.manifest.optimizations,
            "path": str(path), "key": artifact.key, "cache_rebuilt": rebuilt,
            "details": artifact.details}


def _print(config, rows: list[dict], as_json: bool) -> None:
    """The rows as JSON or as a table, on stdout."""
    if as_json:
        print(json.dumps({"model": config.to_dict(), "artifacts": rows}, indent=2))
    else:
        table = Table(title=f"{config.model_id}/{config.variant}@{config.resolution} "
                            f"({config.num_classes} classes)")
        for col in ("format", "result", "MB", "T", "path"):
            table.add_column(col, overflow="fold")
        for r in rows:
            if not r["ok"]:
                table.add_row(r["format"], "[red]FAILED", "", "", r["error"])
                continue
            how = (f"cached ({r['seconds']:.2f} s)" if r["cached"]
                   else f"built in {r['build_seconds']:.1f} s")
            if r["cache_rebuilt"]:
                how = f"re{how} (cached copy damaged)"
            table.add_row(r["format"], how, f"{r['size_mb']:.2f}",
                          str(r["frames_per_call"] or "any"), r["path"])
        stdout.print(table)
