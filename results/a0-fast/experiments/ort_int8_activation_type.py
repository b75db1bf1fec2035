"""Experiment: which activation type makes ONNX Runtime int8 of the A0 stream fastest here?

`onnx-int8+opt` quantizes with int8 activations (S8S8, converters/export_onnx.py says why:
uint8 activations with full-range int8 weights saturate in x86 u8s8 kernels without VNNI and
lost the T0 demo's decisions). The other accurate choice is uint8 activations with 7-bit
weights (`reduce_range`). This quantizes the run's cached `onnx+opt` A0 the second way, with
the same calibration (the 8 training videos of a generated 172 px demo-task set, 32 frames
each), and races the three in one process at 1 thread.

Run from the checkout root, after the export of `onnx+opt` and `onnx-int8+opt` in
results/a0-fast/README.md:
    MOVIBENCH_CACHE=.movibench-cache .venv/bin/python results/a0-fast/experiments/ort_int8_activation_type.py
Writes results/a0-fast/experiments/ort_int8_activation_type.csv (movibench race's columns).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

RUN = Path("results/a0-fast")
OUT = RUN / "experiments" / "ort_int8_activation_type.csv"


def main() -> None:
    sys.path.insert(0, ".")
    from onnxruntime.quantization import (
        CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static,
    )

    from bench.data.calibration_clips import calibration_from_videos
    from bench.data.synth import SynthConfig, generate
    from bench.data.video import list_videos
    from converters.calibration import streamed_feeds
    from core.manifest import StateManifest, manifest_path_for

    race = pd.read_csv(RUN / "race-onnx-int8.csv")
    fp32 = Path(race.loc[race["format"] == "onnx+opt", "artifact"].iloc[0])
    s8s8 = Path(race.loc[race["format"] == "onnx-int8+opt", "artifact"].iloc[0])
    manifest = StateManifest.load(manifest_path_for(fp32))
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "calibration"
        generate(data, SynthConfig(classes=4, videos_per_class=2, frames=32, size=172, seed=7))
        calibration = calibration_from_videos(list_videos(data / "train"), 32)

        class Feeds(CalibrationDataReader):
            def __init__(self):
                self.feeds = streamed_feeds(fp32, manifest, calibration.iter_clips(172))

            def get_next(self):
                return next(self.feeds, None)

        u8 = Path(tmp) / "a0-stream-onnx-int8-u8-reduce-range.onnx"
        quantize_static(str(fp32), str(u8), Feeds(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, reduce_range=True,
                        calibrate_method=CalibrationMethod.MinMax)
        shutil.copy(manifest_path_for(fp32), manifest_path_for(u8))
        subprocess.run([sys.executable, "-m", "bench", "race", str(fp32), str(s8s8), str(u8),
                        "--threads", "1", "--iterations", "150", "--rounds", "10",
                        "--no-roofline", "--out", str(OUT)], check=True)
    table = pd.read_csv(OUT)
    # The temporary file's path means nothing once it is gone: name it by what it is.
    table.loc[table["artifact"].str.contains("u8-reduce-range"), "artifact"] = "u8 + reduce_range"
    table.to_csv(OUT, index=False)


if __name__ == "__main__":
    main()
