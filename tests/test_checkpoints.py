"""Checkpoints: save/restore round trip, and mismatches named in one line."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import CheckpointMismatchError
from core.zoo import ModelConfig, checkpoint_config, config_for

CFG = ModelConfig("t0", "mobile", 64, 5)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    from core.build import build_model, save_checkpoint

    model = build_model(CFG, seed=123)
    directory = tmp_path_factory.mktemp("ckpt")
    save_checkpoint(model, CFG, directory)
    return directory, model


def test_round_trip_restores_the_same_weights(saved):
    from core.build import build_model, load_checkpoint, weights_sha256

    directory, original = saved
    fresh = build_model(CFG, seed=7)
    assert weights_sha256(fresh) != weights_sha256(original)
    digest = load_checkpoint(fresh, directory)
    assert len(digest) == 64
    assert weights_sha256(fresh) == weights_sha256(original)


def test_sidecar_rebuilds_the_saved_config(saved):
    directory, _ = saved
    assert checkpoint_config(directory) == CFG.resolved()
    assert config_for(None, None, checkpoint=directory) == CFG.resolved()
    assert config_for("t0", "mobile", 96, checkpoint=directory).resolution == 96


def test_asking_for_another_model_than_the_checkpoint_holds(saved):
    directory, _ = saved
    with pytest.raises(CheckpointMismatchError, match="holds model_id='t0', not 'a0'"):
        config_for("a0", None, checkpoint=directory)
    with pytest.raises(CheckpointMismatchError, match="holds variant='mobile', not 'stream'"):
        config_for(None, "stream", checkpoint=directory)


def test_head_of_wrong_size_is_a_mismatch(saved):
    from core.build import build_model, load_checkpoint

    directory, _ = saved
    model = build_model(ModelConfig("t0", "mobile", 64, 7))
    with pytest.raises(CheckpointMismatchError, match="does not fit model"):
        load_checkpoint(model, directory)


def test_other_architecture_is_a_mismatch(saved):
    from core.build import build_model, load_checkpoint

    directory, _ = saved
    with pytest.raises(CheckpointMismatchError, match="does not fit model"):
        load_checkpoint(build_model(ModelConfig("a0", "mobile", 64, 5)), directory)


def test_missing_checkpoint_is_named(tmp_path):
    from core.build import build_model, load_checkpoint

    model = build_model(CFG)
    with pytest.raises(CheckpointMismatchError, match="checkpoint not found"):
        load_checkpoint(model, tmp_path / "nope")
    with pytest.raises(CheckpointMismatchError, match="no checkpoint found in directory"):
        load_checkpoint(model, tmp_path)
    assert np.isfinite(model.weights[0].numpy()).all()
