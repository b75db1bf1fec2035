"""A finished run directory read back for reports and comparisons (read-only).

The layout is bench.results.store's; this module only reads it, so a report or a compare never
changes the run it describes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.results.schema import PREDICTION_COLUMNS, SAMPLE_COLUMNS, frame
from bench.jobs.job import serving_label
from bench.scenarios import SERVING
from bench.scenarios import cell_label as scenario_cell_label
from bench.results.store import CELLS, PREDICTIONS, SAMPLES, load_cells
from core.errors import MovibenchError

VALIDATION = "validation"  # optional cross-runtime validation table: validation.parquet
# Optional: `movibench race --run RUN --out RUN/race.csv`, the run's deployments timed side by side.
RACE = "race"


class RunDirError(MovibenchError, ValueError):
    """A run directory that is missing or holds no consolidated results."""


@dataclass
class RunData:
    """Everything a run directory holds: cells, raw samples, predictions, metadata, config."""

    root: Path
    cells: pd.DataFrame
    samples: pd.DataFrame
    predictions: pd.DataFrame
    meta: dict
    config_text: str
    validation: pd.DataFrame | None
    race: pd.DataFrame | None = None

    @property
    def name(self) -> str:
        return str(self.meta.get("name") or self.root.name)


def _optional_parquet(path: Path, columns) -> pd.DataFrame:
    return pd.read_parquet(path) if path.exists() else frame([], columns)


def load_run(path: str | Path) -> RunData:
    """Read a run directory; a missing directory or cells table is a one-line RunDirError."""
    root = Path(path)
    if not root.is_dir():
        raise RunDirError(f"run directory not found: {root}")
    cells_path = root / f"{CELLS}.parquet"
    if not cells_path.exists():
        raise RunDirError(f"{root} holds no {cells_path.name}: not a movibench run directory "
                          "(or a run that never finished a cell)")
    meta_path = root / "run.json"
    try:
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    except json.JSONDecodeError as exc:
        raise RunDirError(f"{meta_path}: invalid JSON: {exc}") from None
    config_path = root / "config.toml"
    validation_path = root / f"{VALIDATION}.parquet"
    return RunData(
        root=root,
        cells=load_cells(cells_path),
        samples=_optional_parquet(root / f"{SAMPLES}.parquet", SAMPLE_COLUMNS),
        predictions=_optional_parquet(root / f"{PREDICTIONS}.parquet", PREDICTION_COLUMNS),
        meta=meta,
        config_text=config_path.read_text() if config_path.exists() else "",
        validation=pd.read_parquet(validation_path) if validation_path.exists() else None,
        race=pd.read_csv(root / f"{RACE}.csv") if (root / f"{RACE}.csv").exists() else None,
    )


def cell_label(row) -> str:
    """A results row in words, worded like bench.matrix.config.Cell.label."""
    serving = None
    if row["kind"] == SERVING:
        serving = serving_label(row.get("serve_strategy"), row.get("serve_fps"),
                                row.get("serve_workers"), row.get("serve_jitter"),
                                row.get("serve_policy"))
    return scenario_cell_label(row["model"], row["variant"], row["format"], row["threads"],
                               row["kind"], row["protocol"], row["clip_frames"],
                               row["sweep_mode"], row["frames_per_call"],
                               row.get("artifact_source"), serving)
