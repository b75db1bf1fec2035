"""Where the time goes: how each runtime runs its deployments (the exec_* columns).

What the figures mean is each runtime's to say (`Session.facts_legend`, `facts_columns`,
`facts_reading`); this section lays them out the same way for every runtime that records them.
"""

from __future__ import annotations

from collections.abc import Mapping

from bench.report.analysis import ok_cells, recorded_facts
from bench.report.formatting import deployment, head, num, pct, rows_table
from bench.report.render import Section
from bench.results.rundir import RunData
from bench.scenarios import LATENCY
from runtimes.loader import session_class
from runtimes.registry import RUNTIME_SESSIONS

TOP_OPS = 5  # op types named per deployment in "Where the time goes"


def _top(counts: Mapping, shown) -> str:
    """The first TOP_OPS entries of a mapping (largest first), as 'OP value, ...'."""
    items = [f"{name} {shown(value)}" for name, value in list(counts.items())[:TOP_OPS]]
    more = len(counts) - TOP_OPS
    return ", ".join(items + ([f"+{more} more"] if more > 0 else [])) or "none"


def _shown(value) -> str:
    """A runtime's facts_columns value in words: a count, a share as a percentage, or the
    largest entries of a mapping of either."""
    if isinstance(value, Mapping):
        counts = all(isinstance(v, int) for v in value.values())
        return _top(value, str if counts else pct)
    return num(value, 0) if isinstance(value, int) else pct(value)


def _execution_row(r) -> dict:
    return {"deployment": deployment(r),
            head("frames_per_call", "frames / call"): num(r["frames_per_call"], 0),
            head("frame_p50_ms", "per-frame p50"): num(r["frame_p50_ms"], 3),
            "nodes": num(r["exec_nodes"], 0)}


def _recording_engines() -> str:
    """'A, B and C': the engines whose runtimes record execution facts."""
    names = [cls.engine_name for cls in map(session_class, sorted(RUNTIME_SESSIONS))
             if cls.facts_legend() is not None]
    return " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)


def section_execution(run: RunData) -> Section:
    """The section "Where the time goes" of `run`."""
    section = Section("Where the time goes")
    cells = ok_cells(run.cells, LATENCY)
    cells = cells[cells["exec_nodes"].notna()].sort_values(
        ["model", "variant", "format", "artifact_source", "threads", "frames_per_call"],
        kind="stable")
    if cells.empty:
        return section.omit("no latency cell recorded how its runtime runs the artifact (the "
                            f"exec_* columns: {_recording_engines()} cells).")
    facts = {idx: recorded_facts(r) for idx, r in cells.iterrows()}
    for runtime in sorted(cells["runtime"].unique()):
        session = session_class(runtime)
        legend = session.facts_legend()
        rows = [{**_execution_row(r), **{k: _shown(v) for k, v in columns.items()}}
                for idx, r in cells[cells["runtime"] == runtime].iterrows()
                if (columns := session.facts_columns(facts[idx])) is not None]
        if legend is not None and rows:
            text, caption = legend
            section.blocks += [text, rows_table(rows, caption)]
    # One reading per deployment, at its highest thread count and fewest frames per call.
    ordered = cells.sort_values(["threads", "frames_per_call"], ascending=[False, True],
                                kind="stable")
    ordered = ordered.assign(key=[deployment(r).rsplit(" t", 1)[0] for _, r in ordered.iterrows()])
    readings = [{"deployment": deployment(r), "what the facts above say": text}
                for idx, r in ordered.drop_duplicates("key").sort_values("key", kind="stable").iterrows()
                if (text := session_class(r["runtime"]).facts_reading(facts[idx]))]
    if readings:
        section.blocks.append(rows_table(readings, "Why, in the facts above: what keeps each "
                                               "deployment off its runtime's fast kernels"))
    return section
