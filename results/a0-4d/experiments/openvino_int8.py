"""Experiment: where does OpenVINO int8 of the stream graph lose its accuracy on this CPU?

`openvino-int8+opt` (NNCF's post-training quantization of the ONNX export) scored chance top-1
on the A0 stream demo in results/a0-4d. This takes the T0 stream demo (64², small enough to
try several settings in minutes), calibrates on 4 task videos like the tests, and streams 8
other task videos frame by frame (states carried by each int8 model itself) through:
NNCF's QDQ with its defaults (movibench's `openvino-int8`), with the overflow fix on every
layer, with the mixed preset and no bias correction, each run by OpenVINO; and ONNX Runtime's
own QDQ (`onnx-int8`, accurate there) run by ONNX Runtime and by OpenVINO. Per row: agreement
of the last frame's top-1 with the fp32 ONNX model and the max logit error over fp32's scale.

Run from the checkout root:
    MOVIBENCH_CACHE=.movibench-cache .venv/bin/python results/a0-4d/experiments/openvino_int8.py
Writes results/a0-4d/experiments/openvino_int8.csv.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).parent
OUT = HERE / "openvino_int8.csv"


def main() -> None:
    sys.path.insert(0, ".")
    import nncf
    import onnx
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    from bench.data.calibration_clips import calibration_from_videos
    from bench.data.synth import SynthConfig, generate
    from bench.data.video import list_videos, read_clip
    from converters.export import ExportOptions, export_model
    from converters.calibration import StreamedFeeds
    from core.errors import ArtifactError
    from core.zoo import config_for, demo_checkpoint
    from runtimes.base import chunks, stream
    from runtimes.onnxruntime import OnnxRuntimeSession
    from runtimes.openvino import OpenVinoSession

    checkpoint = demo_checkpoint("t0-stream-synth")
    config = config_for(None, None, checkpoint=checkpoint)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # The tests' calibration and held-out videos (tests/conftest.py).
        generate(tmp / "cal", SynthConfig(classes=4, videos_per_class=1, frames=32, size=64,
                                          seed=7, val_fraction=0.0))
        generate(tmp / "val", SynthConfig(classes=4, videos_per_class=2, frames=32, size=64,
                                          seed=99, val_fraction=0.0))
        options = ExportOptions(calibration=calibration_from_videos(list_videos(tmp / "cal"), 32))
        onnx_fp32 = export_model(config, "onnx", checkpoint=checkpoint)
        openvino_fp32 = export_model(config, "openvino", checkpoint=checkpoint)
        ort_qdq = export_model(config, "onnx-int8", checkpoint=checkpoint, options=options)
        clips = [read_clip(p, 64) for p in list_videos(tmp / "val")]

        def last(session_type, path, manifest) -> np.ndarray:
            session = session_type.open(path, manifest, threads=1)
            return np.stack([stream(session, chunks(c, 1))[0][-1] for c in clips])

        reference = last(OnnxRuntimeSession, onnx_fp32.path, onnx_fp32.manifest)
        runs = {"onnx-int8 (onnxruntime.quantization) in ONNX Runtime":
                    (OnnxRuntimeSession, ort_qdq.path, onnx_fp32.manifest),
                "onnx-int8 (onnxruntime.quantization) in OpenVINO":
                    (OpenVinoSession, ort_qdq.path, openvino_fp32.manifest),
                "openvino fp32 in OpenVINO":
                    (OpenVinoSession, openvino_fp32.path, openvino_fp32.manifest)}
        settings = {
            "NNCF defaults (movibench's openvino-int8)": {},
            "NNCF, overflow fix on every layer": dict(
                advanced_parameters=AdvancedQuantizationParameters(overflow_fix=OverflowFix.ENABLE)),
            "NNCF, mixed preset, no bias correction": dict(
                preset=nncf.QuantizationPreset.MIXED,
                advanced_parameters=AdvancedQuantizationParameters(disable_bias_correction=True)),
        }
        for name, kwargs in settings.items():
            feeds = StreamedFeeds(onnx_fp32.path, onnx_fp32.manifest, options.calibration)
            with contextlib.redirect_stdout(sys.stderr):
                quantized = nncf.quantize(onnx.load(str(onnx_fp32.path)), nncf.Dataset(feeds),
                                          subset_size=4 * 32, **kwargs)
            target = tmp / f"nncf-{len(runs)}.onnx"
            onnx.save(quantized, str(target))
            runs[name + " in OpenVINO"] = (OpenVinoSession, target, openvino_fp32.manifest)
        rows = []
        for name, (session_type, path, manifest) in runs.items():
            try:
                logits = last(session_type, path, manifest)
            except ArtifactError as exc:  # a file OpenVINO refuses is a row, not the end
                rows.append({"run": name, "error": str(exc).replace(str(tmp), "<tmp>")})
            else:
                rows.append({"run": name,
                             "agree_fp32": (logits.argmax(1) == reference.argmax(1)).mean(),
                             "max_rel_err": np.abs(logits - reference).max() / np.abs(reference).max()})
            print(rows[-1], flush=True)
    pd.DataFrame(rows).to_csv(OUT, index=False)


if __name__ == "__main__":
    main()
