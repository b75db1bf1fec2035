"""The report of one run: `report.md` plus a self-contained `report.html`, and the PNGs.

Each section is built once as data (paragraphs, tables of formatted strings, figures, code) by
its module in bench.report.sections, from the computations of bench.report.analysis and the
words of bench.report.formatting, and rendered twice by bench.report.render, so the Markdown and
the HTML say the same thing. Every number comes from the run directory's files
(bench.results.rundir); a piece the run lacks (no memory sweep, no stream trace, no TF
reference) is omitted with a sentence saying so, never invented.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

# with_latency is also read from here by callers that pair cells the way the report does.
from bench.report.analysis import with_latency  # noqa: F401
from bench.report.render import Figure, Section, render_html, render_markdown
from bench.report.sections.confusion import section_confusion
from bench.report.sections.endtoend import section_end_to_end
from bench.report.sections.environment import section_environment
from bench.report.sections.equivalence import section_equivalence
from bench.report.sections.execution import section_execution
from bench.report.sections.failures import section_failures
from bench.report.sections.headline import section_headline
from bench.report.sections.memory import section_memory
from bench.report.sections.overhead import section_overhead
from bench.report.sections.pareto import section_pareto
from bench.report.sections.precision import section_precision
from bench.report.sections.race import section_race
from bench.report.sections.serving import section_serving
from bench.report.sections.speedup import section_speedup
from bench.report.sections.trace import section_trace
from bench.results.rundir import RunData, load_run


@dataclass
class ReportPaths:
    """What build_report wrote."""

    markdown: Path
    html: Path
    images: list[Path]
    sections: list[str]
    omitted: list[str]

    def to_dict(self) -> dict:
        return {"markdown": str(self.markdown), "html": str(self.html),
                "images": [str(p) for p in self.images], "sections": self.sections,
                "omitted": self.omitted}


def hardware_parts(run: RunData) -> list[tuple[str | None, RunData]]:
    """The run split by the CPU model its cells ran on (`node_cpu`): one part, named None, when
    they all ran on one kind of machine (or the run predates that column). Cells that do not
    say (never ran, or from before the column) are a part of their own then."""
    cpu = run.cells["node_cpu"].fillna("unknown CPU")
    if cpu.nunique() <= 1 or run.cells["node_cpu"].isna().all():
        return [(None, run)]
    return [(name, replace(run, cells=run.cells[cpu == name])) for name in sorted(cpu.unique())]


def per_hardware(run: RunData, out_dir: Path, build) -> list[Section]:
    """`build(run, out_dir)` once per CPU model of the run, so that no table, figure or
    median mixes latencies of different machines; each section and figure names its CPU."""
    parts = hardware_parts(run)
    if len(parts) == 1:
        return [build(run, out_dir)]
    sections = []
    for i, (cpu, part) in enumerate(parts, 1):
        section = build(part, out_dir)
        section.title += f" — {cpu}"
        for block in section.blocks:
            if isinstance(block, Figure):
                block.path = block.path.replace(block.path.with_name(f"cpu{i}_{block.path.name}"))
        sections.append(section)
    return sections


def build_sections(run: RunData, out_dir: Path) -> list[Section]:
    """All sections of the report, figures written into `out_dir`; the sections that rank or
    pool latencies come once per CPU model the cells ran on."""
    return [*per_hardware(run, out_dir, lambda r, _: section_headline(r)),
            *per_hardware(run, out_dir, lambda r, _: section_end_to_end(r)),
            *per_hardware(run, out_dir, section_pareto), section_confusion(run, out_dir),
            *per_hardware(run, out_dir, section_memory),
            *per_hardware(run, out_dir, section_serving),
            section_trace(run, out_dir), section_equivalence(run),
            *per_hardware(run, out_dir, section_speedup),
            *per_hardware(run, out_dir, lambda r, _: section_precision(r)), section_race(run),
            *per_hardware(run, out_dir, lambda r, _: section_overhead(r)),
            *per_hardware(run, out_dir, lambda r, _: section_execution(r)),
            section_failures(run), section_environment(run)]


def _intro(run: RunData) -> str:
    cells = run.cells
    ok = int((cells["status"] == "ok").sum())
    kinds = ", ".join(f"{n} {k}" for k, n in cells["kind"].value_counts().sort_index().items())
    return (f"Run `{run.meta.get('run_id', run.root.name)}` from `{run.root}`: {len(cells)} cells"
            f"{f' ({kinds})' if kinds else ''}, {ok} ok, {len(cells) - ok} failed. Tables and "
            "figures are computed from the run's cells.parquet, samples.parquet, predictions.parquet and run.json; "
            "column meanings and units: `movibench matrix schema`.")


def build_report(run_dir: str | Path, out_dir: str | Path) -> ReportPaths:
    """Write report.md, report.html and the figures (PNG) of the run at `run_dir` into `out_dir`."""
    run = load_run(run_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sections = build_sections(run, out)
    title = f"movibench report — {run.name}"
    intro = _intro(run)
    md = out / "report.md"
    md.write_text(render_markdown(title, intro, sections))
    page = out / "report.html"
    page.write_text(render_html(title, intro, sections))
    images = [b.path for s in sections for b in s.blocks if isinstance(b, Figure)]
    return ReportPaths(md, page, images, [s.title for s in sections],
                       [s.title for s in sections if s.omitted])
