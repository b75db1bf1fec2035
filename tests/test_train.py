"""A tiny training run (the train CLI) that saves, resumes and reloads; both variants."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from bench.cli.app import app
from bench.data.datasets import load_folder
from bench.data.synth import SynthConfig, generate
from bench.train.trainer import TrainConfig, TrainError, decode_clips, train
from core.zoo import CONFIG_SIDECAR, checkpoint_config, config_for

RES, FRAMES = 32, 8


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("train-data")
    generate(root, SynthConfig(classes=2, videos_per_class=5, frames=FRAMES, size=RES, seed=3,
                               val_fraction=0.2))
    (root / "train" / "flashes_1" / "broken.mp4").write_bytes(b"nope" * 100)
    return load_folder(root)


def tiny(**kw) -> TrainConfig:
    return TrainConfig(model_id="t0", resolution=RES, frames=FRAMES, batch_size=4, lr=1e-3, **kw)


def test_decode_clips_pads_and_skips(tiny_data):
    cache = decode_clips(tiny_data.split("train").samples, RES, FRAMES + 4, progress=False)
    assert cache.clips.shape == (8, FRAMES + 4, RES, RES, 3) and cache.clips.dtype == np.uint8
    np.testing.assert_array_equal(cache.clips[:, -1], cache.clips[:, FRAMES - 1])
    assert len(cache.failed) == 1 and "broken.mp4" in cache.failed[0]


def test_stream_train_save_resume_reload(tiny_data, tmp_path):
    """The train CLI runs 3 steps; the API resumes to 5; the result reloads and streams."""
    from bench.evaluation.equivalence import synthetic_clips, validate_equivalence
    from bench.evaluation.compare_logits import Tolerance
    from runtimes.tensorflow import TensorFlowSession

    out = tmp_path / "run"
    # One training run per test costs a trace of the train step: the CLI's is the first one.
    result = CliRunner().invoke(app, [
        "train", "--data", str(tiny_data.root), "--out", str(out), "--variant", "stream",
        "--resolution", str(RES), "--frames", str(FRAMES), "--batch-size", "4", "--steps", "3",
        "--lr", "1e-3", "--json"])
    assert result.exit_code == 0, result.output
    first = json.loads(result.stdout)
    assert first["steps"] == 3 and first["resumed_from_step"] == 0
    assert first["skipped_videos"] == 1
    assert (out / "history.csv").read_text().count("\n") == 3  # header + epochs: 2 steps/epoch, 2 + 1
    assert (out / CONFIG_SIDECAR).exists()
    saved = checkpoint_config(out)
    assert saved.variant == "stream" and saved.num_classes == 2 and saved.norm_momentum == 0.9
    with pytest.raises(TrainError, match="--resume"):
        train(tiny(variant="stream", steps=5), tiny_data, out, progress=False)
    with pytest.raises(TrainError, match="resolution"):
        train(TrainConfig(resolution=48, frames=FRAMES, batch_size=4, steps=5), tiny_data, out,
              resume=True, progress=False)
    second = train(tiny(variant="stream", steps=5), tiny_data, out, resume=True, progress=False)
    assert second.resumed_from_step == 3 and second.steps == 5
    assert [h.step for h in second.history] == [2, 3, 4, 5]
    assert (out / "history.csv").read_text().count("\n") == 5
    # The saved model reloads into a session that still streams like the full clip.
    session = TensorFlowSession.from_config(config_for(None, None, checkpoint=out), out)
    report = validate_equivalence(session, synthetic_clips(1, FRAMES, RES), [1, 4], Tolerance(1e-4))
    assert report.passed
    assert session.manifest.checkpoint_sha256


def test_base_variant_trains_2plus1d_and_inits_from_checkpoint(tiny_data, tmp_path):
    result = train(tiny(variant="base", steps=1, val_split=None), tiny_data, tmp_path / "b",
                   progress=False)
    assert result.model_config.conv_type == "2plus1d" and not result.model_config.causal
    assert [h.val_acc for h in result.history] == [None]
    # Fine-tuning from it with a different head keeps the backbone and trains on.
    three = load_folder(tiny_data.root, classes=("flashes_1", "flashes_2", "other"))
    again = train(tiny(variant="base", steps=1, init_checkpoint=str(tmp_path / "b"),
                       val_split=None), three, tmp_path / "c", progress=False)
    assert again.model_config.num_classes == 3
