"""Each runtime says what its own execution facts mean (Session.facts_legend, facts_columns,
facts_reading), without a session and without importing its engine."""

from __future__ import annotations

import subprocess
import sys

from runtimes.base import ExecutionFacts
from runtimes.loader import session_class

DELEGATED = ExecutionFacts(nodes=1200, partitions=2, delegated_nodes=1100,
                           builtin_ops={"ADD int32": 60, "MUL int32": 40})
PROFILED = ExecutionFacts(nodes=90, op_time={"Conv": 0.5, "ReorderInput": 0.25, "Add": 0.25},
                          provider_time={"jit_avx2_f32": 0.75, "ref_any_f32": 0.25})


def test_litert_reads_its_partitions():
    litert = session_class("litert")
    assert litert.facts_columns(DELEGATED) == {
        "XNNPACK partitions": 2, "delegated nodes (%)": 1100 / 1200,
        "left on built-in kernels (nodes)": {"ADD int32": 60, "MUL int32": 40}}
    assert litert.facts_reading(DELEGATED).startswith(
        "2 XNNPACK partitions; 100 nodes run on LiteRT's built-in kernels (most: ADD int32, 60)")
    assert litert.facts_reading(ExecutionFacts(nodes=1200, partitions=1, delegated_nodes=1200,
                                               builtin_ops={})) == \
        "all 1,200 nodes run on XNNPACK (1 partition): nothing falls back"
    assert litert.facts_columns(PROFILED) is None and litert.facts_reading(PROFILED) is None


def test_profiling_runtimes_read_their_shares():
    ort, openvino = session_class("onnxruntime"), session_class("openvino")
    assert list(ort.facts_columns(PROFILED)) == ["share of node time (%)",
                                                 "providers (% of node time)"]
    assert list(openvino.facts_columns(PROFILED))[1] == "kernels (% of node time)"
    assert ort.facts_reading(PROFILED).startswith("25.0 % of node time converts layouts")
    assert openvino.facts_reading(PROFILED).startswith(
        "25.0 % of layer time on reference (non-JIT) kernels; the largest layer type is Conv "
        "at 50.0 %")
    assert ort.facts_columns(DELEGATED) is None and openvino.facts_reading(DELEGATED) is None


def test_runtimes_without_facts_say_nothing():
    for runtime in ("tensorflow", "tensorrt"):
        cls = session_class(runtime)
        assert cls.facts_legend() is None
        assert cls.facts_columns(PROFILED) is None and cls.facts_reading(PROFILED) is None


def test_reading_facts_imports_no_engine():
    code = ("import sys; from runtimes.loader import session_class; "
            "from runtimes.registry import RUNTIME_SESSIONS; "
            "[session_class(r).facts_legend() for r in RUNTIME_SESSIONS]; "
            "print(sorted(m for m in ('onnxruntime', 'openvino', 'ai_edge_litert', 'tensorrt', "
            "'tensorflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
