"""The cells that failed, and why."""

from __future__ import annotations

import pandas as pd

from bench.report.formatting import rows_table
from bench.report.render import Section
from bench.results.rundir import RunData, cell_label


def section_failures(run: RunData) -> Section:
    """The section "Failed cells" of `run`."""
    section = Section("Failed cells")
    failed = run.cells[run.cells["status"] != "ok"]
    if failed.empty:
        section.blocks.append(f"None: all {len(run.cells)} cells ran.")
        return section
    rows = [{"cell": cell_label(r), "cell_id": r["cell_id"],
             "exit code": "–" if pd.isna(r["exit_code"]) else str(r["exit_code"]),
             "error": "" if pd.isna(r["error"]) else str(r["error"])}
            for _, r in failed.sort_values("cell_id", kind="stable").iterrows()]
    section.blocks += [f"{len(failed)} of {len(run.cells)} cells failed.", rows_table(rows)]
    return section
