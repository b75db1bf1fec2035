"""Damaged artifacts, tampered manifests and wrong states, generated (hypothesis): loading and
stepping either works or raises one MovibenchError line — never an engine's own exception
type (which a caller such as `evaluate` would not catch) and never a multi-line message.

Real t0 artifacts (ONNX Runtime and LiteRT) are damaged in copies; each example loads one.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from core.errors import MovibenchError, StateError
from core.manifest import STATE_DTYPES, StateManifest, manifest_path_for
from runtimes.loader import open_session

# Example counts (docs/reliability.md reports these).
DAMAGED_FILES = {"onnx": 40, "tflite": 60}
MANIFESTS = {"onnx": 40, "tflite": 40}
WRONG_STATES = 150


@pytest.fixture(scope="module")
def artifacts(t0_stream_onnx, t0_stream_tflite):
    return {"onnx": t0_stream_onnx, "tflite": t0_stream_tflite}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("damaged")


def load_and_step(path) -> None:
    """What a cell does with an artifact: open it, then one step from fresh states."""
    with open_session(path) as session:
        m = session.manifest
        frames = np.zeros((1, m.frames_per_call or 1, m.resolution, m.resolution, 3), np.float32)
        if m.causal:
            session.step(frames, session.init_states())
        else:
            session.predict(frames)


def assert_clean(exc: BaseException) -> None:
    assert isinstance(exc, MovibenchError), f"{type(exc).__name__}: {exc}"
    assert str(exc) and "\n" not in str(exc), repr(str(exc))


def outcome(path) -> str:
    try:
        load_and_step(path)
    except Exception as exc:  # noqa: BLE001 - any other type fails the property
        assert_clean(exc)
        return "refused"
    return "ran"


@st.composite
def damage(draw, size: int):
    """A truncation, bit flips (in the header or anywhere), a zeroed block, or garbage."""
    kind = draw(st.sampled_from(["truncate", "flip-head", "flip-any", "zero-block", "garbage",
                                 "empty"]))
    if kind == "truncate":
        return kind, draw(st.integers(0, size - 1))
    if kind in ("flip-head", "flip-any"):
        limit = min(size, 8192) if kind == "flip-head" else size
        return kind, draw(st.lists(st.tuples(st.integers(0, limit - 1), st.integers(0, 7)),
                                   min_size=1, max_size=16))
    if kind == "zero-block":
        return kind, (draw(st.integers(0, size - 1)), draw(st.integers(1, 65536)))
    if kind == "garbage":
        return kind, draw(st.binary(min_size=1, max_size=4096))
    return kind, None


def damaged(data: bytes, how) -> bytes:
    kind, arg = how
    if kind == "truncate":
        return data[:arg]
    if kind.startswith("flip"):
        out = bytearray(data)
        for index, bit in arg:
            out[index] ^= 1 << bit
        return bytes(out)
    if kind == "zero-block":
        start, length = arg
        return data[:start] + bytes(len(data[start:start + length])) + data[start + length:]
    return arg if kind == "garbage" else b""


def _damaged_file_case(fmt: str, artifacts, workdir, data):
    source = artifacts[fmt]
    original = source.path.read_bytes()
    how = data.draw(damage(len(original)))
    target = workdir / f"damaged{source.path.suffix}"
    target.write_bytes(damaged(original, how))
    shutil.copy(source.manifest_path, manifest_path_for(target))
    result = outcome(target)
    # Cutting or replacing the file can never leave a model that loads.
    if how[0] in ("truncate", "garbage", "empty"):
        assert result == "refused", how[0]


@settings(max_examples=DAMAGED_FILES["onnx"], suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_damaged_onnx_file_is_refused_in_one_line_or_runs(artifacts, workdir, data):
    _damaged_file_case("onnx", artifacts, workdir, data)


@settings(max_examples=DAMAGED_FILES["tflite"], suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_damaged_tflite_file_is_refused_in_one_line_or_runs(artifacts, workdir, data):
    _damaged_file_case("tflite", artifacts, workdir, data)


# -- tampered manifests ----------------------------------------------------------------------

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40),
                         st.floats(allow_nan=False), st.text(max_size=8))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=5)


@st.composite
def tampered(draw, manifest: dict):
    """One to three edits of a real manifest: a field dropped or retyped, a state renamed,
    reshaped, retyped, dropped or duplicated, or the JSON text cut short."""
    data = json.loads(json.dumps(manifest))
    edits = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["drop-key", "set-key", "state-name", "state-shape",
                                     "state-dtype", "drop-state", "dup-state", "state-junk",
                                     "format", "numbers"]))
        states = data.get("states") if isinstance(data.get("states"), list) else []
        index = draw(st.integers(0, max(len(states) - 1, 0)))
        has_state = bool(states) and isinstance(states[index], dict)
        if kind == "drop-key" and data:
            data.pop(draw(st.sampled_from(sorted(data))))
        elif kind == "set-key":
            data[draw(st.sampled_from(sorted(manifest)))] = draw(json_values)
        elif kind == "state-name" and has_state:
            states[index]["name"] = draw(st.one_of(st.text(max_size=12), json_values))
        elif kind == "state-shape" and has_state:
            states[index]["shape"] = draw(st.one_of(
                st.lists(st.integers(-3, 2**33), max_size=6), json_values))
        elif kind == "state-dtype" and has_state:
            states[index]["dtype"] = draw(st.one_of(st.sampled_from(STATE_DTYPES + ("f4", "str")),
                                                    json_values))
        elif kind == "drop-state" and states:
            states.pop(index)
        elif kind == "dup-state" and states:
            states.append(states[index])
        elif kind == "state-junk" and states:
            states[index] = draw(json_values)
        elif kind == "format":
            data["format"] = draw(st.one_of(st.sampled_from(
                ["onnx", "tflite-fp32", "tflite-int8", "trt-fp16", "tensorflow", "ONNX"]),
                st.text(max_size=8)))
        elif kind == "numbers":
            data[draw(st.sampled_from(["resolution", "num_classes", "frames_per_call", "version"]))] = \
                draw(st.one_of(st.integers(-5, 2**40), json_values))
        edits.append(kind)
    text = json.dumps(data)
    if draw(st.booleans()) and draw(st.integers(0, 9)) == 0:
        text = text[:draw(st.integers(0, len(text) - 1))]
        edits.append("cut")
    return text, edits


def _manifest_case(fmt: str, artifacts, workdir, data):
    source = artifacts[fmt]
    target = workdir / f"tampered{source.path.suffix}"
    if not target.exists():
        shutil.copy(source.path, target)
    original = json.loads(source.manifest_path.read_text())
    text, edits = data.draw(tampered(original))
    manifest_path_for(target).write_text(text)
    result = outcome(target)
    if "cut" in edits:
        assert result == "refused"


@settings(max_examples=MANIFESTS["onnx"], suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_tampered_onnx_manifest_is_refused_in_one_line_or_runs(artifacts, workdir, data):
    _manifest_case("onnx", artifacts, workdir, data)


@settings(max_examples=MANIFESTS["tflite"], suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_tampered_tflite_manifest_is_refused_in_one_line_or_runs(artifacts, workdir, data):
    _manifest_case("tflite", artifacts, workdir, data)


def test_manifest_fields_are_named_when_wrong(artifacts):
    good = json.loads(artifacts["onnx"].manifest_path.read_text())
    cases = {
        "'resolution' must be an integer": {**good, "resolution": "64"},
        "'num_classes' must be an integer": {**good, "num_classes": True},
        "dtype must be one of": {**good, "states": [{**good["states"][0], "dtype": "float8"}]},
        "shape must be a list": {**good, "states": [{**good["states"][0], "shape": 3}]},
        "appears twice": {**good, "states": good["states"] + good["states"][:1]},
        "too large to allocate": {**good, "states": [{**good["states"][0],
                                                      "shape": [2**20, 2**20, 4]}]},
        "newer than this movibench": {**good, "version": 99},
        "missing 'states'": {k: v for k, v in good.items() if k != "states"},
    }
    for message, data in cases.items():
        with pytest.raises(MovibenchError, match=message):
            StateManifest.from_dict(data)


# -- wrong states and frames -----------------------------------------------------------------

@pytest.fixture(scope="module")
def sessions(artifacts):
    opened = {fmt: open_session(a.path) for fmt, a in artifacts.items()}
    yield opened
    for session in opened.values():
        session.close()


array_dtypes = st.sampled_from(["float32", "float16", "float64", "int32", "int64", "int8",
                                "uint8", "bool", "complex64"])


@st.composite
def wrong_states(draw, manifest: StateManifest):
    """One thing wrong with a full set of states; returns (states, the name it must name)."""
    states = dict(manifest.init_states())
    spec = draw(st.sampled_from(manifest.states))
    kind = draw(st.sampled_from(["missing", "extra", "shape", "dtype", "not-array"]))
    if kind == "missing":
        for name in draw(st.sets(st.sampled_from(sorted(states)), min_size=1, max_size=5)):
            del states[name]
        return states, "missing state"
    if kind == "extra":
        name = draw(st.text(max_size=20).filter(lambda n: n not in states))
        states[name] = np.zeros(draw(st.lists(st.integers(0, 4), max_size=4)), np.float32)
        return states, f"unexpected state {name!r}"
    if kind == "shape":
        shape = tuple(draw(st.lists(st.integers(0, 9), max_size=6)))
        assume(shape != spec.shape)
        states[spec.name] = np.zeros(shape, spec.dtype)
        return states, f"state {spec.name!r} has shape"
    if kind == "dtype":
        dtype = draw(array_dtypes)
        assume(np.dtype(dtype) != np.dtype(spec.dtype))
        states[spec.name] = np.zeros(spec.shape, dtype)
        return states, f"state {spec.name!r} has dtype"
    states[spec.name] = draw(st.one_of(st.none(), st.integers(), st.text(max_size=4),
                                       st.lists(st.floats(), max_size=3)))
    return states, f"state {spec.name!r} must be an array"


@settings(max_examples=WRONG_STATES, suppress_health_check=[HealthCheck.too_slow])
@given(fmt=st.sampled_from(["onnx", "tflite"]), data=st.data())
def test_wrong_states_are_one_line_naming_the_state(sessions, fmt, data):
    session = sessions[fmt]
    states, named = data.draw(wrong_states(session.manifest))
    r = session.manifest.resolution
    with pytest.raises(StateError) as err:
        session.step(np.zeros((1, 1, r, r, 3), np.float32), states)
    assert_clean(err.value)
    assert named in str(err.value)


@settings(max_examples=WRONG_STATES // 3, suppress_health_check=[HealthCheck.too_slow])
@given(fmt=st.sampled_from(["onnx", "tflite"]),
       shape=st.lists(st.integers(0, 80), min_size=0, max_size=6), dtype=array_dtypes)
def test_wrong_frames_are_one_line(sessions, fmt, shape, dtype):
    session = sessions[fmt]
    r = session.manifest.resolution
    assume(not (tuple(shape) == (1, 1, r, r, 3) and dtype == "float32"))
    # A broadcast view: any shape without allocating it.
    frames = np.broadcast_to(np.zeros((), dtype), tuple(shape))
    with pytest.raises(StateError) as err:
        session.step(frames, session.init_states())
    assert_clean(err.value)


# -- through the CLI: exit code 2 and one line ------------------------------------------------

@pytest.fixture(scope="module")
def five_videos(tmp_path_factory):
    """One short video per class of the t0 artifacts' five classes."""
    from bench.data.video import write_video

    root = tmp_path_factory.mktemp("five")
    clip = np.random.default_rng(0).random((4, 64, 64, 3)).astype(np.float32)
    for i in range(5):
        write_video(root / f"class{i}" / "v.mp4", clip)
    return root


def _truncated(artifact, target):
    data = artifact.path.read_bytes()
    target.write_bytes(data[: len(data) // 3])
    shutil.copy(artifact.manifest_path, manifest_path_for(target))


def _garbage(artifact, target):
    target.write_bytes(b"\x00garbage" * 999)
    shutil.copy(artifact.manifest_path, manifest_path_for(target))


def _bad_dtype(artifact, target):
    shutil.copy(artifact.path, target)
    data = json.loads(artifact.manifest_path.read_text())
    data["states"][0]["dtype"] = "float8"
    manifest_path_for(target).write_text(json.dumps(data))


@pytest.mark.parametrize("fmt, make, words", [
    ("onnx", _truncated, "cannot load ONNX model"),
    ("tflite", _garbage, "not a valid Flatbuffer"),
    ("onnx", _bad_dtype, "dtype must be one of"),
])
def test_the_cli_refuses_a_broken_artifact_with_exit_2(artifacts, five_videos, tmp_path, fmt,
                                                       make, words):
    import os
    import subprocess
    import sys

    target = tmp_path / f"broken{artifacts[fmt].path.suffix}"
    make(artifacts[fmt], target)
    result = subprocess.run([sys.executable, "-m", "bench", "eval", "--artifact", str(target),
                             "--data", str(five_videos), "--protocol", "stream"],
                            capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 2, result.stderr[-1000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], lines
    assert target.name in lines[0] and not result.stdout.strip()
