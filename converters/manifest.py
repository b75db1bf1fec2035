"""The state contract: names of stream-state inputs/outputs and the JSON manifest.

One manifest travels with every artifact (SavedModel, ONNX, TFLite, TensorRT engine). Runtimes
build initial states from it and check every step's inputs against it, so this module imports
only numpy: a deployment box that runs ONNX or LiteRT never needs TensorFlow.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from converters.errors import ArtifactError

IMAGE_INPUT = "image"
LOGITS_OUTPUT = "logits"
STATE_PREFIX = "state_"
# Outputs must not reuse input names: tf2onnx builds a cyclic graph otherwise
# ("graph input ... not exist" / "Graph has cycles").
NEXT_STATE_PREFIX = "next_state_"
MANIFEST_VERSION = 1


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
    """One stream state: its short name, static shape and dtype; initial value is zeros."""

    name: str
    shape: tuple[int, ...]
    dtype: str

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

    `frames_per_step` is the T the artifact accepts per call: a fixed number for formats with
    static shapes (TFLite, TensorRT, base-model clips), or None when any T >= 1 works.
    """

    model_id: str
    variant: str
    resolution: int
    num_classes: int
    states: list[StateSpec]
    frames_per_step: int | None = None
    format: str = "tensorflow"
    precision: str = "fp32"
    model_config: dict = field(default_factory=dict)
    checkpoint_sha256: str = ""
    weights_sha256: str = ""
    converter_versions: dict[str, str] = field(default_factory=dict)
    source: str = "movibench"
    version: int = MANIFEST_VERSION

    @property
    def causal(self) -> bool:
        return bool(self.states)

    @property
    def image_shape(self) -> tuple[int | None, ...]:
        return (1, self.frames_per_step, self.resolution, self.resolution, 3)

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

    def with_format(self, fmt: str, precision: str, frames_per_step: int | None,
                    converter_versions: dict[str, str]) -> StateManifest:
        """A copy describing an exported artifact of this model."""
        data = asdict(self)
        data.update(format=fmt, precision=precision, frames_per_step=frames_per_step,
                    converter_versions=dict(converter_versions))
        return StateManifest.from_dict(data)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["states"] = [
            {"name": s.name, "shape": list(s.shape), "dtype": s.dtype, "init": "zeros",
             "input": s.input_name, "output": s.output_name}
            for s in self.states
        ]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> StateManifest:
        try:
            states = [StateSpec(s["name"], tuple(int(d) for d in s["shape"]), str(s["dtype"]))
                      for s in data["states"]]
            known = set(cls.__dataclass_fields__)
            kwargs = {k: v for k, v in data.items() if k in known and k != "states"}
            return cls(states=states, **kwargs)
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"invalid state manifest: {exc!r}") from None

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
        except json.JSONDecodeError as exc:
            raise ArtifactError(f"state manifest {path} is not valid JSON: {exc}") from None
        return cls.from_dict(data)


def manifest_path_for(artifact: str | Path) -> Path:
    """Where the manifest of an artifact lives: `<artifact>.manifest.json` beside it."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".manifest.json")
