"""Every scenario by the kind of cell it measures: what the cell worker looks a cell up in."""

from __future__ import annotations

from bench.scenarios import Scenario, accuracy, latency, memory, serving
from core.errors import MovibenchError

SCENARIO_OF: dict[str, Scenario] = {s.kind: s for s in (
    latency.SCENARIO, accuracy.SCENARIO, memory.SCENARIO, serving.SCENARIO)}


def get_scenario(kind: str) -> Scenario:
    """The scenario of cells of `kind`; MovibenchError names the known kinds."""
    try:
        return SCENARIO_OF[kind]
    except KeyError:
        raise MovibenchError(f"unknown scenario {kind!r}; known: {', '.join(SCENARIO_OF)}") from None
