"""`movibench race`: deployments timed side by side, in one process, in alternating rounds.

The options, the progress and the output; what is raced and how is bench.race.race.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from bench.cli.options import (
    EXIT_FAILED, EXIT_OK, JsonOpt, parse_int_list, per_thread_count, stdout,
)
from bench.race.race import (
    Entry, RaceRow, entries_from_paths, entries_from_run, race_threads, varied_entries,
)
from core.errors import MovibenchError

TABLE_SUFFIXES = (".csv", ".parquet")


def register(root: typer.Typer) -> None:
    root.command("race")(race_cmd)


def parse_vary(texts: list[str]) -> dict[str, tuple[str, list[Any]]]:
    """'litert:state_io=host,buffers' → {'litert': ('state_io', ['host', 'buffers'])}: each
    deployment of that runtime races once per value (true/false → bool, digits → int)."""
    varied = {}
    for text in texts:
        runtime, sep, rest = text.partition(":")
        key, eq, values = rest.partition("=")
        if not (sep and eq and runtime.strip() and key.strip() and values.strip()):
            raise MovibenchError(f"--vary takes RUNTIME:OPTION=VALUE[,VALUE...], got {text!r}")
        if runtime.strip() in varied:
            raise MovibenchError(f"--vary names runtime {runtime.strip()!r} twice")
        varied[runtime.strip()] = (key.strip(), [_option_value(v) for v in values.split(",")
                                                 if v.strip()])
    return varied


def _option_value(text: str) -> Any:
    text = text.strip()
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return int(text) if text.isdigit() else text


def pick_baseline(entries: list[Entry], text: str | None) -> str | None:
    """The label of the one entry whose label contains `text` (None: no baseline)."""
    if text is None:
        return None
    matches = [e.label for e in entries if text in e.label]
    if len(matches) != 1:
        raise MovibenchError(f"--baseline {text!r} must match exactly one deployment's label, "
                             f"matched {len(matches)}: {', '.join(matches) or 'none'}")
    return matches[0]


def race_cmd(
    artifacts: Annotated[Optional[list[Path]], typer.Argument(
        help="Artifacts (each with its manifest) to time side by side.", show_default=False)] = None,
    run: Annotated[Optional[Path], typer.Option(
        help="Race the artifacts of this matrix run's latency cells (instead of paths).")] = None,
    only: Annotated[Optional[str], typer.Option(
        "--only", help="With --run: keep cells matching key=value[,key=value] (a|b for any "
                       "of), e.g. 'variant=stream,format=tflite-fp32|tflite-int8+opt'.")] = None,
    threads: Annotated[str, typer.Option(
        help="Thread counts, comma-separated; each is a race of its own.")] = "1,2",
    iterations: Annotated[int, typer.Option(help="Timed calls per deployment.", min=1)] = 300,
    warmup: Annotated[int, typer.Option(help="Untimed calls per deployment first.", min=0)] = 20,
    rounds: Annotated[int, typer.Option(
        help="Rounds the timed calls are split into, the deployments alternating in each "
             "(at most --iterations).", min=1)] = 15,
    vary: Annotated[Optional[list[str]], typer.Option(
        "--vary", help="RUNTIME:OPTION=V1,V2: race each deployment of that runtime once per "
                       "value of one of its options, e.g. 'litert:state_io=host,buffers' "
                       "(repeatable, one per runtime).")] = None,
    baseline: Annotated[Optional[str], typer.Option(
        help="Give every row its speedup over the one deployment whose label contains this, "
             "e.g. 'model-garden'.")] = None,
    roofline: Annotated[bool, typer.Option(
        help="Measure the CPU's fp32 and int8 matrix-product peak at each thread count "
             "(about a second) and give each row its share of it.")] = True,
    out: Annotated[Optional[Path], typer.Option(
        help="Also write the rows to this .csv or .parquet file, and the race's environment "
             "(CPU, flags, versions, the measured peaks) beside it as <out>.json.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Time deployments side by side in one process and give each one's ratio to the fastest.

    Every artifact is opened at each thread count; their timed calls (one frame per call for
    a stream artifact, its T for a clip artifact) run in alternating rounds, each round a
    block of calls of every deployment in turn, so the machine's drift hits them alike: the
    ratios are the ones to quote. Reported per deployment: median and p90 call latency, the
    median per frame, its ratio to the fastest of that thread count, and the largest logit
    difference to the first deployment of the same model on the same inputs. Exit 0 when every deployment ran,
    1 when one failed to open or run, 2 on bad input.
    """
    thread_counts = parse_int_list(threads, "--threads")
    if out is not None and out.suffix not in TABLE_SUFFIXES:
        raise MovibenchError(f"--out must end in {' or '.join(TABLE_SUFFIXES)}, got {out.name}")
    if bool(artifacts) == (run is not None):
        raise MovibenchError("give artifact paths or --run, one of the two")
    if only is not None and run is None:
        raise MovibenchError("--only needs --run")
    entries = entries_from_run(run, only) if run is not None else entries_from_paths(artifacts)
    entries = varied_entries(entries, parse_vary(vary or []))
    if len(entries) < 2:
        raise MovibenchError(f"a race needs two deployments or more, got {len(entries)}")
    reference = pick_baseline(entries, baseline)
    rounds = min(rounds, iterations)
    peaks = {}

    def measure(threads: int, on_block):
        if roofline:
            from bench.trackers.roofline import gemm_peak

            peaks[threads] = gemm_peak(threads)
        return race_threads(entries, threads, warmup=warmup, iterations=iterations,
                            rounds=rounds, on_block=on_block, baseline=reference,
                            peak=peaks.get(threads))

    rows: list[RaceRow] = per_thread_count(thread_counts, len(entries), "deployments", rounds,
                                           measure)
    facts = {"iterations": iterations, "warmup": warmup, "rounds": rounds,
             "baseline": reference, "gemm_peaks": [p.to_dict() for p in peaks.values()]}
    if out is not None:
        from bench.evaluation.evaluate import write_table
        from bench.results.environment import environment

        write_table([{**r.to_dict(), "settings": json.dumps(r.settings, sort_keys=True),
                      "options": json.dumps(r.options, sort_keys=True)} for r in rows], out)
        out.with_name(out.name + ".json").write_text(
            json.dumps({**facts, "environment": environment()}, indent=2) + "\n")
    failed = [r for r in rows if r.error]
    if as_json:
        print(json.dumps({**facts, "rows": [r.to_dict() for r in rows]}, indent=2))
    else:
        _print_table(rows, iterations)
    raise typer.Exit(EXIT_FAILED if failed else EXIT_OK)


def _print_table(rows: list[RaceRow], iterations: int) -> None:
    fmt = lambda v, spec: "–" if v is None else format(v, spec)  # noqa: E731
    stdout.print(f"{iterations} timed calls per deployment, side by side", highlight=False)
    for threads in dict.fromkeys(r.threads for r in rows):
        table = Table(title=f"{threads} thread(s)", box=None, pad_edge=False)
        for col in ("deployment", "p50 ms/call", "p90 ms/call", "p50 ms/frame", "×fastest",
                    "×baseline", "roofline", "top-1", "max|Δ| to first"):
            table.add_column(col, justify="left" if col == "deployment" else "right",
                             no_wrap=True)
        for r in (r for r in rows if r.threads == threads):
            if r.error:
                table.add_row(escape(r.label), f"[red]FAILED[/] {escape(r.error)}",
                              *[""] * 7)
                continue
            table.add_row(escape(r.label), fmt(r.call_p50_ms, ".3f"), fmt(r.call_p90_ms, ".3f"),
                          fmt(r.frame_p50_ms, ".3f"), fmt(r.ratio_to_fastest, ".2f"),
                          fmt(r.speedup_vs_baseline, ".2f"), fmt(r.roofline_share, ".1%"),
                          fmt(None if r.top1 is None else 100 * r.top1, ".1f"),
                          fmt(r.max_abs_diff_to_first, ".1e"))
        stdout.print()
        stdout.print(table)
