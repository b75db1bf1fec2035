"""`movibench models`: the zoo at a glance."""

from __future__ import annotations

import json

from typing import Annotated

import typer
from rich.table import Table

from bench.cli.options import JsonOpt, stdout


def register(root: typer.Typer) -> None:
    root.command("models")(models_cmd)


def models_cmd(
    as_json: JsonOpt = False,
    support: Annotated[bool, typer.Option(
        "--support", help="Show which variant x conv type exports to which format, and how.")] = False,
) -> None:
    """List model ids, default resolutions and variants."""
    from core.zoo import MODELS, VARIANTS

    if support:
        support_cmd(as_json)
        return
    if as_json:
        print(json.dumps({"models": {k: v.__dict__ for k, v in MODELS.items()},
                          "variants": {k: v.__dict__ for k, v in VARIANTS.items()}}, indent=2))
        return
    table = Table(title="MoViNet zoo")
    for col in ("id", "resolution", "stream pos. enc.", "description"):
        table.add_column(col)
    for spec in MODELS.values():
        table.add_row(spec.model_id, str(spec.resolution), str(spec.stream_positional_encoding),
                      spec.description)
    stdout.print(table)
    variants = Table(title="Variants")
    for col in ("variant", "causal", "conv", "SE", "activation", "description"):
        variants.add_column(col)
    for v in VARIANTS.values():
        variants.add_row(v.name, str(v.causal), v.conv_type, v.se_type, v.activation, v.description)
    stdout.print(variants)


def support_cmd(as_json: bool) -> None:
    """The export support table of converters/support.py: rows (--json) or a summary."""
    from converters.support import gpu_delegate_rows, refusal_notes, summary, support_rows

    rows = support_rows()
    gpu = gpu_delegate_rows()
    if as_json:
        print(json.dumps({"rows": [r.to_dict() for r in rows],
                          "gpu_delegate": [dict(zip(("format", "max_tensor_rank", "gpu_delegate"),
                                                    line)) for line in gpu]}, indent=2))
        return
    table = Table(title="Export support: every format exports except those refused "
                        "(routes: docs/support.md)")
    for col in ("models", "variant", "conv type", "route", "refused"):
        table.add_column(col, overflow="fold")
    for line in summary(rows):
        table.add_row(*line)
    stdout.print(table)
    for i, note in enumerate(refusal_notes(rows), 1):
        stdout.print(f"[{i}] {note}", highlight=False)
    delegate = Table(title="LiteRT GPU delegate (movibench validate gpu-delegate FILE)")
    for col in ("format", "highest tensor rank", "GPU delegate"):
        delegate.add_column(col)
    for line in gpu:
        delegate.add_row(*line)
    stdout.print(delegate)
