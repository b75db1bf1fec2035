"""Benchmark matrix: the TOML config, its dataclasses, and expansion into cells.

Axes vary independently (models x formats x threads x protocols, plus a memory sweep over clip
lengths); [[artifacts]] add deployments movibench did not convert (a user's file, or Model
Garden's own recipe) on the same threads, protocols and sweep; include/exclude rules prune the
product. A cell's id hashes its definition, so the
same cell has the same id in every run: that is what `--resume` and `compare` key on.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from bench.jobs.job import (
    MAX_SERVING_DURATION_S, MAX_SERVING_FPS, MAX_SERVING_STREAMS, MAX_SERVING_WORKERS,
    QUEUE_POLICY, SESSIONS_STRATEGY, ServingError, ServingSettings)
from bench.scenarios import ACCURACY, LATENCY, MEMORY, SERVING, SWEEP_MODES, cell_label
from core.errors import MovibenchError
from core.formats import TENSORFLOW


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
class ServingConfig:
    """[serving]: multi-stream serving cells (bench.scenarios.serving), one per causal model
    entry x format x threads x strategy x fps x workers x jitter x policy; `streams` empty:
    search for the largest count up to `max_streams`."""

    formats: tuple[str, ...] = ()
    threads: tuple[int, ...] = ()  # empty: axes.threads
    fps: tuple[float, ...] = ()
    streams: tuple[int, ...] = ()
    max_streams: int = 64
    workers: tuple[int, ...] = (1,)
    jitter: tuple[float, ...] = (0.0,)
    duration_s: float = 2.0
    policies: tuple[str, ...] = (QUEUE_POLICY,)
    strategies: tuple[str, ...] = (SESSIONS_STRATEGY,)


@dataclass(frozen=True)
class ArtifactEntry:
    """A deployment movibench did not convert ([[artifacts]]): a `.tflite`/`.onnx` file made
    elsewhere (`path`, resolved against the config's folder) or one built during the run by a
    recipe (`recipe`), of the weights and data of one [[models]] entry, run as `format`."""

    name: str
    model: ModelEntry
    format: str
    recipe: str = ""
    path: str = ""

    @property
    def source(self) -> str:
        """How cells and rows name it: '<recipe or file>:<name>' (converters.foreign)."""
        from converters.foreign import FILE, source_name

        return source_name(self.recipe or FILE, self.name)


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
    artifacts: tuple[ArtifactEntry, ...] = ()
    serving: ServingConfig = field(default_factory=ServingConfig)

    def config_hash(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Cell:
    """One measurement (bench.scenarios): `kind='latency'` times calls of `frames_per_call`
    frames; `kind='accuracy'` runs `protocol` over the dataset; `kind='memory'` runs one
    synthetic clip of `clip_frames` frames in `sweep_mode`; `kind='serving'` serves streams
    under `serving`."""

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
    # An [[artifacts]] deployment: its source ('<recipe or file>:<name>'; '' for movibench's
    # own export or the TF reference) and, for a file, where it is.
    source: str = ""
    source_path: str = ""
    serving: ServingSettings | None = None

    @property
    def cell_id(self) -> str:
        # Timing knobs are not identity: changing iterations must still resume/compare. Nor is
        # where a file lies (the run folder or config may move); its source name is.
        ident = {k: v for k, v in asdict(self).items()
                 if k not in ("warmup", "iterations", "source_path")}
        for key in ("frames_per_call", "source", "serving"):
            if ident[key] in (None, ""):
                del ident[key]  # ids of cells that predate the field stay the same
        return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        return cell_label(self.model, self.variant, self.format, self.threads, self.kind,
                          self.protocol, self.clip_frames, self.sweep_mode, self.frames_per_call,
                          self.source, self.serving.label if self.serving else None)

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
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        if isinstance(values.get("serving"), dict):
            values["serving"] = ServingSettings.from_dict(values["serving"])
        return cls(**values)


# Upper bounds: beyond them a value is a typo (an extra digit), and taking it literally would
# start a thousand threads or time calls for days before anyone noticed.
MAX_THREADS = 1024
MAX_CALLS = 10**6  # warmup, iterations
MAX_TIMEOUT_S = 7 * 86400.0
MAX_FRAMES = 100_000  # memory sweep clip length
MAX_RESOLUTION = 4096
MAX_CLASSES = 100_000
MAX_VIDEOS = 10**7
SYNTH_INT_MAX = {"seed": 2**32 - 1, "fps": 1000, "size": MAX_RESOLUTION}
SYNTH_VIDEO_BYTES = 2**31  # a generated video is held as float32 frames while encoded


class _Bad(ValueError):
    """A config value that cannot work; parse_config adds the file name."""


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _table(value, name: str, known: set[str]) -> dict:
    """A TOML table with only `known` keys."""
    if not isinstance(value, dict):
        raise _Bad(f"{name} must be a table, got {_show(value)}")
    unknown = sorted(set(value) - known)
    if unknown:
        raise _Bad(f"unknown {name} key(s) {unknown}; known: {', '.join(sorted(known))}")
    return value


def _int(value, name: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Bad(f"{name} must be an integer, got {_show(value)}")
    if value < lo:
        raise _Bad(f"{name} must be >= {lo}, got {value}")
    if value > hi:
        raise _Bad(f"{name} must be <= {hi}, got {value}")
    return value


def _number(value, name: str, hi: float) -> float:
    """A finite number > 0 and <= hi."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Bad(f"{name} must be a number, got {_show(value)}")
    if not 0 < value <= hi:  # also false for NaN
        raise _Bad(f"{name} must be > 0 and <= {hi:g}, got {value}")
    return float(value)


def _str(value, name: str) -> str:
    if not isinstance(value, str):
        raise _Bad(f"{name} must be a string, got {_show(value)}")
    return value


def _tuple(value, name: str, item, allow_empty: bool = False) -> tuple:
    """A list checked item by item (a single value counts as a list of one)."""
    if isinstance(value, (str, int, float)):
        value = [value]
    if not isinstance(value, list):
        raise _Bad(f"{name} must be a list, got {_show(value)}")
    if not value and not allow_empty:
        raise _Bad(f"{name} is empty")
    return tuple(item(v, name) for v in value)


def _registered(check):
    """An item checker from a registry lookup (get_format, parse_protocol, ...)."""
    def item(value, name: str):
        value = _str(value, name)
        try:
            check(value)
        except MovibenchError as exc:
            raise _Bad(f"{name}: {exc}") from None
        return value
    return item


def _optional_int(table: dict, key: str, name: str, lo: int, hi: int) -> int | None:
    return None if table.get(key) is None else _int(table[key], name, lo, hi)


def _model(entry, name: str) -> ModelEntry:
    from core.zoo import get_model, get_variant

    entry = _table(entry, name, {f.name for f in fields(ModelEntry)})
    if "model" not in entry:
        raise _Bad(f"{name} needs a model id (model = \"t0\")")
    model = ModelEntry(
        model=_registered(get_model)(entry["model"], f"{name} model"),
        variant=_registered(get_variant)(entry.get("variant", "stream"), f"{name} variant"),
        checkpoint=_str(entry.get("checkpoint", ""), f"{name} checkpoint"),
        resolution=_optional_int(entry, "resolution", f"{name} resolution", 32, MAX_RESOLUTION),
        classes=_optional_int(entry, "classes", f"{name} classes", 1, MAX_CLASSES))
    if "\0" in model.checkpoint:
        raise _Bad(f"{name} checkpoint holds a NUL character")
    return model


ARTIFACT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}")
# [[artifacts]] keys that pick its [[models]] entry (model and variant always do).
MODEL_SELECTORS = ("resolution", "classes", "checkpoint")


def _artifact(entry, index: int, models: tuple[ModelEntry, ...], base: Path | None) -> ArtifactEntry:
    """One [[artifacts]] table: its name, the [[models]] entry it is, and a recipe or a file."""
    from converters.foreign import RECIPES, check_format_fits, default_format
    from core.formats import get_format

    where = f"[[artifacts]] #{index}"
    entry = _table(entry, where, {"name", "model", "variant", *MODEL_SELECTORS, "recipe", "path",
                                  "format"})
    name = entry.get("name")
    if not isinstance(name, str) or not ARTIFACT_NAME.fullmatch(name):
        raise _Bad(f"{where} needs a name of letters, digits, '.', '_' or '-' (up to 40, e.g. "
                   f"name = \"mg-recipe\"), got {_show(name)}")
    where = f"{where} ({name})"
    if "model" not in entry:
        raise _Bad(f"{where} needs the model id of its [[models]] entry (model = \"t0\")")
    wanted = _model({k: v for k, v in entry.items() if k in ("model", "variant", *MODEL_SELECTORS)},
                    where)
    given = [k for k in MODEL_SELECTORS if k in entry]
    matches = [m for m in models if (m.model, m.variant) == (wanted.model, wanted.variant)
               and all(getattr(m, k) == getattr(wanted, k) for k in given)]
    described = f"{wanted.model}/{wanted.variant}" + "".join(
        f" {k}={getattr(wanted, k)!r}" for k in given)
    if not matches:
        raise _Bad(f"{where}: no [[models]] entry is {described}")
    if len(matches) > 1:
        raise _Bad(f"{where}: {len(matches)} [[models]] entries are {described}; add "
                   f"{' or '.join(k for k in MODEL_SELECTORS if k not in given)} to pick one")
    recipe = _str(entry.get("recipe", ""), f"{where} recipe")
    path = _str(entry.get("path", ""), f"{where} path")
    if bool(recipe) == bool(path):
        raise _Bad(f"{where} takes a path (a .tflite or .onnx file) or a recipe "
                   f"({', '.join(RECIPES)}), {'not both' if recipe else 'and has neither'}")
    fmt = entry.get("format")
    if fmt is not None:
        fmt = _registered(get_format)(fmt, f"{where} format")
    if recipe:
        from core.zoo import get_variant

        if recipe not in RECIPES:
            raise _Bad(f"{where}: unknown recipe {recipe!r}; known: {', '.join(RECIPES)}")
        if not get_variant(wanted.variant).causal:
            raise _Bad(f"{where}: recipe {recipe!r} builds a stream model; {wanted.variant} is "
                       "not causal")
        if fmt is not None and get_format(fmt).name != RECIPES[recipe]:
            raise _Bad(f"{where}: recipe {recipe!r} builds {RECIPES[recipe]}, not {fmt}")
        return ArtifactEntry(name, matches[0], RECIPES[recipe], recipe=recipe)
    if "\0" in path:
        raise _Bad(f"{where} path holds a NUL character")
    file = Path(path).expanduser()
    file = (file if file.is_absolute() else (base or Path.cwd()) / file).resolve()
    try:
        fmt = get_format(fmt or default_format(file)).name
        check_format_fits(file, fmt)
    except MovibenchError as exc:
        raise _Bad(f"{where} path: {exc}") from None
    if not file.is_file():
        raise _Bad(f"{where} path not found: {file}")
    return ArtifactEntry(name, matches[0], fmt, path=str(file))


def _artifacts(value, models: tuple[ModelEntry, ...], base: Path | None) -> tuple[ArtifactEntry, ...]:
    if not isinstance(value, list):
        raise _Bad(f"[[artifacts]] must be a list of tables, got {_show(value)}")
    entries = tuple(_artifact(e, i + 1, models, base) for i, e in enumerate(value))
    names = [e.name for e in entries]
    for name in names:
        if names.count(name) > 1:
            raise _Bad(f"[[artifacts]] name {name!r} is used twice: names tell deployments apart")
    return entries


def _synth(value) -> dict:
    """[data] synth: SynthConfig fields with their types, then SynthConfig's own checks."""
    from bench.data.synth import SynthConfig

    kinds = {f.name: f.type for f in fields(SynthConfig)}
    table = _table(value, "[data] synth", set(kinds))
    for key, val in table.items():
        name = f"[data] synth.{key}"
        if kinds[key] == "int":
            _int(val, name, 0, SYNTH_INT_MAX.get(key, MAX_FRAMES))
        elif kinds[key] == "float":
            if isinstance(val, bool) or not isinstance(val, (int, float)):
                raise _Bad(f"{name} must be a number, got {_show(val)}")
        else:
            _str(val, name)
    synth = SynthConfig(**table)
    try:
        synth.validate()
    except MovibenchError as exc:
        # Its messages name CLI options (--videos-per-class); here they are TOML keys.
        message = re.sub(r"--([a-z-]+)", lambda m: m.group(1).replace("-", "_"), str(exc))
        raise _Bad(f"[data] synth: {message}") from None
    if synth.frames * synth.size**2 * 3 * 4 > SYNTH_VIDEO_BYTES:
        raise _Bad(f"[data] synth: a video of {synth.frames} frames at {synth.size}x{synth.size} "
                   f"is over {SYNTH_VIDEO_BYTES / 2**30:.0f} GB in memory while it is written")
    return dict(table)


def _rules(value, name: str) -> tuple[dict, ...]:
    """[[include]] / [[exclude]]: tables of cell fields to values (a list = any of)."""
    known = {f.name for f in fields(Cell)}
    if not isinstance(value, list):
        raise _Bad(f"{name} must be a list of tables ([[{name[2:-2]}]]), got {_show(value)}")
    for rule in value:
        _table(rule, name, known)
        for key, want in rule.items():
            for option in want if isinstance(want, list) else [want]:
                if not isinstance(option, (str, int, float, bool)):
                    raise _Bad(f"{name} {key} must be a value or a list of values, got {_show(want)}")
    return tuple(value)


def load_config(path: str | Path) -> MatrixConfig:
    """Parse and validate a matrix TOML file; errors name the file and key."""
    path = Path(path)
    try:
        text = path.read_text()
        raw = tomllib.loads(text)
    except FileNotFoundError:
        raise MatrixConfigError(f"matrix config not found: {path}") from None
    except IsADirectoryError:
        raise MatrixConfigError(f"matrix config {path} is a folder, not a TOML file") from None
    except UnicodeDecodeError as exc:
        raise MatrixConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise MatrixConfigError(f"{path}: invalid TOML: {exc}") from None
    return parse_config(raw, text, str(path), base_dir=path.parent)


def parse_config(raw: dict, text: str = "", where: str = "config",
                 base_dir: str | Path | None = None) -> MatrixConfig:
    """Build a MatrixConfig from parsed TOML, checking every value's type and range and every
    name against the registries; the first problem is a MatrixConfigError naming its key.
    Relative [[artifacts]] paths are taken from `base_dir` (the config's folder; default: the
    working directory)."""
    try:
        return _parse(raw, text, Path(base_dir) if base_dir is not None else None)
    except _Bad as exc:
        raise MatrixConfigError(f"{where}: {exc}") from None


def _parse(raw: dict, text: str, base: Path | None = None) -> MatrixConfig:
    from bench.evaluation.protocols import parse_protocol
    from core.formats import get_format

    known = {"name", "models", "axes", "timing", "data", "memory_sweep", "include", "exclude",
             "artifacts", "serving"}
    if not isinstance(raw, dict):
        raise _Bad(f"a matrix config is a TOML table, got {_show(raw)}")
    unknown = sorted(set(raw) - known)
    if unknown:
        raise _Bad(f"unknown section(s) {unknown}; known: {sorted(known)}")
    if not raw.get("models"):
        raise _Bad("at least one [[models]] entry is required")
    if not isinstance(raw["models"], list):
        raise _Bad(f"[[models]] must be a list of tables, got {_show(raw['models'])}")
    models = tuple(_model(entry, f"[[models]] #{i + 1}") for i, entry in enumerate(raw["models"]))

    axes = raw.get("axes", {})
    if isinstance(axes, dict):
        bad_axes = sorted(set(axes) - {"formats", "threads", "protocols"})
        if bad_axes:
            raise _Bad(f"unknown axes {bad_axes}; known: formats, threads, protocols")
    axes = _table(axes, "[axes]", {"formats", "threads", "protocols"})
    formats = _tuple(axes.get("formats", [TENSORFLOW]), "axes.formats", _registered(get_format))
    protocols = _tuple(axes.get("protocols", ["stream"]), "axes.protocols",
                       _registered(parse_protocol))
    threads = _tuple(axes.get("threads", [1]), "axes.threads",
                     lambda v, n: _int(v, n, 1, MAX_THREADS))

    timing = _table(raw.get("timing", {}), "[timing]", {"warmup", "iterations", "cell_timeout_s"})
    warmup = _int(timing.get("warmup", 5), "[timing] warmup", 0, MAX_CALLS)
    iterations = _int(timing.get("iterations", 50), "[timing] iterations", 1, MAX_CALLS)
    cell_timeout_s = _number(timing.get("cell_timeout_s", 900), "[timing] cell_timeout_s",
                             MAX_TIMEOUT_S)

    sweep_raw = _table(raw.get("memory_sweep", {}), "[memory_sweep]",
                       {"clip_frames", "formats", "modes", "threads"})
    sweep = SweepConfig(
        clip_frames=_tuple(sweep_raw.get("clip_frames", []), "memory_sweep.clip_frames",
                           lambda v, n: _int(v, n, 1, MAX_FRAMES), allow_empty=True),
        formats=_tuple(sweep_raw.get("formats", [TENSORFLOW]), "memory_sweep.formats",
                       _registered(get_format)),
        modes=_tuple(sweep_raw.get("modes", list(SWEEP_MODES)), "memory_sweep.modes",
                     _registered(_sweep_mode)),
        threads=_optional_int(sweep_raw, "threads", "memory_sweep.threads", 1, MAX_THREADS),
    )

    data_raw = _table(raw.get("data", {}), "[data]", {f.name for f in fields(DataConfig)})
    if data_raw.get("path") and data_raw.get("synth"):
        raise _Bad("[data] takes a path or a synth table, not both")
    data = DataConfig(
        path=_str(data_raw.get("path", ""), "[data] path"),
        split=_str(data_raw.get("split", "val"), "[data] split"),
        max_videos=_optional_int(data_raw, "max_videos", "[data] max_videos", 1, MAX_VIDEOS),
        synth=_synth(data_raw["synth"]) if data_raw.get("synth") is not None else {})
    if "\0" in data.path:
        raise _Bad("[data] path holds a NUL character")
    return MatrixConfig(
        name=_str(raw.get("name", "matrix"), "name"),
        models=models,
        formats=formats,
        threads=threads,
        protocols=protocols,
        warmup=warmup,
        iterations=iterations,
        cell_timeout_s=cell_timeout_s,
        data=data,
        sweep=sweep,
        include=_rules(raw.get("include", []), "[[include]]"),
        exclude=_rules(raw.get("exclude", []), "[[exclude]]"),
        source=text,
        artifacts=_artifacts(raw.get("artifacts", []), models, base),
        serving=_serving(raw.get("serving", {})),
    )


def _serving(value) -> ServingConfig:
    """[serving]: lists checked item by item, then every combination as ServingSettings."""
    from core.formats import get_format

    table = _table(value, "[serving]", {"formats", "threads", "fps", "streams", "max_streams",
                                        "workers", "jitter", "duration_s", "policy",
                                        "strategy"})
    if not table:
        return ServingConfig()
    if "fps" not in table:
        raise _Bad("[serving] needs fps (frames per second of each stream, e.g. fps = [15, 30])")
    streams = table.get("streams", "search")
    if streams == "search":
        streams = ()
    elif isinstance(streams, str):
        raise _Bad(f"[serving] streams must be \"search\" or a list of stream counts, got "
                   f"{_show(streams)}")
    else:
        streams = _tuple(streams, "[serving] streams",
                         lambda v, n: _int(v, n, 1, MAX_SERVING_STREAMS))
    config = ServingConfig(
        formats=_tuple(table.get("formats", []), "[serving] formats", _registered(get_format),
                       allow_empty=True),
        threads=_tuple(table.get("threads", []), "[serving] threads",
                       lambda v, n: _int(v, n, 1, MAX_THREADS), allow_empty=True),
        fps=_tuple(table["fps"], "[serving] fps", lambda v, n: _number(v, n, MAX_SERVING_FPS)),
        streams=streams,
        max_streams=_int(table.get("max_streams", 64), "[serving] max_streams", 1,
                         MAX_SERVING_STREAMS),
        workers=_tuple(table.get("workers", [1]), "[serving] workers",
                       lambda v, n: _int(v, n, 1, MAX_SERVING_WORKERS)),
        jitter=_tuple(table.get("jitter", [0.0]), "[serving] jitter", _fraction),
        duration_s=_number(table.get("duration_s", 2.0), "[serving] duration_s",
                           MAX_SERVING_DURATION_S),
        policies=_tuple(table.get("policy", [QUEUE_POLICY]), "[serving] policy", _str),
        strategies=_tuple(table.get("strategy", [SESSIONS_STRATEGY]), "[serving] strategy", _str))
    try:
        for settings in serving_settings(config):
            settings.check()
    except ServingError as exc:
        raise _Bad(f"[serving]: {exc}") from None
    return config


def _fraction(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise _Bad(f"{name} must be a number from 0 to 1 (a fraction of a frame period), got "
                   f"{_show(value)}")
    return float(value)


def serving_settings(config: ServingConfig) -> list[ServingSettings]:
    """Every combination of the [serving] lists, in a stable order."""
    return [ServingSettings(fps=fps, streams=config.streams, max_streams=config.max_streams,
                            workers=workers, jitter=jitter, duration_s=config.duration_s,
                            policy=policy, strategy=strategy)
            for strategy in config.strategies for fps in config.fps
            for workers in config.workers for jitter in config.jitter
            for policy in config.policies]


def _sweep_mode(mode: str) -> None:
    if mode not in SWEEP_MODES:
        raise MatrixConfigError(f"unknown mode {mode!r}; known: {', '.join(SWEEP_MODES)}")


def latency_frames(config: MatrixConfig, causal: bool) -> list[int]:
    """Frames per call of a model's latency cells: 1 for causal models (they stream); for base
    models every clip length its protocols run (multi-clip L, and full-clip on fixed-length
    synthetic videos), since each is its own artifact on exported formats."""
    from bench.evaluation.protocols import parse_protocol
    from bench.jobs.deployment import fixed_frames

    video_frames = None
    if config.data.synth:
        from bench.data.synth import SynthConfig

        video_frames = config.data.synth.get("frames", SynthConfig().frames)
    lengths = {fixed_frames(causal, parse_protocol(name), video_frames=video_frames)
               for name in config.protocols}
    return sorted(lengths - {None})


def expand(config: MatrixConfig) -> list[Cell]:
    """All cells of the matrix after include/exclude rules, in a stable order.

    Per model and format: latency cells once per deployment (threads x frames per call),
    accuracy cells per threads x protocol, memory-sweep cells per sweep format x clip length
    x mode, and serving cells per serving format x threads x serving settings (causal models). Each [[artifacts]] entry is one more deployment of its model entry, with the same
    cells (memory ones when the sweep covers its format). `include` rules (if any) keep only
    matching cells; `exclude` rules drop matching cells.
    """
    cells: list[Cell] = []
    for m in config.models:
        for fmt in config.formats:
            cells += _deployment_cells(config, m, fmt)
        for fmt in config.sweep.formats:
            cells += _sweep_cells(config, m, fmt)
        for fmt in config.serving.formats or (config.formats if config.serving.fps else ()):
            cells += _serving_cells(config, m, fmt)
    for a in config.artifacts:
        extra = dict(source=a.source, source_path=a.path)
        cells += _deployment_cells(config, a.model, a.format, **extra)
        if a.format in config.sweep.formats:
            cells += _sweep_cells(config, a.model, a.format, **extra)
        if config.serving.fps and a.format in (config.serving.formats or config.formats):
            cells += _serving_cells(config, a.model, a.format, **extra)
    if config.include:
        cells = [c for c in cells if any(c.matches(r) for r in config.include)]
    cells = [c for c in cells if not any(c.matches(r) for r in config.exclude)]
    seen: dict[str, Cell] = {}
    for cell in cells:
        seen.setdefault(cell.cell_id, cell)
    return list(seen.values())


def _common(config: MatrixConfig, m: ModelEntry, **extra) -> dict:
    """The Cell fields every cell of model entry `m` shares."""
    return dict(model=m.model, variant=m.variant, checkpoint=m.checkpoint,
                resolution=m.resolution, classes=m.classes, warmup=config.warmup,
                iterations=config.iterations, **extra)


def _deployment_cells(config: MatrixConfig, m: ModelEntry, fmt: str, **extra) -> list[Cell]:
    """Latency cells (threads x frames per call) and accuracy cells (threads x protocol) of one
    deployment of `m` in `fmt`."""
    from core.zoo import get_variant

    common = _common(config, m, **extra)
    per_call = latency_frames(config, get_variant(m.variant).causal)
    cells = []
    for threads in config.threads:
        for frames in per_call:
            cells.append(Cell(LATENCY, format=fmt, threads=threads, frames_per_call=frames,
                              **common))
        for protocol in config.protocols:
            cells.append(Cell(ACCURACY, format=fmt, threads=threads, protocol=protocol, **common))
    return cells


def _sweep_cells(config: MatrixConfig, m: ModelEntry, fmt: str, **extra) -> list[Cell]:
    """The memory-sweep cells of `m` in `fmt`: clip lengths x modes."""
    common = _common(config, m, **extra)
    threads = config.sweep.threads or config.threads[0]
    return [Cell(MEMORY, format=fmt, threads=threads, clip_frames=frames, sweep_mode=mode, **common)
            for frames in config.sweep.clip_frames for mode in config.sweep.modes]


def _serving_cells(config: MatrixConfig, m: ModelEntry, fmt: str, **extra) -> list[Cell]:
    """The serving cells of `m` in `fmt` (none for a model that cannot stream)."""
    from core.zoo import get_variant

    if not get_variant(m.variant).causal:
        return []
    common = _common(config, m, **extra)
    return [Cell(SERVING, format=fmt, threads=threads, serving=settings, **common)
            for threads in config.serving.threads or config.threads
            for settings in serving_settings(config.serving)]


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
    kept = [c for c in cells if c.matches(rule)]
    if cells and not kept:
        # Most often a typo in a value (format=onxx): say which values there are.
        key = next(iter(rule))
        values = sorted({str(getattr(c, key)) for c in cells})
        raise MatrixConfigError(f"--only {expr!r} matches none of the {len(cells)} cells "
                                f"({key} values: {', '.join(values)})")
    return kept
