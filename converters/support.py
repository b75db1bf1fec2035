"""What exports where, and how: the support table, computed from the exporter's own decisions.

Every row asks the code that `export_model` runs before converting anything — the frame-count
rules (`converters.export.resolve_frames`), the format's exporter (converters.exporter: what
it refuses, how it makes the artifact) and the conv-type route (`converters.rewrite3d.route_for`)
— so the table cannot drift from behaviour. docs/support.md
is generated from it (`python -m converters.support`; a test checks the committed file) and
`movibench models --support` prints it. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from converters.exporter import exporter_for
from core.errors import UnsupportedExportError
from core.formats import FORMATS, TFLITE, FormatSpec, get_format
from core.zoo import CONV_TYPES, MODELS, VARIANTS, ModelConfig

# The clip length a base model is asked about: any L >= 1 gets the same answer.
PROBE_CLIP_FRAMES = 8
DOCS_PATH = Path(__file__).resolve().parents[1] / "docs" / "support.md"

CONV_TYPE_NOTES = {
    "3d": "full 3D convs: the official base checkpoints",
    "2plus1d": "2D spatial + 1D temporal convs: the official stream checkpoints",
    "3d_2plus1d": "(2+1)D with 3D ops: how Model Garden trains stream models",
}


@dataclass(frozen=True)
class ExportTarget:
    """A column of the table: a format, plus ONNX with a symbolic frame axis."""

    label: str
    format: str
    dynamic_frames: bool = False

    @property
    def spec(self) -> FormatSpec:
        return get_format(self.format)


def export_targets() -> tuple[ExportTarget, ...]:
    """Every export format, each plain one whose exporter can leave T symbolic followed by
    that column ('onnx (dynamic T)')."""
    targets: list[ExportTarget] = []
    for name, spec in FORMATS.items():
        if spec.exported:
            targets.append(ExportTarget(name, name))
            if exporter_for(spec).takes_dynamic_frames(spec) and not spec.optimized:
                targets.append(ExportTarget(f"{name} (dynamic T)", name, dynamic_frames=True))
    return tuple(targets)


TARGETS = export_targets()


@dataclass(frozen=True)
class SupportRow:
    """Whether one model id / variant / conv type exports to one target, and how or why not."""

    model_id: str
    variant: str
    conv_type: str
    target: str
    supported: bool
    route: str  # 'direct' | 'rewrite-3d' | 'rebuild-2plus1d' | '' when refused
    how: str  # the route's note, or the refusal's one-line reason

    def to_dict(self) -> dict:
        return asdict(self)


def support_row(model_id: str, variant: str, conv_type: str, target: ExportTarget) -> SupportRow:
    """Ask the exporter whether this combination exports (nothing is built or converted)."""
    from converters.export import ExportOptions, applied_optimizations, resolve_frames
    from converters.rewrite3d import ROUTE_NOTES, route_for

    config = ModelConfig(model_id, variant, conv_type=conv_type).resolved()
    spec = target.spec
    frames = None if config.causal else PROBE_CLIP_FRAMES
    try:
        frames = resolve_frames(config, spec, frames,
                                ExportOptions(dynamic_frames=target.dynamic_frames))
        optimizations = applied_optimizations(config, spec, frames)
        route = route_for(config.conv_type)
    except UnsupportedExportError as exc:
        return SupportRow(model_id, variant, conv_type, target.label, False, "", str(exc))
    how = ROUTE_NOTES[route]
    if exporter_for(spec).support_note:
        how += f"; {exporter_for(spec).support_note}"
    if optimizations:
        how += f"; optimized: {', '.join(optimizations)}"
    return SupportRow(model_id, variant, conv_type, target.label, True, route, how)


def support_rows(model_ids=None) -> list[SupportRow]:
    """Every model id x variant x conv type x export target, in registry order."""
    return [support_row(model_id, variant, conv_type, target)
            for model_id in (model_ids or MODELS)
            for variant in VARIANTS
            for conv_type in CONV_TYPES
            for target in TARGETS]


ROUTE_MARKS = {"direct": "yes", "rewrite-3d": "yes (rewrite)", "rebuild-2plus1d": "yes (rebuild)"}


def refusal_notes(rows: list[SupportRow]) -> list[str]:
    """The distinct refusal reasons in first-seen order: note n is cited as '[n]'."""
    return list(dict.fromkeys(r.how for r in rows if not r.supported))


def model_groups(rows: list[SupportRow]) -> list[tuple[list[str], list[SupportRow]]]:
    """Model ids whose every answer is the same, with the rows of the first of them."""
    by_model: dict[str, list[SupportRow]] = {}
    for row in rows:
        by_model.setdefault(row.model_id, []).append(row)
    groups: dict[tuple, list[str]] = {}
    for model_id, model_rows in by_model.items():
        key = tuple((r.variant, r.conv_type, r.target, r.supported, r.route, r.how)
                    for r in model_rows)
        groups.setdefault(key, []).append(model_id)
    return [(model_ids, by_model[model_ids[0]]) for model_ids in groups.values()]


def _by_variant_conv(rows: list[SupportRow]) -> dict[tuple[str, str], list[SupportRow]]:
    grouped: dict[tuple[str, str], list[SupportRow]] = {}
    for row in rows:
        grouped.setdefault((row.variant, row.conv_type), []).append(row)
    return grouped


def pivot(rows: list[SupportRow]) -> list[tuple[list[str], list[list[str]]]]:
    """Per model group, one line per variant x conv type: [variant, conv type, cell per target].

    A cell is the route mark ('yes', 'yes (rewrite)', ...) or 'no [n]' citing refusal note n.
    """
    notes = refusal_notes(rows)
    return [(model_ids, [[variant, conv_type,
                          *(ROUTE_MARKS[r.route] if r.supported else f"no [{notes.index(r.how) + 1}]"
                            for r in cells)]
                         for (variant, conv_type), cells in _by_variant_conv(group).items()])
            for model_ids, group in model_groups(rows)]


def summary(rows: list[SupportRow]) -> list[list[str]]:
    """One line per model group x variant x conv type: [models, variant, conv type, route,
    the targets refused with their note numbers ('' when every target exports)]."""
    notes = refusal_notes(rows)
    lines = []
    for model_ids, group in model_groups(rows):
        for (variant, conv_type), cells in _by_variant_conv(group).items():
            routes = dict.fromkeys(r.route for r in cells if r.supported)
            lines.append([", ".join(model_ids), variant, conv_type, ", ".join(routes),
                          ", ".join(f"{r.target} [{notes.index(r.how) + 1}]"
                                    for r in cells if not r.supported)])
    return lines


def gpu_delegate_rows() -> list[list[str]]:
    """One line per TFLite format: [format, highest tensor rank, LiteRT GPU delegate]."""
    from converters.gpu_delegate_compat import load_ops_table

    limit = load_ops_table().max_tensor_rank
    rows = []
    for spec in FORMATS.values():
        if spec.family != TFLITE or not spec.exported:
            continue
        rank = exporter_for(spec).max_tensor_rank(spec)
        verdict = (f"no: rank-{rank} tensors, the delegate takes rank <= {limit}" if rank > limit
                   else "rank fits; each build records its ops' verdict")
        rows.append([spec.name, str(rank), verdict])
    return rows


def gpu_delegate_section() -> list[str]:
    """The LiteRT GPU-delegate readiness of each TFLite format, with the op table's source."""
    from converters.gpu_delegate_compat import load_ops_table

    out = ["## LiteRT GPU delegate", "",
           "Whether the LiteRT GPU delegate can take a TFLite format's graph whole. Every TFLite "
           "build records the check (`gpu_delegate` in its build record; `movibench validate "
           f"gpu-delegate FILE` runs it on any file) against the delegate's op table, "
           f"transcribed from {load_ops_table().source}.", "",
           "| format | highest tensor rank | GPU delegate |", "|---|---|---|"]
    out += ["| " + " | ".join(row) + " |" for row in gpu_delegate_rows()]
    out.append("")
    return out


def render_markdown(rows: list[SupportRow] | None = None) -> str:
    """docs/support.md: the pivot per group of model ids, the routes and the refusals."""
    from converters.rewrite3d import ROUTE_NOTES

    rows = support_rows() if rows is None else rows
    labels = [t.label for t in TARGETS]
    out = [
        "# Export support",
        "",
        "Generated by `python -m converters.support` from `converters/support.py`, which asks",
        "the exporter's own rules (`resolve_frames`, the conv-type route) for every model id x",
        "variant x conv type x format; do not edit by hand (a test compares this file with the",
        "code). `movibench models --support` prints the same table.",
        "",
        "Base models are clip models: they export for a fixed clip length L (`--clip-frames`);",
        "stream and mobile models take one frame (or a fixed chunk) per call, or any number with",
        "ONNX's dynamic T.",
        "",
    ]
    for model_ids, lines in pivot(rows):
        out += [f"## Models {', '.join(model_ids)}", "",
                "| variant | conv type | " + " | ".join(labels) + " |",
                "|---|---|" + "---|" * len(labels)]
        out += ["| " + " | ".join(line) + " |" for line in lines]
        out.append("")
    out += ["## Conv types", ""]
    out += [f"- `{name}`: {note}" for name, note in CONV_TYPE_NOTES.items()]
    out += ["", "## Routes", ""]
    out += [f"- {ROUTE_MARKS[name]} — `{name}`: {note}" for name, note in ROUTE_NOTES.items()]
    out += ["", "TensorRT engines are built from the ONNX export, so they follow the ONNX column "
            "and need TensorRT and a CUDA GPU.", ""]
    out += gpu_delegate_section()
    notes = refusal_notes(rows)
    if notes:
        out += ["## Refusals", ""]
        out += [f"{i}. {note}" for i, note in enumerate(notes, 1)]
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Write docs/support.md (or `--check` that it is current; exit 1 if not)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("path", nargs="?", type=Path, default=DOCS_PATH)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    text = render_markdown()
    if args.check:
        current = args.path.read_text() if args.path.exists() else ""
        if current != text:
            print(f"{args.path} is stale: run python -m converters.support", file=sys.stderr)
            return 1
        return 0
    args.path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
