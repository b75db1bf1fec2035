"""`movibench compare`: run B vs baseline run A, cell by cell, with a CI-ready exit code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from bench.cli.options import EXIT_FAILED, EXIT_OK, JsonOpt, bounded, console, non_negative, stdout

VERDICT_STYLE = {"regressed": "red", "improved": "green", "noisy/insufficient": "yellow",
                 "unchanged": "default"}


def register(root: typer.Typer) -> None:
    root.command("compare")(compare_cmd)


def compare_cmd(
    run_a: Annotated[Path, typer.Argument(help="Baseline run directory (A).")],
    run_b: Annotated[Path, typer.Argument(help="Candidate run directory (B), compared against A.")],
    threshold: Annotated[float, typer.Option(
        help="Latency change in % beyond which a significant slowdown counts as a regression.",
        callback=non_negative)] = 10.0,
    metric: Annotated[Optional[list[str]], typer.Option(
        "--metric", help="Repeatable: results column whose % change to report "
                         "(default: step_p50_ms, peak_rss_mb, top1).")] = None,
    alpha: Annotated[float, typer.Option(help="Significance level of the latency tests.",
                                         callback=bounded(0, 1, low_open=True, high_open=True))] = 0.05,
    out: Annotated[Optional[Path], typer.Option(
        help="Also write the per-cell table to this CSV file.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Compare two runs cell by cell; exit 1 when any cell's latency regressed.

    Cells are joined on cell_id; cells only in A or only in B are listed.
    Latency gets a noise-aware verdict from the raw per-step samples:
    'regressed' when the median step got slower by more than --threshold %
    AND the change is significant (the 95% bootstrap CI of the ratio of
    medians excludes 1 and Mann-Whitney U p < --alpha); 'improved' is the
    mirror; 'unchanged' within the threshold; 'noisy/insufficient' beyond it
    but not significant, or with too few samples. A cell that ran in A and
    failed in B counts as regressed.

    Exit 0 when nothing regressed, 1 when something did (a CI gate), 2 on
    bad input.
    """
    from bench.results.regression import DEFAULT_METRICS, compare_runs
    from bench.results.rundir import load_run

    result = compare_runs(load_run(run_a), load_run(run_b), threshold_pct=threshold,
                          metrics=tuple(metric or DEFAULT_METRICS), alpha=alpha)
    table = result.to_frame()
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(out, index=False)
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        _print(result, table)
        if out is not None:
            console.print(f"wrote {out}")
    raise typer.Exit(EXIT_FAILED if result.regressed else EXIT_OK)


def _print(result, table) -> None:
    import pandas as pd

    view = Table(title=f"{result.run_b} vs {result.run_a} (threshold {result.threshold_pct:g}%)")
    view.add_column("cell")
    view.add_column("verdict")
    for m in result.metrics:
        view.add_column(f"{m} Δ%", justify="right")
    view.add_column("why (latency: median ratio B/A [95% CI], Mann-Whitney p)")
    for _, row in table.iterrows():
        style = VERDICT_STYLE[row["verdict"]]
        changes = [f"{row[f'{m}_change_pct']:+.1f}" if pd.notna(row.get(f"{m}_change_pct")) else "–"
                   for m in result.metrics]
        view.add_row(row["label"], f"[{style}]{row['verdict']}[/]", *changes, row["reason"])
    stdout.print(view)
    for label in result.only_a:
        stdout.print(f"only in A: {label}", highlight=False)
    for label in result.only_b:
        stdout.print(f"only in B: {label}", highlight=False)
    for key, (a, b) in result.environment_differences.items():
        console.print(f"[yellow]environment differs[/] {key}: {a} -> {b}", highlight=False)
    counts = ", ".join(f"{n} {v}" for v, n in result.counts().items())
    stdout.print(("REGRESSED" if result.regressed else "OK") + f": {counts}", highlight=False)
