"""Experiment: which onnxruntime.quantization setting keeps A0 stream's accuracy in ONNX Runtime?

On the trained A0 stream demo weights, `onnx-int8+opt` quantized S8S8 (int8 activations,
full-range int8 weights per channel, MinMax) scored chance top-1 where fp32 scored 100 %, while
the TFLite int8 of the same weights kept 87.5 %. This quantizes the same `onnx+opt` export,
with one calibration (the 32 training videos of the a0-4d matrix's data, of which the
matrix's own int8 exports take the first 8), four ways, and streams the 32
held-out videos frame by frame through each in ONNX Runtime (states carried by the int8 model
itself, as deployed): top-1, agreement with fp32 and the logits' error relative to fp32's
scale, over the last frame of each video.

Run from the checkout root (it exports `onnx+opt` into the cache if it is not there):
    MOVIBENCH_CACHE=.movibench-cache .venv/bin/python results/a0-4d/experiments/ort_int8_settings.py
Writes results/a0-4d/experiments/ort_int8_settings.csv, and the int8 files beside it under
experiments/ort_int8/ (not committed) for `movibench race`.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).parent
OUT = HERE / "ort_int8_settings.csv"
SETTINGS = {  # name: (activation type, reduce_range)
    "s8s8": ("QInt8", False),
    "s8s8+reduce_range": ("QInt8", True),
    "u8s8": ("QUInt8", False),
    "u8s8+reduce_range": ("QUInt8", True),
}


def main() -> None:
    sys.path.insert(0, ".")
    from onnxruntime.quantization import (
        CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static,
    )

    from bench.data.calibration_clips import calibration_from_videos
    from bench.data.datasets import load_dataset
    from bench.data.synth import SynthConfig, generate
    from bench.data.video import read_clip
    from converters.calibration import streamed_feeds
    from converters.export import export_model
    from core.manifest import StateManifest, manifest_path_for
    from core.zoo import config_for, demo_checkpoint
    from runtimes.base import chunks, stream
    from runtimes.onnxruntime import OnnxRuntimeSession

    checkpoint = demo_checkpoint("a0-stream-synth")
    fp32 = Path(export_model(config_for("a0", "stream", 172, checkpoint=checkpoint), "onnx+opt",
                             checkpoint=checkpoint).path)
    manifest = StateManifest.load(manifest_path_for(fp32))
    files = HERE / "ort_int8"
    files.mkdir(exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        # The a0-4d matrix's [data].
        generate(tmp, SynthConfig(classes=4, videos_per_class=16, frames=16, size=172, seed=0,
                                  val_fraction=0.5))
        data = load_dataset(tmp)
        calibration = calibration_from_videos([s.path for s in data.split("train").samples], 16)
        val = data.split("val").samples
        clips = [read_clip(s.path, 172) for s in val]
        labels = np.array([s.label_index for s in val])

        def last_logits(path: Path) -> np.ndarray:
            session = OnnxRuntimeSession.open(path, manifest, threads=1)
            return np.stack([stream(session, chunks(c, 1))[0][-1] for c in clips])

        reference = last_logits(fp32)
        scale = np.abs(reference).max()
        rows.append({"setting": "fp32", "top1": (reference.argmax(1) == labels).mean(),
                     "agree_fp32": 1.0, "max_rel_err": 0.0, "file": str(fp32)})
        for name, (activation, reduce_range) in SETTINGS.items():
            class Feeds(CalibrationDataReader):
                def __init__(self):
                    self.feeds = streamed_feeds(fp32, manifest, calibration.iter_clips(172))

                def get_next(self):
                    return next(self.feeds, None)

            target = files / f"a0-stream-onnx-int8-{name}.onnx"
            quantize_static(str(fp32), str(target), Feeds(), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=getattr(QuantType, activation),
                            weight_type=QuantType.QInt8, reduce_range=reduce_range,
                            calibrate_method=CalibrationMethod.MinMax)
            shutil.copy(manifest_path_for(fp32), manifest_path_for(target))
            logits = last_logits(target)
            rows.append({"setting": name, "top1": (logits.argmax(1) == labels).mean(),
                         "agree_fp32": (logits.argmax(1) == reference.argmax(1)).mean(),
                         "max_rel_err": np.abs(logits - reference).max() / scale,
                         "file": str(target.relative_to(HERE))})
            print(rows[-1], flush=True)
    pd.DataFrame(rows).to_csv(OUT, index=False)


if __name__ == "__main__":
    main()
