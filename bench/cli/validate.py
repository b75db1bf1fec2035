"""`movibench validate ...`: stream-vs-full-clip equivalence, cross-runtime agreement,
TensorRT parser compatibility of the ONNX export, and LiteRT GPU-delegate readiness of a
TFLite export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from bench.cli.options import (
    EXIT_FAILED, EXIT_OK, FROM_OPTIONS, ClipFramesOpt, JsonOpt, ModelChoice, OpsetOpt, SimplifyOpt,
    ThreadsOpt, console, model_options, non_negative, parse_int_list, stdout,
)
from core.errors import MovibenchError
from core.formats import ONNX, TFLITE, get_export_format, plain_format

app = typer.Typer(help="Check that streamed and exported models say what the original says, "
                       "that the ONNX export suits TensorRT and a TFLite export the LiteRT "
                       "GPU delegate.",
                  no_args_is_help=True)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="validate")


def load_clips(videos: Path | None, synthetic: int, frames: int, resolution: int,
               seed: int) -> list:
    """Decoded clips from a folder of real videos (cut to a common length), else generated ones."""
    if videos is None:
        from bench.evaluation.equivalence import synthetic_clips

        return synthetic_clips(synthetic, frames, resolution, seed)
    from bench.data.video import list_videos, read_clip

    paths = list_videos(videos)
    if not paths:
        raise MovibenchError(f"no video files in {videos}")
    clips = [read_clip(p, resolution, max_frames=frames) for p in paths]
    common = min(c.shape[0] for c in clips)
    return [c[:common] for c in clips]


@app.command("equivalence")
@model_options()
def validate_equivalence_cmd(
    choice: ModelChoice = FROM_OPTIONS,
    frames: Annotated[int, typer.Option(help="Frames per clip.", min=1)] = 16,
    chunk_sizes: Annotated[str, typer.Option("--chunks", help="Chunk sizes to stream with, e.g. 1,4,8.")] = "1,4,8",
    videos: Annotated[Optional[Path], typer.Option(help="Folder of real videos to decode and use.")] = None,
    synthetic: Annotated[int, typer.Option(help="Number of generated clips when --videos is not given.", min=1)] = 2,
    atol: Annotated[float, typer.Option(
        help="Max |Δlogit| allowed, plus --rtol of the logit scale.", callback=non_negative)] = 1e-4,
    rtol: Annotated[float, typer.Option(
        help="Share of the full clip's largest |logit| added to --atol (float rounding grows "
             "with the logits: trained weights reach hundreds).", callback=non_negative)] = 1e-5,
    threads: ThreadsOpt = None,
    seed: Annotated[int, typer.Option(help="Seed of random-init weights and synthetic clips.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Stream a causal MoViNet frame by frame and in chunks; compare with one full-clip call.

    PASS when every chunk size gives the full clip's logits within --atol + --rtol × the
    largest |logit|. Exit 0 on PASS,
    1 on FAIL, 2 on bad input.
    """
    from bench.evaluation.compare_logits import Tolerance
    from bench.evaluation.equivalence import validate_equivalence
    from runtimes.tensorflow import TensorFlowSession

    sizes = parse_int_list(chunk_sizes, "--chunks")
    config, checkpoint = choice.config(), choice.checkpoint
    if not config.causal:
        raise MovibenchError(f"variant {config.variant!r} is not causal: equivalence needs stream or mobile")
    clips = load_clips(videos, synthetic, frames, config.resolution, seed)
    with console.status(f"building {config.model_id}/{config.variant} and streaming {len(clips)} clip(s)"):
        session = TensorFlowSession.from_config(config, checkpoint, threads=threads, seed=seed)
        report = validate_equivalence(session, clips, sizes, Tolerance(atol=atol, rtol=rtol))
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


@app.command("cross-runtime")
@model_options(conv_type=True)
def validate_cross_runtime_cmd(
    formats: Annotated[str, typer.Option(
        "--formats", "-f", help="Comma-separated formats to check against TensorFlow.")] = "onnx,tflite-fp32",
    choice: ModelChoice = FROM_OPTIONS,
    frames: Annotated[int, typer.Option(help="Frames per clip (every one is compared).", min=1)] = 32,
    clip_frames: ClipFramesOpt = None,
    videos: Annotated[Optional[Path], typer.Option(help="Folder of real videos to decode and use.")] = None,
    synthetic: Annotated[int, typer.Option(help="Number of generated clips when --videos is not given.", min=1)] = 2,
    full_clip: Annotated[str, typer.Option(
        "--full-clip", help="Formats that also export a whole-clip artifact to check stream vs "
                            "full clip inside the format ('' for none).")] = ONNX,
    threads: ThreadsOpt = None,
    seed: Annotated[int, typer.Option(help="Seed of random-init weights and synthetic clips.")] = 0,
    out: Annotated[Optional[Path], typer.Option(help="Write the rows to this .parquet or .csv file.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Stream the same frames through TensorFlow and every exported artifact; compare each step.

    A base (clip) model is exported with its clip length L (--clip-frames, default --frames)
    and compared on every consecutive L-frame window of each clip (multi-clip), e.g.
    --frames 16 --clip-frames 8 compares two windows per clip. fp32 artifacts must match within
    1e-4; fp16 within 2e-2; dynamic-range and int8 are judged by top-1 agreement with
    TensorFlow over every call (bench/evaluation/compare_logits.py).
    Exit 0 when every format passes, 1 when any fails or cannot run, 2 on bad input.
    """
    from bench.evaluation.equivalence import validate_cross_runtime
    from converters.export import ExportOptions, export_model
    from core.formats import parse_formats
    from runtimes.loader import open_session
    from runtimes.tensorflow import TensorFlowSession

    specs = parse_formats(formats)
    full_clip_formats = tuple(s.name for s in parse_formats(full_clip)) if full_clip.strip() else ()
    config, checkpoint = choice.config(), choice.checkpoint
    if not config.causal:
        clip_frames = clip_frames or frames
    if clip_frames is not None and clip_frames > frames:
        raise MovibenchError(f"--clip-frames {clip_frames} is longer than --frames {frames}")
    clips = load_clips(videos, synthetic, frames, config.resolution, seed)
    options = ExportOptions(seed=seed)

    def export(fmt, frames_per_call):
        return export_model(config, fmt, checkpoint=checkpoint, frames_per_call=frames_per_call,
                            options=options)

    with console.status("building the TensorFlow reference") as status:
        reference = TensorFlowSession.from_config(config, checkpoint, threads=threads, seed=seed)
        rows = validate_cross_runtime(
            reference, [s.name for s in specs], clips, export=export,
            open_artifact=lambda path: open_session(path, threads=threads),
            full_clip_formats=full_clip_formats, frames_per_call=clip_frames,
            on_format=lambda fmt: status.update(f"exporting and streaming {fmt}"))
    records = [r.to_dict() for r in rows]
    if out is not None:
        from bench.evaluation.evaluate import write_table

        write_table(records, out)
    passed = all(r.passed for r in rows)
    if as_json:
        print(json.dumps({"model": config.to_dict(), "frames": int(clips[0].shape[0]),
                          "frames_per_call": clip_frames or 1, "clips": len(clips),
                          "passed": passed, "rows": records}, indent=2))
    else:
        table = Table(title=f"Cross-runtime — {config.model_id}/{config.variant}@"
                            f"{config.resolution}, {len(clips)} clip(s) x {clips[0].shape[0]} frames")
        for col in ("format", "comparison", "max |Δlogit|", "mean |Δlogit|", "top-1 agree",
                    "tolerance", "result"):
            table.add_column(col)
        for r in records:
            if r["error"]:
                table.add_row(r["format"], r["comparison"], "", "", "", "", f"[red]FAIL: {r['error']}")
                continue
            table.add_row(r["format"], r["comparison"], f"{r['max_abs']:.2e}", f"{r['mean_abs']:.2e}",
                          f"{r['top1_agreement']:.1%}", r["tolerance"],
                          "[green]PASS" if r["passed"] else "[red]FAIL")
        stdout.print(table)
        stdout.print("PASS" if passed else "FAIL")
    raise typer.Exit(EXIT_OK if passed else EXIT_FAILED)


@app.command("official-recipe")
@model_options()
def validate_official_recipe_cmd(
    choice: ModelChoice = FROM_OPTIONS,
    frames: Annotated[int, typer.Option(help="Frames per clip (every one is compared).", min=1)] = 16,
    synthetic: Annotated[int, typer.Option(help="Number of generated clips.", min=1)] = 2,
    atol: Annotated[float, typer.Option(
        help="Max |Δlogit| allowed between the two files.", callback=non_negative)] = 1e-5,
    threads: ThreadsOpt = None,
    seed: Annotated[int, typer.Option(help="Seed of random-init weights and synthetic clips.")] = 0,
    keep: Annotated[Optional[Path], typer.Option(
        help="Keep Model Garden's .tflite here (default: a temporary file).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Model Garden's own TFLite recipe vs movibench's tflite-fp32, on the same weights.

    Runs Model Garden's tools/export_saved_model.py route (its README's stream flags, then
    TFLiteConverter.from_saved_model) and movibench's export from one checkpoint (random-init
    weights are saved to one first), streams the same clips through both files with LiteRT and
    compares every step's logits; also times one step of each, side by side.
    Exit 0 when they agree within --atol, 1 when not, 2 on bad input.
    """
    import tempfile

    from bench.evaluation.compare_logits import Tolerance
    from bench.evaluation.equivalence import compare_streams, synthetic_clips
    from bench.scenarios.latency import measure_latency
    from converters.export import export_model
    from converters.official_recipe import export_official_tflite, save_random_init
    from runtimes.loader import open_session

    config, checkpoint = choice.config(), choice.checkpoint
    weights = f"random-init (seed {seed})" if checkpoint is None else str(checkpoint)
    with tempfile.TemporaryDirectory(prefix="movibench-recipe-") as tmp:
        with console.status("exporting with Model Garden's recipe and with movibench") as status:
            if checkpoint is None:
                checkpoint = save_random_init(config, Path(tmp) / "random-init", seed)
            official_path = keep or Path(tmp) / "model_garden.tflite"
            official = export_official_tflite(config, checkpoint, official_path)
            ours_format = plain_format(TFLITE).name
            status.update(f"exporting {ours_format} with movibench")
            ours = export_model(config, ours_format, checkpoint=checkpoint)
            status.update("streaming both")
            clips = synthetic_clips(synthetic, frames, config.resolution, seed)
            with open_session(official_path, threads=threads) as theirs, \
                    open_session(ours.path, threads=threads) as mine:
                diff = compare_streams(theirs, mine, clips, "movibench tflite-fp32 vs Model Garden",
                                       Tolerance(atol=atol))
                one = clips[0][None, :1]
                timing = {name: measure_latency(s, one, warmup=5, iterations=50)
                          for name, s in (("model_garden", theirs), ("movibench", mine))}
    latency = {name: {k: v for k, v in out.items() if k in ("step_p50_ms", "step_p90_ms", "step_n")}
               for name, out in timing.items()}
    result = {"model": config.to_dict(), "frames": frames, "clips": synthetic,
              "weights": weights,
              "model_garden_flags": official["flags"], "model_garden_export_s": official["seconds"],
              # Cache key + file name: the same on every machine, unlike the cache's path.
              "movibench_artifact": {"cache_key": ours.key, "file": ours.path.name},
              "difference": diff.to_dict(),
              "passed": diff.passed, "threads": threads,
              "latency_one_frame_per_call": latency,
              "speed_ratio_model_garden_over_movibench":
                  latency["model_garden"]["step_p50_ms"] / latency["movibench"]["step_p50_ms"]}
    if as_json:
        print(json.dumps(result, indent=2, default=str))
    else:
        stdout.print(f"max |Δlogit| {diff.max_abs:.2e} over {diff.n} steps (tolerance {atol:g}); "
                     f"one step: Model Garden {latency['model_garden']['step_p50_ms']:.3f} ms, "
                     f"movibench {latency['movibench']['step_p50_ms']:.3f} ms (p50)")
        stdout.print("PASS" if diff.passed else "FAIL")
    raise typer.Exit(EXIT_OK if diff.passed else EXIT_FAILED)


@app.command("tensorrt")
@model_options()
def validate_tensorrt_cmd(
    onnx_file: Annotated[Optional[Path], typer.Option(
        "--onnx", help="Check this ONNX file instead of exporting the model's.")] = None,
    choice: ModelChoice = FROM_OPTIONS,
    clip_frames: ClipFramesOpt = None,
    opset: OpsetOpt = 17,
    simplify: SimplifyOpt = False,
    seed: Annotated[int, typer.Option(help="Seed of random-init weights (no checkpoint).")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Check, without TensorRT or a GPU, that TensorRT's ONNX parser takes a model's ONNX.

    Every op of every (sub)graph against the parser's supported-operator table
    (converters/data/tensorrt_onnx_ops.json, with its TensorRT version and source), each op's
    data type, the graph's I/O dtypes, the opset, and static shapes on every input and output.
    PASS means nothing in the table stands in the way; building an engine (`movibench export
    --formats trt-fp16`) still needs TensorRT and a GPU. Exit 0 on PASS, 1 on FAIL, 2 on bad input.
    """
    from converters.trt_compat import check_tensorrt_compat

    if onnx_file is None:
        from converters.export import ExportOptions, export_model

        config = choice.config()
        with console.status(f"exporting {config.model_id}/{config.variant} to ONNX"):
            onnx_file = export_model(config, ONNX, checkpoint=choice.checkpoint,
                                     frames_per_call=clip_frames,
                                     options=ExportOptions(opset=opset, simplify=simplify, seed=seed)).path
    elif not onnx_file.is_file():
        raise MovibenchError(f"ONNX file not found: {onnx_file}")
    report = check_tensorrt_compat(onnx_file)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        table = Table(title=f"TensorRT {report.tensorrt_version} ONNX parser — {onnx_file.name}, "
                            f"opset {report.opset}")
        for col in ("op", "nodes", "supported", "restriction (not checked statically)"):
            table.add_column(col, overflow="fold")
        for op, count in report.ops.items():
            ok = op not in report.unsupported_ops and not any(
                t.startswith(op + "(") for t in report.unsupported_node_types)
            table.add_row(op, str(count), "[green]yes" if ok else "[red]no",
                          report.restrictions.get(op, ""))
        stdout.print(table)
        stdout.print(report.summary())
    raise typer.Exit(EXIT_OK if report.passed else EXIT_FAILED)


@app.command("gpu-delegate")
@model_options()
def validate_gpu_delegate_cmd(
    tflite_file: Annotated[Optional[Path], typer.Argument(
        help="Check this .tflite file instead of exporting the model's.")] = None,
    choice: ModelChoice = FROM_OPTIONS,
    fmt: Annotated[str, typer.Option(
        "--format", help="The TFLite format to export and check when no file is given.")] = TFLITE + "-fp32",
    clip_frames: ClipFramesOpt = None,
    seed: Annotated[int, typer.Option(help="Seed of random-init weights (no checkpoint).")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Check, without a GPU, that the LiteRT GPU delegate would take a TFLite model whole.

    Every tensor an op reads or writes must have rank <= 4, and every op, its version, options,
    constant inputs and non-constant tensor types must be in the delegate's op table
    (converters/data/litert_gpu_delegate_ops.json, transcribed from LiteRT's model_builder.cc
    with its commit). Rules the table states only in words are listed, not checked. Exit 0 on
    PASS, 1 on FAIL, 2 on bad input or an unreadable file.
    """
    from converters.gpu_delegate_compat import check_gpu_delegate_compat

    if tflite_file is None:
        from converters.export import ExportOptions, export_model

        spec = get_export_format(fmt)
        if spec.family != TFLITE:
            raise MovibenchError(f"--format {spec.name} is not a TFLite format")
        config = choice.config()
        with console.status(f"exporting {config.model_id}/{config.variant} to {spec.name}"):
            tflite_file = export_model(config, spec.name, checkpoint=choice.checkpoint,
                                       frames_per_call=clip_frames,
                                       options=ExportOptions(seed=seed)).path
    report = check_gpu_delegate_compat(tflite_file)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        table = Table(title=f"LiteRT GPU delegate ({report.source}) — {tflite_file.name}, "
                            f"highest tensor rank {report.highest_rank}")
        for col in ("op", "count", f"rank > {report.max_tensor_rank}", "supported", "problems",
                    "rule not checked"):
            table.add_column(col, overflow="fold")
        problems = report.option_violations + report.tensor_type_violations
        for op, count in report.ops.items():
            found = [p for p in problems if p.split(" #")[0] == op]
            ok = op not in report.unsupported_ops and not found and not any(
                v.startswith(op + " v") for v in report.version_too_high)
            table.add_row(op, str(count), str(report.high_rank_ops.get(op, "")),
                          "[green]yes" if ok else "[red]no",
                          f"{len(found)}: {found[0]}" if found else "",
                          report.unchecked_rules.get(op, ""))
        stdout.print(table)
        stdout.print(report.summary())
    raise typer.Exit(EXIT_OK if report.passed else EXIT_FAILED)
