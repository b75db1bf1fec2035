"""Equivalence of each exported format with the TensorFlow reference."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from bench.evaluation.compare_logits import PRECISION_TOLERANCES
from bench.report.analysis import ok_cells
from bench.report.formatting import head, pct, rows_table, sci
from bench.report.render import Section, Table
from bench.results.rundir import RunData
from bench.scenarios import ACCURACY, deployment_format
from core.formats import TENSORFLOW


def section_equivalence(run: RunData) -> Section:
    """The section "Equivalence with the TensorFlow reference" of `run`."""
    section = Section("Equivalence with the TensorFlow reference")
    ok = ok_cells(run.cells, ACCURACY)
    compared = ok[(ok["format"] != TENSORFLOW) & ok["ref_max_abs_prob_diff"].notna()]
    # Probabilities have scale 1: the tolerances' absolute bounds alone apply to them.
    tolerances = {p: replace(t, rtol=0.0) for p, t in PRECISION_TOLERANCES.items()}
    tolerance_rows = [{"precision": p, "tolerance": t.describe()} for p, t in tolerances.items()]
    if compared.empty:
        section.blocks.append("No exported-format cell has a TF reference cell (same model, "
                              "weights, input and protocol) in this run: nothing to compare.")
        section.omitted = run.validation is None
    else:
        rows = []
        groups = compared.groupby(["model", "variant", "format", "artifact_source", "precision",
                                   "runtime"], sort=True)
        for (model, variant, fmt, source, precision, runtime), g in groups:
            worst_diff = float(g["ref_max_abs_prob_diff"].max())
            worst_agree = float(g["ref_top1_agreement"].min())
            tol = tolerances.get(precision)
            verdict = ("no tolerance" if tol is None
                       else "PASS" if tol.accepts(worst_diff, worst_agree) else "FAIL")
            rows.append({"model": f"{model}/{variant}", "format": deployment_format(fmt, source),
                         "precision": precision,
                         "runtime": runtime, "cells": str(len(g)),
                         "max |Δ prob|": sci(worst_diff),
                         head("ref_top1_agreement", "min top-1 agreement"): pct(worst_agree),
                         "tolerance": tol.describe() if tol else "–", "verdict": verdict})
        section.blocks += [
            "Per format, the worst over its cells (threads × protocols) of the largest "
            "|Δ softmax probability| on any video vs the TF cell of the same model, weights, "
            "input and protocol, and the lowest share of videos with the same top-1.",
            rows_table(rows), rows_table(tolerance_rows, "Tolerances per precision")]
    if run.validation is not None:
        section.blocks += ["Cross-runtime validation table of the run (validation.parquet):",
                           _validation_table(run.validation)]
    return section


def _validation_table(validation: pd.DataFrame) -> Table:
    preferred = ["model", "format", "precision", "runtime", "max_abs", "mean_abs",
                 "top1_agreement", "tolerance", "passed"]
    columns = [c for c in preferred if c in validation] + [c for c in validation if c not in preferred]
    rows = []
    for _, r in validation[columns].iterrows():
        row = {}
        for c in columns:
            v = r[c]
            if c == "passed":
                row[c] = "–" if pd.isna(v) else ("PASS" if bool(v) else "FAIL")
            elif isinstance(v, (float, np.floating)):
                row[c] = pct(v) + " %" if c == "top1_agreement" else sci(v)
            else:
                row[c] = "–" if v is None or (np.isscalar(v) and pd.isna(v)) else str(v)
        rows.append(row)
    return rows_table(rows)
