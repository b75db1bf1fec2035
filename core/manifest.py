"""The state contract: names of stream-state inputs/outputs and the JSON manifest.

One manifest travels with every artifact (SavedModel, ONNX, TFLite, TensorRT engine). Runtimes
build initial states from it and check every step's inputs against it, so this module imports
only numpy: a deployment box that runs ONNX or LiteRT never needs TensorFlow.
"""

from __future__ import annotations

import json
import numbers
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from core.errors import ArtifactError
from core.formats import FP32, TENSORFLOW

IMAGE_INPUT = "image"
LOGITS_OUTPUT = "logits"
STATE_PREFIX = "state_"
# Outputs must not reuse input names: tf2onnx builds a cyclic graph otherwise
# ("graph input ... not exist" / "Graph has cycles").
NEXT_STATE_PREFIX = "next_state_"
MANIFEST_VERSION = 1
# How an artifact's tensors are laid out: Model Garden's ([1, T, H, W, 3] image, 5-D buffers)
# or the single-frame graph's, every tensor of rank ≤ 4 (converters.stream4d).
LAYOUT_5D = "5d"
LAYOUT_4D = "4d"
LAYOUTS = (LAYOUT_5D, LAYOUT_4D)


def state_input_name(name: str) -> str:
    """Input tensor name of state `name` (e.g. 'block1_layer0_stream_buffer')."""
    return STATE_PREFIX + name


def state_output_name(name: str) -> str:
    """Output tensor name of state `name`; differs from the input name on purpose."""
    return NEXT_STATE_PREFIX + name


def state_name_from_tensor(tensor_name: str) -> str:
    """Strip the `state_` / `next_state_` prefix from a tensor name."""
    for prefix in (NEXT_STATE_PREFIX, STATE_PREFIX):
        if tensor_name.startswith(prefix):
            return tensor_name[len(prefix):]
    raise ValueError(f"{tensor_name!r} is not a state tensor name")


@dataclass(frozen=True)
class StateSpec:
    """One stream state: its short name, static shape and dtype; initial value is zeros.

    `model_garden_shape` and `model_garden_dtype` are set on a state of a 4-D artifact whose
    shape or dtype differs from Model Garden's state of the same name: what it converts to
    (core.state_layout)."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    model_garden_shape: tuple[int, ...] | None = None
    model_garden_dtype: str | None = None

    @property
    def input_name(self) -> str:
        return state_input_name(self.name)

    @property
    def output_name(self) -> str:
        return state_output_name(self.name)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize

    def initial_value(self) -> np.ndarray:
        return np.zeros(self.shape, dtype=self.dtype)


@dataclass
class StateManifest:
    """What a runtime needs to drive an artifact without the code that made it.

    `frames_per_call` is the T the artifact accepts per call: a fixed number for formats with
    static shapes (TFLite, TensorRT, base-model clips), or None when any T >= 1 works.
    """

    model_id: str
    variant: str
    resolution: int
    num_classes: int
    states: list[StateSpec]
    frames_per_call: int | None = None
    format: str = TENSORFLOW
    precision: str = FP32
    model_config: dict = field(default_factory=dict)
    checkpoint_sha256: str = ""
    weights_sha256: str = ""
    converter_versions: dict[str, str] = field(default_factory=dict)
    source: str = "movibench"
    version: int = MANIFEST_VERSION
    # Graph optimizations applied at export (converters.optimize); empty for the plain graph.
    optimizations: list[str] = field(default_factory=list)
    layout: str = LAYOUT_5D

    @property
    def causal(self) -> bool:
        return bool(self.states)

    @property
    def image_shape(self) -> tuple[int | None, ...]:
        """The shape of the artifact's image tensor. Callers always pass [1, T, H, W, 3]; a 4-D
        artifact's session reshapes its one frame to [1, H, W, 3] (a view, no copy)."""
        if self.layout == LAYOUT_4D:
            return (1, self.resolution, self.resolution, 3)
        return (1, self.frames_per_call, self.resolution, self.resolution, 3)

    @property
    def input_names(self) -> list[str]:
        return [IMAGE_INPUT] + [s.input_name for s in self.states]

    @property
    def output_names(self) -> list[str]:
        return [LOGITS_OUTPUT] + [s.output_name for s in self.states]

    @property
    def state_bytes(self) -> int:
        return sum(s.nbytes for s in self.states)

    def state(self, name: str) -> StateSpec:
        for spec in self.states:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def init_states(self) -> dict[str, np.ndarray]:
        """Fresh states keyed by short name: zeros (frame counters are int32 zeros)."""
        return {s.name: s.initial_value() for s in self.states}

    def with_format(self, fmt: str, precision: str, frames_per_call: int | None,
                    converter_versions: dict[str, str],
                    optimizations: tuple[str, ...] = ()) -> StateManifest:
        """A copy describing an exported artifact of this model."""
        data = asdict(self)
        data.update(format=fmt, precision=precision, frames_per_call=frames_per_call,
                    converter_versions=dict(converter_versions), optimizations=list(optimizations))
        return StateManifest.from_dict(data)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["states"] = [
            {"name": s.name, "shape": list(s.shape), "dtype": s.dtype, "init": "zeros",
             "input": s.input_name, "output": s.output_name,
             **({"model_garden_shape": list(s.model_garden_shape)}
                if s.model_garden_shape is not None else {}),
             **({"model_garden_dtype": s.model_garden_dtype}
                if s.model_garden_dtype is not None else {})}
            for s in self.states
        ]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> StateManifest:
        """Build a manifest from its JSON form, checking every field's type and range.

        Raises ArtifactError naming the first field at fault (unknown keys are ignored).
        """
        try:
            return cls._checked(data)
        except _Invalid as exc:
            raise ArtifactError(f"invalid state manifest: {exc}") from None

    @classmethod
    def _checked(cls, data) -> StateManifest:
        if not isinstance(data, dict):
            raise _Invalid(f"expected a JSON object, got {type(data).__name__}")
        for key in ("model_id", "variant", "resolution", "num_classes", "states"):
            if key not in data:
                raise _Invalid(f"missing {key!r}")
        states = data["states"]
        if not isinstance(states, list):
            raise _Invalid(f"'states' must be a list, got {_short(states)}")
        specs = [_state_spec(s, i) for i, s in enumerate(states)]
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise _Invalid(f"state {next(n for n in names if names.count(n) > 1)!r} appears twice")
        kwargs = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "states"}
        # Manifests written before the field took the results' name (frames_per_call) still load.
        if "frames_per_call" not in data and "frames_per_step" in data:
            kwargs["frames_per_call"] = data["frames_per_step"]
        for key, kind in (("model_id", str), ("variant", str), ("format", str), ("precision", str),
                          ("checkpoint_sha256", str), ("weights_sha256", str), ("source", str),
                          ("model_config", dict), ("converter_versions", dict),
                          ("optimizations", list)):
            if key in kwargs and not isinstance(kwargs[key], kind):
                raise _Invalid(f"{key!r} must be a {kind.__name__}, got {_short(kwargs[key])}")
        for key in ("resolution", "num_classes"):
            _count(kwargs[key], key, MAX_DIM)
        if kwargs.get("frames_per_call") is not None:
            _count(kwargs["frames_per_call"], "frames_per_call", MAX_DIM)
        if kwargs.get("layout", LAYOUT_5D) not in LAYOUTS:
            raise _Invalid(f"'layout' must be one of {', '.join(LAYOUTS)}, "
                           f"got {_short(kwargs['layout'])}")
        if kwargs.get("layout") == LAYOUT_4D and kwargs.get("frames_per_call") != 1:
            raise _Invalid("a 4-D artifact takes one frame per call: 'frames_per_call' must be 1")
        version = kwargs.get("version", MANIFEST_VERSION)
        _count(version, "version", MAX_DIM)
        if version > MANIFEST_VERSION:
            raise _Invalid(f"version {version} is newer than this movibench reads "
                           f"({MANIFEST_VERSION}): upgrade movibench")
        return cls(states=specs, **kwargs)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> StateManifest:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ArtifactError(f"state manifest not found: {path}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ArtifactError(f"state manifest {path} is not valid JSON: {exc}") from None
        except OSError as exc:
            raise ArtifactError(f"state manifest {path} cannot be read: {exc.strerror or exc}") from None
        try:
            return cls.from_dict(data)
        except ArtifactError as exc:
            raise ArtifactError(f"{exc} ({path})") from None


def manifest_from_signature(path: str | Path, inputs, outputs, *, fmt: str, precision: str,
                            source: str) -> StateManifest:
    """A manifest read off an artifact's declared inputs and outputs, for a file that came
    without one (a runtime reads them: LiteRT's signature, the ONNX graph).

    `inputs` and `outputs` are objects with `name`, `shape` (None for a symbolic dim) and
    `dtype` (runtimes.base.TensorInfo). Infers resolution and frames per call from `image`
    [1, T, H, W, 3], the class count from `logits` [1, C] and the states from the `state_*`
    inputs; the model id is the file's stem. The caller checks that every state has an output
    carrying its next value (the naming conventions differ between file kinds).

    Raises ArtifactError when the I/O does not follow the state contract.
    """
    path = Path(path)
    inputs = {t.name: t for t in inputs}
    outputs = {t.name: t for t in outputs}
    image = inputs.get(IMAGE_INPUT)
    logits = outputs.get(LOGITS_OUTPUT)
    if image is None or logits is None:
        missing = f"input {IMAGE_INPUT!r}" if image is None else f"output {LOGITS_OUTPUT!r}"
        raise ArtifactError(f"{path} has no {missing}: not a MoViNet signature "
                            f"(inputs {sorted(inputs)}, outputs {sorted(outputs)})")
    shape = tuple(image.shape)
    if len(shape) != 5 or shape[2] != shape[3] or shape[2] is None or shape[4] != 3:
        raise ArtifactError(f"{path}: input {IMAGE_INPUT!r} has shape {list(shape)}, "
                            "expected [1, T, H, H, 3]")
    if len(logits.shape) != 2 or logits.shape[1] is None:
        raise ArtifactError(f"{path}: output {LOGITS_OUTPUT!r} has shape {list(logits.shape)}, "
                            "expected [1, classes]")
    extra = sorted(n for n in inputs if n != IMAGE_INPUT and not n.startswith(STATE_PREFIX))
    if extra:
        raise ArtifactError(f"{path}: input {extra[0]!r} is neither {IMAGE_INPUT!r} nor a state")
    states = [StateSpec(state_name_from_tensor(n), tuple(inputs[n].shape), inputs[n].dtype)
              for n in sorted(inputs) if n.startswith(STATE_PREFIX)]
    if any(None in s.shape for s in states):
        raise ArtifactError(f"{path}: state shapes must be static to build initial states")
    return StateManifest(
        model_id=path.stem, variant="stream" if states else "base", resolution=int(shape[2]),
        num_classes=int(logits.shape[1]), states=states, frames_per_call=shape[1],
        format=fmt, precision=precision, source=source)


# What a state may be: the dtypes exporters write, and sizes a runtime can allocate.
STATE_DTYPES = ("float32", "float16", "float64", "int8", "uint8", "int16", "int32", "int64", "bool")
MAX_DIM = 2**31 - 1
MAX_STATE_ELEMENTS = 2**31


class _Invalid(ValueError):
    """One field of a manifest that cannot be right (from_dict adds the prefix)."""


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _count(value, name: str, hi: int, lo: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not lo <= value <= hi:
        raise _Invalid(f"{name!r} must be an integer in {lo}..{hi}, got {_short(value)}")
    return int(value)


def _state_spec(data, index: int) -> StateSpec:
    if not isinstance(data, dict):
        raise _Invalid(f"state #{index + 1} must be an object, got {_short(data)}")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise _Invalid(f"state #{index + 1} has no name (got {_short(name)})")
    shape = data.get("shape")
    if not isinstance(shape, (list, tuple)):
        raise _Invalid(f"state {name!r}: shape must be a list, got {_short(shape)}")
    dims = tuple(_count(d, f"state {name!r} shape", MAX_DIM, lo=0) for d in shape)
    if int(np.prod(dims, dtype=object)) > MAX_STATE_ELEMENTS:
        raise _Invalid(f"state {name!r}: shape {list(dims)} is too large to allocate")
    dtype = data.get("dtype")
    if dtype not in STATE_DTYPES:
        raise _Invalid(f"state {name!r}: dtype must be one of {', '.join(STATE_DTYPES)}, "
                       f"got {_short(dtype)}")
    source = data.get("model_garden_shape")
    if source is not None:
        if not isinstance(source, (list, tuple)):
            raise _Invalid(f"state {name!r}: model_garden_shape must be a list, got {_short(source)}")
        source = tuple(_count(d, f"state {name!r} model_garden_shape", MAX_DIM, lo=0)
                       for d in source)
        if int(np.prod(source, dtype=object)) != int(np.prod(dims, dtype=object)):
            raise _Invalid(f"state {name!r}: model_garden_shape {list(source)} does not hold "
                           f"the {int(np.prod(dims, dtype=object))} elements of {list(dims)}")
    source_dtype = data.get("model_garden_dtype")
    if source_dtype is not None and source_dtype not in STATE_DTYPES:
        raise _Invalid(f"state {name!r}: model_garden_dtype must be one of "
                       f"{', '.join(STATE_DTYPES)}, got {_short(source_dtype)}")
    return StateSpec(name, dims, dtype, source, source_dtype)


def manifest_path_for(artifact: str | Path) -> Path:
    """Where the manifest of an artifact lives: `<artifact>.manifest.json` beside it."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".manifest.json")
