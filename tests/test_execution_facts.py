"""How each runtime runs an artifact (`Session.execution_facts`), on the real tiny T0 artifacts:
LiteRT's XNNPACK partitions from its node table, ONNX Runtime's node-time shares from its own
profiler, and the latency cell's exec_* columns that record them."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from bench.matrix.config import Cell
from bench.results.schema import CELL_COLUMNS, conform, frame
from conftest import T0_STREAM
from core.errors import MovibenchError
from runtimes.litert import LiteRTSession
from runtimes.loader import open_session

EXEC_COLUMNS = [c.name for c in CELL_COLUMNS if c.name.startswith("exec_")]


def _frames(session) -> np.ndarray:
    r = session.manifest.resolution
    return np.random.default_rng(0).random((1, 1, r, r, 3), dtype=np.float32)


def test_litert_partitions_add_up_to_the_graph_left_on_builtin_kernels(t0_stream_tflite):
    """XNNPACK's partitions of t0 stream fp32: the delegated nodes and the ones left on the
    built-in kernels make up the graph the builtin-only interpreter runs; what is left out is
    the int32 bookkeeping of the causal pool (frame counter: CAST, ADD, RESHAPE), no float op."""
    path = t0_stream_tflite.path
    session = open_session(path, threads=1)
    facts = session.execution_facts(_frames(session))
    plain = LiteRTSession.open(path, session.manifest, threads=1, xnnpack=False)
    builtin_only = plain.execution_facts(_frames(plain))

    assert builtin_only.partitions == builtin_only.delegated_nodes == 0
    assert sum(builtin_only.builtin_ops.values()) == builtin_only.nodes
    assert facts.nodes == builtin_only.nodes
    assert facts.partitions >= 1 and 0 < facts.delegated_nodes < facts.nodes
    assert facts.delegated_nodes + sum(facts.builtin_ops.values()) == facts.nodes
    assert Counter(facts.builtin_ops) <= Counter(builtin_only.builtin_ops)
    assert "CAST int32" in facts.builtin_ops
    assert all(op.endswith(" int32") for op in facts.builtin_ops), facts.builtin_ops
    # Partitioned when tensors are first allocated: running a call changes nothing.
    session.step(_frames(session), session.init_states())
    assert session.execution_facts(_frames(session)) == facts


def test_ort_profile_shares_name_kernels_and_leave_the_timed_session_alone(t0_stream_onnx):
    from onnxruntime.capi.onnxruntime_pybind11_state import get_all_opkernel_def

    session = open_session(t0_stream_onnx.path, threads=1)
    facts = session.execution_facts(_frames(session))

    assert sum(facts.op_time.values()) == pytest.approx(1.0)
    assert all(share >= 0 for share in facts.op_time.values())
    assert list(facts.op_time.values()) == sorted(facts.op_time.values(), reverse=True)
    kernels = {k.op_name for k in get_all_opkernel_def() if k.provider == "CPUExecutionProvider"}
    assert set(facts.op_time) <= kernels
    assert {"Conv", "CumSum"} <= set(facts.op_time)  # CumSum: the causal global average pool
    assert facts.provider_time == {"CPUExecutionProvider": 1.0}
    assert facts.nodes > len(facts.op_time)
    # The profiled calls ran on a session of their own.
    assert session.step_ns == [] and not session.session.get_session_options().enable_profiling
    with pytest.raises(MovibenchError, match="two runs or more"):
        session.execution_facts(_frames(session), calls=1)


def test_latency_cell_records_its_exec_columns_and_runtime_settings(t0_stream_tflite, t0_stream_onnx):
    from bench.jobs.deployment import Deployment
    from bench.jobs.job import CellJob
    from bench.launchers.worker import run_cell

    rows = {}
    for artifact, fmt in ((t0_stream_tflite, "tflite-fp32"), (t0_stream_onnx, "onnx")):
        cell = Cell("latency", "t0", "stream", "", T0_STREAM.resolution, T0_STREAM.num_classes,
                    fmt, 1, frames_per_call=1, warmup=1, iterations=5)
        deployment = Deployment(T0_STREAM, fmt, threads=1, frames_per_call=1)
        out = run_cell(CellJob(cell.kind, cell.label, deployment, str(artifact.path), warmup=1,
                               iterations=5))
        rows[fmt] = frame([dict(out.columns)]).iloc[0]  # only schema columns, of the schema's types

    litert, ort = rows["tflite-fp32"], rows["onnx"]
    session = open_session(t0_stream_tflite.path, threads=1)
    facts = session.execution_facts(_frames(session))
    assert (litert["exec_nodes"], litert["exec_partitions"], litert["exec_delegated_nodes"]) == \
        (facts.nodes, facts.partitions, facts.delegated_nodes)
    assert json.loads(litert["exec_builtin_ops"]) == facts.builtin_ops
    assert pd.isna(litert["exec_op_time"]) and pd.isna(ort["exec_partitions"])
    assert sum(json.loads(ort["exec_op_time"]).values()) == pytest.approx(1.0)
    assert ort["exec_nodes"] > 0 and ort["step_p50_ms"] > 0
    # How each runtime was set up, as its session reports it (the runtime_settings column).
    assert json.loads(litert["runtime_settings"]) == \
        {"threads": 1, "xnnpack": True, "state_io": "buffers"}
    ort_settings = json.loads(ort["runtime_settings"])
    assert ort_settings == open_session(t0_stream_onnx.path, threads=1).settings()
    assert (ort_settings["threads"], ort_settings["execution_mode"]) == (1, "sequential")


def test_runs_written_before_the_exec_columns_still_load():
    old = frame([{"cell_id": "c", "kind": "latency", "status": "ok"}]).drop(
        columns=[*EXEC_COLUMNS, "runtime_settings"])
    loaded = conform(old)
    assert list(loaded.columns) == [c.name for c in CELL_COLUMNS]
    assert loaded[EXEC_COLUMNS + ["runtime_settings"]].isna().all().all()
    assert str(loaded["exec_partitions"].dtype) == "Int64"
