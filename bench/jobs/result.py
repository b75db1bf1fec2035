"""What a cell's worker sends back: results columns, its raw latencies and its predictions.

Each column of a results row has one writer: the worker's own columns, the scenario's, the
trackers' and, on the driver, the plan's and the export's are disjoint groups, and joining
two that share a name is a bug (`join_columns` raises) instead of the last write winning.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field


def join_columns(*groups: Mapping[str, object]) -> dict[str, object]:
    """The union of column groups that no two of them write; ValueError names a column two
    of them set."""
    joined: dict[str, object] = {}
    for group in groups:
        twice = sorted(set(joined) & set(group))
        if twice:
            raise ValueError(f"results column {twice[0]!r} has two writers")
        joined.update(group)
    return joined


@dataclass(frozen=True)
class ScenarioResult(Mapping[str, object]):
    """A scenario's measurement: results columns (bench.results.schema names), every timed
    call's latency (ms) and the per-video predictions. Reads as the mapping of its columns, so
    code that only wants the numbers (`validate`'s latency table) takes it as it is."""

    columns: Mapping[str, object] = field(default_factory=dict)
    samples_ms: tuple[float, ...] = ()
    predictions: tuple[dict, ...] = ()

    def __getitem__(self, name: str) -> object:
        return self.columns[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.columns)

    def __len__(self) -> int:
        return len(self.columns)

    def with_columns(self, columns: Mapping[str, object]) -> ScenarioResult:
        """This result with `columns` added (none of which it has: see `join_columns`)."""
        return ScenarioResult(join_columns(self.columns, columns), self.samples_ms,
                              self.predictions)
