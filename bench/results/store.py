"""The results store: append-only, atomic, readable with plain pandas.

Layout of a run directory:
    parts/<cell_id>.parquet          one row per finished cell (the source of truth)
    parts/<cell_id>.samples.parquet  its raw step latencies (for noise-aware compare)
    parts/<cell_id>.predictions.parquet  its per-video predictions (and one stream trace)
    cells.parquet, cells.csv         all rows, consolidated (derived; rebuilt after each cell)
    samples.parquet, predictions.parquet
    run.json                         environment block, config hash, command, timestamps
    config.toml                      the matrix as run

Every file is written to a temporary name and renamed, so a killed run leaves either the old
or the new file, never half of one; parts make the store append-only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from bench.results.schema import CELL_COLUMNS, PREDICTION_COLUMNS, SAMPLE_COLUMNS, conform, frame
from bench.scenarios import ACCURACY
from core.formats import TENSORFLOW

CELLS, SAMPLES, PREDICTIONS = "cells", "samples", "predictions"


def atomic_write(path: Path, write) -> Path:
    """Call write(tmp_path), then rename over `path`."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write(tmp)
    os.replace(tmp, path)
    return path


def write_parquet(df: pd.DataFrame, path: Path) -> Path:
    return atomic_write(path, lambda tmp: df.to_parquet(tmp, index=False))


class ResultsStore:
    """One run directory (see the module docstring)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.parts = self.root / "parts"

    def exists(self) -> bool:
        return self.parts.is_dir() and any(self.parts.glob("*.parquet"))

    def init(self, run_meta: dict, config_text: str) -> None:
        self.parts.mkdir(parents=True, exist_ok=True)
        atomic_write(self.root / "config.toml", lambda tmp: tmp.write_text(config_text))
        self.write_meta(run_meta)

    def write_meta(self, run_meta: dict) -> None:
        atomic_write(self.root / "run.json",
                     lambda tmp: tmp.write_text(json.dumps(run_meta, indent=2, default=str) + "\n"))

    def meta(self) -> dict:
        path = self.root / "run.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def done_cells(self) -> set[str]:
        """Cell ids with a recorded row (ok or failed), except rows whose node was lost while
        they ran: the cell never finished, so a resumed run runs it again."""
        if not self.parts.is_dir():
            return set()
        rows = [p for p in self.parts.glob("[!.]*.parquet") if p.name.count(".") == 1]
        return {p.name.split(".")[0] for p in rows if not _lost_node(p)}

    def append(self, row: dict, samples_ms: list[float] | None = None,
               predictions: list[dict] | None = None) -> None:
        """Record one finished cell; its extra tables first, its row last (the commit point)."""
        cell_id, run_id = row["cell_id"], row["run_id"]
        samples_path = self.parts / f"{cell_id}.samples.parquet"
        predictions_path = self.parts / f"{cell_id}.predictions.parquet"
        if samples_ms:
            rows = [{"cell_id": cell_id, "run_id": run_id, "step_ms": s} for s in samples_ms]
            write_parquet(frame(rows, SAMPLE_COLUMNS), samples_path)
        else:
            # An earlier attempt killed between its tables and its row left these behind.
            samples_path.unlink(missing_ok=True)
        if predictions:
            rows = [{"cell_id": cell_id, "run_id": run_id, **p} for p in predictions]
            write_parquet(frame(rows, PREDICTION_COLUMNS), predictions_path)
        else:
            predictions_path.unlink(missing_ok=True)
        write_parquet(frame([row]), self.parts / f"{cell_id}.parquet")

    def _concat(self, suffix: str, columns) -> pd.DataFrame:
        """All parts named '<cell_id><suffix>' (suffix '.parquet' = the cell rows)."""
        files = sorted(p for p in self.parts.glob("*.parquet")
                       if p.name[p.name.index("."):] == suffix) if self.parts.is_dir() else []
        if not files:
            return frame([], columns)
        return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)

    def consolidate(self) -> pd.DataFrame:
        """Rebuild cells/samples/predictions files from the parts; returns the cells table."""
        cells = conform(self._concat(".parquet", CELL_COLUMNS))
        predictions = self._concat(".predictions.parquet", PREDICTION_COLUMNS)
        cells = add_reference_agreement(cells, predictions)
        write_parquet(cells, self.root / f"{CELLS}.parquet")
        atomic_write(self.root / f"{CELLS}.csv", lambda tmp: cells.to_csv(tmp, index=False))
        write_parquet(self._concat(".samples.parquet", SAMPLE_COLUMNS), self.root / f"{SAMPLES}.parquet")
        write_parquet(predictions, self.root / f"{PREDICTIONS}.parquet")
        return cells


def _lost_node(part: Path) -> bool:
    """True when the row in `part` says its node was lost (rows of older runs never do)."""
    import pyarrow.parquet as pq

    if "lost_node" not in pq.read_schema(part).names:
        return False
    return True in pq.read_table(part, columns=["lost_node"]).column(0).to_pylist()


def add_reference_agreement(cells: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
    """Fill ref_* columns: each eval cell vs the TensorFlow cell of the same model, variant,
    weights, resolution and protocol (the reference), video by video."""
    if cells.empty or predictions.empty:
        return cells
    cells = cells.copy()
    by_cell = {cid: g.set_index("video") for cid, g in predictions.groupby("cell_id")}
    key = ["model", "variant", "checkpoint", "resolution", "protocol"]
    evals = cells[(cells["kind"] == ACCURACY) & (cells["status"] == "ok")]
    refs = evals[evals["format"] == TENSORFLOW]
    for idx, row in evals.iterrows():
        match = refs
        for k in key:
            match = match[match[k] == row[k]]
        if match.empty or row["cell_id"] not in by_cell:
            continue
        ref = by_cell.get(match.iloc[0]["cell_id"])
        cand = by_cell[row["cell_id"]]
        if ref is None:
            continue
        common = [v for v in cand.index if v in ref.index and cand.at[v, "ok"] and ref.at[v, "ok"]]
        if not common:
            continue
        diffs, agree = [], []
        for v in common:
            p_ref = np.asarray(json.loads(ref.at[v, "probs"]))
            p_cand = np.asarray(json.loads(cand.at[v, "probs"]))
            diffs.append(float(np.abs(p_ref - p_cand).max()))
            agree.append(int(p_ref.argmax() == p_cand.argmax()))
        cells.loc[idx, "ref_max_abs_prob_diff"] = max(diffs)
        cells.loc[idx, "ref_top1_agreement"] = float(np.mean(agree))
    return cells


def load_cells(path: str | Path) -> pd.DataFrame:
    """The cells table of a run directory (or a cells.parquet/.csv path)."""
    path = Path(path)
    if path.is_dir():
        path = path / f"{CELLS}.parquet"
    if path.suffix == ".csv":
        return conform(pd.read_csv(path))
    return conform(pd.read_parquet(path))
