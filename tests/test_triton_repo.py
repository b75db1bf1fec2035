"""`movibench triton-repo`: the Triton model repository of the T0 stream ONNX artifact.

The config is read back under Triton's own schema (tritonclient's ModelConfig), checked against
the artifact's manifest and its graph, and then driven the way Triton's sequence batcher drives
it (zeros from `initial_state` at the start, each `output_name` fed back as its `input_name`)
to show that the pairing carries a stream: the logits equal the project's own session's.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys

import numpy as np
import pytest

pytest.importorskip("tritonclient.grpc.model_config_pb2",
                    reason="tritonclient (the `triton` extra, in requirements.lock) is not "
                           "installed: scripts/setup.sh installs it")

from google.protobuf import text_format  # noqa: E402
from tritonclient.grpc import model_config_pb2  # noqa: E402

from bench.cli.app import main  # noqa: E402
from converters.triton_repo import (  # noqa: E402
    CONFIG_FILE, MODEL_FILE, TRITON_TYPES, TritonOptions, write_triton_repo,
)
from core.errors import ArtifactError, MovibenchError  # noqa: E402
from core.manifest import IMAGE_INPUT, LOGITS_OUTPUT, StateManifest, manifest_path_for  # noqa: E402

DataType = model_config_pb2.DataType


def parsed(path) -> model_config_pb2.ModelConfig:
    """config.pbtxt parsed under Triton's schema: an unknown field or a bad value fails here."""
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def graph_io(path) -> tuple[dict, dict]:
    """The ONNX file's inputs and outputs: name → (Triton data type name, dims)."""
    import onnx
    from onnx.helper import tensor_dtype_to_np_dtype

    graph = onnx.load(str(path)).graph

    def described(values):
        return {v.name: (TRITON_TYPES[tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name],
                         [d.dim_value if d.dim_value > 0 else -1
                          for d in v.type.tensor_type.shape.dim])
                for v in values}

    return described(graph.input), described(graph.output)


@pytest.fixture(scope="module")
def repo(t0_stream_onnx, tmp_path_factory):
    return write_triton_repo(t0_stream_onnx.path, tmp_path_factory.mktemp("triton") / "models",
                             TritonOptions(model_name="t0_stream"))


def test_the_config_parses_under_tritons_schema_and_keeps_every_state(repo, t0_stream_onnx):
    config = parsed(repo.config_path)
    manifest = t0_stream_onnx.manifest
    assert config.name == "t0_stream" == repo.model_dir.name
    assert config.backend == "onnxruntime"
    # The graph's batch of 1 is fixed: batching off, every dims the full shape.
    assert config.max_batch_size == 0
    assert [i.name for i in config.input] == [IMAGE_INPUT]
    assert list(config.input[0].dims) == [1, 1, 64, 64, 3]
    assert [o.name for o in config.output] == [LOGITS_OUTPUT]
    assert list(config.output[0].dims) == [1, manifest.num_classes]
    batching = config.sequence_batching
    assert config.WhichOneof("scheduling_choice") == "sequence_batching"
    assert batching.WhichOneof("strategy_choice") == "direct"
    # The graph has no control tensors; the backend would refuse a config naming one.
    assert list(batching.control_input) == []
    states = {s.input_name: s for s in batching.state}
    assert len(states) == len(batching.state) == len(manifest.states)
    for spec in manifest.states:
        state = states[spec.input_name]
        assert state.output_name == spec.output_name
        assert state.data_type == DataType.Value(TRITON_TYPES[spec.dtype])
        assert list(state.dims) == list(spec.shape)
        (initial,) = state.initial_state
        assert initial.zero_data and initial.name
        assert initial.WhichOneof("state_data") == "zero_data"
        assert initial.data_type == state.data_type and list(initial.dims) == list(spec.shape)
    assert {DataType.Name(s.data_type) for s in batching.state} == {"TYPE_FP32", "TYPE_INT32"}
    (group,) = config.instance_group
    assert group.kind == model_config_pb2.ModelInstanceGroup.KIND_CPU and group.count == 1


def test_the_model_file_is_the_artifact_and_its_io_is_what_the_config_names(repo,
                                                                            t0_stream_onnx):
    assert repo.model_path == repo.model_dir / "1" / MODEL_FILE
    assert hashlib.sha256(repo.model_path.read_bytes()).digest() == \
        hashlib.sha256(t0_stream_onnx.path.read_bytes()).digest()
    copied = StateManifest.load(manifest_path_for(repo.model_path))
    assert copied.to_dict() == t0_stream_onnx.manifest.to_dict()
    config = parsed(repo.config_path)
    inputs, outputs = graph_io(repo.model_path)
    # The backend's load check: graph inputs are exactly the config's inputs and states.
    assert set(inputs) == {i.name for i in config.input} | \
        {s.input_name for s in config.sequence_batching.state}
    assert {o.name for o in config.output} | \
        {s.output_name for s in config.sequence_batching.state} <= set(outputs)
    for io, found in [*((i, inputs[i.name]) for i in config.input),
                      *((o, outputs[o.name]) for o in config.output)]:
        assert (DataType.Name(io.data_type), list(io.dims)) == found, io.name
    for state in config.sequence_batching.state:
        want = (DataType.Name(state.data_type), list(state.dims))
        assert inputs[state.input_name] == want == outputs[state.output_name]


def test_driven_as_the_sequence_batcher_drives_it_the_stream_matches_the_session(
        repo, t0_stream_onnx):
    import onnxruntime as ort

    from runtimes.loader import open_session

    config = parsed(repo.config_path)
    frames = np.random.default_rng(3).random((6, 1, 1, 64, 64, 3), dtype=np.float32)

    def zeros() -> dict[str, np.ndarray]:
        # What the scheduler puts in at a request flagged sequence start.
        dtypes = {"TYPE_FP32": np.float32, "TYPE_INT32": np.int32}
        return {s.input_name: np.zeros(list(s.initial_state[0].dims),
                                       dtypes[DataType.Name(s.data_type)])
                for s in config.sequence_batching.state}

    served = ort.InferenceSession(str(repo.model_path), providers=["CPUExecutionProvider"])
    names = [LOGITS_OUTPUT] + [s.output_name for s in config.sequence_batching.state]
    pairs = {s.output_name: s.input_name for s in config.sequence_batching.state}
    session = open_session(t0_stream_onnx.path, threads=1)
    for _ in range(2):  # a second sequence starts from zeros again
        held, states = zeros(), session.init_states()
        for frame in frames:
            values = dict(zip(names, served.run(names, {IMAGE_INPUT: frame, **held})))
            held = {pairs[name]: value for name, value in values.items() if name in pairs}
            logits, states = session.step(frame, states)
            assert np.abs(values[LOGITS_OUTPUT] - np.asarray(logits)).max() <= 1e-5
    session.close()


def test_oldest_strategy_and_scheduling_options(t0_stream_onnx, tmp_path):
    repo = write_triton_repo(t0_stream_onnx.path, tmp_path, TritonOptions(
        strategy="oldest", max_candidates=4, max_queue_delay_us=500, instances=2,
        max_idle_us=30_000_000))
    config = parsed(repo.config_path)
    assert repo.model_dir.name == t0_stream_onnx.path.stem
    batching = config.sequence_batching
    assert batching.WhichOneof("strategy_choice") == "oldest"
    assert batching.oldest.max_candidate_sequences == 4
    assert batching.oldest.max_queue_delay_microseconds == 500
    # Preferred batch sizes must not exceed max_batch_size (0): none are set.
    assert list(batching.oldest.preferred_batch_size) == []
    assert batching.max_sequence_idle_microseconds == 30_000_000
    assert config.instance_group[0].count == 2
    with pytest.raises(MovibenchError, match="exists"):
        write_triton_repo(t0_stream_onnx.path, tmp_path)
    again = write_triton_repo(t0_stream_onnx.path, tmp_path, overwrite=True)
    assert parsed(again.config_path).sequence_batching.WhichOneof("strategy_choice") == "direct"
    assert sorted(p.name for p in tmp_path.iterdir()) == [t0_stream_onnx.path.stem]
    with pytest.raises(MovibenchError, match="oldest strategy only"):
        TritonOptions(max_candidates=2).checked()


def run_main(argv: list[str], capsys) -> tuple[int, list[str]]:
    """Exit code and output lines of `movibench ARGV`, run in this process."""
    old = sys.argv
    sys.argv = ["movibench", *argv]
    try:
        with pytest.raises(SystemExit) as exited:
            main()
    finally:
        sys.argv = old
    captured = capsys.readouterr()
    return exited.value.code, [line for line in (captured.out + captured.err).splitlines()
                               if line.strip()]


def with_manifest(t0_stream_onnx, folder, **changes):
    """A copy of the artifact beside a manifest with `changes` made to it (None: none)."""
    folder.mkdir()
    target = folder / t0_stream_onnx.path.name
    shutil.copyfile(t0_stream_onnx.path, target)
    if changes.pop("manifest", True):
        data = {**t0_stream_onnx.manifest.to_dict(), **changes}
        manifest_path_for(target).write_text(json.dumps(data))
    return target


@pytest.mark.parametrize(("case", "message"), [
    ("missing", "artifact not found"),
    ("no manifest", "no state manifest beside"),
    ("base model", "without stream states"),
    ("tflite artifact", "serves ONNX artifacts"),
    ("not onnx", "cannot read ONNX model"),
    ("state renamed", "is not in the graph"),
    ("bad strategy", "strategy must be one of direct, oldest"),
])
def test_bad_input_is_one_error_line_and_exit_2(case, message, t0_stream_onnx, tmp_path, capsys):
    folder = tmp_path / "in"
    states = t0_stream_onnx.manifest.to_dict()["states"]
    artifact, extra = {
        "missing": lambda: (tmp_path / "absent.onnx", []),
        "no manifest": lambda: (with_manifest(t0_stream_onnx, folder, manifest=False), []),
        "base model": lambda: (with_manifest(t0_stream_onnx, folder, variant="base",
                                             states=[]), []),
        "tflite artifact": lambda: (with_manifest(t0_stream_onnx, folder,
                                                  format="tflite-fp32"), []),
        "not onnx": lambda: (with_manifest(t0_stream_onnx, folder), []),
        "state renamed": lambda: (with_manifest(t0_stream_onnx, folder, states=[
            {**states[0], "name": "renamed"}, *states[1:]]), []),
        "bad strategy": lambda: (t0_stream_onnx.path, ["--strategy", "newest"]),
    }[case]()
    if case == "not onnx":
        artifact.write_bytes(b"\x00not a model")
    code, lines = run_main(["triton-repo", str(artifact), "--out", str(tmp_path / "repo"),
                            *extra], capsys)
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], lines
    assert not (tmp_path / "repo").exists() or not any((tmp_path / "repo").iterdir())
    if case in ("missing", "no manifest", "base model", "not onnx"):
        with pytest.raises(ArtifactError, match=message):
            write_triton_repo(artifact, tmp_path / "repo")


def test_the_verb_writes_the_repository_and_says_where(t0_stream_onnx, tmp_path, capsys):
    code, lines = run_main(["triton-repo", str(t0_stream_onnx.path), "--out", str(tmp_path),
                            "--name", "t0", "--json"], capsys)
    assert code == 0, lines
    data = json.loads("\n".join(lines))
    assert data["model_name"] == "t0" and data["states"] == len(t0_stream_onnx.manifest.states)
    assert parsed(tmp_path / "t0" / CONFIG_FILE).name == "t0"
