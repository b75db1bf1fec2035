"""Confusion matrices of the best deployment per model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bench.report.analysis import MODEL_KEY, best_format_per_model
from bench.report.formatting import fmt_label, head, num, pct, rows_table
from bench.report.render import Figure, Section
from bench.results.rundir import RunData


def section_confusion(run: RunData, out_dir: Path) -> Section:
    """The section "Confusion matrices of the best deployment per model" of `run`,
    its figures written into `out_dir`."""
    from bench.report.plots import confusion_plot

    section = Section("Confusion matrices of the best deployment per model")
    best = best_format_per_model(run.cells)
    if best.empty:
        return section.omit("no successful accuracy cell with a confusion matrix.")
    section.blocks.append(
        "Per model and weights: the format and thread count whose accuracy cells have the "
        "highest mean top-1 over their protocols (ties: the lowest mean per-frame p50), one "
        "heatmap per protocol. Rows are the true classes, columns the predicted ones; the "
        "number is the count of videos, the colour that count's share of the true class's "
        "videos. From each cell's `confusion` and `classes` columns.")
    for n, (_, cells) in enumerate(best.groupby(MODEL_KEY, dropna=False, sort=True)):
        first = cells.iloc[0]
        classes = json.loads(first["classes"])
        matrices = [(r["protocol"], np.asarray(json.loads(r["confusion"]), dtype=int))
                    for _, r in cells.iterrows()]
        name = f"{first['model']}/{first['variant']} {fmt_label(first)} t{int(first['threads'])}"
        path = confusion_plot(matrices, classes, out_dir / f"confusion_{n}.png",
                              f"{name}: true vs predicted class per protocol")
        rows = [{"protocol": r["protocol"], "videos": num(r["videos"], 0),
                 head("top1", "top-1"): pct(r["top1"]),
                 head("mean_class_accuracy", "mean per-class accuracy"): pct(r["mean_class_accuracy"])}
                for _, r in cells.iterrows()]
        weights = first["checkpoint"] if isinstance(first["checkpoint"], str) and first["checkpoint"] \
            else "random init"
        section.blocks += [Figure(path, f"Confusion matrices of {name} ({weights})."),
                           rows_table(rows, f"{name}: accuracy per protocol")]
    return section
