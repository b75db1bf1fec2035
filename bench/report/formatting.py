"""How the report writes numbers, deployments and tables: the words of every section."""

from __future__ import annotations

import pandas as pd

from bench.report.render import Table
from bench.results.schema import CELL_COLUMNS, RACE_COLUMNS
from bench.scenarios import deployment_format


UNITS = {c.name: c.unit for c in CELL_COLUMNS}
RACE_UNITS = {c.name: c.unit for c in RACE_COLUMNS}


def head(column: str, text: str, units: dict[str, str] = UNITS) -> str:
    """A header with the column's unit from the schema (`units`: the cells' by default, or
    RACE_UNITS for race.csv): 'per-frame p50 (ms)'."""
    unit = units.get(column, "")
    unit = "%" if unit == "fraction" else unit
    return f"{text} ({unit})" if unit else text


def num(value, digits: int = 2) -> str:
    """A number with `digits` decimals; '–' for a missing value."""
    if value is None or pd.isna(value):
        return "–"
    return f"{float(value):,.{digits}f}"


def pct(value, digits: int = 1) -> str:
    """A fraction as a percentage."""
    return "–" if value is None or pd.isna(value) else f"{100 * float(value):.{digits}f}"


def sci(value) -> str:
    """A number in scientific notation; '–' for a missing value."""
    return "–" if value is None or pd.isna(value) else f"{float(value):.2e}"


def fmt_label(row) -> str:
    """A row's format, with its artifact's source when that is not movibench's own export."""
    return deployment_format(row["format"], row.get("artifact_source"))


def deployment(row) -> str:
    """'model/variant format tN': a deployment as every table names it."""
    return f"{row['model']}/{row['variant']} {fmt_label(row)} t{row['threads']}"


def by_deployment_format(cells: pd.DataFrame) -> pd.DataFrame:
    """`cells` with `format` replaced by its label (fmt_label), for figures and tables that
    group or mark by format."""
    return cells.assign(format=[fmt_label(r) for _, r in cells.iterrows()])


def rows_table(rows: list[dict], caption: str = "") -> Table:
    """A table block of `rows` (dicts of header -> value, in order), every value as text."""
    return Table(pd.DataFrame(rows).astype(str), caption)
