"""movibench's tflite-fp32 against Model Garden's own TFLite recipe on the same checkpoint.

Model Garden's export (tools/export_saved_model.py + TFLiteConverter.from_saved_model) builds
the classifier head with swish whatever the backbone uses; a head built otherwise gives other
logits on the same checkpoint from the first frame. Two TFLite conversions of t0 at 64²: about
four minutes on 2 cores, so outside the default run (`-m heavy`); the committed A0 comparison
(results/a0-stream-172/official_recipe.json) is the same check at real size.
"""

from __future__ import annotations

import json

import pytest
import tensorflow as tf

from bench.evaluation.compare_logits import Tolerance
from bench.evaluation.equivalence import compare_streams, synthetic_clips
from core.build import build_model
from converters.export import export_model
from converters.official_recipe import export_official_tflite
from core.zoo import ModelConfig
from runtimes.loader import open_session

CONFIG = ModelConfig("t0", "stream", 64, 5).resolved()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    prefix = tmp_path_factory.mktemp("ckpt") / "ckpt"
    # save(), as the official checkpoints were written (it stores save_counter too).
    return tf.train.Checkpoint(model=build_model(CONFIG, seed=3)).save(str(prefix))


@pytest.fixture(scope="module")
def official_file(checkpoint, tmp_path_factory):
    path = tmp_path_factory.mktemp("official") / "model_garden.tflite"
    export_official_tflite(CONFIG, checkpoint, path)
    return path


def test_head_activation_follows_the_official_recipe():
    assert CONFIG.head_activation == "swish"
    assert ModelConfig("t0", "base").resolved().head_activation == "swish"
    assert ModelConfig("t0", "mobile").resolved().head_activation == "relu6"
    assert ModelConfig("t0", "stream", head_activation="hard_swish").resolved().head_activation == "hard_swish"


@pytest.mark.heavy
def test_movibench_tflite_streams_like_model_gardens_own_export(checkpoint, official_file):
    ours = export_model(CONFIG, "tflite-fp32", checkpoint=checkpoint)
    assert json.loads(ours.manifest_path.read_text())["model_config"]["head_activation"] == "swish"
    clips = synthetic_clips(1, 12, 64, seed=5)
    with open_session(official_file) as theirs, open_session(ours.path) as mine:
        diff = compare_streams(theirs, mine, clips, "movibench vs Model Garden", Tolerance(atol=1e-5))
    assert diff.n == 12 and diff.passed, diff.to_dict()


@pytest.mark.heavy
def test_a_hard_swish_head_is_caught(checkpoint, official_file):
    """The comparison can fail: the pre-fix head (the backbone's hard-swish) differs."""
    from runtimes.tensorflow import TensorFlowSession

    wrong = TensorFlowSession.from_config(
        ModelConfig("t0", "stream", 64, 5, head_activation="hard_swish"), checkpoint)
    clips = synthetic_clips(1, 4, 64, seed=5)
    with open_session(official_file) as theirs:
        diff = compare_streams(theirs, wrong, clips, "hard-swish head vs Model Garden",
                               Tolerance(atol=1e-5))
    assert not diff.passed and diff.max_abs > 1e-3
