"""How a report is written down: sections as data, rendered to Markdown and to one HTML page.

bench.report.sections decide what a report says; this module only writes it, the same blocks twice,
so the Markdown and the HTML never disagree.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd


@dataclass
class Table:
    """A table of already formatted strings."""

    frame: pd.DataFrame
    caption: str = ""


@dataclass
class Figure:
    """A PNG written next to the report, and what it shows."""

    path: Path
    caption: str


@dataclass
class Code:
    """A verbatim block (a config, a command)."""

    text: str
    language: str = ""


Block = str | Table | Figure | Code


@dataclass
class Section:
    """One titled part of the report."""

    title: str
    blocks: list[Block] = field(default_factory=list)
    omitted: bool = False  # the run has nothing for this section

    def omit(self, reason: str) -> Section:
        """Mark the section empty, saying why in its place; returns the section."""
        self.blocks.append(f"Omitted: {reason}")
        self.omitted = True
        return self


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(title: str, intro: str, sections: list[Section]) -> str:
    """GitHub-flavoured Markdown; figures referenced by file name (next to report.md)."""
    out = [f"# {title}", "", intro, ""]
    for s in sections:
        out += [f"## {s.title}", ""]
        for block in s.blocks:
            if isinstance(block, Table):
                if block.caption:
                    out += [f"*{block.caption}*", ""]
                cols = list(block.frame.columns)
                out.append("| " + " | ".join(_md_cell(c) for c in cols) + " |")
                out.append("|" + "|".join("---" for _ in cols) + "|")
                out += ["| " + " | ".join(_md_cell(v) for v in row) + " |"
                        for row in block.frame.itertuples(index=False)]
            elif isinstance(block, Figure):
                out.append(f"![{block.caption}]({block.path.name})")
            elif isinstance(block, Code):
                out += [f"```{block.language}", block.text.rstrip("\n"), "```"]
            else:
                out.append(block)
            out.append("")
    return "\n".join(out)


CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; border-bottom: 1px solid #ddd; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } tr:nth-child(even) td { background: #fafafa; }
caption { caption-side: top; text-align: left; font-style: italic; padding: 0.3em 0; }
figure { margin: 1em 0; } img { max-width: 100%; } figcaption { font-size: 0.85em; color: #555; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.8em; }
td.pass { color: #176f2c; font-weight: bold; } td.fail { color: #b00020; font-weight: bold; }
"""


def _inline(text: str) -> str:
    """The Markdown the paragraphs use (`code`, **bold**) as HTML, everything else escaped."""
    out = []
    for i, part in enumerate(str(text).split("`")):
        part = html.escape(part)
        if i % 2:
            out.append(f"<code>{part}</code>")
        else:
            bold = part.split("**")
            out.append("".join(f"<strong>{b}</strong>" if j % 2 else b for j, b in enumerate(bold)))
    return "".join(out)


def _html_table(table: Table) -> str:
    parts = ["<table>"]
    if table.caption:
        parts.append(f"<caption>{html.escape(table.caption)}</caption>")
    parts.append("<thead><tr>" + "".join(f"<th>{html.escape(str(c))}</th>" for c in table.frame.columns)
                 + "</tr></thead><tbody>")
    for row in table.frame.itertuples(index=False):
        cells = []
        for v in row:
            css = {"PASS": ' class="pass"', "FAIL": ' class="fail"'}.get(str(v), "")
            cells.append(f"<td{css}>{html.escape(str(v))}</td>")
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</tbody></table>")
    return "".join(parts)


def render_html(title: str, intro: str, sections: list[Section]) -> str:
    """One self-contained page: inline CSS, PNGs as base64 data URIs, no scripts."""
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
           f"<h1>{html.escape(title)}</h1>", f"<p>{_inline(intro)}</p>"]
    for s in sections:
        out.append(f"<h2>{html.escape(s.title)}</h2>")
        for block in s.blocks:
            if isinstance(block, Table):
                out.append(_html_table(block))
            elif isinstance(block, Figure):
                data = base64.b64encode(block.path.read_bytes()).decode("ascii")
                out.append(f'<figure><img alt="{html.escape(block.caption)}" '
                           f'src="data:image/png;base64,{data}"><figcaption>'
                           f"{html.escape(block.caption)}</figcaption></figure>")
            elif isinstance(block, Code):
                out.append(f"<pre><code>{html.escape(block.text)}</code></pre>")
            else:
                out.append(f"<p>{_inline(block)}</p>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
