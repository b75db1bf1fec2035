"""LiteRT (ai-edge-litert): runs an exported .tflite artifact; imports ai_edge_litert, never TF.

Calls go through the file's `serving_default` signature, by tensor name. Two naming conventions
for next states are understood: ours (`next_state_<name>`) and the official MoViNet TFLite
stream binaries' (outputs named exactly like the state inputs, `state_<name>`), so a file a
user brings without a manifest runs too (`manifest_from_tflite`).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from converters.errors import ArtifactError, first_line
from converters.manifest import (
    IMAGE_INPUT, LOGITS_OUTPUT, STATE_PREFIX, StateManifest, manifest_from_signature,
    state_name_from_tensor, state_output_name,
)
from runtimes.base import ExecutionFacts, Session, States, TensorInfo

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
    """Signature tensor details → TensorInfo by signature name (-1 in a shape → None)."""
    infos = {}
    for name, d in details.items():
        dims = d["shape_signature"] if len(d["shape_signature"]) else d["shape"]
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

    What converters.manifest.manifest_from_signature infers (resolution, frames per call,
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


def _op_key(op: dict) -> str:
    """'CAST int32': an op type alone does not say why it was left out (float ADD is
    delegated, int32 ADD is not)."""
    types = op["operand_types"]
    return f"{op['op_name']} {np.dtype(types[0]).name}" if types else op["op_name"]


class LiteRTSession(Session):
    """A LiteRT interpreter behind the streaming interface, called through its signature.

    Options (keywords of `open`, besides `threads`: CPU threads, None for LiteRT's default):
        xnnpack: apply LiteRT's default XNNPACK delegate (default True; False: builtin
            kernels only, to tell what XNNPACK contributes).
    """

    runtime = "litert"
    artifact_kind = "TFLite"
    engine_modules = ("ai_edge_litert.interpreter",)

    def __init__(self, interpreter, runner, manifest: StateManifest, path: Path,
                 threads: int | None = None, xnnpack: bool = True):
        super().__init__(manifest)
        self.interpreter = interpreter
        self._runner = runner
        self._threads, self._xnnpack = threads, xnnpack  # as opened: LiteRT does not report them
        # The signature is read once: a damaged one that still loaded fails here, by name.
        inputs, outputs = _signature_io(path, runner)
        self._outputs = state_outputs(inputs, outputs)  # short state name -> output tensor
        self._declared = (list(inputs.values()), _as_contract(outputs, self._outputs))

    @classmethod
    def _load(cls, path: Path, manifest: StateManifest, threads: int | None,
              xnnpack: bool = True) -> LiteRTSession:
        """The interpreter of the .tflite file at `path` (its manifest may come from
        `manifest_from_tflite`), with the options in the class docstring."""
        interpreter, runner = load_interpreter(path, threads, xnnpack)
        return cls(interpreter, runner, manifest, path, threads, xnnpack)

    def settings(self) -> dict[str, Any]:
        """The threads (None: LiteRT's default) and XNNPACK choice the interpreter was made
        with, as `open`'s keywords; LiteRT's Python API does not report them back."""
        return {"threads": self._threads, "xnnpack": self._xnnpack}

    def declared_io(self) -> tuple[list[TensorInfo], list[TensorInfo]]:
        """The signature's inputs and outputs; a next state named like its input (the official
        binaries' convention) is listed as `next_state_*`."""
        return self._declared

    def execution_facts(self, frames: np.ndarray) -> ExecutionFacts:
        """XNNPACK's partitions of this interpreter (`delegation_facts`); they do not depend on
        the input, so `frames` is not run."""
        # LiteRT applies its default delegate when tensors are first allocated, which the
        # signature runner does at every call: a session not run yet is partitioned here. The
        # wrapper's own call, since Interpreter.allocate_tensors refuses while a runner exists;
        # once allocated it returns at once.
        self.interpreter._interpreter.AllocateTensors()
        return delegation_facts(self.interpreter)

    def _step(self, frames: np.ndarray, states: States) -> tuple[np.ndarray, States]:
        feeds = {IMAGE_INPUT: frames}
        feeds.update({s.input_name: np.asarray(states[s.name]) for s in self.manifest.states})
        out = self._runner(**feeds)
        return out[LOGITS_OUTPUT], {s.name: out[self._outputs[s.name]] for s in self.manifest.states}

    def _predict(self, clip: np.ndarray) -> np.ndarray:
        return self._runner(**{IMAGE_INPUT: clip})[LOGITS_OUTPUT]
