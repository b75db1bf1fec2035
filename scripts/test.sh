#!/usr/bin/env bash
# Set up, then run the default test suite (TensorRT tests skip where TensorRT or a GPU is
# missing) on two pytest-xdist workers, one test file per worker at a time (module fixtures
# are built once; each worker has its own artifact cache). Extra arguments go to pytest:
# `-n 0` runs in one process.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -n 2 --dist loadfile "$@"
