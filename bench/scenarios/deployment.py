"""Moved to bench.jobs.deployment; this name stays only for bench/cli/tune.py, which another
change owns and still imports `frames_per_call` from here. Drop it once tune.py imports the
new home."""

from bench.jobs.deployment import frames_per_call  # noqa: F401
