"""Malformed matrix configs and --only filters, generated (hypothesis): each is refused with
one line naming the problem (MatrixConfigError; exit 2 from the CLI), never a traceback.

Most examples go through the Python API (parse_config → expand → plan_cells, no process
start); a handful through `movibench matrix plan` to check the exit code and the one line.
"""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
import tomllib

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bench.evaluation.protocols import parse_protocol
from bench.matrix.config import MatrixConfigError, apply_filter, expand, load_config, parse_config
from bench.matrix.run import plan_cells, planned_data
from bench.scenarios import SWEEP_MODES
from core.errors import MovibenchError
from core.formats import FORMATS
from core.zoo import MODELS, VARIANTS

# Example counts (docs/reliability.md reports these).
API_MUTATIONS = 400
API_JUNK = 200
TOML_TEXT = 150
FILTERS = 150
CLI_EXAMPLES = 6

BASE = {
    "name": "fuzz",
    "models": [{"model": "t0", "variant": "stream", "resolution": 32, "classes": 2}],
    "axes": {"formats": ["tensorflow", "onnx"], "threads": [1, 2], "protocols": ["stream"]},
    "timing": {"warmup": 1, "iterations": 5, "cell_timeout_s": 60},
    "data": {"split": "val",
             "synth": {"classes": 2, "videos_per_class": 1, "frames": 8, "size": 32, "seed": 1}},
    "memory_sweep": {"clip_frames": [8], "formats": ["tensorflow"], "modes": ["stream"]},
}


def check_config(raw: dict) -> list:
    """Everything `matrix plan` does with a config, short of starting a process."""
    config = parse_config(raw)
    cells = expand(config)
    return plan_cells(cells, planned_data(config), set())


def assert_one_line(exc: BaseException, *tokens: str) -> None:
    message = str(exc)
    assert isinstance(exc, MovibenchError), f"{type(exc).__name__}: {message}"
    assert message and "\n" not in message, message
    for token in tokens:
        assert token in message, f"{token!r} not in {message!r}"


def test_the_base_config_is_valid():
    plans = check_config(BASE)
    assert len(plans) == len(expand(parse_config(BASE))) > 0 and not any(p.error for p in plans)


# -- values of the wrong type or out of range, slot by slot ------------------------------------

scalars = st.one_of(st.booleans(), st.integers(-10**12, 10**12), st.text(max_size=8),
                    st.floats(allow_nan=True, allow_infinity=True))
containers = st.one_of(st.lists(scalars, max_size=3),
                       st.dictionaries(st.text(max_size=5), scalars, max_size=2))
anything = st.one_of(scalars, containers)


def not_int(value) -> bool:
    return isinstance(value, bool) or not isinstance(value, int)


def wrong_int(lo: int, hi: int):
    """Anything but an integer in [lo, hi]: another type, or one just or far out of range."""
    out_of_range = st.one_of(st.integers(max_value=lo - 1), st.integers(min_value=hi + 1),
                             st.sampled_from([lo - 1, hi + 1, -1, 0, 2**63 - 1, -2**63]))
    return st.one_of(anything.filter(not_int),
                     out_of_range.filter(lambda v: not lo <= v <= hi))


def wrong_str():
    return anything.filter(lambda v: not isinstance(v, str))


def wrong_int_list(lo: int, hi: int):
    """A list holding a bad item, an empty list, or a non-list (a lone int is a list of one)."""
    bad_item = wrong_int(lo, hi).filter(lambda v: not isinstance(v, list))
    return st.one_of(st.lists(bad_item, min_size=1, max_size=3),
                     st.just([]), st.dictionaries(st.text(max_size=3), scalars, max_size=2),
                     bad_item.filter(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)))


def unknown_name(registry):
    return st.text(max_size=12).filter(lambda t: t.strip().lower() not in registry)


def bad_protocol(text: str) -> bool:
    try:
        parse_protocol(text)
    except MovibenchError:
        return True
    return False


protocol_like = st.one_of(
    st.text(max_size=16),
    st.builds(lambda k, n: f"multi-clip:{k}x{n}", st.integers(-5, 10**12), st.integers(-5, 10**12)),
    st.builds(lambda c: f"stream:C={c}", st.integers(-5, 10**12)),
    st.sampled_from(["multi-clip:4", "stream:C=", "full-clip:2crop", "multi-clip:0x8",
                     "stream:C=0", "multi-clip:4x8:3crop:3crop", "STREAM:c=x"]),
).filter(bad_protocol)

# (path into the config, the word the message must name, strategy for a bad value there)
SLOTS = [
    (("name",), "name", wrong_str()),
    (("models",), "models", st.one_of(scalars, st.dictionaries(st.text(max_size=4), scalars, max_size=2))
     .filter(lambda v: v not in ([], {}, "", 0, False) and not isinstance(v, list))),
    (("models", 0, "model"), "model", st.one_of(wrong_str(), unknown_name(MODELS))),
    (("models", 0, "variant"), "variant", st.one_of(wrong_str(), unknown_name(VARIANTS))),
    (("models", 0, "resolution"), "resolution", wrong_int(32, 4096).filter(lambda v: v is not None)),
    (("models", 0, "classes"), "classes", wrong_int(1, 100_000)),
    (("models", 0, "checkpoint"), "checkpoint", wrong_str()),
    (("axes", "formats"), "formats", st.one_of(
        st.just([]), st.lists(unknown_name({*FORMATS, "tensorflow"}), min_size=1, max_size=2),
        st.lists(wrong_str().filter(lambda v: not isinstance(v, list)), min_size=1, max_size=2))),
    (("axes", "threads"), "threads", wrong_int_list(1, 1024)),
    (("axes", "protocols"), "protocols", st.one_of(st.just([]), st.lists(protocol_like, min_size=1,
                                                                         max_size=2))),
    (("timing", "warmup"), "warmup", wrong_int(0, 10**6)),
    (("timing", "iterations"), "iterations", wrong_int(1, 10**6)),
    (("timing", "cell_timeout_s"), "cell_timeout_s", st.one_of(
        anything.filter(lambda v: isinstance(v, bool) or not isinstance(v, (int, float))),
        st.sampled_from([0, -1, 0.0, -0.5, math.nan, math.inf, -math.inf, 10**9, 1e300]))),
    (("data", "split"), "split", wrong_str()),
    (("data", "max_videos"), "max_videos", wrong_int(1, 10**7).filter(lambda v: v is not None)),
    (("data", "synth", "classes"), "classes", wrong_int(2, 2)),
    (("data", "synth", "frames"), "frames", st.one_of(anything.filter(not_int),
                                                       st.integers(-10, 5), st.integers(10**5 + 1))),
    (("data", "synth", "size"), "size", st.one_of(anything.filter(not_int), st.integers(-10, 15),
                                                   st.sampled_from([17, 33, 99]), st.integers(4097))),
    (("data", "synth", "container"), "container", st.one_of(
        wrong_str(), st.text(max_size=6).filter(lambda t: t not in ("mp4", "webm", "avi", "mkv", "mov", "m4v")))),
    (("memory_sweep", "clip_frames"), "clip_frames", wrong_int_list(1, 10**5).filter(lambda v: v != [])),
    (("memory_sweep", "modes"), "modes", st.one_of(
        st.just([]), st.lists(st.text(max_size=10).filter(lambda t: t not in SWEEP_MODES),
                              min_size=1, max_size=2))),
    (("memory_sweep", "threads"), "threads", wrong_int(1, 1024).filter(lambda v: v is not None)),
]


def put(config: dict, path: tuple, value) -> dict:
    config = copy.deepcopy(config)
    node = config
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return config


@st.composite
def bad_values(draw):
    path, token, strategy = draw(st.sampled_from(SLOTS))
    return put(BASE, path, draw(strategy)), token


@st.composite
def unknown_keys(draw):
    """A key nobody reads, at the top, in a section, in a model entry or in a rule."""
    where = draw(st.sampled_from([(), ("axes",), ("timing",), ("data",), ("memory_sweep",),
                                  ("models", 0), ("data", "synth"), ("include",)]))
    known = {(): set(BASE), ("axes",): {"formats", "threads", "protocols"},
             ("timing",): {"warmup", "iterations", "cell_timeout_s"},
             ("data",): {"path", "split", "max_videos", "synth"},
             ("memory_sweep",): {"clip_frames", "formats", "modes", "threads"},
             ("models", 0): {"model", "variant", "checkpoint", "resolution", "classes"},
             ("data", "synth"): {"classes", "videos_per_class", "frames", "size", "seed",
                                 "val_fraction", "fps", "container"},
             ("include",): {"kind", "model", "variant", "checkpoint", "resolution", "classes",
                            "format", "threads", "protocol", "clip_frames", "sweep_mode",
                            "warmup", "iterations"}}[where]
    key = draw(st.text(min_size=1, max_size=10).filter(lambda k: k not in known | {"include", "exclude"}))
    value = draw(scalars)
    if where == ("include",):
        return {**copy.deepcopy(BASE), "include": [{key: value}]}, repr(key)
    return put(BASE, (*where, key), value), repr(key)


@settings(max_examples=API_MUTATIONS, suppress_health_check=[HealthCheck.too_slow,
                                                             HealthCheck.filter_too_much])
@given(st.one_of(bad_values(), unknown_keys()))
def test_a_bad_value_or_key_is_one_line_naming_it(case):
    config, token = case
    with pytest.raises(Exception) as err:
        check_config(config)
    assert isinstance(err.value, MatrixConfigError)
    assert_one_line(err.value, token)


# -- anything at any place: a clean refusal or a plan, never a crash ---------------------------

toml_values = st.recursive(
    scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                     st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6)


def paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from paths(value, (*prefix, index))


@pytest.fixture(scope="module", autouse=True)
def empty_cwd(tmp_path_factory):
    """Relative paths the examples name (data.path = 'x') resolve in an empty folder."""
    old = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    yield
    os.chdir(old)


def walks_far(config: dict) -> bool:
    """A data path that would make the loader walk a whole filesystem ('/', '..')."""
    data = config.get("data")
    path = data.get("path") if isinstance(data, dict) else None
    return isinstance(path, str) and (path.strip().startswith(("/", "~")) or ".." in path)


@settings(max_examples=API_JUNK, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_value_anywhere_plans_or_is_refused_in_one_line(data):
    config = copy.deepcopy(BASE)
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from([p for p in paths(config) if p]))
        config = put(config, path, data.draw(toml_values))
    assume(not walks_far(config))
    try:
        plans = check_config(config)
    except Exception as exc:  # noqa: BLE001 - the property is about every exception type
        assert_one_line(exc)
    else:
        assert all(isinstance(p.error, str) and "\n" not in p.error for p in plans)


@settings(max_examples=TOML_TEXT, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200),
                 st.sampled_from(['[[models]\nmodel="t0"', 'models = [', '[axes]\nthreads = [1,,2]',
                                  "name = 'x'\nname = 'y'", "\ufeff[[models]]\nmodel = 't0'"])))
def test_a_file_that_is_not_toml_is_one_line(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("toml") / "m.toml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    try:
        check_config_file = load_config(path)
        expand(check_config_file)
    except Exception as exc:  # noqa: BLE001
        assert_one_line(exc, str(path))


# -- --only filters ---------------------------------------------------------------------------

CELLS = expand(parse_config(BASE))


@settings(max_examples=FILTERS)
@given(st.one_of(
    st.text(max_size=30),
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(["format", "threads", "protocol", "kind",
                                                       "model", "colour", ""]),
              st.text(max_size=10)),
    st.lists(st.sampled_from(["format=onnx", "threads=2", "kind=memory", "protocol=stream|x",
                              "format=onxx", "=", ",", "threads=1|2"]), min_size=1, max_size=3)
    .map(",".join)))
def test_a_filter_keeps_cells_or_is_one_line(expr):
    try:
        kept = apply_filter(CELLS, expr)
    except Exception as exc:  # noqa: BLE001
        assert_one_line(exc, "--only")
    else:
        assert kept and set(kept) <= set(CELLS)


def test_a_filter_that_matches_nothing_names_the_values_there_are():
    with pytest.raises(MatrixConfigError, match=r"matches none of the \d+ cells \(format values: "
                                                r"onnx, tensorflow\)"):
        apply_filter(CELLS, "format=onxx")


# -- through the CLI: exit code 2 and one line ------------------------------------------------

def dump_toml(config: dict) -> str:
    """Inline TOML for a generated config (every table inline, every key quoted)."""
    def value(v) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, float):
            return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
        if isinstance(v, int):
            return str(v)
        if isinstance(v, str):
            return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return "{" + ", ".join(f"{value(str(k))} = {value(x)}" for k, x in v.items()) + "}"
    return "".join(f"{value(str(k))} = {value(v)}\n" for k, v in config.items())


@settings(max_examples=CLI_EXAMPLES, suppress_health_check=[HealthCheck.too_slow,
                                                            HealthCheck.filter_too_much])
@given(bad_values())
def test_the_cli_exits_2_with_one_line(tmp_path_factory, case):
    config, token = case
    text = dump_toml(config)
    # Only values TOML can carry (64-bit integers) make a file that means the same config.
    assume(repr(tomllib.loads(text)) == repr(config))
    path = tmp_path_factory.mktemp("cli") / "bad.toml"
    path.write_text(text)
    result = subprocess.run([sys.executable, "-m", "bench", "matrix", "plan", str(path)],
                            capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and token in lines[0], lines
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args, token", [
    (["--only", "format=onxx"], "format values: onnx, tensorflow"),
    (["--only", "colour=red"], "--only: expected key=value"),
])
def test_the_cli_refuses_a_bad_filter_with_exit_2(tmp_path, args, token):
    path = tmp_path / "ok.toml"
    path.write_text(dump_toml(BASE))
    result = subprocess.run([sys.executable, "-m", "bench", "matrix", "plan", str(path), *args],
                            capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 2 and token in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
