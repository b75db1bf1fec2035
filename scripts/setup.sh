#!/usr/bin/env bash
# Create .venv with the locked dependencies and movibench itself (editable). Idempotent: a
# second run with an unchanged lock file and pyproject.toml does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    echo "error: movibench needs Python 3.11 (TensorFlow 2.20 and the lock file); found $("$PYTHON" --version 2>&1)" >&2
    exit 2
fi

stamp=".venv/.movibench-installed"
want="$(cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
echo "setting up .venv from requirements.lock (first run: a few minutes, ~3.6 GB)" >&2
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r requirements.lock
.venv/bin/python -m pip install --quiet --no-deps -e .
echo "$want" > "$stamp"
