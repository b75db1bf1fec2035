"""A Triton Inference Server model repository for an ONNX stream artifact, as it was measured.

Triton's ONNX Runtime backend runs the exported file unchanged; the sequence batcher keeps
the stream states between a stream's requests (Triton's "implicit state"): every state input
of the manifest is paired with its next-state output, zero-filled when a request carries the
sequence-start flag. A client then sends only `image` per frame and reads `logits`.

The layout written:

    <repo>/<model>/config.pbtxt                 ModelConfig, printed from tritonclient's schema
    <repo>/<model>/1/model.onnx                 the artifact's file, byte for byte
    <repo>/<model>/1/model.onnx.manifest.json   its state manifest (movibench opens the copy)

Why the config looks as it does (Triton's model_configuration.md, "Implicit State
Management", and the ONNX Runtime backend's load checks):

- `max_batch_size: 0`. Every stream artifact has batch 1 fixed in its graph; with batching on,
  the backend refuses a model whose first dimension is not -1. With 0, every `dims` is the
  tensor's full shape, batch included, and each model instance has one sequence slot.
- No `control_input`. The backend counts a control tensor as a model input and refuses the
  model when the graph has no such input; the exported graphs have none. State is reset by
  `initial_state { zero_data: true }`, which the scheduler applies to every request flagged
  as a sequence start (the client's `sequence_start=True`), so a START tensor is not needed.
- States are not listed under `input`/`output`: the backend expects as many graph inputs as
  config inputs plus states, so a state listed twice would fail the count.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from core.errors import ArtifactError, MissingDependencyError, MovibenchError, first_line
from core.formats import ONNX, get_format
from core.manifest import IMAGE_INPUT, LOGITS_OUTPUT, StateManifest, manifest_path_for

DIRECT, OLDEST = "direct", "oldest"
STRATEGIES = (DIRECT, OLDEST)
VERSION = "1"
MODEL_FILE = "model.onnx"  # the ONNX Runtime backend's default_model_filename
CONFIG_FILE = "config.pbtxt"
INITIAL_STATE_NAME = "zeros"  # Triton requires a name on every initial_state
# numpy dtype name (as manifests and onnx's helper spell them) → Triton's DataType name.
TRITON_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "float64": "TYPE_FP64",
                "int8": "TYPE_INT8", "uint8": "TYPE_UINT8", "int16": "TYPE_INT16",
                "uint16": "TYPE_UINT16", "int32": "TYPE_INT32", "int64": "TYPE_INT64",
                "uint32": "TYPE_UINT32", "uint64": "TYPE_UINT64", "bool": "TYPE_BOOL"}


@dataclass(frozen=True)
class TritonOptions:
    """How Triton schedules the model's streams.

    `strategy` "direct" gives each stream a slot of its own: with `max_batch_size: 0` an
    instance has one slot, so `instances` streams run at once and more wait in Triton's
    backlog until a stream ends. "oldest" lets one instance hold `max_candidates` streams and
    run their frames in arrival order (one per call: the graph takes batch 1).
    `max_queue_delay_us` is how long the batcher may wait to fill a batch (0: never waits).
    `max_idle_us` is how long a stream may send nothing before Triton drops its state (None:
    Triton's default, 1 s).
    """

    model_name: str | None = None  # None: the artifact's file stem
    strategy: str = DIRECT
    instances: int = 1
    max_candidates: int | None = None
    max_queue_delay_us: int = 0
    max_idle_us: int | None = None

    def checked(self) -> TritonOptions:
        """These options, or a MovibenchError naming the first that cannot be right."""
        if self.strategy not in STRATEGIES:
            raise MovibenchError(f"strategy must be one of {', '.join(STRATEGIES)}, "
                                 f"got {self.strategy!r}")
        if self.max_candidates is not None and self.strategy != OLDEST:
            raise MovibenchError("max candidate sequences apply to the oldest strategy only")
        for name, value, low in (("instances", self.instances, 1),
                                 ("max candidate sequences", self.max_candidates, 1),
                                 ("max queue delay", self.max_queue_delay_us, 0),
                                 ("max idle time", self.max_idle_us, 1)):
            if value is not None and value < low:
                raise MovibenchError(f"{name} must be >= {low}, got {value}")
        if self.model_name is not None and not _valid_model_name(self.model_name):
            raise MovibenchError(f"model name {self.model_name!r} must be a plain folder name "
                                 "(no path separators, not '.' or '..')")
        return self


@dataclass(frozen=True)
class TritonRepo:
    """What `write_triton_repo` wrote: the model's folder, its config and its model file."""

    model_dir: Path
    config_path: Path
    model_path: Path
    manifest: StateManifest

    @property
    def model_name(self) -> str:
        return self.model_dir.name


def model_config_pb2():
    """tritonclient's ModelConfig schema module (the `triton` extra), or a one-line error."""
    try:
        from tritonclient.grpc import model_config_pb2 as schema
    except (ImportError, RuntimeError) as exc:  # tritonclient.grpc raises RuntimeError too
        raise MissingDependencyError(
            f"tritonclient is needed for Triton's model config schema ({first_line(exc)}): "
            "install movibench's `triton` extra") from None
    return schema


def read_stream_artifact(artifact: str | Path) -> tuple[StateManifest, dict, dict]:
    """The manifest of an ONNX stream artifact and its graph's inputs and outputs, each
    name → (numpy dtype name, dims with -1 for a symbolic dimension), checked against each
    other.

    Raises ArtifactError when the file is missing, not ONNX, has no manifest beside it, is
    not a stream model (no states), or its graph does not carry what the manifest says.
    """
    path = Path(artifact)
    if not path.is_file():
        raise ArtifactError(f"artifact not found: {path}")
    manifest_path = manifest_path_for(path)
    if not manifest_path.is_file():
        raise ArtifactError(f"no state manifest beside {path} (expected {manifest_path.name}): "
                            "give an artifact written by `movibench export --formats onnx`")
    manifest = StateManifest.load(manifest_path)
    family = get_format(manifest.format).family
    if family != ONNX or path.suffix != ".onnx":
        raise ArtifactError(f"{path} is a {manifest.format} artifact; a Triton repository here "
                            "serves ONNX artifacts on the ONNX Runtime backend "
                            "(export --formats onnx)")
    if not manifest.states:
        raise ArtifactError(f"{path} is a {manifest.variant} model without stream states; "
                            "Triton's implicit state needs a stream model (--variant stream)")
    inputs, outputs = _graph_io(path)
    for name in manifest.input_names:
        if name not in inputs:
            raise ArtifactError(f"{path}: the manifest's input {name!r} is not in the graph")
    for name in manifest.output_names:
        if name not in outputs:
            raise ArtifactError(f"{path}: the manifest's output {name!r} is not in the graph")
    extra = sorted(set(inputs) - set(manifest.input_names))
    if extra:
        raise ArtifactError(f"{path}: graph input {extra[0]!r} is not in the manifest")
    for spec in manifest.states:
        want = (spec.dtype, list(spec.shape))
        for name, found in ((spec.input_name, inputs[spec.input_name]),
                            (spec.output_name, outputs[spec.output_name])):
            if found != want:
                raise ArtifactError(f"{path}: {name} is {found[0]} {found[1]} in the graph, "
                                    f"{want[0]} {want[1]} in the manifest")
    return manifest, inputs, outputs


def triton_model_config(manifest: StateManifest, inputs: dict, outputs: dict, name: str,
                        options: TritonOptions = TritonOptions()):
    """The ModelConfig message (tritonclient's schema) serving a stream artifact whose graph
    has `inputs` and `outputs` (as read_stream_artifact returns them) under `name`."""
    schema = model_config_pb2()
    options = options.checked()
    config = schema.ModelConfig(name=name, backend="onnxruntime", max_batch_size=0)

    def data_type(dtype: str) -> int:
        if dtype not in TRITON_TYPES:
            raise ArtifactError(f"dtype {dtype} has no Triton data type")
        return schema.DataType.Value(TRITON_TYPES[dtype])

    dtype, dims = inputs[IMAGE_INPUT]
    config.input.add(name=IMAGE_INPUT, data_type=data_type(dtype), dims=dims)
    dtype, dims = outputs[LOGITS_OUTPUT]
    config.output.add(name=LOGITS_OUTPUT, data_type=data_type(dtype), dims=dims)
    batching = config.sequence_batching
    if options.max_idle_us is not None:
        batching.max_sequence_idle_microseconds = options.max_idle_us
    if options.strategy == DIRECT:
        batching.direct.max_queue_delay_microseconds = options.max_queue_delay_us
    else:
        batching.oldest.max_queue_delay_microseconds = options.max_queue_delay_us
        batching.oldest.max_candidate_sequences = options.max_candidates or 1
    for spec in manifest.states:
        kind = data_type(spec.dtype)
        state = batching.state.add(input_name=spec.input_name, output_name=spec.output_name,
                                   data_type=kind, dims=list(spec.shape))
        state.initial_state.add(data_type=kind, dims=list(spec.shape), zero_data=True,
                                name=INITIAL_STATE_NAME)
    config.instance_group.add(count=options.instances, kind=schema.ModelInstanceGroup.KIND_CPU)
    return config


def config_text(config) -> str:
    """A ModelConfig as config.pbtxt text (protobuf's text format, what Triton reads)."""
    from google.protobuf import text_format

    return text_format.MessageToString(config)


def config_header(manifest: StateManifest, artifact: Path) -> str:
    """Comment lines opening config.pbtxt: what was served, and the one setting the text
    format leaves out (a field at its default value is not printed)."""
    return (f"# movibench triton-repo: {manifest.model_id} {manifest.variant} "
            f"{manifest.resolution}px, format {manifest.format}, from {artifact.name}\n"
            f"# max_batch_size is 0 (not printed: the default): the graph's batch of 1 is "
            f"fixed, and dims are full shapes\n"
            f"# {len(manifest.states)} stream states kept by Triton, zeros at each "
            f"sequence start; send image, read logits\n")


def write_triton_repo(artifact: str | Path, repo: str | Path,
                      options: TritonOptions = TritonOptions(), *,
                      overwrite: bool = False) -> TritonRepo:
    """Write `<repo>/<model>/config.pbtxt` and `<repo>/<model>/1/model.onnx` (+ its manifest)
    for the ONNX stream artifact `artifact`.

    The model's folder is built under a hidden temporary name (removed on any failure) and
    renamed into place, so an interrupted write leaves no half-made model under its name.

    Raises ArtifactError for an artifact that is not an ONNX stream artifact with its manifest,
    MovibenchError for bad options or a model folder that exists (without `overwrite`), and
    MissingDependencyError when tritonclient is not installed.
    """
    path = Path(artifact)
    options = options.checked()
    manifest, inputs, outputs = read_stream_artifact(path)
    name = options.model_name or path.stem
    if not _valid_model_name(name):
        raise MovibenchError(f"model name {name!r} must be a plain folder name: pass one")
    text = config_header(manifest, path) + config_text(
        triton_model_config(manifest, inputs, outputs, name, options))
    repo = Path(repo)
    if repo.exists() and not repo.is_dir():
        raise MovibenchError(f"{repo} is not a folder")
    target = repo / name
    if target.exists() and not overwrite:
        raise MovibenchError(f"{target} exists: pass another model name (--name) or "
                             "overwrite it (--force)")
    staging = repo / f".{name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        version = staging / VERSION
        version.mkdir(parents=True)
        shutil.copyfile(path, version / MODEL_FILE)
        shutil.copyfile(manifest_path_for(path), manifest_path_for(version / MODEL_FILE))
        (staging / CONFIG_FILE).write_text(text)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return TritonRepo(target, target / CONFIG_FILE, target / VERSION / MODEL_FILE, manifest)


def _valid_model_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name \
        and not name.startswith(".")


def _graph_io(path: Path) -> tuple[dict, dict]:
    """The graph's inputs and outputs: name → (numpy dtype name, dims, -1 where symbolic)."""
    import onnx
    from onnx.helper import tensor_dtype_to_np_dtype

    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as exc:  # protobuf's DecodeError, onnx's own errors
        raise ArtifactError(f"cannot read ONNX model {path}: {first_line(exc)}") from None
    if any(w.data_location == onnx.TensorProto.EXTERNAL for w in graph.initializer):
        # One file is copied into the repository; external weights would be left behind.
        raise ArtifactError(f"{path} keeps its weights in external data files: save it as one "
                            "file (onnx.save with save_as_external_data=False)")

    def described(values) -> dict:
        found = {}
        for value in values:
            tensor = value.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1
                    for d in tensor.shape.dim]
            found[value.name] = (tensor_dtype_to_np_dtype(tensor.elem_type).name, dims)
        return found

    weights = {w.name for w in graph.initializer}
    # Initializers listed as inputs (older exporters do) are weights, not request inputs.
    return described(v for v in graph.input if v.name not in weights), described(graph.output)
