#!/usr/bin/env bash
# Set up, then run the default test suite (TensorRT tests skip where TensorRT or a GPU is
# missing). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
