"""`movibench matrix plan|run|schema`: the benchmark matrix."""

from __future__ import annotations

import json
import shlex
import sys
from collections import Counter
from contextlib import ExitStack, contextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn,
)
from rich.table import Table

from bench.cli.options import (
    EXIT_FAILED, EXIT_OK, JsonOpt, VerboseOpt, console, library_log, positive_finite, stdout,
)
from core.errors import MovibenchError

app = typer.Typer(help="Plan and run a benchmark matrix (models x formats x threads x protocols).",
                  no_args_is_help=True)

DEFAULT_CONFIG = "default"


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="matrix")


def config_path(name: str) -> Path:
    """A TOML path, or the name of a config shipped in bench/configs ('default')."""
    path = Path(name)
    if path.exists() or path.suffix == ".toml":
        return path
    return Path(str(resources.files("bench") / "configs" / f"{name}.toml"))


ConfigArg = Annotated[str, typer.Argument(
    help="Matrix TOML file, or the name of a shipped config ('default').")]
OnlyOpt = Annotated[Optional[str], typer.Option(
    "--only", help="Keep cells matching key=value[,key=value] (value a|b for any of), "
                   "e.g. 'format=onnx|tflite-fp32,protocol=stream'.")]


def _cells(config_name: str, only: str | None):
    from bench.matrix.config import apply_filter, expand, load_config

    config = load_config(config_path(config_name))
    return config, apply_filter(expand(config), only)


@app.command("plan")
def plan_cmd(config: ConfigArg = DEFAULT_CONFIG, only: OnlyOpt = None,
             out: Annotated[Optional[Path], typer.Option(help="Run directory to compare with (shows done cells).")] = None,
             as_json: JsonOpt = False) -> None:
    """Print the expanded cells, the artifact each needs, and which are already done."""
    from bench.matrix.run import plan_cells, planned_data
    from bench.results.store import ResultsStore
    from bench.scenarios import LATENCY, MEMORY, SERVING

    cfg, cells = _cells(config, only)
    done = ResultsStore(out).done_cells() if out else set()
    plans = plan_cells(cells, planned_data(cfg), done)
    if as_json:
        print(json.dumps([{**p.cell.to_dict(), "cell_id": p.cell.cell_id,
                           "artifact_source": p.deployment.artifact_source, "status": p.status,
                           "frames_per_call": p.deployment.frames_per_call,
                           "artifact": p.artifact,
                           "error": p.error} for p in plans], indent=2))
        return
    todo = sum(p.status == "todo" for p in plans)
    table = Table(title=f"{cfg.name}: {len(plans)} cells ({todo} to run)", box=None)
    for col in ("cell", "model", "format", "source", "thr", "scenario", "protocol / sweep", "T",
                "artifact", "status"):
        table.add_column(col, no_wrap=col != "protocol / sweep")
    for p in plans:
        c = p.cell
        what = {LATENCY: "-", MEMORY: f"{c.sweep_mode}@{c.clip_frames}f",
                SERVING: c.serving.label.removeprefix("serving ") if c.serving else ""
                }.get(c.kind, c.protocol)
        frames = p.deployment.frames_per_call
        table.add_row(c.cell_id[:8], f"{c.model}/{c.variant}", c.format,
                      p.deployment.artifact_source, str(c.threads), c.kind, what,
                      "-" if frames is None else str(frames),
                      p.artifact or "-", "[red]cannot run" if p.error else p.status)
    stdout.print(table)
    # Why, once per reason: the table has no room for it, and a reason often covers many cells.
    reasons = Counter(p.error for p in plans if p.error)
    for reason, count in reasons.items():
        stdout.print(f"[red]cannot run[/] {count} cell{'s' if count > 1 else ''}: {escape(reason)}",
                     highlight=False, soft_wrap=True)


@app.command("run")
def run_cmd(
    config: ConfigArg = DEFAULT_CONFIG,
    out: Annotated[Path, typer.Option(help="Run directory (results store).")] = Path("runs/default"),
    resume: Annotated[bool, typer.Option(
        help="Continue a run in --out: run only missing cells (and those whose node was lost).")] = False,
    only: OnlyOpt = None,
    cell_timeout: Annotated[Optional[float], typer.Option(
        "--cell-timeout", help="Seconds before a cell is killed and recorded as failed.",
        callback=positive_finite)] = None,
    export_jobs: Annotated[Optional[int], typer.Option(
        "--export-jobs", help="Exports (conversions, one core each) run at once before the "
                              "cells (default: 2 locally, the cluster's CPUs on Ray); cells "
                              "run one at a time per machine.", min=1)] = None,
    executor: Annotated[str, typer.Option(
        "--executor", help="local (cells one by one on this machine) or ray (exports and cells "
                           "as Ray tasks, one timed cell per node at a time).")] = "local",
    address: Annotated[Optional[str], typer.Option(
        "--address", help="Ray cluster head (host:port, or 'auto'); default: start Ray on this "
                          "machine. Only with --executor ray.")] = None,
    verbose: VerboseOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Run every cell in its own process; write rows to a Parquet + CSV results store.

    The artifacts the cells need are exported first (served from the cache when built
    before), then the cells run one at a time. A crash, hang or out-of-memory in one export
    or cell becomes a failed row and the run goes on. With --executor ray the exports run in
    parallel anywhere on the cluster and each node runs one cell at a time (docs/scale-out.md).
    The libraries' own output (every worker's) goes to library.log in --out, or here with
    --verbose.
    An --out that another live run holds is refused; after a killed run, --resume takes its
    place and runs only the missing cells.
    Exit 0 when every cell ran, 1 when any cell failed, 2 on a bad config or a busy --out,
    130 on Ctrl-C, 143 on SIGTERM (finished cells are kept either way).
    """
    from bench.matrix.run import run_matrix, summary_line
    from core.stages import describe

    if executor not in ("local", "ray"):
        raise MovibenchError(f"--executor must be local or ray, got {executor!r}")
    if address is not None and executor != "ray":
        raise MovibenchError("--address needs --executor ray")
    cfg, cells = _cells(config, only)
    # The estimate is each bar's own pace so far: exports and cells take different times.
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                        console=console, transient=False)
    task = None

    def on_exports(total: int) -> None:
        nonlocal task
        if total:
            task = progress.add_task("exports", total=total)

    def on_export(job, outcome) -> None:
        if not outcome.ok:
            how = f"FAILED {outcome.error}"
        elif outcome.result.get("cached"):
            how = "cached"
        else:
            how = f"built in {outcome.result.get('build_s', float('nan')):.1f} s"
            if outcome.result.get("stages"):
                how += f" ({describe(outcome.result['stages'])})"
            if outcome.result.get("cache_rebuilt"):
                how += (" (the cached copy failed its check and was rebuilt: "
                        f"{outcome.result['cache_rebuilt']})")
        progress.console.print(f"{job.label}: {how}", highlight=False, markup=False)
        progress.advance(task)

    def on_start(total: int) -> None:
        nonlocal task
        task = progress.add_task("cells", total=total)
        if total < len(cells):
            console.print(f"{len(cells) - total} cell(s) already done in {out}: skipped")

    def on_cell(plan, row) -> None:
        progress.console.print(f"{plan.cell.label}: {summary_line(row)}", highlight=False,
                               markup=False)
        progress.advance(task)

    command = "movibench " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    with ExitStack() as stack:
        runner, cell_jobs = None, 1
        if executor == "ray":
            runner, cell_jobs, cpus = _ray_executor(stack, address)
            export_jobs = export_jobs or cpus
        with library_log(out, verbose), progress, _exit_on_sigterm():
            table = run_matrix(cfg, out, cells=cells, resume=resume, cell_timeout_s=cell_timeout,
                               executor=runner, command=command, export_jobs=export_jobs or 2,
                               cell_jobs=cell_jobs, on_cell=on_cell, on_start=on_start,
                               on_exports=on_exports, on_export=on_export,
                               on_note=lambda note: progress.console.print(
                                   f"note: {note}", highlight=False, markup=False))
    failed = int((table["status"] == "failed").sum()) if len(table) else 0
    if as_json:
        print(json.dumps({"out": str(out), "cells": len(table), "failed": failed}))
    else:
        console.print(f"{len(table)} cell(s) in {out}/cells.parquet (+ cells.csv), {failed} failed")
    raise typer.Exit(EXIT_FAILED if failed else EXIT_OK)


def _ray_executor(stack: ExitStack, address: str | None):
    """Connect to Ray for the rest of the command: (executor, timing slots, CPUs)."""
    from bench.results.environment import environment
    from bench.launchers.ray import (
        SLOT, RayExecutor, cluster_cpus, cluster_slots, ray_session, version_mismatches,
    )

    stack.enter_context(ray_session(address))
    slots = cluster_slots()
    if not slots:
        raise MovibenchError(
            f"no node of the Ray cluster offers the {SLOT} resource: start each node with "
            f"ray start ... --resources='{{\"{SLOT}\": 1}}' (docs/scale-out.md)")
    runner = RayExecutor()
    nodes = runner.describe_nodes()
    console.print(f"Ray: {len(nodes)} node(s), {slots} timing slot(s), {cluster_cpus()} CPU(s)")
    for line in version_mismatches(nodes, environment()):
        console.print(f"[yellow]differs from this machine[/] {line}", highlight=False)
    return runner, slots, cluster_cpus()


@contextmanager
def _exit_on_sigterm():
    """SIGTERM stops a run like Ctrl-C (bench.matrix.runlock); exit with its own status, 143."""
    from bench.matrix.runlock import Terminated

    try:
        yield
    except Terminated as exc:
        console.print("terminated: finished cells are kept; --resume continues")
        raise typer.Exit(exc.exit_code) from None


@app.command("schema")
def schema_cmd(as_json: JsonOpt = False) -> None:
    """Print the results columns with their units and meaning."""
    from bench.results.schema import describe

    df = describe()
    if as_json:
        print(df.to_json(orient="records", indent=2))
        return
    table = Table(title="results columns (cells.parquet / cells.csv)")
    for col in ("name", "unit", "description"):
        table.add_column(col)
    for r in df.itertuples():
        table.add_row(r.name, r.unit, r.description)
    stdout.print(table)
