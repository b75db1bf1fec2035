"""The environment block stored with every run: machine, libraries, code revision."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import psutil

LIBRARIES = ("movibench", "tensorflow", "tf-models-official", "tf-keras", "tf2onnx", "onnx",
             "onnxruntime", "onnxslim", "ai-edge-litert", "tensorrt", "cuda-python", "openvino",
             "numpy", "pandas", "pyarrow", "av", "ray")


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (Linux), else platform.processor()."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """SIMD features that decide int8/fp16 kernel paths (AVX-512 VNNI, AMX...)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                return sorted(f for f in flags if f.startswith(("avx", "amx", "fma", "f16c")))
    except OSError:
        pass
    return []


def git_revision(repo: Path | None = None) -> str:
    """`git describe --always --dirty` of the checkout, or 'unknown' outside one."""
    repo = repo or Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=repo,
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that decide results ('' when absent)."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = ""
    return versions


def environment() -> dict:
    """Everything about this machine and checkout that a result depends on."""
    vm = psutil.virtual_memory()
    return {
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "os": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model(),
        "cpu_flags": cpu_flags(),
        "logical_cores": psutil.cpu_count(logical=True),
        "physical_cores": psutil.cpu_count(logical=False),
        "affinity_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gb": round(vm.total / 2**30, 1),
        # Other work on the machine inflates latencies: compare runs only at similar load.
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "git_revision": git_revision(),
        "libraries": library_versions(),
    }


def node_facts(runtime: str | None = None) -> dict:
    """Where a cell ran, for its results row: host, CPU model, cores and the version of the
    runtime that ran it (the row's node_* and runtime_version columns)."""
    import socket

    from runtimes.loader import session_class
    from runtimes.registry import RUNTIME_SESSIONS

    version = ""
    if runtime in RUNTIME_SESSIONS:
        try:
            version = metadata.version(session_class(runtime).distribution)
        except (metadata.PackageNotFoundError, ValueError):
            pass
    return {"node_host": socket.gethostname(), "node_cpu": cpu_model(),
            "node_cores": psutil.cpu_count(logical=True), "runtime_version": version or None}
