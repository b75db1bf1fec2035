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
    echo "setup: .venv is up to date with requirements.lock" >&2
    exit 0
fi
# One line per stage; pip's own output only when a stage fails (or with its -v).
stage() { echo "setup: $1" >&2; }
if [ ! -x .venv/bin/python ]; then
    stage "creating .venv ($("$PYTHON" --version 2>&1))"
    "$PYTHON" -m venv .venv
fi
stage "upgrading pip"
.venv/bin/python -m pip install --quiet --upgrade pip
stage "installing the locked packages (first run: a few minutes, ~3.6 GB)"
.venv/bin/python -m pip install --quiet -r requirements.lock
stage "installing movibench (editable)"
.venv/bin/python -m pip install --quiet --no-deps -e .
echo "$want" > "$stamp"
stage "done"
