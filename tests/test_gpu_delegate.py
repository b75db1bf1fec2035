"""The LiteRT GPU-delegate check on real TFLite files: the project's 5-D stream export, and tiny
4-D graphs converted here with the TFLite converter (each in about a second)."""

from __future__ import annotations

import json

import pytest

from converters.gpu_delegate_compat import (
    OPS_TABLE, check_gpu_delegate_compat, load_ops_table, read_tflite_graph,
)
from core.errors import ArtifactError
from core.formats import get_format


def _convert(build, path):
    """A tf_keras model on a [1, 8, 8, 3] input, `build(x)` its output, converted to `path`."""
    import tensorflow as tf
    import tf_keras as keras

    x = keras.Input((8, 8, 3), batch_size=1)
    model = keras.Model(x, build(x, keras, tf))
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return path


def _four_d(x, keras, tf):
    """conv2d + relu6, a second conv, add, spatial mean: ops and shapes a mobile GPU runs."""
    a = keras.layers.Conv2D(4, 3, padding="same", activation=tf.nn.relu6)(x)
    b = keras.layers.Conv2D(4, 1)(x)
    return keras.layers.GlobalAveragePooling2D(keepdims=True)(keras.layers.Add()([a, b]))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The 4-D graph, one with an op outside the table (ARG_MAX) and one with an option the
    delegate refuses (STRIDED_SLICE with shrink_axis_mask)."""
    root = tmp_path_factory.mktemp("gpu-delegate")
    conv = lambda x, keras, tf: keras.layers.Conv2D(4, 3, padding="same")(x)  # noqa: E731
    return {
        "four_d": _convert(_four_d, root / "four_d.tflite"),
        "argmax": _convert(lambda x, k, tf: k.layers.Lambda(
            lambda t: tf.math.argmax(t, axis=-1))(conv(x, k, tf)), root / "argmax.tflite"),
        "shrink": _convert(lambda x, k, tf: k.layers.Lambda(
            lambda t: t[:, 0])(conv(x, k, tf)), root / "shrink.tflite"),
    }


def test_table_records_its_source_and_the_rank_limit():
    data = json.loads(OPS_TABLE.read_text())
    assert data["source"]["repo"] == "google-ai-edge/LiteRT"
    assert len(data["source"]["commit"]) == 40
    assert "tflite/delegates/gpu/common/model_builder.cc" in data["source"]["files"]
    table = load_ops_table()
    assert table.max_tensor_rank == 4
    assert table.operators["CONV_2D"]["max_version"] == 6
    assert table.operators["CONV_3D"]["supported"] is False
    # Every row says in words where its rules come from.
    assert all(row.get("words") for row in table.operators.values() if not row["supported"])


def test_the_5d_stream_graph_is_rejected_for_its_rank_5_tensors(t0_stream_tflite):
    report = check_gpu_delegate_compat(t0_stream_tflite.path)
    assert not report.passed
    assert report.highest_rank == 5
    assert report.high_rank_count > 0
    # The image input [1, T, H, W, 3] is one of them, named in the report and its summary.
    assert any(name.startswith("serving_default_image") for name in report.high_rank_tensors)
    assert "rank > 4" in report.summary()
    assert report.ops["CONV_2D"] > 0 and not report.unsupported_ops
    # The 5-D layout runs through the whole graph: the convolutions' reshapes touch it.
    assert report.high_rank_ops["RESHAPE"] > 0
    assert sum(report.high_rank_ops.values()) <= sum(report.ops.values())


def test_every_tflite_build_records_the_verdict_and_the_support_table_agrees(t0_stream_tflite):
    from converters.exporter import exporter_for
    from converters.support import gpu_delegate_rows

    record = t0_stream_tflite.details["gpu_delegate"]
    report = check_gpu_delegate_compat(t0_stream_tflite.path)
    assert record["passed"] is False and record["summary"] == report.summary()
    # The support table's rank for the format is the rank its real build has.
    spec = get_format(t0_stream_tflite.format)
    assert exporter_for(spec).max_tensor_rank(spec) == report.highest_rank
    row = next(r for r in gpu_delegate_rows() if r[0] == spec.name)
    assert row[1] == "5" and row[2].startswith("no")


def test_a_small_4d_graph_passes(tiny):
    report = check_gpu_delegate_compat(tiny["four_d"])
    assert report.passed, report.summary()
    assert report.highest_rank == 4
    assert set(report.ops) == {"CONV_2D", "ADD", "MEAN"}
    (ops, _), = read_tflite_graph(tiny["four_d"]).subgraphs
    # relu6 is fused into a convolution, so the fused-activation rule was really applied.
    assert "RELU6" in {op.options.get("fused_activation_function") for op in ops}


def test_an_op_outside_the_table_is_rejected_by_name(tiny):
    report = check_gpu_delegate_compat(tiny["argmax"])
    assert not report.passed
    assert report.unsupported_ops == ["ARG_MAX"]
    assert "ARG_MAX" in report.summary()


def test_an_option_the_delegate_refuses_is_reported(tiny):
    report = check_gpu_delegate_compat(tiny["shrink"])
    assert not report.passed
    assert report.highest_rank <= 4 and not report.unsupported_ops
    assert any("STRIDED_SLICE" in v and "shrink_axis_mask" in v for v in report.option_violations)


def _edited(source, target, edit):
    """`source` rewritten through the schema's object API after `edit(model, schema)`."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    data = source.read_bytes()
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    edit(model, schema)
    builder = flatbuffers.Builder(len(data))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    target.write_bytes(builder.Output())
    return target


def test_an_op_version_above_the_delegates_is_reported(tiny, tmp_path):
    def bump(model, schema):
        conv = next(c for c in model.operatorCodes
                    if c.builtinCode == schema.BuiltinOperator.CONV_2D)
        conv.version = 7  # the delegate parses CONV_2D up to version 6

    report = check_gpu_delegate_compat(_edited(tiny["four_d"], tmp_path / "v7.tflite", bump))
    assert report.version_too_high == ["CONV_2D v7 (max 6)"]
    assert not report.passed


def test_a_dilation_below_one_is_reported(tiny, tmp_path):
    def zero_dilation(model, schema):
        convs = [op for op in model.subgraphs[0].operators
                 if model.operatorCodes[op.opcodeIndex].builtinCode == schema.BuiltinOperator.CONV_2D]
        convs[0].builtinOptions.dilationHFactor = 0  # CheckDilation wants > 0

    report = check_gpu_delegate_compat(_edited(tiny["four_d"], tmp_path / "d0.tflite", zero_dilation))
    assert [v.split(": ", 1)[1] for v in report.option_violations] == ["dilation_h_factor 0 < 1"]


def test_a_file_that_is_not_tflite_is_an_artifact_error(tmp_path):
    bad = tmp_path / "x.tflite"
    bad.write_bytes(b"not a flatbuffer at all")
    with pytest.raises(ArtifactError, match="not a TFLite flatbuffer"):
        check_gpu_delegate_compat(bad)
    with pytest.raises(ArtifactError, match="cannot read"):
        check_gpu_delegate_compat(tmp_path / "missing.tflite")


def _movibench(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """`movibench ARGS` in this process through the real entry point (exit-code mapping)."""
    from bench.cli.app import main

    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setattr("sys.argv", ["movibench", *args])
    with pytest.raises(SystemExit) as done:
        main()
    captured = capsys.readouterr()
    return done.value.code, captured.out, captured.err


def test_cli_fails_the_5d_stream_graph_with_exit_1_and_json(t0_stream_tflite, monkeypatch, capsys):
    code, out, _ = _movibench(monkeypatch, capsys, "validate", "gpu-delegate",
                              str(t0_stream_tflite.path), "--json")
    assert code == 1
    report = json.loads(out)
    assert report["passed"] is False and report["highest_rank"] == 5
    assert report["summary"].startswith("FAIL")


def test_cli_passes_the_4d_graph_with_exit_0(tiny, monkeypatch, capsys):
    code, out, _ = _movibench(monkeypatch, capsys, "validate", "gpu-delegate", str(tiny["four_d"]))
    assert code == 0
    assert "PASS" in out and "CONV_2D" in out


def test_cli_an_unreadable_file_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "x.tflite"
    bad.write_text("not tflite")
    code, out, err = _movibench(monkeypatch, capsys, "validate", "gpu-delegate", str(bad))
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "not a TFLite flatbuffer" in err


def test_cli_without_a_file_checks_the_models_export(t0_stream_tflite, monkeypatch, capsys):
    from conftest import T0_STREAM

    model = ["--model", T0_STREAM.model_id, "--variant", T0_STREAM.variant,
             "--resolution", str(T0_STREAM.resolution), "--classes", str(T0_STREAM.num_classes)]
    code, out, _ = _movibench(monkeypatch, capsys, "validate", "gpu-delegate", *model, "--json")
    # The fixture built this artifact; the verb is served it from the cache and checks it.
    assert code == 1 and json.loads(out)["model"] == str(t0_stream_tflite.path)
    code, out, err = _movibench(monkeypatch, capsys, "validate", "gpu-delegate", *model,
                                "--format", "onnx")
    assert code == 2 and "not a TFLite format" in err
