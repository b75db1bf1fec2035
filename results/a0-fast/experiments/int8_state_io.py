"""Experiment: would int8 image/state/logits I/O make A0 stream int8 pay on this CPU?

Converts the A0 stream demo weights with the `tflite-int8+opt` graph optimizations and the
TFLite converter's int8 inference input/output types (image, every float state and the logits
int8: what Model Garden's quantize_movinet.py int8 mode does), calibrated on the run's first 8
training videos, then times it beside the run's own `tflite-int8+opt` and `tflite-fp32`
artifacts, each as a LiteRT CompiledModel whose output buffers are the next step's inputs (no
state crosses Python), in alternating blocks in one process. It also lists the states whose
input and output scales differ: an int8 state can be carried from step to step unchanged only
where they agree.

Run from the checkout root, after `movibench matrix run a0-fast --out results/a0-fast`:
    MOVIBENCH_CACHE=.movibench-cache .venv/bin/python results/a0-fast/experiments/int8_state_io.py
Writes results/a0-fast/experiments/int8_state_io.json.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

RUN = Path("results/a0-fast")
KEY = "serving_default"


def convert(target: Path) -> None:
    import tensorflow as tf

    from bench.data.calibration_clips import calibration_from_videos
    from core.build import step_function
    from converters.calibration import stream_feeds
    from converters.export import build_reference
    from converters.export_tflite import function_holder
    from core.formats import CAUSAL_POOL_STEP, INT8_HARD_SWISH
    from core.manifest import IMAGE_INPUT
    from converters.optimize import optimized_build
    from core.zoo import config_for, demo_checkpoint

    checkpoint = demo_checkpoint("a0-stream-synth")
    config = config_for("a0", "stream", None, None, checkpoint).resolved()
    dataset = Path(json.loads((RUN / "run.json").read_text())["dataset"])
    videos = sorted((dataset / "train").glob("*/*"))[:8]
    calibration = calibration_from_videos(videos, 16)
    with optimized_build((INT8_HARD_SWISH, CAUSAL_POOL_STEP)):
        model, manifest = build_reference(config, checkpoint, 0, 1)
        step = step_function(model, manifest, 1)
        concrete = step.get_concrete_function()

        def next_states(feed):
            out = concrete(feed[IMAGE_INPUT], *(feed[s.input_name] for s in manifest.states))
            return {s.name: out[s.output_name].numpy() for s in manifest.states}

        converter = tf.lite.TFLiteConverter.from_concrete_functions(
            [concrete], function_holder(step, model))
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.representative_dataset = lambda: stream_feeds(
            next_states, manifest, 1, calibration.iter_clips(manifest.resolution))
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        target.write_bytes(converter.convert())


class PingPong:
    """A CompiledModel stepping on its own buffers: step n's outputs are step n+1's inputs."""

    def __init__(self, path: Path):
        from ai_edge_litert.compiled_model import CompiledModel
        from ai_edge_litert.cpu_options import CpuOptions
        from ai_edge_litert.options import Options

        self.model = CompiledModel.from_file(str(path), options=Options(
            cpu_options=CpuOptions(num_threads=1)))
        inputs = self.model.get_input_tensor_details(KEY)
        outputs = self.model.get_output_tensor_details(KEY)
        self.image_dtype = np.dtype(inputs["image"]["dtype"])
        self.image = self.model.create_input_buffer_by_name(KEY, "image")
        self.inputs = {n: self.model.create_input_buffer_by_name(KEY, n) for n in inputs}
        for name, d in inputs.items():
            self.inputs[name].write(np.zeros(d["shape"], np.dtype(d["dtype"])))
        self.sets = [{n: self.model.create_output_buffer_by_name(KEY, n) for n in outputs}
                     for _ in range(2)]
        self.calls = 0
        self.scales = {n: (inputs[n].get("quantization"), outputs.get("next_" + n, {}).get(
            "quantization")) for n in inputs}

    def step(self, frame: np.ndarray) -> int:
        start = time.perf_counter_ns()
        self.image.write(frame.astype(self.image_dtype) if self.image_dtype != np.float32 else frame)
        out = self.sets[self.calls % 2]
        self.model.run_by_name(KEY, {**self.inputs, "image": self.image}, out)
        self.inputs = {n.replace("next_", "", 1): b for n, b in out.items() if n != "logits"}
        self.calls += 1
        return time.perf_counter_ns() - start


def scale_mismatches(path: Path) -> list[str]:
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path)).get_signature_runner(KEY)
    inputs, outputs = runner.get_input_details(), runner.get_output_details()
    return sorted(n for n, d in inputs.items() if n.startswith("state_") and d["dtype"] == np.int8
                  and d["quantization"] != outputs["next_" + n]["quantization"])


def main() -> None:
    cells = pd.read_parquet(RUN / "cells.parquet")
    latency = cells[(cells["kind"] == "latency") & (cells["artifact_source"] == "movibench")]
    paths = {fmt: Path(latency[latency["format"] == fmt]["artifact"].iloc[0])
             for fmt in ("tflite-fp32", "tflite-int8+opt")}
    with tempfile.TemporaryDirectory() as tmp:
        paths["tflite-int8+opt, int8 I/O"] = Path(tmp) / "int8-io.tflite"
        convert(paths["tflite-int8+opt, int8 I/O"])
        mismatched = scale_mismatches(paths["tflite-int8+opt, int8 I/O"])
        contenders = {name: PingPong(path) for name, path in paths.items()}
        frames = np.random.default_rng(0).random((8, 1, 1, 172, 172, 3), dtype=np.float32)
        times = {name: [] for name in contenders}
        for round_ in range(20):
            for name, contender in contenders.items():
                for k in range(40):
                    elapsed = contender.step(frames[k % 8])
                    if k >= 3:  # each block's first calls bring the weights back into cache
                        times[name].append(elapsed)
    p50 = {name: float(np.median(t)) / 1e6 for name, t in times.items()}
    from bench.results.environment import environment

    result = {"command": " ".join(["python", *sys.argv]), "environment": environment(),
              "frame_p50_ms_1_thread": p50,
              "speedup_vs_tflite_fp32": {n: p50["tflite-fp32"] / v for n, v in p50.items()},
              "states_with_different_input_and_output_scales": mismatched}
    out = RUN / "experiments" / "int8_state_io.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
