"""Will TensorRT's ONNX parser take this graph? A check that needs no TensorRT and no GPU.

It reads the parser's operator support matrix shipped in converters/data (transcribed from
onnx-tensorrt's docs, with its source and TensorRT version) and checks an ONNX file against it:
every op in every (sub)graph, each node's data-input dtype, graph I/O dtypes, the opset, and
static shapes on every graph input and output (the engines built here have no dynamic axes).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

from core.errors import ArtifactError

OPS_TABLE = Path(__file__).parent / "data" / "tensorrt_onnx_ops.json"
DEFAULT_DOMAINS = ("", "ai.onnx")

# onnx.TensorProto element types → names in the table: graph-level list, then per-op column.
_GRAPH_TYPE_NAMES = {1: "FLOAT32", 2: "UINT8", 3: "INT8", 6: "INT32", 7: "INT64", 9: "BOOL",
                     10: "FLOAT16", 11: "DOUBLE", 16: "BFLOAT16", 17: "FP8", 22: "INT4",
                     23: "FP4"}
_OP_TYPE_NAMES = {"FLOAT32": "FP32", "FLOAT16": "FP16", "BFLOAT16": "BF16"}


@dataclass(frozen=True)
class TensorRTOpsTable:
    """The parser's support matrix: which ops, which per-op types, which I/O dtypes, opsets."""

    tensorrt_version: str
    source: str
    opset_min: int
    opset_max: int
    data_types: frozenset[str]
    supported: dict[str, tuple[str, ...]]  # op → supported type names ('FP32', 'INT64', ...)
    restrictions: dict[str, str]


@lru_cache(maxsize=1)
def load_ops_table(path: Path = OPS_TABLE) -> TensorRTOpsTable:
    """Read the shipped support matrix (cached: it never changes within a process)."""
    data = json.loads(Path(path).read_text())
    ops = data["operators"]
    return TensorRTOpsTable(
        tensorrt_version=str(data["tensorrt_version"]), source=data["source"],
        opset_min=int(data["opset_min"]), opset_max=int(data["opset_max"]),
        data_types=frozenset(data["data_types"]),
        supported={op: tuple(row.get("types", ())) for op, row in ops.items() if row["supported"]},
        restrictions={op: row["restrictions"] for op, row in ops.items() if row.get("restrictions")})


@dataclass
class TensorRTCompatReport:
    """What the check found; `passed` only if nothing stands in the parser's way."""

    model: str
    tensorrt_version: str
    opset: int
    ops: dict[str, int]  # op type → count over all (sub)graphs, most frequent first
    unsupported_ops: list[str] = field(default_factory=list)  # 'com.microsoft:FusedConv', 'Col2Im'
    unsupported_node_types: list[str] = field(default_factory=list)  # 'CumSum(INT32)'
    unsupported_io_dtypes: list[str] = field(default_factory=list)  # 'state_x: DOUBLE'
    dynamic_inputs: list[str] = field(default_factory=list)  # 'image[1,frames,64,64,3]'
    dynamic_outputs: list[str] = field(default_factory=list)
    opset_supported: bool = True
    # Table 'Restrictions' of the ops found: conditions the table cannot check statically.
    restrictions: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.opset_supported and not (
            self.unsupported_ops or self.unsupported_node_types or self.unsupported_io_dtypes
            or self.dynamic_inputs or self.dynamic_outputs)

    def summary(self) -> str:
        """One line: PASS with op counts, or FAIL naming the first problem of each kind."""
        head = (f"TensorRT {self.tensorrt_version} ONNX parser, {self.model}: "
                f"{sum(self.ops.values())} nodes, {len(self.ops)} op types, opset {self.opset}")
        if self.passed:
            return f"PASS — {head}"
        problems = []
        if not self.opset_supported:
            problems.append(f"opset {self.opset} outside the supported range")
        for label, items in (("unsupported ops", self.unsupported_ops),
                             ("unsupported node types", self.unsupported_node_types),
                             ("unsupported I/O dtypes", self.unsupported_io_dtypes),
                             ("dynamic inputs", self.dynamic_inputs),
                             ("dynamic outputs", self.dynamic_outputs)):
            if items:
                more = f" (+{len(items) - 3} more)" if len(items) > 3 else ""
                problems.append(f"{label}: {', '.join(items[:3])}{more}")
        return f"FAIL — {head}; " + "; ".join(problems)

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed, "summary": self.summary()}


def _graphs(graph):
    """The graph and every subgraph nested in node attributes (If/Loop/Scan bodies), depth first."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _graphs(attr.g)
            for sub in attr.graphs:
                yield from _graphs(sub)


def _dims(value_info) -> list[int | str]:
    """Dims of a graph value: ints where static, the symbol (or '?') where not."""
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
            for d in value_info.type.tensor_type.shape.dim]


def _elem_types(model) -> dict[str, int]:
    """Element type of every named value the (shape-inferred) model knows."""
    types = {}
    for graph in _graphs(model.graph):
        for info in (*graph.input, *graph.output, *graph.value_info):
            types[info.name] = info.type.tensor_type.elem_type
        for init in graph.initializer:
            types[init.name] = init.data_type
    return types


def check_tensorrt_compat(model, table: TensorRTOpsTable | None = None) -> TensorRTCompatReport:
    """Check an ONNX model (path or ModelProto) against the TensorRT ONNX parser's table.

    Raises ArtifactError when the file cannot be read as ONNX.
    """
    import onnx

    name = str(model) if isinstance(model, (str, Path)) else (model.graph.name or "model")
    if isinstance(model, (str, Path)):
        try:
            model = onnx.load(str(model))
        except Exception as exc:  # protobuf raises DecodeError, missing files OSError
            raise ArtifactError(f"cannot read ONNX model {name}: {exc}") from None
    table = table or load_ops_table()
    opset = next((o.version for o in model.opset_import if o.domain in DEFAULT_DOMAINS), 0)
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except onnx.shape_inference.InferenceError:
        inferred = model  # node dtypes then come only from what the file declares
    types = _elem_types(inferred)

    ops: Counter[str] = Counter()
    unsupported, bad_types = set(), set()
    for graph in _graphs(model.graph):
        for node in graph.node:
            op = node.op_type if node.domain in DEFAULT_DOMAINS else f"{node.domain}:{node.op_type}"
            ops[op] += 1
            if op not in table.supported:
                unsupported.add(op)
                continue
            # The table's type column is about an op's data tensor: its first input.
            elem = types.get(node.input[0]) if node.input and node.input[0] else None
            type_name = _GRAPH_TYPE_NAMES.get(elem)
            if type_name is not None and table.supported[op]:
                type_name = _OP_TYPE_NAMES.get(type_name, type_name)
                if type_name not in table.supported[op]:
                    bad_types.add(f"{op}({type_name})")

    bad_io, dynamic_in, dynamic_out = [], [], []
    for infos, dynamic in ((model.graph.input, dynamic_in), (model.graph.output, dynamic_out)):
        for info in infos:
            type_name = _GRAPH_TYPE_NAMES.get(info.type.tensor_type.elem_type, "UNDEFINED")
            if type_name not in table.data_types:
                bad_io.append(f"{info.name}: {type_name}")
            dims = _dims(info)
            if not info.type.tensor_type.HasField("shape") or any(isinstance(d, str) for d in dims):
                dynamic.append(f"{info.name}[{','.join(str(d) for d in dims) or '?'}]")

    return TensorRTCompatReport(
        model=name, tensorrt_version=table.tensorrt_version, opset=opset,
        ops=dict(ops.most_common()), unsupported_ops=sorted(unsupported),
        unsupported_node_types=sorted(bad_types), unsupported_io_dtypes=bad_io,
        dynamic_inputs=dynamic_in, dynamic_outputs=dynamic_out,
        opset_supported=table.opset_min <= opset <= table.opset_max,
        restrictions={op: table.restrictions[op] for op in ops if op in table.restrictions})
