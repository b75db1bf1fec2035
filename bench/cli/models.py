"""`movibench models`: the zoo at a glance."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from bench.cli.options import JsonOpt, stdout


def register(root: typer.Typer) -> None:
    root.command("models")(models_cmd)


def models_cmd(as_json: JsonOpt = False) -> None:
    """List model ids, default resolutions and variants."""
    from converters.zoo import MODELS, VARIANTS

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
