"""OpenVINO: runs the ONNX graph of an `openvino` artifact; imports openvino only, never TF.

OpenVINO reads the ONNX file itself (its ONNX frontend) and compiles it for the CPU plugin at
load, so a cell's load time includes that compilation. By default (`state_io='buffers'`)
states stay in two sets of `ov.Tensor`s that the steps write in turn (runtimes.state_buffers):
each step binds the previous step's output tensors as its inputs, so carrying 40-odd stream
buffers costs no copy, and a state handed out is never overwritten by a later step.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ArtifactError, MovibenchError, first_line
from core.manifest import IMAGE_INPUT, LOGITS_OUTPUT, StateManifest
from runtimes.base import (
    PROFILE_CALLS, ExecutionFacts, Session, States, TensorInfo, profile_columns, profile_legend,
    run_calls,
)
from runtimes.state_buffers import STATE_IO_BUFFERS, StateBuffers, check_state_io

DEVICE = "CPU"
# PERFORMANCE_HINT=LATENCY with one stream: one request at a time, all threads on it (a
# streaming step is a chain of small ops). INFERENCE_PRECISION_HINT=f32: on CPUs with bf16
# support the plugin would otherwise run fp32 models in bf16, and an fp32 cell would not be fp32.
COMPILE_CONFIG = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1",
                  "INFERENCE_PRECISION_HINT": "f32"}


def _port_name(port, wanted: set[str]) -> str:
    """The port's name that the manifest uses (an ONNX output also carries internal names)."""
    names = port.get_names()
    return next((n for n in sorted(names) if n in wanted), port.get_any_name())


def _declared_io(compiled, manifest: StateManifest) -> tuple[list, list]:
    """(inputs, outputs) of a compiled model as (TensorInfo, port) pairs, under the names
    the manifest uses."""
    wanted = {IMAGE_INPUT, LOGITS_OUTPUT} | set(manifest.input_names) | set(manifest.output_names)

    def infos(ports):
        pairs = []
        for port in ports:
            dims = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
            dtype = np.dtype(port.get_element_type().to_dtype()).name
            pairs.append((TensorInfo(_port_name(port, wanted), dims, dtype), port))
        return pairs

    return infos(compiled.inputs), infos(compiled.outputs)


def _compile(path: Path, properties: dict):
    """The file at `path` compiled for the CPU plugin, or a one-line ArtifactError."""
    import openvino as ov

    core = ov.Core()
    try:
        return core.compile_model(core.read_model(str(path)), DEVICE, properties)
    except Exception as exc:  # OpenVINO raises RuntimeError (and its own types) for bad files
        raise ArtifactError(f"cannot load ONNX model {path} in OpenVINO: {first_line(exc)}") from None


def counter_facts(calls: list[list]) -> ExecutionFacts:
    """Shares of node time per layer type and per kernel implementation, from the CPU
    plugin's per-layer counters (`InferRequest.get_profiling_info()`, one list per call).

    The first call is left out (it allocates and primes caches), so at least two are needed.
    Layers the plugin fused into others or optimised away report NOT_RUN and are not counted.
    """
    if len(calls) < 2:
        raise MovibenchError(f"OpenVINO counters need two calls or more, got {len(calls)}")
    layer_time, kernel_time, executed = Counter(), Counter(), set()
    for counters in calls[1:]:
        for info in counters:
            if info.status != info.Status.EXECUTED:
                continue
            executed.add(info.node_name)
            micros = info.real_time.total_seconds() * 1e6
            layer_time[info.node_type] += micros
            kernel_time[info.exec_type] += micros
    if not executed:
        raise MovibenchError("the OpenVINO counters name no executed layer")
    total = sum(layer_time.values()) or 1
    return ExecutionFacts(
        nodes=len(executed),
        op_time={op: t / total for op, t in layer_time.most_common()},
        provider_time={k: t / total for k, t in kernel_time.most_common()})


class OpenVinoSession(Session):
    """A compiled OpenVINO model on the CPU plugin behind the streaming interface.

    Options (keywords of `open`, besides `threads`: INFERENCE_NUM_THREADS, None for the
    plugin's default of every core):
        config: more CPU plugin properties, over COMPILE_CONFIG.
        state_io: 'buffers' (default): states stay in the session's own `ov.Tensor`s from
            step to step (runtimes.state_buffers); 'host': numpy arrays in, copies out.
    """

    runtime = "openvino"
    engine_name = "OpenVINO"
    artifact_kind = "OpenVINO"
    engine_modules = ("openvino",)
    distribution = "openvino"

    @classmethod
    def facts_legend(cls) -> tuple[str, str]:
        return profile_legend(
            cls.engine_name, "the CPU plugin's per-layer counters (PERF_COUNT)",
            "Layers are those the plugin executes after its own fusions (a 'Subgraph' is a fused "
            "group); kernels are the implementations it chose, e.g. jit_avx2_f32 (JIT code for "
            "AVX2) or ref_any_f32 (a reference C++ loop, the slow path).")

    @classmethod
    def facts_columns(cls, facts: ExecutionFacts) -> dict[str, Any] | None:
        return profile_columns(facts, "kernels")

    @classmethod
    def facts_reading(cls, facts: ExecutionFacts) -> str | None:
        if facts.op_time is None:
            return None
        reference = sum(v for k, v in facts.provider_time.items() if k.startswith("ref"))
        top, share = next(iter(facts.op_time.items()), ("none", None))
        share = "–" if share is None else f"{100 * share:.1f}"
        return (f"{100 * reference:.1f} % of layer time on reference (non-JIT) kernels; the "
                f"largest layer type is {top} at {share} %")

    def __init__(self, compiled, manifest: StateManifest, path: Path, properties: dict,
                 state_io: str = STATE_IO_BUFFERS):
        super().__init__(manifest)
        self.compiled = compiled
        self.path = path
        self._properties = properties  # what it was compiled with, to compile a profiling twin
        self.request = compiled.create_infer_request()
        inputs, outputs = _declared_io(compiled, manifest)
        # What the compiled model declares, under the manifest's names, read once.
        self._declared = ([i for i, _ in inputs], [o for o, _ in outputs])
        # Manifest tensor name → the compiled model's port.
        self._ports = {info.name: port for info, port in inputs + outputs}
        self.state_io = state_io
        self._states: StateBuffers | None = None

    @classmethod
    def _load(cls, path: Path, manifest: StateManifest, threads: int | None,
              config: dict | None = None, state_io: str = STATE_IO_BUFFERS) -> OpenVinoSession:
        """The ONNX file at `path` read and compiled for the CPU plugin, with the options in
        the class docstring."""
        check_state_io("OpenVINO", state_io)
        properties = {**COMPILE_CONFIG, **(config or {})}
        if threads:
            properties["INFERENCE_NUM_THREADS"] = int(threads)
        return cls(_compile(path, properties), manifest, path, properties, state_io)

    def declared_io(self) -> tuple[list[TensorInfo], list[TensorInfo]]:
        """The compiled model's inputs and outputs, each under the name the manifest uses
        (an ONNX output port also carries internal names)."""
        return self._declared

    def _prepare(self, path: Path) -> None:
        """The two sets of state tensors of `state_io='buffers'`, shaped like the outputs."""
        if not (self.manifest.causal and self.state_io == STATE_IO_BUFFERS):
            return
        import openvino as ov

        def new_buffer(spec):
            port = self._ports[spec.output_name]
            return ov.Tensor(port.get_element_type(), port.get_shape())

        self._states = StateBuffers(
            self.manifest.states, new_buffer,
            read=lambda tensor, spec: np.array(tensor.data, copy=True),
            host_input=lambda spec, value: ov.Tensor(np.ascontiguousarray(value)))

    @property
    def properties(self) -> dict[str, str]:
        """What the plugin compiled with (threads, streams, precision), as it reports them."""
        names = ("PERFORMANCE_HINT", "NUM_STREAMS", "INFERENCE_NUM_THREADS",
                 "INFERENCE_PRECISION_HINT")
        values = {name: self.compiled.get_property(name) for name in names}
        # An element type prints as "<Type: 'float32'>"; to_string() is the plugin's own 'f32'.
        return {name: value.to_string() if hasattr(value, "to_string") else str(value)
                for name, value in values.items()}

    def settings(self) -> dict[str, str]:
        """The compiled model's `properties` (performance hint, streams, threads, inference
        precision) as the plugin reports them, under its own names (the keys of `config`),
        and the session's `state_io`."""
        return {**self.properties, "state_io": self.state_io}

    def multiply_adds(self) -> int:
        """Multiply-adds per call, counted from the ONNX file's graph
        (runtimes.onnx_file.onnx_multiply_adds)."""
        from runtimes.onnx_file import onnx_multiply_adds

        return onnx_multiply_adds(self.path)

    def execution_facts(self, frames: np.ndarray, calls: int = PROFILE_CALLS) -> ExecutionFacts:
        """Where a call's time goes by layer type and kernel implementation (e.g.
        'jit_avx2_FP32'), from the CPU plugin's per-layer counters (`counter_facts`) over
        `calls` calls on `frames`, states carried from call to call.

        The calls run on a twin compiled like this one with PERF_COUNT on: counting adds work
        to every layer, and this session, the timed one, never counts.
        """
        twin = type(self)(_compile(self.path, {**self._properties, "PERF_COUNT": True}),
                          self.manifest, self.path, self._properties, self.state_io)
        twin._prepare(self.path)
        counters = []
        # The counters describe the request's last call only: read them after each.
        run_calls(twin, frames, calls, lambda: counters.append(twin.request.get_profiling_info()))
        return counter_facts(counters)

    def _step(self, frames: np.ndarray, states: States) -> tuple[np.ndarray, States]:
        import openvino as ov

        request, ports, specs = self.request, self._ports, self.manifest.states
        request.set_tensor(ports[IMAGE_INPUT], ov.Tensor(np.ascontiguousarray(frames)))
        if self._states is None:  # host: numpy in, copies out
            for spec in specs:
                request.set_tensor(ports[spec.input_name],
                                   ov.Tensor(np.ascontiguousarray(states[spec.name])))
            request.infer()
            next_states = {spec.name: np.array(request.get_tensor(ports[spec.output_name]).data,
                                               copy=True) for spec in specs}
        else:
            buffers, slot = self._states.inputs(states)
            written = self._states.outputs(slot)
            for spec in specs:
                request.set_tensor(ports[spec.input_name], buffers[spec.name])
                request.set_tensor(ports[spec.output_name], written[spec.name])
            request.infer()
            next_states = self._states.issue(slot)
        logits = np.array(request.get_tensor(ports[LOGITS_OUTPUT]).data, copy=True)
        return logits, next_states

    def _predict(self, clip: np.ndarray) -> np.ndarray:
        import openvino as ov

        self.request.set_tensor(self._ports[IMAGE_INPUT], ov.Tensor(np.ascontiguousarray(clip)))
        self.request.infer()
        return np.array(self.request.get_tensor(self._ports[LOGITS_OUTPUT]).data, copy=True)

