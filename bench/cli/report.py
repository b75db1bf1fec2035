"""`movibench report`: the Markdown + self-contained HTML report of one run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from bench.cli.options import JsonOpt, console, stdout


def register(root: typer.Typer) -> None:
    root.command("report")(report_cmd)


def report_cmd(
    run_dir: Annotated[Path, typer.Argument(help="Run directory written by `movibench matrix run`.")],
    out: Annotated[Optional[Path], typer.Option(
        help="Folder for report.md, report.html and the PNG figures (default: RUN_DIR/report).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write a report of one run: report.md, a self-contained report.html, PNGs.

    Sections: best deployment per runtime/precision; latency vs accuracy with
    its Pareto front; peak memory vs clip length; a stream prediction trace
    with the multi-clip windows; equivalence with the TF reference (PASS/FAIL
    against per-precision tolerances); speedup over TF; failed cells; the
    run's environment, command and config. A section the run has no data for
    is omitted with a note. Every number comes from the run's files.
    """
    from bench.report.build import build_report

    with console.status(f"building the report of {run_dir}"):
        paths = build_report(run_dir, out or run_dir / "report")
    if as_json:
        print(json.dumps(paths.to_dict(), indent=2))
        return
    stdout.print(f"wrote {paths.markdown} and {paths.html} ({len(paths.images)} figure(s))")
    for title in paths.omitted:
        console.print(f"[yellow]omitted[/] {title}: the run has no data for it", highlight=False)
