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
    with pytest.raises(CheckpointMismatchError, match="holds model_id='t0', not the 'a0' asked for"):
        config_for("a0", None, checkpoint=directory)
    with pytest.raises(CheckpointMismatchError, match="holds variant='mobile', not the 'stream' asked for"):
        config_for(None, "stream", checkpoint=directory)
    # A class count may come from a dataset's folders, not an option: the message says so.
    with pytest.raises(CheckpointMismatchError,
                       match=r"holds num_classes=5, not the 2 asked for \(--classes, or the dataset"):
        config_for(None, None, num_classes=2, checkpoint=directory)


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


def test_files_that_are_no_checkpoint_are_one_line(tmp_path, capfd):
    """Random bytes behind a checkpoint's file names: one line naming the file, no traceback
    (TF's restore would log four from its own threads before raising)."""
    from core.build import build_model, load_checkpoint

    rng = np.random.default_rng(0)
    (tmp_path / "ckpt-1.index").write_bytes(rng.bytes(4096))
    (tmp_path / "ckpt-1.data-00000-of-00001").write_bytes(rng.bytes(8192))
    with pytest.raises(CheckpointMismatchError, match="not a readable TensorFlow checkpoint") as err:
        load_checkpoint(build_model(CFG), tmp_path / "ckpt-1")
    assert "\n" not in str(err.value)
    assert "Traceback" not in capfd.readouterr().err


def test_a_corrupt_config_sidecar_is_named(saved, tmp_path):
    from core.zoo import CONFIG_SIDECAR

    (tmp_path / CONFIG_SIDECAR).write_text("{not json")
    (tmp_path / "ckpt-1.index").write_bytes(b"")
    with pytest.raises(CheckpointMismatchError, match=CONFIG_SIDECAR):
        config_for(None, None, checkpoint=tmp_path / "ckpt-1")
