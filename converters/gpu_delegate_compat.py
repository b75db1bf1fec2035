"""Will the LiteRT GPU delegate take this graph whole? A check that needs no GPU and no TensorFlow.

It reads the delegate's op table shipped in converters/data (transcribed from LiteRT's
model_builder.cc and gpu_compatibility.cc, with the source commit) and checks a .tflite
flatbuffer against it, read with LiteRT's own generated schema: the rank of every tensor an op
reads or writes (the delegate takes rank <= 4 only), every op's builtin code and version, the
options and inputs its parser checks, and the types of non-constant tensors. `passed` means one
delegate partition could hold every op; rules the table keeps only in words are not checked.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path

from core.errors import ArtifactError

OPS_TABLE = Path(__file__).parent / "data" / "litert_gpu_delegate_ops.json"
# How many offending tensor names a report keeps (the count is always whole).
NAMES_KEPT = 10
# Option fields whose values are schema enums: the table names them, the flatbuffer stores ints.
_ENUM_FIELDS = {"fused_activation_function": "ActivationFunctionType", "mode": "MirrorPadMode",
                "weights_format": "FullyConnectedOptionsWeightsFormat"}


def _schema():
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


@dataclass(frozen=True)
class GpuDelegateOpsTable:
    """The delegate's op table: where it was read, the rank limit, tensor types, per-op rules."""

    source: str  # 'google-ai-edge/LiteRT@<commit> (<date>)'
    max_tensor_rank: int
    runtime_types: frozenset[str]
    quantized_types: frozenset[str]
    operators: dict[str, dict]  # 'CONV_2D' / 'custom:Resampler' → its row


@lru_cache(maxsize=1)
def load_ops_table(path: Path = OPS_TABLE) -> GpuDelegateOpsTable:
    """Read the shipped op table (cached: it never changes within a process)."""
    data = json.loads(Path(path).read_text())
    src = data["source"]
    return GpuDelegateOpsTable(
        source=f"{src['repo']}@{src['commit'][:12]} ({src['commit_date']})",
        max_tensor_rank=int(data["max_tensor_rank"]),
        runtime_types=frozenset(data["runtime_tensor_types"]),
        quantized_types=frozenset(data["quantized_runtime_tensor_types"]),
        operators=dict(data["operators"]))


@dataclass(frozen=True)
class TFLiteTensor:
    """One tensor of a subgraph: name, shape, dtype name, and whether it holds constant data."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    constant: bool
    variable: bool
    data: object = None  # INT32 constants only (axes, paddings): a numpy array

    @property
    def rank(self) -> int:
        return len(self.shape)

    def label(self) -> str:
        return f"{self.name}[{','.join(str(d) for d in self.shape)}]"


@dataclass(frozen=True)
class TFLiteOp:
    """One operator: its name ('CONV_2D', 'custom:X'), version, tensor indices and options."""

    index: int
    name: str
    builtin_code: int
    version: int
    inputs: tuple[int, ...]  # -1: an optional input left out
    outputs: tuple[int, ...]
    options: dict  # snake_case option field → value (enum fields by name)


@dataclass(frozen=True)
class TFLiteGraph:
    """The operators and tensors of every subgraph of a .tflite file, in file order."""

    subgraphs: tuple[tuple[tuple[TFLiteOp, ...], tuple[TFLiteTensor, ...]], ...]


def _snake(name: str) -> str:
    """'dilationWFactor' → 'dilation_w_factor': the schema's field names, as the table spells them."""
    words = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", words).lower()


def _enum_names(schema, class_name: str) -> dict[int, str]:
    return {v: k for k, v in vars(getattr(schema, class_name)).items() if not k.startswith("_")}


def _options(schema, operator) -> dict:
    obj = schema.OperatorT.InitFromObj(operator).builtinOptions
    if obj is None:
        return {}
    options = {}
    for key, value in vars(obj).items():
        name = _snake(key)
        if name in _ENUM_FIELDS:
            value = _enum_names(schema, _ENUM_FIELDS[name]).get(value, value)
        elif hasattr(value, "tolist"):
            value = value.tolist()
        options[name] = value
    return options


def read_tflite_graph(path: str | Path) -> TFLiteGraph:
    """Every operator (builtin code, version, options) and tensor (shape, dtype, constant) of a
    .tflite file, read with LiteRT's generated flatbuffer schema.

    Raises ArtifactError when the file is missing or is not a TFLite flatbuffer.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ArtifactError(f"cannot read TFLite model {path}: {exc.strerror or exc}") from None
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ArtifactError(f"{path} is not a TFLite flatbuffer (no 'TFL3' identifier)")
    schema = _schema()
    types = _enum_names(schema, "TensorType")
    ops_by_code = _enum_names(schema, "BuiltinOperator")
    try:
        model = schema.Model.GetRootAs(data, 0)
        codes = []
        for i in range(model.OperatorCodesLength()):
            code = model.OperatorCodes(i)
            # Codes above 127 live in builtin_code; older files fill only the deprecated byte.
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            name = ops_by_code.get(builtin, str(builtin))
            if name == "CUSTOM":
                name = f"custom:{(code.CustomCode() or b'').decode()}"
            codes.append((name, builtin, code.Version()))
        subgraphs = []
        for g in range(model.SubgraphsLength()):
            graph = model.Subgraphs(g)
            tensors = []
            for t in range(graph.TensorsLength()):
                tensor = graph.Tensors(t)
                buffer = model.Buffers(tensor.Buffer()) if tensor.Buffer() > 0 else None
                # Data either inline or, past 2 GB, at an offset after the flatbuffer.
                constant = buffer is not None and (buffer.DataLength() > 0 or buffer.Offset() > 1)
                dtype = types.get(tensor.Type(), str(tensor.Type()))
                values = None
                if constant and dtype == "INT32" and buffer.DataLength() > 0:
                    values = buffer.DataAsNumpy().view("<i4")
                tensors.append(TFLiteTensor(
                    name=(tensor.Name() or b"").decode(errors="replace"),
                    shape=tuple(int(d) for d in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else (),
                    dtype=dtype, constant=constant, variable=bool(tensor.IsVariable()),
                    data=values))
            ops = []
            for o in range(graph.OperatorsLength()):
                operator = graph.Operators(o)
                name, builtin, version = codes[operator.OpcodeIndex()]
                ops.append(TFLiteOp(
                    index=o, name=name, builtin_code=builtin, version=version,
                    inputs=tuple(int(i) for i in operator.InputsAsNumpy()) if operator.InputsLength() else (),
                    outputs=tuple(int(i) for i in operator.OutputsAsNumpy()) if operator.OutputsLength() else (),
                    options=_options(schema, operator)))
            subgraphs.append((tuple(ops), tuple(tensors)))
    except Exception as exc:  # a truncated or corrupt flatbuffer raises from deep in the reader
        raise ArtifactError(f"cannot read TFLite model {path}: {type(exc).__name__}: {exc}") from None
    return TFLiteGraph(tuple(subgraphs))


@dataclass
class GpuDelegateCompatReport:
    """What the check found; `passed` only if nothing stands in the GPU delegate's way."""

    model: str
    source: str  # the op table's source: 'google-ai-edge/LiteRT@<commit> (<date>)'
    max_tensor_rank: int  # the delegate's limit (4)
    ops: dict[str, int]  # 'CONV_2D' → count over all subgraphs, most frequent first
    tensors: int  # tensors read or written by an op
    highest_rank: int  # the highest rank among them
    high_rank_count: int = 0  # of those, how many exceed max_tensor_rank
    high_rank_tensors: list[str] = field(default_factory=list)  # the first NAMES_KEPT: 'name[1,1,8,8,16]'
    high_rank_ops: dict[str, int] = field(default_factory=dict)  # 'RESHAPE' → ops touching one of them
    unsupported_ops: list[str] = field(default_factory=list)  # op names not in the table or refused
    version_too_high: list[str] = field(default_factory=list)  # 'DIV v3 (max 2)'
    option_violations: list[str] = field(default_factory=list)  # 'STRIDED_SLICE #4: shrink_axis_mask 1 not in [0]'
    tensor_type_violations: list[str] = field(default_factory=list)  # 'CAST #2: input x INT64'
    # The table's words for the ops found: the rules it states but does not check.
    unchecked_rules: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not (self.high_rank_count or self.unsupported_ops or self.version_too_high
                    or self.option_violations or self.tensor_type_violations)

    def summary(self) -> str:
        """One line: PASS with op and tensor counts, or FAIL naming the first problems of each kind."""
        head = (f"LiteRT GPU delegate ({self.source}), {Path(self.model).name}: "
                f"{sum(self.ops.values())} ops, {len(self.ops)} op types, {self.tensors} tensors "
                f"(highest rank {self.highest_rank})")
        if self.passed:
            return f"PASS — {head}"
        problems = []
        if self.high_rank_count:
            more = (f" (+{self.high_rank_count - 3} more)" if self.high_rank_count > 3 else "")
            problems.append(f"{self.high_rank_count} tensors of rank > {self.max_tensor_rank}: "
                            f"{', '.join(self.high_rank_tensors[:3])}{more}")
        for label, items in (("unsupported ops", self.unsupported_ops),
                             ("op versions above the delegate's", self.version_too_high),
                             ("option or input violations", self.option_violations),
                             ("tensor types", self.tensor_type_violations)):
            if items:
                more = f" (+{len(items) - 3} more)" if len(items) > 3 else ""
                problems.append(f"{label}: {', '.join(items[:3])}{more}")
        return f"FAIL — {head}; " + "; ".join(problems)

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed, "summary": self.summary()}

    def to_record(self) -> dict:
        """The verdict for a build record: pass/fail and counts, without the per-op words."""
        return {"passed": self.passed, "table": self.source, "summary": self.summary(),
                "highest_rank": self.highest_rank, "high_rank_tensors": self.high_rank_count,
                "unsupported_ops": self.unsupported_ops,
                "problems": len(self.version_too_high) + len(self.option_violations)
                + len(self.tensor_type_violations)}


def _broadcast_ok(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    """The delegate's standard ADD/MUL broadcast (CheckAddMulBroadcastCompatibility, kStandard)."""
    if len(a) <= 1 or len(b) <= 1 or len(a) == len(b):
        return True
    longer, shorter = (a, b) if len(a) >= len(b) else (b, a)
    if len(longer) != 4:
        return False
    if len(shorter) == 3:
        return longer[0] == 1
    return len(shorter) == 2 and ((longer[0] == 1 and shorter == (1, 1))
                                  or (longer[0] == shorter[0] and longer[3] == shorter[1]))


def _option_problems(op: TFLiteOp, row: dict) -> list[str]:
    problems = []
    for key, allowed in row.get("options", {}).items():
        if key in op.options and op.options[key] not in allowed:
            problems.append(f"{key} {op.options[key]} not in {allowed}")
    for key, least in row.get("options_min", {}).items():
        if key in op.options and op.options[key] < least:
            problems.append(f"{key} {op.options[key]} < {least}")
    for keys in row.get("options_exclusive", ()):
        if all(op.options.get(k) for k in keys):
            problems.append(f"{' and '.join(keys)} both set")
    return problems


def _input_problems(op: TFLiteOp, row: dict, tensors, consumers) -> list[str]:
    """The table's machine-checkable rules about an op's inputs, outputs and consumers."""
    present = [i for i in op.inputs if i >= 0]
    runtime = [i for i in present if not tensors[i].constant]
    const_count = len(present) - len(runtime)
    problems = []
    if "inputs" in row and len(op.inputs) not in row["inputs"]:
        problems.append(f"{len(op.inputs)} inputs, takes {row['inputs']}")
    if len(op.inputs) < row.get("min_inputs", 0):
        problems.append(f"{len(op.inputs)} inputs, needs at least {row['min_inputs']}")
    if "runtime_inputs" in row and len(runtime) not in row["runtime_inputs"]:
        problems.append(f"{len(runtime)} non-constant inputs, takes {row['runtime_inputs']}")
    if "const_input_count" in row and const_count not in row["const_input_count"]:
        problems.append(f"{const_count} constant inputs, takes {row['const_input_count']}")
    if "outputs" in row and len(op.outputs) != row["outputs"]:
        problems.append(f"{len(op.outputs)} outputs, takes {row['outputs']}")

    def tensor_at(position: str, indices):
        k = int(position)
        return tensors[indices[k]] if k < len(indices) and indices[k] >= 0 else None

    for k in row.get("const_inputs", ()):
        t = tensor_at(k, op.inputs)
        if t is not None and not t.constant:
            problems.append(f"input {k} ({t.name}) must be constant")
    checks = (("input_types", op.inputs, lambda t, v: t.dtype in v, "type"),
              ("input_types_not", op.inputs, lambda t, v: t.dtype not in v, "type"),
              ("input_ranks", op.inputs, lambda t, v: t.rank in v, "rank"),
              ("output_ranks", op.outputs, lambda t, v: t.rank in v, "rank"),
              ("input_shapes", op.inputs, lambda t, v: list(t.shape) in v, "shape"),
              ("const_input_ranks", op.inputs, lambda t, v: not t.constant or t.rank in v, "rank"))
    for key, indices, ok, what in checks:
        for k, allowed in row.get(key, {}).items():
            t = tensor_at(k, indices)
            if t is not None and not ok(t, allowed):
                value = {"type": t.dtype, "rank": t.rank, "shape": list(t.shape)}[what]
                side = "output" if indices is op.outputs else "input"
                problems.append(f"{side} {k} ({t.name}) {what} {value}, {key} {allowed}")
    if row.get("runtime_input_0") and op.inputs and op.inputs[0] >= 0 and tensors[op.inputs[0]].constant:
        problems.append("input 0 must not be constant")
    if row.get("keep_num_dims_same_rank") and op.options.get("keep_num_dims") and op.outputs:
        if tensors[op.inputs[0]].rank != tensors[op.outputs[0]].rank:
            problems.append("keep_num_dims with input and output ranks that differ")
    if row.get("broadcast") == "gpu_standard" and len(present) == 2:
        a, b = (tensors[i].shape for i in present)
        if not _broadcast_ok(a, b):
            problems.append(f"broadcast {list(a)} with {list(b)} is not one the delegate does")
    if "type_pairs" in row and present and op.outputs:
        pair = [tensors[present[0]].dtype, tensors[op.outputs[0]].dtype]
        if pair not in row["type_pairs"]:
            problems.append(f"{pair[0]} -> {pair[1]} not an allowed type pair")
    if "single_consumer_in" in row and op.outputs:
        users = consumers.get(op.outputs[0], [])
        if len(users) != 1 or users[0].name not in row["single_consumer_in"]:
            problems.append(f"output must feed exactly one of {row['single_consumer_in']}, "
                            f"feeds {[u.name for u in users]}")
    if "axes_input" in row and present:
        axes = tensor_at(row["axes_input"], op.inputs)
        rank = tensors[op.inputs[0]].rank
        if axes is not None and axes.data is not None:
            bad = [int(a) for a in axes.data if not -rank <= int(a) < rank]
            if bad:
                problems.append(f"axes {bad} outside rank {rank}")
    return problems


def check_gpu_delegate_compat(model: str | Path, table: GpuDelegateOpsTable | None = None, *,
                              quantized_ops: bool = True) -> GpuDelegateCompatReport:
    """Check a .tflite file against the LiteRT GPU delegate's op table.

    quantized_ops: whether the delegate runs with quantized ops allowed (its default options
    set TFLITE_GPU_EXPERIMENTAL_FLAGS_ENABLE_QUANT): QUANTIZE/DEQUANTIZE and INT8/UINT8
    tensors. Raises ArtifactError when the file cannot be read as TFLite.
    """
    graph = read_tflite_graph(model)
    table = table or load_ops_table()
    allowed_types = table.runtime_types | (table.quantized_types if quantized_ops else frozenset())
    ops: Counter[str] = Counter()
    high_rank_ops: Counter[str] = Counter()
    used: dict[tuple[int, int], TFLiteTensor] = {}
    unsupported, versions, options, types = set(), [], [], []
    words = {}
    for g, (operators, tensors) in enumerate(graph.subgraphs):
        # The delegate's partitioner folds a DEQUANTIZE of constant fp16 weights into its
        # consumers (fp16 models): for their rules, its output is a constant.
        folded = {op.outputs[0] for op in operators if op.name == "DEQUANTIZE" and op.inputs
                  and tensors[op.inputs[0]].constant and tensors[op.inputs[0]].dtype == "FLOAT16"}
        tensors = [replace(t, constant=True) if i in folded else t for i, t in enumerate(tensors)]
        consumers: dict[int, list[TFLiteOp]] = {}
        for op in operators:
            for i in op.inputs:
                consumers.setdefault(i, []).append(op)
        for op in operators:
            ops[op.name] += 1
            where = f"{op.name} #{op.index}" + (f" (subgraph {g})" if g else "")
            touched = {i: tensors[i] for i in (*op.inputs, *op.outputs) if i >= 0}
            used.update(((g, i), t) for i, t in touched.items())
            if any(t.rank > table.max_tensor_rank for t in touched.values()):
                high_rank_ops[op.name] += 1
            row = table.operators.get(op.name)
            if row is None or not row["supported"] or (row.get("quantized_only") and not quantized_ops):
                unsupported.add(op.name)
                continue
            if row.get("words"):
                words[op.name] = row["words"]
            if op.name == "DEQUANTIZE" and op.inputs and tensors[op.inputs[0]].constant \
                    and tensors[op.inputs[0]].dtype == "FLOAT16":
                continue  # fp16 weights: folded into their consumers by the delegate's partitioner
            if row.get("max_version") is not None and op.version > row["max_version"]:
                versions.append(f"{op.name} v{op.version} (max {row['max_version']})")
            for problem in _option_problems(op, row) + _input_problems(op, row, tensors, consumers):
                options.append(f"{where}: {problem}")
            ins = allowed_types | frozenset(row.get("extra_input_types", ()))
            outs = allowed_types | frozenset(row.get("extra_output_types", ()))
            for side, indices, allowed in (("input", op.inputs, ins), ("output", op.outputs, outs)):
                for i in indices:
                    t = tensors[i] if i >= 0 else None
                    if t is not None and not t.constant and not t.variable and t.dtype not in allowed:
                        types.append(f"{where}: {side} {t.name} {t.dtype}")
    high = [t for t in used.values() if t.rank > table.max_tensor_rank]
    return GpuDelegateCompatReport(
        model=str(model), source=table.source, max_tensor_rank=table.max_tensor_rank,
        ops=dict(ops.most_common()), tensors=len(used),
        highest_rank=max((t.rank for t in used.values()), default=0),
        high_rank_count=len(high), high_rank_tensors=[t.label() for t in high[:NAMES_KEPT]],
        high_rank_ops=dict(high_rank_ops.most_common()),
        unsupported_ops=sorted(unsupported), version_too_high=sorted(set(versions)),
        option_violations=options, tensor_type_violations=types,
        unchecked_rules=dict(sorted(words.items())))
