"""Benchmark matrix: the TOML config, its dataclasses, and expansion into cells.

Axes vary independently (models x formats x threads x protocols, plus a memory sweep over clip
lengths); include/exclude rules prune the product. A cell's id hashes its definition, so the
same cell has the same id in every run: that is what `--resume` and `compare` key on.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from bench.scenarios import ACCURACY, LATENCY, MEMORY, SWEEP_MODES, cell_label
from converters.errors import MovibenchError
from converters.formats import TENSORFLOW


class MatrixConfigError(MovibenchError, ValueError):
    """A matrix config that cannot be run, naming the key at fault."""


@dataclass(frozen=True)
class ModelEntry:
    """One model of the matrix: id, variant, weights and input size."""

    model: str
    variant: str = "stream"
    checkpoint: str = ""  # path, 'demo:<name>' for shipped demo weights, '' for random init
    resolution: int | None = None
    classes: int | None = None


@dataclass(frozen=True)
class DataConfig:
    """The evaluation data: a dataset path, or a synthetic set generated (and cached) on demand."""

    path: str = ""
    split: str = "val"
    max_videos: int | None = None
    synth: dict = field(default_factory=dict)  # bench.data.synth.SynthConfig fields


@dataclass(frozen=True)
class SweepConfig:
    """Peak memory and time vs clip length: one call on the whole clip vs frame by frame."""

    clip_frames: tuple[int, ...] = ()
    formats: tuple[str, ...] = (TENSORFLOW,)
    modes: tuple[str, ...] = ("full-clip", "stream")
    threads: int | None = None


@dataclass(frozen=True)
class MatrixConfig:
    """A whole benchmark matrix as read from TOML."""

    name: str
    models: tuple[ModelEntry, ...]
    formats: tuple[str, ...] = (TENSORFLOW,)
    threads: tuple[int, ...] = (1,)
    protocols: tuple[str, ...] = ("stream",)
    warmup: int = 5
    iterations: int = 50
    cell_timeout_s: float = 900.0
    data: DataConfig = field(default_factory=DataConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    include: tuple[dict, ...] = ()
    exclude: tuple[dict, ...] = ()
    source: str = ""  # the TOML text, stored with the run

    def config_hash(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Cell:
    """One measurement (bench.scenarios): `kind='latency'` times calls of `frames_per_call`
    frames; `kind='accuracy'` runs `protocol` over the dataset; `kind='memory'` runs one
    synthetic clip of `clip_frames` frames in `sweep_mode`."""

    kind: str
    model: str
    variant: str
    checkpoint: str
    resolution: int | None
    classes: int | None
    format: str
    threads: int | None
    protocol: str = ""
    clip_frames: int | None = None
    sweep_mode: str = ""
    frames_per_call: int | None = None
    warmup: int = 5
    iterations: int = 50

    @property
    def cell_id(self) -> str:
        # Timing knobs are not identity: changing iterations must still resume/compare.
        ident = {k: v for k, v in asdict(self).items() if k not in ("warmup", "iterations")}
        if ident["frames_per_call"] is None:
            del ident["frames_per_call"]  # ids of cells that predate the field stay the same
        return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        return cell_label(self.model, self.variant, self.format, self.threads, self.kind,
                          self.protocol, self.clip_frames, self.sweep_mode, self.frames_per_call)

    def matches(self, rule: dict) -> bool:
        """True when every key of `rule` equals this cell's value (lists mean 'any of')."""
        for key, want in rule.items():
            have = getattr(self, key)
            options = want if isinstance(want, list) else [want]
            if have not in options and str(have) not in map(str, options):
                return False
        return True

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Cell:
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


def _tuple(value, key: str, kind=str) -> tuple:
    if isinstance(value, (str, int)):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, kind) for v in value):
        raise MatrixConfigError(f"{key} must be a list of {kind.__name__}, got {value!r}")
    return tuple(value)


def load_config(path: str | Path) -> MatrixConfig:
    """Parse and validate a matrix TOML file; errors name the file and key."""
    path = Path(path)
    try:
        text = path.read_text()
        raw = tomllib.loads(text)
    except FileNotFoundError:
        raise MatrixConfigError(f"matrix config not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise MatrixConfigError(f"{path}: invalid TOML: {exc}") from None
    return parse_config(raw, text, str(path))


def parse_config(raw: dict, text: str = "", where: str = "config") -> MatrixConfig:
    """Build a MatrixConfig from parsed TOML, checking names against the registries."""
    from bench.evaluation.protocols import parse_protocol
    from converters.formats import get_format
    from converters.zoo import get_model, get_variant

    known = {"name", "models", "axes", "timing", "data", "memory_sweep", "include", "exclude"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise MatrixConfigError(f"{where}: unknown section(s) {unknown}; known: {sorted(known)}")
    if not raw.get("models"):
        raise MatrixConfigError(f"{where}: at least one [[models]] entry is required")
    models = []
    for i, entry in enumerate(raw["models"]):
        try:
            model = ModelEntry(**entry)
        except TypeError as exc:
            raise MatrixConfigError(f"{where}: [[models]] #{i + 1}: {exc}") from None
        get_model(model.model)
        get_variant(model.variant)
        models.append(model)
    axes = raw.get("axes", {})
    bad_axes = sorted(set(axes) - {"formats", "threads", "protocols"})
    if bad_axes:
        raise MatrixConfigError(f"{where}: unknown axes {bad_axes}; known: formats, threads, protocols")
    formats = _tuple(axes.get("formats", [TENSORFLOW]), "axes.formats")
    for fmt in formats:
        get_format(fmt)
    protocols = _tuple(axes.get("protocols", ["stream"]), "axes.protocols")
    for name in protocols:
        parse_protocol(name)
    threads = _tuple(axes.get("threads", [1]), "axes.threads", int)
    if any(t < 1 for t in threads):
        raise MatrixConfigError(f"{where}: axes.threads must be >= 1, got {list(threads)}")
    timing = raw.get("timing", {})
    bad_timing = sorted(set(timing) - {"warmup", "iterations", "cell_timeout_s"})
    if bad_timing:
        raise MatrixConfigError(f"{where}: unknown [timing] key(s) {bad_timing}; "
                                "known: warmup, iterations, cell_timeout_s")
    warmup, iterations = int(timing.get("warmup", 5)), int(timing.get("iterations", 50))
    cell_timeout_s = float(timing.get("cell_timeout_s", 900))
    if warmup < 0 or iterations < 1 or cell_timeout_s <= 0:
        raise MatrixConfigError(
            f"{where}: [timing] needs warmup >= 0, iterations >= 1 and cell_timeout_s > 0; got "
            f"warmup={warmup}, iterations={iterations}, cell_timeout_s={cell_timeout_s:g}")
    sweep_raw = raw.get("memory_sweep", {})
    sweep = SweepConfig(
        clip_frames=_tuple(sweep_raw.get("clip_frames", []), "memory_sweep.clip_frames", int),
        formats=_tuple(sweep_raw.get("formats", [TENSORFLOW]), "memory_sweep.formats"),
        modes=_tuple(sweep_raw.get("modes", list(SWEEP_MODES)), "memory_sweep.modes"),
        threads=sweep_raw.get("threads"),
    )
    for fmt in sweep.formats:
        get_format(fmt)
    for mode in sweep.modes:
        if mode not in SWEEP_MODES:
            raise MatrixConfigError(f"{where}: memory_sweep.modes: unknown mode {mode!r}; "
                                    f"known: {', '.join(SWEEP_MODES)}")
    data_raw = dict(raw.get("data", {}))
    try:
        data = DataConfig(**data_raw)
    except TypeError as exc:
        raise MatrixConfigError(f"{where}: [data]: {exc}") from None
    return MatrixConfig(
        name=str(raw.get("name", "matrix")),
        models=tuple(models),
        formats=formats,
        threads=threads,
        protocols=protocols,
        warmup=warmup,
        iterations=iterations,
        cell_timeout_s=cell_timeout_s,
        data=data,
        sweep=sweep,
        include=tuple(raw.get("include", [])),
        exclude=tuple(raw.get("exclude", [])),
        source=text,
    )


def latency_frames(config: MatrixConfig, causal: bool) -> list[int]:
    """Frames per call of a model's latency cells: 1 for causal models (they stream); for base
    models every clip length its protocols run (multi-clip L, and full-clip on fixed-length
    synthetic videos), since each is its own artifact on exported formats."""
    from bench.evaluation.protocols import FULL_CLIP, MULTI_CLIP, parse_protocol

    if causal:
        return [1]
    lengths = []
    for name in config.protocols:
        protocol = parse_protocol(name)
        if protocol.kind == MULTI_CLIP:
            lengths.append(protocol.clip_frames)
        elif protocol.kind == FULL_CLIP and config.data.synth:
            from bench.data.synth import SynthConfig

            lengths.append(config.data.synth.get("frames", SynthConfig().frames))
    return sorted(set(lengths))


def expand(config: MatrixConfig) -> list[Cell]:
    """All cells of the matrix after include/exclude rules, in a stable order.

    Per model and format: latency cells once per deployment (threads x frames per call),
    accuracy cells per threads x protocol, and memory-sweep cells per sweep format x clip length
    x mode. `include` rules (if any) keep only matching cells; `exclude` rules drop matching cells.
    """
    from converters.zoo import get_variant

    cells: list[Cell] = []
    for m in config.models:
        common = dict(model=m.model, variant=m.variant, checkpoint=m.checkpoint,
                      resolution=m.resolution, classes=m.classes,
                      warmup=config.warmup, iterations=config.iterations)
        per_call = latency_frames(config, get_variant(m.variant).causal)
        for fmt in config.formats:
            for threads in config.threads:
                for frames in per_call:
                    cells.append(Cell(LATENCY, format=fmt, threads=threads,
                                      frames_per_call=frames, **common))
                for protocol in config.protocols:
                    cells.append(Cell(ACCURACY, format=fmt, threads=threads, protocol=protocol,
                                      **common))
        for fmt in config.sweep.formats:
            for frames in config.sweep.clip_frames:
                for mode in config.sweep.modes:
                    cells.append(Cell(MEMORY, format=fmt, threads=config.sweep.threads or config.threads[0],
                                      clip_frames=frames, sweep_mode=mode, **common))
    if config.include:
        cells = [c for c in cells if any(c.matches(r) for r in config.include)]
    cells = [c for c in cells if not any(c.matches(r) for r in config.exclude)]
    seen: dict[str, Cell] = {}
    for cell in cells:
        seen.setdefault(cell.cell_id, cell)
    return list(seen.values())


def apply_filter(cells: list[Cell], expr: str | None) -> list[Cell]:
    """`--only 'format=onnx,threads=2'`: keep cells matching every key=value (| for any-of)."""
    if not expr:
        return cells
    rule = {}
    for part in expr.split(","):
        key, sep, value = part.partition("=")
        if not sep or key.strip() not in {f.name for f in fields(Cell)}:
            raise MatrixConfigError(f"--only: expected key=value with a cell field, got {part!r}")
        rule[key.strip()] = value.strip().split("|")
    return [c for c in cells if c.matches(rule)]
