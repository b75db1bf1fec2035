"""Run-vs-run comparison with a noise-aware latency verdict (what `movibench compare` gates on).

Cells are joined on `cell_id` (stable across runs). For every metric the relative change B vs A
is reported; latency gets a verdict from the raw per-step samples, not from two medians:

- effect: the ratio of medians B/A, with a percentile bootstrap 95% confidence interval;
- significance: the interval excludes 1 AND a two-sided Mann–Whitney U test gives p < alpha
  (both, so a CI gate does not fail on one lucky resample);
- verdict: `regressed` when the median got slower by more than `threshold` % and the change is
  significant, `improved` for the mirror case, `unchanged` when the change is within the
  threshold, `noisy/insufficient` when it is beyond it but not significant, or when there are
  too few samples to tell. A serving cell is judged by the most streams the machine held
  within the deadline (`serve_max_streams`): `regressed` when B holds fewer by more than
  `threshold` % of A's count, `improved` for more. A cell that ran in A and failed in B is `regressed` (a crash is the
  worst slowdown); failed in A and fixed in B is `improved`. A cell whose two runs ran on
  different CPU models (`node_cpu`) gets no latency verdict (`noisy/insufficient`, saying so).

Caveat: step samples are a time series on a possibly shared machine; both tests assume
independent samples, so drift within a cell makes them overconfident.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from bench.results.rundir import RunData, cell_label
from bench.scenarios import LATENCY, SERVING
from core.errors import MovibenchError

REGRESSED, IMPROVED, UNCHANGED, NOISY = "regressed", "improved", "unchanged", "noisy/insufficient"
VERDICTS = (REGRESSED, IMPROVED, NOISY, UNCHANGED)  # most to least urgent

# Metrics whose change can be reported: column -> True when higher is better.
METRICS: dict[str, bool] = {
    "step_p50_ms": False, "step_p90_ms": False, "step_p99_ms": False, "step_mean_ms": False,
    "frame_p50_ms": False, "fps": True, "first_step_ms": False, "load_s": False,
    "video_ms": False, "video_wall_ms": False, "sweep_s": False,
    "peak_rss_mb": False, "peak_rss_delta_mb": False, "uss_max_mb": False, "uss_delta_mb": False,
    "gpu_mem_loaded_mb": False, "gpu_mem_peak_mb": False, "gpu_engine_mb": False,
    "artifact_mb": False,
    "top1": True, "top5": True, "mean_class_accuracy": True, "ref_max_abs_prob_diff": False,
    "serve_max_streams": True, "serve_p99_ms": False, "serve_delivered_fps": True,
}
DEFAULT_METRICS = ("step_p50_ms", "peak_rss_mb", "top1")
# Environment keys whose difference makes two runs' timings hard to compare.
ENV_KEYS = ("cpu_model", "logical_cores", "affinity_cores", "python", "git_revision")

# 1-minute load per core at a run's start above which other work may have shared the CPU,
# and the per-core gap between two runs that makes their latencies suspect.
BUSY_LOAD_PER_CORE = 0.5
LOAD_GAP_PER_CORE = 0.25

MIN_SAMPLES = 10
BOOTSTRAP_RESAMPLES = 2000


class CompareError(MovibenchError, ValueError):
    """Bad comparison settings (unknown metric, negative threshold...)."""


@dataclass(frozen=True)
class LatencyTest:
    """B vs A per-step latency: ratio of medians with its bootstrap CI, and the U test."""

    n_a: int
    n_b: int
    ratio: float
    ci_low: float
    ci_high: float
    p_value: float

    @property
    def change_pct(self) -> float:
        return 100.0 * (self.ratio - 1.0)

    def significant(self, alpha: float) -> bool:
        return (self.ci_low > 1.0 or self.ci_high < 1.0) and self.p_value < alpha


def latency_test(a_ms: np.ndarray, b_ms: np.ndarray, *, confidence: float = 0.95,
                 seed: int = 0) -> LatencyTest:
    """Ratio of medians B/A with a percentile bootstrap CI (seeded: reproducible), plus the
    two-sided Mann–Whitney U p-value."""
    from scipy.stats import mannwhitneyu

    a, b = np.asarray(a_ms, np.float64), np.asarray(b_ms, np.float64)
    rng = np.random.default_rng(seed)
    med_a = np.median(a[rng.integers(0, len(a), (BOOTSTRAP_RESAMPLES, len(a)))], axis=1)
    med_b = np.median(b[rng.integers(0, len(b), (BOOTSTRAP_RESAMPLES, len(b)))], axis=1)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(med_b / med_a, [tail, 100 - tail])
    p_value = float(mannwhitneyu(a, b, alternative="two-sided").pvalue)
    return LatencyTest(len(a), len(b), float(np.median(b) / np.median(a)), float(low),
                       float(high), p_value)


def latency_verdict(test: LatencyTest | None, threshold_pct: float, alpha: float) -> tuple[str, str]:
    """(verdict, reason) for one cell's latency samples; see the module docstring."""
    if test is None or min(test.n_a, test.n_b) < MIN_SAMPLES:
        have = "no" if test is None else f"{min(test.n_a, test.n_b)}"
        return NOISY, f"{have} latency samples (need {MIN_SAMPLES} in each run)"
    change = test.change_pct
    ci = f"ratio {test.ratio:.3f} [{test.ci_low:.3f}, {test.ci_high:.3f}], p={test.p_value:.2g}"
    if abs(change) <= threshold_pct:
        return UNCHANGED, f"{change:+.1f}% within ±{threshold_pct:g}% ({ci})"
    if not test.significant(alpha):
        return NOISY, f"{change:+.1f}% but not significant ({ci})"
    return (REGRESSED if change > 0 else IMPROVED), f"{change:+.1f}% ({ci})"


@dataclass
class CellComparison:
    """One cell present in both runs."""

    cell_id: str
    label: str
    status_a: str
    status_b: str
    verdict: str
    reason: str
    latency: LatencyTest | None
    # metric -> (value in A, value in B, % change B vs A)
    changes: dict[str, tuple[float, float, float]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        row = {"cell_id": self.cell_id, "label": self.label, "status_a": self.status_a,
               "status_b": self.status_b, "verdict": self.verdict, "reason": self.reason}
        test = asdict(self.latency) if self.latency else {}
        for key in ("ratio", "ci_low", "ci_high", "p_value", "n_a", "n_b"):
            row[f"latency_{key}"] = test.get(key)
        for metric, (a, b, pct) in self.changes.items():
            row.update({f"{metric}_a": a, f"{metric}_b": b, f"{metric}_change_pct": pct})
        return row


@dataclass
class Comparison:
    """Run B vs run A, cell by cell."""

    run_a: str
    run_b: str
    threshold_pct: float
    alpha: float
    metrics: tuple[str, ...]
    cells: list[CellComparison]
    only_a: list[str]  # labels of cells only in A
    only_b: list[str]
    environment_differences: dict[str, tuple]

    @property
    def regressed(self) -> list[CellComparison]:
        return [c for c in self.cells if c.verdict == REGRESSED]

    def counts(self) -> dict[str, int]:
        return {v: sum(c.verdict == v for c in self.cells) for v in VERDICTS}

    def to_frame(self) -> pd.DataFrame:
        """One row per cell in both runs, most urgent verdict first."""
        rows = [c.to_dict() for c in self.cells]
        if not rows:
            return pd.DataFrame(columns=["cell_id", "label", "verdict", "reason"])
        df = pd.DataFrame(rows).astype({"latency_n_a": "Int64", "latency_n_b": "Int64"})
        df["_order"] = df["verdict"].map(VERDICTS.index)
        df = df.sort_values(["_order", "label"], kind="stable")
        return df.drop(columns="_order").reset_index(drop=True)

    def to_dict(self) -> dict:
        return {"run_a": self.run_a, "run_b": self.run_b, "threshold_pct": self.threshold_pct,
                "alpha": self.alpha, "metrics": list(self.metrics), "counts": self.counts(),
                "regressed": bool(self.regressed), "only_in_a": self.only_a, "only_in_b": self.only_b,
                "environment_differences": {k: list(v) for k, v in self.environment_differences.items()},
                # Through pandas' JSON writer: NaN -> null, numpy scalars -> plain numbers.
                "cells": json.loads(self.to_frame().to_json(orient="records"))}


def check_metrics(metrics: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Validate metric names against METRICS; an unknown one is a CompareError listing them."""
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise CompareError(f"unknown metric(s) {', '.join(unknown)}; known: {', '.join(METRICS)}")
    return tuple(dict.fromkeys(metrics))


def pct_change(a, b) -> float:
    """(b - a) / |a| in percent; NaN where either is missing or a is 0."""
    if pd.isna(a) or pd.isna(b) or a == 0:
        return float("nan")
    return 100.0 * (float(b) - float(a)) / abs(float(a))


def _value(row: pd.Series, metric: str) -> float:
    value = row[metric]
    return float("nan") if pd.isna(value) else float(value)


def environment_differences(meta_a: dict, meta_b: dict) -> dict[str, tuple]:
    """Machine and library facts that differ between the runs (timings may not be comparable)."""
    env_a, env_b = meta_a.get("environment", {}), meta_b.get("environment", {})
    diff = {k: (env_a.get(k), env_b.get(k)) for k in ENV_KEYS if env_a.get(k) != env_b.get(k)}
    libs_a, libs_b = env_a.get("libraries", {}), env_b.get("libraries", {})
    for lib in sorted(set(libs_a) | set(libs_b)):
        if libs_a.get(lib) != libs_b.get(lib):
            diff[f"libraries.{lib}"] = (libs_a.get(lib), libs_b.get(lib))
    load = _load_per_core(env_a), _load_per_core(env_b)
    if None not in load and max(load) >= BUSY_LOAD_PER_CORE and abs(load[0] - load[1]) >= LOAD_GAP_PER_CORE:
        diff["load_average_1m_per_core"] = tuple(round(x, 2) for x in load)
    return diff


def hardware_differences(cells_a: pd.DataFrame, cells_b: pd.DataFrame) -> dict[str, tuple]:
    """The CPU models the cells of each run ran on, when they differ (a run on a cluster has
    one per node kind; runs from before node columns have none and are not compared here)."""
    def cpus(cells: pd.DataFrame) -> tuple[str, ...]:
        column = cells["node_cpu"] if "node_cpu" in cells else pd.Series(dtype=object)
        return tuple(sorted(column.dropna().unique()))

    a, b = cpus(cells_a), cpus(cells_b)
    return {"node_cpu": (", ".join(a), ", ".join(b))} if a and b and a != b else {}


def _load_per_core(env: dict) -> float | None:
    load, cores = env.get("load_average"), env.get("affinity_cores") or env.get("logical_cores")
    return float(load[0]) / cores if load and cores else None


def max_streams_verdict(row_a: pd.Series, row_b: pd.Series, threshold_pct: float) -> tuple[str, str]:
    """(verdict, reason) of a serving cell: the machine's max streams (serve_max_streams) B vs
    A, regressed or improved when it moved by more than `threshold_pct` % of A's (one stream
    more or fewer is within the noise of a tail on a shared machine at small counts)."""
    a, b = row_a.get("serve_max_streams"), row_b.get("serve_max_streams")
    if pd.isna(a) or pd.isna(b):
        return NOISY, "serving cell without serve_max_streams in both runs"
    a, b = int(a), int(b)
    capped = " (B at the search's cap)" if bool(row_b.get("serve_max_streams_capped")) else ""
    said = f"max streams {a} -> {b}{capped}"
    moved = 100.0 * abs(b - a) / max(a, 1)
    if a == b or moved <= threshold_pct:
        return UNCHANGED, f"{said}, within ±{threshold_pct:g}%"
    return (REGRESSED if b < a else IMPROVED), said


def _compare_cell(row_a: pd.Series, row_b: pd.Series, samples_a: dict, samples_b: dict,
                  metrics: tuple[str, ...], threshold_pct: float, alpha: float) -> CellComparison:
    cell_id = row_a["cell_id"]
    ok_a, ok_b = row_a["status"] == "ok", row_b["status"] == "ok"
    test = None
    cpu_a, cpu_b = row_a.get("node_cpu"), row_b.get("node_cpu")
    if ok_a and ok_b and pd.notna(cpu_a) and pd.notna(cpu_b) and cpu_a != cpu_b:
        # Latencies of different CPU models are never pooled nor tested against each other.
        verdict, reason = NOISY, f"ran on different CPU models ({cpu_a} vs {cpu_b}): latency not compared"
    elif ok_a and ok_b:
        a, b = samples_a.get(cell_id), samples_b.get(cell_id)
        if a is not None and b is not None and len(a) and len(b):
            test = latency_test(a, b)
        if row_b["kind"] == LATENCY:
            verdict, reason = latency_verdict(test, threshold_pct, alpha)
        elif row_b["kind"] == SERVING:
            verdict, reason = max_streams_verdict(row_a, row_b, threshold_pct)
        else:
            # Only latency cells time repeated calls; the others are read by their metrics.
            verdict, reason = UNCHANGED, f"{row_b['kind']} cell: no latency samples, see its metrics"
    elif ok_a:
        verdict, reason = REGRESSED, f"failed in B: {row_b['error']}"
    elif ok_b:
        verdict, reason = IMPROVED, "failed in A, ran in B"
    else:
        verdict, reason = NOISY, "failed in both runs"
    changes = {}
    for metric in metrics:
        a, b = _value(row_a, metric), _value(row_b, metric)
        if not (np.isnan(a) and np.isnan(b)):  # a metric this kind of cell does not measure
            changes[metric] = (a, b, pct_change(a, b))
    return CellComparison(cell_id, cell_label(row_b), str(row_a["status"]), str(row_b["status"]),
                          verdict, reason, test, changes)


def compare_runs(run_a: RunData, run_b: RunData, *, threshold_pct: float = 10.0,
                 metrics: tuple[str, ...] = DEFAULT_METRICS, alpha: float = 0.05) -> Comparison:
    """Compare run B against baseline run A cell by cell (see the module docstring)."""
    if threshold_pct < 0:
        raise CompareError(f"--threshold must be >= 0 %, got {threshold_pct:g}")
    if not 0 < alpha < 1:
        raise CompareError(f"--alpha must be in (0, 1), got {alpha:g}")
    metrics = check_metrics(metrics)
    cells_a = run_a.cells.drop_duplicates("cell_id", keep="last").set_index("cell_id", drop=False)
    cells_b = run_b.cells.drop_duplicates("cell_id", keep="last").set_index("cell_id", drop=False)
    samples_a = {cid: g["step_ms"].to_numpy(np.float64) for cid, g in run_a.samples.groupby("cell_id")}
    samples_b = {cid: g["step_ms"].to_numpy(np.float64) for cid, g in run_b.samples.groupby("cell_id")}
    common = [cid for cid in cells_a.index if cid in cells_b.index]
    if not common:
        # A gate that compares nothing must not pass silently.
        raise CompareError(f"{run_b.root} and {run_a.root} have no cell in common: nothing to compare")
    compared = [_compare_cell(cells_a.loc[cid], cells_b.loc[cid], samples_a, samples_b,
                              metrics, threshold_pct, alpha) for cid in common]
    only_a = sorted(cell_label(cells_a.loc[c]) for c in cells_a.index if c not in cells_b.index)
    only_b = sorted(cell_label(cells_b.loc[c]) for c in cells_b.index if c not in cells_a.index)
    differences = {**environment_differences(run_a.meta, run_b.meta),
                   **hardware_differences(run_a.cells, run_b.cells)}
    return Comparison(str(run_a.root), str(run_b.root), threshold_pct, alpha, metrics, compared,
                      only_a, only_b, differences)
