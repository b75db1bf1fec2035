#!/usr/bin/env bash
# The main job on its embedded default: set up, run the default benchmark matrix (demo weights
# the project trained itself, generated videos, CPU only, no download), write the report.
# Extra arguments go to `movibench matrix run` (e.g. --resume, --only 'format=onnx').
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Artifacts and generated data live in the checkout (git-ignored), so every path the results
# record is relative to it.
export MOVIBENCH_CACHE="${MOVIBENCH_CACHE:-.movibench-cache}"
OUT="${MOVIBENCH_OUT:-runs/default}"
status=0
.venv/bin/movibench matrix run default --out "$OUT" "$@" || status=$?
# A failed cell (exit 1) still leaves a complete store: report it; bad usage (2) stops here.
if [ "$status" -le 1 ]; then
    .venv/bin/movibench report "$OUT" --out "$OUT/report"
    echo "results: $OUT/cells.parquet (+ cells.csv); report: $OUT/report/report.html; the libraries' output: $OUT/library.log" >&2
fi
exit "$status"
