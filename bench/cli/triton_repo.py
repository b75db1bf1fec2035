"""`movibench triton-repo`: a Triton model repository for an exported ONNX stream artifact."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from bench.cli.options import JsonOpt, console, stdout


def register(root: typer.Typer) -> None:
    root.command("triton-repo")(triton_repo_cmd)


def triton_repo_cmd(
    artifact: Annotated[Path, typer.Argument(
        help="An ONNX stream artifact with its manifest beside it, as `movibench export "
             "--variant stream --formats onnx --out DIR` writes (onnx, onnx+opt, onnx-int8…).")],
    out: Annotated[Path, typer.Option(
        "--out", help="The model repository folder (created if missing); the model goes to "
                      "OUT/NAME/.")],
    name: Annotated[Optional[str], typer.Option(
        "--name", help="Triton's model name, the model's folder (default: the artifact's "
                       "file stem).")] = None,
    strategy: Annotated[str, typer.Option(
        help="Sequence batcher strategy: direct (a slot per stream: --instances streams at "
             "once) or oldest (--max-candidates streams share an instance).")] = "direct",
    instances: Annotated[int, typer.Option(
        help="Model instances on the CPU (instance_group count).", min=1)] = 1,
    max_candidates: Annotated[Optional[int], typer.Option(
        "--max-candidates", help="oldest only: streams one instance holds at once "
                                 "(max_candidate_sequences; default 1).", min=1)] = None,
    max_queue_delay_us: Annotated[int, typer.Option(
        "--max-queue-delay-us", help="Microseconds the batcher may hold a request to fill a "
                                     "batch (0: never waits).", min=0)] = 0,
    max_idle_us: Annotated[Optional[int], typer.Option(
        "--max-idle-us", help="Microseconds a stream may send nothing before Triton frees its "
                              "state (default: Triton's, 1 s).", min=1)] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace OUT/NAME when it exists.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Write a Triton model repository serving an ONNX stream artifact as it was measured.

    OUT/NAME/config.pbtxt runs the file on Triton's ONNX Runtime backend on the CPU, with
    the sequence batcher keeping every stream state of the manifest between a stream's
    requests (implicit state, zeros at a sequence start); OUT/NAME/1/model.onnx is the
    artifact's file with its manifest. A client sends `image` per frame with a sequence id,
    sequence_start on its first frame, and reads `logits`. Needs the `triton` extra
    (tritonclient, for Triton's config schema). See docs/scale-out.md, "Serving on Triton".
    """
    from converters.triton_repo import TritonOptions, write_triton_repo

    options = TritonOptions(model_name=name, strategy=strategy, instances=instances,
                            max_candidates=max_candidates, max_queue_delay_us=max_queue_delay_us,
                            max_idle_us=max_idle_us)
    repo = write_triton_repo(artifact, out, options, overwrite=force)
    if as_json:
        print(json.dumps({"model_name": repo.model_name, "model_dir": str(repo.model_dir),
                          "config": str(repo.config_path), "model": str(repo.model_path),
                          "states": len(repo.manifest.states), "strategy": options.strategy},
                         indent=2))
        return
    stdout.print(f"wrote {repo.config_path} and {repo.model_path} "
                 f"({len(repo.manifest.states)} states kept by Triton, {options.strategy} "
                 "strategy)", highlight=False, soft_wrap=True)
    console.print(f"serve it: tritonserver --model-repository {out}", highlight=False,
                  soft_wrap=True)
