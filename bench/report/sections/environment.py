"""The run's environment, command and configuration."""

from __future__ import annotations

from bench.report.formatting import rows_table
from bench.report.render import Code, Section
from bench.results.rundir import RunData


def section_environment(run: RunData) -> Section:
    """The section "Environment, command and configuration" of `run`."""
    section = Section("Environment, command and configuration")
    meta, env = run.meta, dict(run.meta.get("environment", {}))
    libraries = env.pop("libraries", {})
    run_rows = [{"key": k, "value": str(meta[k])} for k in
                ("run_id", "name", "command", "config_hash", "started", "finished", "dataset",
                 "cells_planned") if k in meta]
    env_rows = [{"key": k, "value": " ".join(map(str, v)) if isinstance(v, list) else str(v)}
                for k, v in env.items()]
    lib_rows = [{"library": k, "version": v or "not installed"} for k, v in libraries.items()]
    if run_rows:
        section.blocks.append(rows_table(run_rows, "Run (run.json)"))
    if "command" in meta:
        section.blocks.append(Code(str(meta["command"]), "sh"))
    if env_rows:
        section.blocks.append(rows_table(env_rows, "Machine"))
    if lib_rows:
        section.blocks.append(rows_table(lib_rows, "Libraries"))
    if meta.get("nodes"):
        section.blocks.append(rows_table([_node_row(n) for n in meta["nodes"]],
                                     f"Nodes ({meta.get('executor', 'executor')}): where the cells ran"))
    if not (run_rows or env_rows):
        section.blocks.append("The run directory has no run.json.")
    section.blocks += (["Configuration (config.toml):", Code(run.config_text, "toml")]
                       if run.config_text else ["The run directory has no config.toml."])
    return section


def _node_row(node: dict) -> dict:
    env = node.get("environment") or {}
    return {"node": str(node.get("node_id", ""))[:12], "host": str(node.get("host", "")),
            "CPU": str(env.get("cpu_model", "–")), "cores": str(env.get("logical_cores", "–")),
            "timing slots": str(node.get("slots", "–")), "git": str(env.get("git_revision", "–")),
            "alive at the end": "yes" if node.get("alive") else "no"}
