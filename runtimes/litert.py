"""LiteRT (ai-edge-litert): runs an exported .tflite artifact; imports ai_edge_litert, never TF.

Calls go through the file's `serving_default` signature, by tensor name: as a `CompiledModel`
whose states stay in its own buffers from step to step (`state_io='buffers'`, the default), or
through the interpreter's signature runner with numpy copies (`state_io='host'`). Two naming
conventions for next states are understood: ours (`next_state_<name>`) and the official MoViNet
TFLite stream binaries' (outputs named exactly like the state inputs, `state_<name>`), so a file
a user brings without a manifest runs too (`manifest_from_tflite`).
"""

from __future__ import annotations

import atexit
import os
import sys
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ArtifactError, MovibenchError, first_line
from core.library_log import stderr_silenced
from core.manifest import (
    IMAGE_INPUT, LOGITS_OUTPUT, STATE_PREFIX, StateManifest, StateSpec, manifest_from_signature,
    state_name_from_tensor, state_output_name,
)
from runtimes.base import ExecutionFacts, Session, States, TensorInfo
from runtimes.state_buffers import STATE_IO_BUFFERS, STATE_IO_HOST, StateBuffers, check_state_io

SIGNATURE_KEY = "serving_default"
DELEGATE_OP = "DELEGATE"  # the node a delegate kernel puts in place of one partition


def load_interpreter(path: str | Path, threads: int | None = None, xnnpack: bool = True):
    """(Interpreter, SignatureRunner) for the file at `path`, or a one-line ArtifactError.

    `xnnpack=False` uses the builtin kernels without LiteRT's default delegate, to tell what
    XNNPACK contributes. The runner is `serving_default`, or the file's only signature.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"TFLite artifact not found: {path}")
    resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        interpreter = Interpreter(model_path=str(path), num_threads=threads,
                                  experimental_op_resolver_type=resolver)
        signatures = interpreter.get_signature_list()
    except (ValueError, RuntimeError) as exc:
        raise ArtifactError(f"cannot load TFLite model {path}: {first_line(exc)}") from None
    if SIGNATURE_KEY in signatures:
        key = SIGNATURE_KEY
    elif len(signatures) == 1:
        key = next(iter(signatures))
    else:
        raise ArtifactError(f"{path} has no {SIGNATURE_KEY!r} signature to run "
                            f"(signatures: {sorted(signatures) or 'none'})")
    return interpreter, interpreter.get_signature_runner(key)


def _signature_io(path, runner) -> tuple[dict[str, TensorInfo], dict[str, TensorInfo]]:
    """The signature's inputs and outputs; a damaged file that loaded can still fail here
    (LiteRT's ValueError 'Invalid tensor index ...'), which is an ArtifactError too."""
    try:
        return _tensor_infos(runner.get_input_details()), _tensor_infos(runner.get_output_details())
    except (ValueError, RuntimeError) as exc:
        raise ArtifactError(f"cannot load TFLite model {path}: {first_line(exc)}") from None


def _tensor_infos(details: dict) -> dict[str, TensorInfo]:
    """Signature tensor details (an interpreter's or a CompiledModel's, which has no
    `shape_signature`) → TensorInfo by signature name (-1 in a shape → None)."""
    infos = {}
    for name, d in details.items():
        signature = d.get("shape_signature", ())
        dims = signature if len(signature) else d["shape"]
        infos[name] = TensorInfo(name, tuple(None if int(x) < 0 else int(x) for x in dims),
                                 np.dtype(d["dtype"]).name)
    return infos


def state_outputs(input_names, output_names) -> dict[str, str]:
    """Short state name → the output tensor carrying its next value, in either convention.

    Raises ArtifactError naming the first state input with no matching output.
    """
    mapping = {}
    for name in input_names:
        if not name.startswith(STATE_PREFIX):
            continue
        short = state_name_from_tensor(name)
        ours = state_output_name(short)
        if ours in output_names:
            mapping[short] = ours
        elif name in output_names:
            mapping[short] = name
        else:
            raise ArtifactError(f"state input {name!r} has no output {ours!r} or {name!r} "
                                "carrying its next value")
    return mapping


def _as_contract(outputs: dict[str, TensorInfo], naming: dict[str, str]) -> list[TensorInfo]:
    """Outputs under contract names: a state output named like its input becomes next_state_*."""
    carried = {tensor: short for short, tensor in naming.items()}
    return [TensorInfo(state_output_name(carried[n]), t.shape, t.dtype) if n in carried else t
            for n, t in outputs.items()]


def _detect_precision(interpreter, inputs: dict[str, TensorInfo]) -> str:
    """fp32 / fp16 / dynamic / int8 from the dtypes of the file's tensors.

    float16 tensors are fp16 weights. int8 tensors with float I/O are either dynamic-range
    (int8 weights only: biases stay float) or full int8 (int32 quantized biases); int8 I/O is
    full int8 by definition.
    """
    if any(t.dtype in ("int8", "uint8") for t in inputs.values()):
        return "int8"
    details = interpreter.get_tensor_details()
    dtypes = {np.dtype(d["dtype"]).name for d in details}
    if "float16" in dtypes:
        return "fp16"
    if "int8" not in dtypes:
        return "fp32"
    quantized_int32 = any(np.dtype(d["dtype"]) == np.int32
                          and len(d["quantization_parameters"]["scales"]) for d in details)
    return "int8" if quantized_int32 else "dynamic"


def manifest_from_tflite(path: str | Path) -> StateManifest:
    """A manifest read off a `.tflite` file's own signature, for a file that came without one.

    What core.manifest.manifest_from_signature infers (resolution, frames per call,
    classes, states), the states' outputs in either naming convention, and the precision from
    the tensor dtypes. Model id is the file's stem.

    Raises ArtifactError when the signature does not follow the state contract.
    """
    path = Path(path)
    interpreter, runner = load_interpreter(path, xnnpack=False)
    inputs, outputs = _signature_io(path, runner)
    precision = _detect_precision(interpreter, inputs)
    manifest = manifest_from_signature(path, inputs.values(), outputs.values(),
                                       fmt=f"tflite-{precision}", precision=precision, source="")
    naming = state_outputs(inputs, outputs)
    convention = ("next_state_*" if all(o.startswith("next_") for o in naming.values())
                  else "outputs named like the state inputs")
    manifest.source = f"read from the signature of {path.name} (state outputs: {convention})"
    return manifest


def delegation_facts(interpreter) -> ExecutionFacts:
    """How an allocated interpreter splits its main graph between delegate kernels (XNNPACK's
    by default) and LiteRT's built-in kernels, read off its node table.

    Delegation keeps the file's nodes and appends one DELEGATE node per partition, whose inputs
    and outputs are the partition's boundary tensors; the Python API does not show the
    execution plan itself. So a partition's nodes are found by walking back from its outputs to
    its inputs, and the nodes in no partition are the ones left on the built-in kernels, counted
    by op type and first operand's dtype ('ADD int32'). docs/execution-facts.md tells how this
    was checked against the delegate's own count.
    """
    ops = interpreter._get_ops_details()
    graph = [op for op in ops if op["op_name"] != DELEGATE_OP]
    kernels = [op for op in ops if op["op_name"] == DELEGATE_OP]
    by_index = {op["index"]: op for op in graph}
    producer = {int(t): op["index"] for op in graph for t in op["outputs"]}
    delegated: set[int] = set()
    for kernel in kernels:
        boundary = {int(t) for t in kernel["inputs"]}
        todo = [int(t) for t in kernel["outputs"]]
        while todo:
            tensor = todo.pop()
            node = producer.get(tensor)
            if tensor in boundary or node is None or node in delegated:
                continue
            delegated.add(node)
            todo += [int(t) for t in by_index[node]["inputs"]]
    builtin = Counter(_op_key(op) for op in graph if op["index"] not in delegated)
    return ExecutionFacts(nodes=len(graph), partitions=len(kernels), delegated_nodes=len(delegated),
                          builtin_ops=dict(builtin.most_common()))


# Multiply-adds per output element of each weighted op, from its weight's shape `w` (and its
# first input's `x` for BATCH_MATMUL): CONV_2D weights are [Cout, kh, kw, Cin/groups],
# DEPTHWISE_CONV_2D [1, kh, kw, Cout], FULLY_CONNECTED [Cout, Cin], CONV_3D [kd, kh, kw, Cin, Cout].
_MACS_PER_OUTPUT = {
    "CONV_2D": lambda w, x: np.prod(w[1:]),
    "DEPTHWISE_CONV_2D": lambda w, x: w[1] * w[2],
    "FULLY_CONNECTED": lambda w, x: w[-1],
    "CONV_3D": lambda w, x: np.prod(w[:4]),
    "BATCH_MATMUL": lambda w, x: x[-1],
}


def multiply_adds(interpreter) -> int:
    """Multiply-adds one call of an interpreter's main graph does in its convolutions and
    matrix products, counted from the ops and their tensors' shapes (delegated or not: the
    node table keeps every op); elementwise ops are not counted."""
    # Intermediate shapes are known once tensors are allocated; the wrapper's own call, since
    # Interpreter.allocate_tensors refuses while a signature runner exists.
    interpreter._interpreter.AllocateTensors()
    shapes = {t["index"]: tuple(int(d) for d in t["shape"]) for t in interpreter.get_tensor_details()}
    total = 0
    for op in interpreter._get_ops_details():
        per_output = _MACS_PER_OUTPUT.get(op["op_name"])
        if per_output is not None:
            x, w = (shapes[int(i)] for i in op["inputs"][:2])
            out = int(np.prod(shapes[int(op["outputs"][0])], dtype=np.int64))
            total += out * int(per_output(w, x))
    return total


def _op_key(op: dict) -> str:
    """'CAST int32': an op type alone does not say why it was left out (float ADD is
    delegated, int32 ADD is not)."""
    types = op["operand_types"]
    return f"{op['op_name']} {np.dtype(types[0]).name}" if types else op["op_name"]


class LiteRTSession(Session):
    """A LiteRT model behind the streaming interface.

    Options (keywords of `open`, besides `threads`: CPU threads, None for LiteRT's default):
        xnnpack: apply LiteRT's default XNNPACK delegate (default True; False: builtin
            kernels only, to tell what XNNPACK contributes).
        state_io: 'buffers' (the default with XNNPACK): the file runs as a LiteRT
            `CompiledModel` whose states stay in its own tensor buffers from step to step
            (runtimes.state_buffers), bit-identical to 'host', where the interpreter's
            signature runner takes and returns numpy arrays, as a user's own loop over it does.
    """

    runtime = "litert"
    engine_name = "LiteRT"
    artifact_kind = "TFLite"
    engine_modules = ("ai_edge_litert.interpreter", "ai_edge_litert.compiled_model")
    distribution = "ai-edge-litert"

    @classmethod
    def facts_legend(cls) -> tuple[str, str]:
        return ("LiteRT: XNNPACK takes the nodes it supports in partitions, one delegate kernel "
                "each; the nodes it does not take run on LiteRT's built-in kernels between them, "
                "and every partition boundary hands tensors over from one to the other. Read off "
                "the interpreter's node table after the timed calls; the nodes left out are named "
                "by op type and first operand dtype, most frequent first.",
                "LiteRT: how the graph is split between XNNPACK and the built-in kernels")

    @classmethod
    def facts_columns(cls, facts: ExecutionFacts) -> dict[str, Any] | None:
        if facts.partitions is None:
            return None
        delegated = float("nan") if facts.delegated_nodes is None else facts.delegated_nodes
        return {"XNNPACK partitions": facts.partitions,
                "delegated nodes (%)": delegated / facts.nodes,
                "left on built-in kernels (nodes)": facts.builtin_ops}

    @classmethod
    def facts_reading(cls, facts: ExecutionFacts) -> str | None:
        if facts.partitions is None:
            return None
        left, partitions = sum(facts.builtin_ops.values()), facts.partitions
        plural = "s" if partitions > 1 else ""
        if not left:
            return (f"all {facts.nodes:,} nodes run on XNNPACK ({partitions} partition{plural}): "
                    "nothing falls back")
        top, count = next(iter(facts.builtin_ops.items()))
        return (f"{partitions} XNNPACK partition{plural}; {left} nodes run on LiteRT's built-in "
                f"kernels (most: {top}, {count}), and every partition boundary hands tensors "
                "over between the two")

    def __init__(self, manifest: StateManifest, path: Path, engine, threads: int | None,
                 xnnpack: bool):
        super().__init__(manifest)
        self.path = path
        self._engine = engine
        self._threads, self._xnnpack = threads, xnnpack  # as opened: LiteRT does not report them

    @classmethod
    def _load(cls, path: Path, manifest: StateManifest, threads: int | None,
              xnnpack: bool = True, state_io: str | None = None) -> LiteRTSession:
        """The .tflite file at `path` (its manifest may come from `manifest_from_tflite`)
        loaded for the state I/O asked, with the options in the class docstring."""
        state_io = check_state_io("LiteRT", state_io or (STATE_IO_BUFFERS if xnnpack
                                                          else STATE_IO_HOST))
        if state_io == STATE_IO_BUFFERS and not xnnpack:
            raise MovibenchError("LiteRT state_io='buffers' runs a CompiledModel, which always "
                                 "delegates to XNNPACK: use state_io='host' with xnnpack=False")
        engine = (CompiledEngine(path, manifest, threads) if state_io == STATE_IO_BUFFERS
                  else SignatureEngine(path, threads, xnnpack))
        return cls(manifest, path, engine, threads, xnnpack)

    def settings(self) -> dict[str, Any]:
        """The threads (None: LiteRT's default), XNNPACK choice and state I/O the session was
        opened with, as `open`'s keywords; LiteRT's Python API does not report them back."""
        return {"threads": self._threads, "xnnpack": self._xnnpack,
                "state_io": self._engine.state_io}

    def declared_io(self) -> tuple[list[TensorInfo], list[TensorInfo]]:
        """The signature's inputs and outputs; a next state named like its input (the official
        binaries' convention) is listed as `next_state_*`."""
        return self._engine.declared

    def _prepare(self, path: Path) -> None:
        self._engine.prepare(self.manifest)

    def _interpreter(self, xnnpack: bool):
        """An interpreter of the file, for its node table: the session's own when it runs one,
        else a new one (a CompiledModel shows no node table)."""
        if isinstance(self._engine, SignatureEngine):
            return self._engine.interpreter
        return load_interpreter(self.path, self._threads, xnnpack)[0]

    def execution_facts(self, frames: np.ndarray) -> ExecutionFacts:
        """XNNPACK's partitions of the file (`delegation_facts`), read off an interpreter
        opened like this session; they do not depend on the input, so `frames` is not run."""
        interpreter = self._interpreter(self._xnnpack)
        # LiteRT applies its default delegate when tensors are first allocated, which the
        # signature runner does at every call: a session not run yet is partitioned here. The
        # wrapper's own call, since Interpreter.allocate_tensors refuses while a runner exists;
        # once allocated it returns at once.
        interpreter._interpreter.AllocateTensors()
        return delegation_facts(interpreter)

    def multiply_adds(self) -> int:
        """Multiply-adds per call, counted from the file's graph (`multiply_adds`)."""
        return multiply_adds(self._interpreter(xnnpack=False))

    def _step(self, frames: np.ndarray, states: States) -> tuple[np.ndarray, States]:
        return self._engine.step(self.manifest, frames, states)

    def _predict(self, clip: np.ndarray) -> np.ndarray:
        return self._engine.predict(clip)


class SignatureEngine:
    """The interpreter's signature runner: numpy arrays in, new numpy arrays out (`host`)."""

    state_io = STATE_IO_HOST

    def __init__(self, path: Path, threads: int | None, xnnpack: bool):
        self.interpreter, self._runner = load_interpreter(path, threads, xnnpack)
        # The signature is read once: a damaged one that still loaded fails here, by name.
        inputs, outputs = _signature_io(path, self._runner)
        self._outputs = state_outputs(inputs, outputs)  # short state name -> output tensor
        self.declared = (list(inputs.values()), _as_contract(outputs, self._outputs))

    def prepare(self, manifest: StateManifest) -> None:
        """Nothing to set up: the signature runner allocates at its first call."""

    def step(self, manifest: StateManifest, frames: np.ndarray, states: States):
        feeds = {IMAGE_INPUT: frames}
        feeds.update({s.input_name: np.asarray(states[s.name]) for s in manifest.states})
        out = self._runner(**feeds)
        return out[LOGITS_OUTPUT], {s.name: out[self._outputs[s.name]] for s in manifest.states}

    def predict(self, clip: np.ndarray) -> np.ndarray:
        return self._runner(**{IMAGE_INPUT: clip})[LOGITS_OUTPUT]


@lru_cache(maxsize=1)
def _environment():
    """One LiteRT environment for the process: every CompiledModel shares it (creating one
    registers the accelerators again)."""
    from ai_edge_litert.environment import Environment

    with stderr_silenced():
        environment = Environment.create()
    # Its destruction at interpreter shutdown logs a line per accelerator: by then everything
    # the process had to say (a traceback included) has been written.
    atexit.register(_silence_native_stderr_at_exit)
    return environment


def _silence_native_stderr_at_exit() -> None:
    sys.stderr.flush()
    with open(os.devnull, "wb") as null:
        os.dup2(null.fileno(), 2)


class CompiledEngine:
    """A LiteRT CompiledModel whose states stay in its own tensor buffers (`buffers`)."""

    state_io = STATE_IO_BUFFERS

    def __init__(self, path: Path, manifest: StateManifest, threads: int | None):
        from ai_edge_litert.compiled_model import CompiledModel
        from ai_edge_litert.cpu_options import CpuOptions
        from ai_edge_litert.options import Options

        # CompiledModel.from_file crashes the process on a damaged file where the interpreter
        # raises: the interpreter (no delegate, no tensors allocated: a few ms) checks it first.
        load_interpreter(path, threads, xnnpack=False)
        options = Options(cpu_options=CpuOptions(num_threads=int(threads or 0)))
        try:
            with stderr_silenced():
                self.model = model = CompiledModel.from_file(
                    str(path), environment=_environment(), options=options)
            signatures = model.get_signature_list()
            self._key = key = SIGNATURE_KEY if SIGNATURE_KEY in signatures else (
                next(iter(signatures)) if len(signatures) == 1 else None)
            if key is None:
                raise ArtifactError(f"{path} has no {SIGNATURE_KEY!r} signature to run "
                                    f"(signatures: {sorted(signatures) or 'none'})")
            inputs = _tensor_infos(model.get_input_tensor_details(key))
            outputs = _tensor_infos(model.get_output_tensor_details(key))
        except (ValueError, RuntimeError) as exc:
            raise ArtifactError(f"cannot load TFLite model {path}: {first_line(exc)}") from None
        self._outputs = naming = state_outputs(inputs, outputs)
        self.declared = (list(inputs.values()), _as_contract(outputs, naming))
        self._image = model.create_input_buffer_by_name(key, IMAGE_INPUT)
        with stderr_silenced():  # the first write sets up the buffers' own environment
            image = inputs[IMAGE_INPUT]
            self._image.write(np.zeros([d or 1 for d in image.shape], np.dtype(image.dtype)))
        self._logits = model.create_output_buffer_by_name(key, LOGITS_OUTPUT)
        self._logits_size = int(np.prod(outputs[LOGITS_OUTPUT].shape))
        self._scratch: dict[str, Any] = {}  # state input name -> buffer for host values
        self._states: StateBuffers | None = None
        self._output_maps: list[dict[str, Any]] = []  # per buffer set: output name -> buffer

    def prepare(self, manifest: StateManifest) -> None:
        """The two sets of state buffers, once the file's I/O is known to match `manifest`."""
        if manifest.causal:
            model, key, naming = self.model, self._key, self._outputs
            self._states = StateBuffers(
                manifest.states,
                new_buffer=lambda spec: model.create_output_buffer_by_name(key, naming[spec.name]),
                read=lambda buffer, spec: buffer.read(int(np.prod(spec.shape)), spec.dtype).reshape(
                    spec.shape),
                host_input=self._host_input)
            # What a step writes into each set, named as run_by_name takes it, made once.
            self._output_maps = [
                {LOGITS_OUTPUT: self._logits, **{naming[s.name]: buffers[s.name]
                                                 for s in manifest.states}}
                for buffers in (self._states.outputs(0), self._states.outputs(1))]

    def _host_input(self, spec: StateSpec, value: np.ndarray):
        buffer = self._scratch.get(spec.input_name)
        if buffer is None:
            buffer = self._scratch[spec.input_name] = self.model.create_input_buffer_by_name(
                self._key, spec.input_name)
        buffer.write(value)
        return buffer

    def step(self, manifest: StateManifest, frames: np.ndarray, states: States):
        buffers, slot = self._states.inputs(states)
        self._image.write(frames)
        inputs = {IMAGE_INPUT: self._image}
        inputs.update({s.input_name: buffers[s.name] for s in manifest.states})
        self.model.run_by_name(self._key, inputs, self._output_maps[slot])
        return self._read_logits(), self._states.issue(slot)

    def predict(self, clip: np.ndarray) -> np.ndarray:
        self._image.write(clip)
        self.model.run_by_name(self._key, {IMAGE_INPUT: self._image},
                               {LOGITS_OUTPUT: self._logits})
        return self._read_logits()

    def _read_logits(self) -> np.ndarray:
        return self._logits.read(self._logits_size, np.float32).reshape(1, -1)
