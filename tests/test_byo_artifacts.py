"""Bring-your-own artifacts ([[artifacts]]): a .tflite/.onnx made elsewhere, or Model Garden's
own TFLite recipe built during the run, benchmarked and evaluated beside movibench's exports.

The files "made elsewhere" are movibench's session exports of t0 stream at 64² (conftest),
copied without their manifests: the run must read everything off the files themselves. The
recipe's build takes minutes even for t0, so its run is under `-m heavy`.
"""

from __future__ import annotations

import json
import os
import shutil
import tomllib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.launchers.executor import Executor
from bench.matrix.config import MatrixConfigError, expand, load_config, parse_config
from bench.matrix.run import plan_cells, prepare_data, run_matrix
from core.errors import ArtifactError, MovibenchError
from converters.foreign import ForeignRequest, check_declared, expected_states
from core.manifest import manifest_path_for
from core.zoo import ModelConfig

MODEL = """
[[models]]
model = "t0"
variant = "stream"
resolution = 64
classes = 5
"""


def _config(tmp_path: Path, body: str, name: str = "byo.toml"):
    path = tmp_path / name
    path.write_text('name = "byo"\n' + MODEL + body)
    return load_config(path)


@pytest.fixture
def files(tmp_path):
    """Empty files with the suffixes [[artifacts]] take (parsing only looks at the path)."""
    folder = tmp_path / "files"
    folder.mkdir()
    for name in ("mine.tflite", "mine.onnx", "model.pb"):
        (folder / name).write_bytes(b"")
    return folder


def test_artifact_tables_expand_beside_the_models_own_cells(tmp_path, files):
    body = """
[axes]
formats = ["tensorflow", "tflite-fp32"]
threads = [1, 2]
protocols = ["stream", "full-clip"]

[memory_sweep]
clip_frames = [8]
formats = ["tflite-fp32"]
modes = ["stream"]

[[artifacts]]
name = "mg"
model = "t0"
recipe = "model-garden-tflite"

[[artifacts]]
name = "lite"
model = "t0"
path = "files/mine.tflite"

[[artifacts]]
name = "ort"
model = "t0"
path = "files/mine.onnx"

[[exclude]]
source = "file:ort"
protocol = "full-clip"
"""
    config = _config(tmp_path, body)
    own = expand(_config(tmp_path, body.split("[[artifacts]]")[0], "own.toml"))
    cells = expand(config)
    assert len({c.cell_id for c in cells}) == len(cells)
    # movibench's own cells are the same cells, with the same ids, as without [[artifacts]].
    assert [c.cell_id for c in cells if not c.source] == [c.cell_id for c in own]
    by_source = {s: [c for c in cells if c.source == s] for s in {c.source for c in cells}}
    assert set(by_source) == {"", "model-garden-tflite:mg", "file:lite", "file:ort"}
    recipe = by_source["model-garden-tflite:mg"]
    # Per deployment: 2 threads x (latency + 2 protocols), and the sweep covers tflite-fp32.
    assert len(recipe) == 6 + 1 and {c.format for c in recipe} == {"tflite-fp32"}
    assert {c.kind for c in recipe} == {"latency", "accuracy", "memory"}
    assert len(by_source["file:lite"]) == 7
    # The ONNX file: no memory cells (not in the sweep's formats), full-clip excluded by source.
    assert {(c.kind, c.protocol) for c in by_source["file:ort"]} == {("latency", ""),
                                                                     ("accuracy", "stream")}
    assert by_source["file:ort"][0].format == "onnx"
    assert by_source["file:lite"][0].source_path == str((files / "mine.tflite").resolve())
    # Labels name the source, so the recipe's row is told apart from movibench's tflite-fp32.
    labels = {c.label for c in cells if c.kind == "latency" and c.threads == 1}
    assert {"t0/stream tflite-fp32 t1 latency@1f",
            "t0/stream tflite-fp32 [model-garden-tflite:mg] t1 latency@1f",
            "t0/stream onnx [file:ort] t1 latency@1f"} <= labels
    # Where the file lies is not the cell's identity (a moved run still resumes); its name is.
    moved = by_source["file:lite"][0]
    assert replace(moved, source_path="/elsewhere/x.tflite").cell_id == moved.cell_id
    assert replace(moved, source="file:other").cell_id != moved.cell_id


def test_matrix_plan_names_each_cells_source(tmp_path, monkeypatch, capsys):
    from bench.cli.app import main

    _config(tmp_path, """
[axes]
formats = ["tflite-fp32"]
threads = [1]
protocols = ["stream"]

[[artifacts]]
name = "mg"
model = "t0"
recipe = "model-garden-tflite"
""")
    monkeypatch.setattr("sys.argv", ["movibench", "matrix", "plan", str(tmp_path / "byo.toml"),
                                      "--json"])
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code == 0
    plans = json.loads(capsys.readouterr().out)
    assert sorted((p["kind"], p["artifact_source"]) for p in plans) == [
        ("accuracy", "model-garden-tflite:mg"), ("accuracy", "movibench"),
        ("latency", "model-garden-tflite:mg"), ("latency", "movibench")]


@pytest.mark.parametrize("table, message", [
    ('name = "x"\nmodel = "t0"\nrecipe = "model-garden-tflite"\ncolour = 1',
     r"unknown \[\[artifacts\]\] #1 key\(s\) \['colour'\]"),
    ('model = "t0"\nrecipe = "model-garden-tflite"', "needs a name"),
    ('name = "a b"\nmodel = "t0"\nrecipe = "model-garden-tflite"', "needs a name"),
    ('name = "x"\nrecipe = "model-garden-tflite"', r"\(x\) needs the model id"),
    ('name = "x"\nmodel = "t0"\nvariant = "base"\npath = "files/mine.onnx"',
     r"no \[\[models\]\] entry is t0/base"),
    ('name = "x"\nmodel = "t0"\nresolution = 32\npath = "files/mine.onnx"',
     r"no \[\[models\]\] entry is t0/stream resolution=32"),
    ('name = "x"\nmodel = "t0"', "has neither"),
    ('name = "x"\nmodel = "t0"\nrecipe = "model-garden-tflite"\npath = "files/mine.onnx"',
     "not both"),
    ('name = "x"\nmodel = "t0"\npath = "files/model.pb"', r"a \.tflite or \.onnx file, not \.pb"),
    ('name = "x"\nmodel = "t0"\npath = "files/gone.tflite"', "path not found"),
    ('name = "x"\nmodel = "t0"\npath = "files/mine.onnx"\nformat = "tflite-fp32"',
     r"does not run a \.onnx file"),
    ('name = "x"\nmodel = "t0"\npath = "files/mine.tflite"\nformat = "tflite-int8+opt"',
     "optimized build"),
    ('name = "x"\nmodel = "t0"\npath = "files/mine.onnx"\nformat = "tensorflow"', "reference"),
    ('name = "x"\nmodel = "t0"\nrecipe = "tf-hub"', "unknown recipe 'tf-hub'"),
    ('name = "x"\nmodel = "t0"\nrecipe = "model-garden-tflite"\nformat = "onnx"',
     "builds tflite-fp32, not onnx"),
])
def test_bad_artifact_tables_name_the_problem(tmp_path, files, table, message):
    with pytest.raises(MatrixConfigError, match=message) as caught:
        _config(tmp_path, "[[artifacts]]\n" + table + "\n")
    assert "\n" not in str(caught.value) and "[[artifacts]]" in str(caught.value)


def test_artifacts_need_one_model_entry_and_their_own_name(tmp_path, files):
    raw = tomllib.loads(MODEL + MODEL.replace("resolution = 64", "resolution = 32") + """
[[artifacts]]
name = "x"
model = "t0"
recipe = "model-garden-tflite"
""")
    with pytest.raises(MatrixConfigError, match="2 .* entries are t0/stream; add resolution or "
                                                "classes or checkpoint to pick one"):
        parse_config(raw)
    raw["artifacts"][0]["resolution"] = 32
    assert parse_config(raw).artifacts[0].model.resolution == 32
    raw["artifacts"].append(dict(raw["artifacts"][0]))
    with pytest.raises(MatrixConfigError, match="name 'x' is used twice"):
        parse_config(raw)
    # Recipes build stream models.
    base = tomllib.loads(MODEL.replace('"stream"', '"base"') + """
[[artifacts]]
name = "x"
model = "t0"
variant = "base"
recipe = "model-garden-tflite"
""")
    with pytest.raises(MatrixConfigError, match="builds a stream model; base is not causal"):
        parse_config(base)


def _bare_copy(artifact, folder: Path) -> Path:
    """The file of a movibench export somewhere else, without the manifest beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"made-elsewhere{artifact.path.suffix}"
    shutil.copyfile(artifact.path, target)
    assert not manifest_path_for(target).exists()
    return target


def test_a_bare_onnx_file_gets_its_manifest_from_its_graph(t0_stream_onnx, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from runtimes.loader import load_manifest

    read = load_manifest(_bare_copy(t0_stream_onnx, tmp_path))
    ours = t0_stream_onnx.manifest
    assert (read.resolution, read.num_classes, read.frames_per_call, read.variant, read.format) \
        == (ours.resolution, ours.num_classes, ours.frames_per_call, "stream", "onnx")
    assert sorted(read.states, key=lambda s: s.name) == sorted(ours.states, key=lambda s: s.name)

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])
    other = tmp_path / "other.onnx"
    onnx.save(helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])],
                                                  "g", [x], [y])), other)
    with pytest.raises(ArtifactError, match="has no input 'image': not a MoViNet signature"):
        load_manifest(other)


def test_the_declared_model_is_checked_against_the_signature(t0_stream_tflite, tmp_path):
    from conftest import T0_STREAM
    from runtimes.litert import manifest_from_tflite

    found = manifest_from_tflite(_bare_copy(t0_stream_tflite, tmp_path))
    # Model Garden's table of states is movibench's build's.
    assert expected_states(T0_STREAM) == sorted(t0_stream_tflite.manifest.states,
                                                key=lambda s: s.name)
    request = ForeignRequest("file", "lite", T0_STREAM, "tflite-fp32", path="x", frames=1)
    kept = check_declared(found, request)
    assert (kept.model_id, kept.format, kept.model_config) == \
        ("t0", "tflite-fp32", T0_STREAM.resolved().to_dict())
    assert kept.source.startswith("file:lite: read from the signature")
    wrong = [
        (dict(config=replace(T0_STREAM, num_classes=4)), "the file has 5 classes, the model "
                                                         "entry t0/stream has 4"),
        (dict(config=replace(T0_STREAM, resolution=32)), "takes 64 px frames"),
        (dict(config=ModelConfig("t0", "base", 64, 5)), "38 state inputs .* t0/base is not causal"),
        (dict(config=ModelConfig("a0", "stream", 64, 5)),
         "the file's 38 states are not the 43 of a0/stream at 64 px"),
        (dict(config=replace(T0_STREAM, se_type="2d")), "states are not the"),
        (dict(frames=8), "the file takes 1 frame per call, these cells give it 8"),
        (dict(format="tflite-int8"), r"the file is tflite-fp32 \(fp32\), the config declares "
                                     r"tflite-int8 \(int8\)"),
    ]
    for change, message in wrong:
        with pytest.raises(ArtifactError, match=message):
            check_declared(found, replace(request, **change))


class NoJobs(Executor):
    """An executor for a run that must start nothing (everything is already done)."""

    def run(self, job, timeout_s):
        raise AssertionError(f"a finished run started a job: {job.label}")

    def stop_all(self):
        pass


def tiny_run(max_videos: int, classes: int, seed: int) -> str:
    """The [timing] and [data] tables of a run small enough for a test: 32² synthetic videos."""
    return f"""[timing]
warmup = 1
iterations = 5

[data]
split = "val"
max_videos = {max_videos}
synth = {{ classes = {classes}, videos_per_class = 2, frames = 16, size = 32, seed = {seed}, val_fraction = 0.5 }}
"""


def test_files_run_beside_movibench_and_a_mismatched_one_fails_alone(t0_stream_onnx,
                                                                      t0_stream_tflite, tmp_path):
    from bench.report.build import section_failures, section_overhead
    from bench.report.render import render_markdown
    from bench.results.rundir import load_run

    elsewhere = tmp_path / "elsewhere"
    onnx_file = _bare_copy(t0_stream_onnx, elsewhere)
    tflite_file = _bare_copy(t0_stream_tflite, elsewhere)
    config = _config(tmp_path, f"""
[[models]]
model = "t0"
variant = "stream"
resolution = 32
classes = 5

[axes]
formats = ["tflite-fp32"]
threads = [1]
protocols = ["stream"]

{tiny_run(max_videos=2, classes=5, seed=3)}

[[artifacts]]
name = "lite"
model = "t0"
resolution = 64
path = "elsewhere/{tflite_file.name}"

[[artifacts]]
name = "ort"
model = "t0"
resolution = 64
path = "elsewhere/{onnx_file.name}"

# The 64² file declared as the 32² model: its cells fail, the others run.
[[artifacts]]
name = "wrong"
model = "t0"
resolution = 32
path = "elsewhere/{tflite_file.name}"

# Only the wrong file's cells of the 32² entry.
[[exclude]]
resolution = 32
source = ""
""")
    cells = expand(config)
    out = tmp_path / "run"
    table = run_matrix(config, out, cells=cells, command="test", export_jobs=2)
    assert len(table) == len(cells) == 8 and table["cell_id"].is_unique
    rows = table.set_index(["artifact_source", "format", "kind"])
    failed = table[table["status"] != "ok"]
    assert set(failed["artifact_source"]) == {"file:wrong"} and len(failed) == 2, \
        table[["artifact_source", "kind", "error"]].to_string()
    assert set(failed["error"]) == {"import failed: ArtifactError: the file takes 64 px frames, "
                                    "the model entry t0/stream is at 32 px"}
    deployments = [("movibench", "tflite-fp32"), ("file:lite", "tflite-fp32"), ("file:ort", "onnx")]
    for source, fmt in deployments:
        latency, accuracy = rows.loc[(source, fmt, "latency")], rows.loc[(source, fmt, "accuracy")]
        assert latency["step_p50_ms"] > 0 and latency["frames_per_call"] == 1
        assert accuracy["videos"] == 2 and accuracy["precision"] == "fp32"
    # The same weights, so the same predictions (agreement with a TF cell: the heavy recipe
    # run and the report test; a TF cell here would take most of this test's time).
    predictions = pd.read_parquet(out / "predictions.parquet").set_index("cell_id")
    probs = {source: predictions.loc[rows.loc[(source, fmt, "accuracy"), "cell_id"], "probs"]
             for source, fmt in deployments}
    assert probs["file:lite"].tolist() == probs["movibench"].tolist()
    ort, lite = (np.array([json.loads(p) for p in probs[s]]) for s in ("file:ort", "movibench"))
    assert ort.shape == (2, 5) and np.abs(ort - lite).max() < 1e-4
    lite = rows.loc[("file:lite", "tflite-fp32", "latency")]
    # Imported into the cache with a manifest read off the file, and its import timed.
    cache = Path(os.environ["MOVIBENCH_CACHE"])
    assert Path(lite["artifact"]).is_relative_to(cache) and Path(lite["artifact"]).exists()
    assert manifest_path_for(lite["artifact"]).exists()
    assert lite["export_s"] > 0 and not lite["export_cached"]
    assert rows.loc[("file:ort", "onnx", "latency"), "runtime"] == "onnxruntime"

    # Nothing is left to run, and the imports are cached for the next run.
    resumed = run_matrix(config, out, cells=cells, resume=True, executor=NoJobs())
    assert sorted(resumed["cell_id"]) == sorted(table["cell_id"])
    plans = plan_cells(cells, prepare_data(config), set())
    assert {p.artifact for p in plans if p.cell.source in ("file:lite", "file:ort")} == {"cached"}

    # The report names each deployment apart: the file's tflite-fp32 beside movibench's (its
    # sections without figures, which take seconds to draw).
    run = load_run(out)
    overhead = render_markdown("", "", [section_overhead(run), section_failures(run)])
    assert "| t0/stream tflite-fp32 t1 |" in overhead
    assert "| t0/stream tflite-fp32 [file:lite] t1 |" in overhead
    assert "| t0/stream tflite-fp32 [file:wrong] t1 stream |" in overhead


def test_report_pairs_the_recipe_like_movibench_fp32_and_names_it(tmp_path):
    """Report tables from rows written like the runner's (generated numbers, no TF): the
    recipe's fp32 keeps its own latency, and is a deployment of its own in the TF equivalence
    and in the reduced-precision comparison."""
    from bench.matrix.config import Cell
    from bench.report.build import section_equivalence, section_precision, with_latency
    from bench.report.render import render_markdown
    from bench.results.rundir import load_run
    from bench.results.store import ResultsStore

    store = ResultsStore(tmp_path / "run")
    store.init({"run_id": "r", "name": "unit"}, "")
    probs = {"tensorflow": [0.7, 0.3], "tflite-fp32": [0.7, 0.3], "tflite-int8": [0.4, 0.6]}
    deployments = [("tensorflow", "fp32", "tensorflow", "", 9.0),
                   ("tflite-fp32", "fp32", "litert", "", 1.0),
                   ("tflite-fp32", "fp32", "litert", "model-garden-tflite:mg", 1.5),
                   ("tflite-int8", "int8", "litert", "", 0.5)]
    for fmt, precision, runtime, source, ms in deployments:
        common = dict(model="t0", variant="stream", checkpoint="demo:t0-stream-synth",
                      resolution=64, classes=4, format=fmt, threads=1, source=source)
        for cell in (Cell("latency", frames_per_call=1, **common),
                     Cell("accuracy", protocol="stream", **common)):
            row = {"cell_id": cell.cell_id, "run_id": "r", "kind": cell.kind, "model": "t0",
                   "variant": "stream", "checkpoint": cell.checkpoint, "resolution": 64,
                   "format": fmt, "precision": precision, "runtime": runtime, "threads": 1,
                   "protocol": cell.protocol or None, "frames_per_call": 1, "status": "ok",
                   "artifact_source": source or "movibench"}
            if cell.kind == "latency":
                store.append({**row, "frame_p50_ms": ms, "step_p50_ms": ms})
                continue
            store.append({**row, "top1": 1.0 if fmt != "tflite-int8" else 0.0, "videos": 1,
                          "video_ms": 8 * ms}, predictions=[{
                "video": "v.mp4", "label_index": 0, "pred_index": int(probs[fmt][1] > 0.5),
                "ok": True, "error": "", "probs": json.dumps(probs[fmt]), "trace": ""}])
    store.consolidate()
    run = load_run(tmp_path / "run")
    latency = with_latency(run.cells).set_index("artifact_source")
    assert latency.loc["model-garden-tflite:mg", "frame_p50_ms"] == 1.5
    assert latency.loc["movibench"].query("format == 'tflite-fp32'")["frame_p50_ms"].item() == 1.0
    # Its accuracy cell is compared with the TF cell like movibench's.
    agreement = run.cells.set_index(["artifact_source", "format", "kind"])
    recipe = agreement.loc[("model-garden-tflite:mg", "tflite-fp32", "accuracy")]
    assert recipe["ref_top1_agreement"] == 1.0 and recipe["ref_max_abs_prob_diff"] == 0.0
    assert agreement.loc[("movibench", "tflite-int8", "accuracy"), "ref_top1_agreement"] == 0.0
    equivalence = render_markdown("", "", [section_equivalence(run)])
    assert "| t0/stream | tflite-fp32 | fp32 | litert | 1 |" in equivalence
    assert "| t0/stream | tflite-fp32 [model-garden-tflite:mg] | fp32 | litert | 1 |" in equivalence
    precision = render_markdown("", "", [section_precision(run)])
    # movibench's int8 against each fp32 artifact of its runtime: its own and the recipe's.
    assert "| t0/stream | tflite-int8 | tflite-fp32 | 1 | stream |" in precision
    assert "| t0/stream | tflite-int8 | tflite-fp32 [model-garden-tflite:mg] | 1 | stream |" \
        in precision


def test_old_runs_read_as_movibench_deployments():
    from bench.results.schema import conform, frame

    old = frame([{"cell_id": "c", "format": "onnx", "status": "ok"}]).drop(
        columns=["artifact_source"])
    assert conform(old)["artifact_source"].tolist() == ["movibench"]
    assert conform(frame([{"cell_id": "c", "artifact_source": "file:x"}]))[
        "artifact_source"].tolist() == ["file:x"]


@pytest.mark.heavy
def test_model_gardens_recipe_runs_beside_movibench_tflite(tmp_path):
    """The official recipe's TFLite of the demo weights, built during the run, beside
    movibench's tflite-fp32 of the same weights: rows, latency, agreement; a second run takes
    the recipe's file from the cache."""
    path = tmp_path / "recipe.toml"
    path.write_text(f"""
name = "recipe"

[[models]]
model = "t0"
variant = "stream"
checkpoint = "demo:t0-stream-synth"
resolution = 32

[axes]
formats = ["tensorflow", "tflite-fp32"]
threads = [1]
protocols = ["stream"]

{tiny_run(max_videos=4, classes=4, seed=5)}

[[artifacts]]
name = "mg"
model = "t0"
recipe = "model-garden-tflite"

[[exclude]]
format = "tensorflow"
kind = "latency"
""")
    config = load_config(path)
    table = run_matrix(config, tmp_path / "run", cells=expand(config), command="test",
                       export_jobs=2)
    assert (table["status"] == "ok").all(), table[["artifact_source", "error"]].to_string()
    recipe = table[table["artifact_source"] == "model-garden-tflite:mg"].set_index("kind")
    ours = table[(table["artifact_source"] == "movibench")
                 & (table["format"] == "tflite-fp32")].set_index("kind")
    assert recipe.at["latency", "format"] == ours.at["latency", "format"] == "tflite-fp32"
    assert recipe.at["latency", "step_p50_ms"] > 0
    assert recipe.at["latency", "export_s"] > 0 and not recipe.at["latency", "export_cached"]
    for rows in (recipe, ours):
        assert rows.at["accuracy", "ref_top1_agreement"] == 1.0
        assert rows.at["accuracy", "ref_max_abs_prob_diff"] < 1e-4

    again = run_matrix(config, tmp_path / "again", cells=expand(config), command="test")
    cached = again[again["artifact_source"] == "model-garden-tflite:mg"]
    assert cached["export_cached"].all() and (cached["status"] == "ok").all()
    assert cached["export_s"].iloc[0] == pytest.approx(recipe.at["latency", "export_s"])


def test_unknown_sources_are_refused():
    with pytest.raises(MovibenchError, match="unknown artifact source 'tf-hub:x'"):
        ForeignRequest.from_source("tf-hub:x", ModelConfig("t0"), "tflite-fp32")
