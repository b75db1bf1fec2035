#!/usr/bin/env bash
# Where a stream step's time goes, kernel by kernel: `perf record` (Debian's linux-perf) samples a
# process that streams one artifact frame by frame through movibench's session for SECONDS, and
# `perf report` lists the share of samples per function — XNNPACK's microkernels by name
# (xnn_f32_gemm_*, xnn_qs8_vmul_*, xnn_f32_qs8_vcvt_* ...), LiteRT's built-in kernels, memmove for
# the copies of reshapes, concatenations and slices. LiteRT's Python API has no op profiler; the
# library's symbol table names its kernels. Usage:
#   bash scripts/kernel_profile.sh ARTIFACT OUT.txt [THREADS=1] [SECONDS=8]
set -euo pipefail
cd "$(dirname "$0")/.."
artifact="$1"; out="$2"; threads="${3:-1}"; seconds="${4:-8}"
command -v perf >/dev/null || { echo "error: perf is not installed (apt-get install linux-perf)" >&2; exit 2; }
data="$(mktemp)"
trap 'rm -f "$data"' EXIT
summary="$(perf record -q -F 2000 -o "$data" .venv/bin/python - "$artifact" "$threads" "$seconds" <<'PY' 2>/dev/null
import sys, time
import numpy as np
from runtimes.loader import open_session
session = open_session(sys.argv[1], threads=int(sys.argv[2]))
r = session.manifest.resolution
frames = np.random.default_rng(0).random((8, 1, 1, r, r, 3), dtype=np.float32)
states, end, n = session.init_states(), time.time() + float(sys.argv[3]), 0
while time.time() < end:
    _, states = session.step(frames[n % 8], states)
    n += 1
name = sys.argv[1].rsplit("/", 1)[-1]
print(f"# {n} steps of {name} at {sys.argv[2]} thread(s), settings "
      f"{session.settings()}, step p50 {np.median(session.step_ns) / 1e6:.3f} ms")
PY
)"
{
    echo "# bash scripts/kernel_profile.sh ARTIFACT OUT $threads $seconds  (ARTIFACT: $(basename "$artifact"))"
    echo "$summary"
    echo "# cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); flags: $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx|amx|fma)' | sort | xargs)"
    perf report -i "$data" --no-children --sort symbol --stdio 2>/dev/null \
        | grep -E '^ +[0-9.]+%' | head -40 | sed -E 's/ +- +- *$//; s/ +$//'
} > "$out"
echo "wrote $out"
