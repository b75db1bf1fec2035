"""The model zoo: ids, variants, defaults, and that every id x variant really builds."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import UnknownModelError
from core.zoo import MODELS, VARIANTS, ModelConfig, get_model


def test_default_resolutions_match_model_garden():
    assert {k: v.resolution for k, v in MODELS.items()} == {
        "t0": 172, "a0": 172, "a1": 172, "a2": 224, "a3": 256, "a4": 290, "a5": 320}


def test_stream_a3_to_a5_use_positional_encoding():
    flags = {m: ModelConfig(m, "stream").resolved().use_positional_encoding for m in MODELS}
    assert [m for m, on in flags.items() if on] == ["a3", "a4", "a5"]
    assert not ModelConfig("a5", "base").resolved().use_positional_encoding


def test_mobile_variant_is_relu6_without_se():
    cfg = ModelConfig("a0", "mobile").resolved()
    assert (cfg.activation, cfg.se_type, cfg.causal) == ("relu6", "none", True)


@pytest.mark.parametrize("bad", ["a9", "", "resnet50"])
def test_unknown_model_id_names_known_ids(bad):
    with pytest.raises(UnknownModelError, match="known ids: t0, a0"):
        get_model(bad)


@pytest.mark.parametrize("kwargs, match", [
    (dict(variant="causal"), "unknown variant"),
    (dict(conv_type="4d"), "unknown conv_type"),
    (dict(se_type="xx"), "unknown se_type"),
    (dict(resolution=16), "resolution must be >= 32"),
    (dict(num_classes=0), "num_classes"),
])
def test_bad_config_values_are_named(kwargs, match):
    with pytest.raises(UnknownModelError, match=match):
        ModelConfig("a0", **kwargs).resolved()


# a1..a5 take 10-40 s each to build on 2 cores (15 builds, most of this file's time): outside
# the default run, selected with `-m heavy`. t0 and a0 keep every variant in the default run.
MODEL_PARAMS = [m if m in ("t0", "a0") else pytest.param(m, marks=pytest.mark.heavy)
                for m in MODELS]


@pytest.mark.slow
@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("model_id", MODEL_PARAMS)
def test_every_id_and_variant_builds_and_runs(model_id, variant):
    """Tiny resolution and two frames: checks construction and the state contract, cheaply.

    An eager call, not the traced step: tracing a5 costs a minute, the forward pass seconds.
    """
    import tensorflow as tf

    from core.build import build_model, make_manifest

    cfg = ModelConfig(model_id, variant, 32, 3).resolved()
    model = build_model(cfg)
    manifest = make_manifest(model, cfg)
    assert manifest.causal == VARIANTS[variant].causal
    assert bool(manifest.states) == manifest.causal
    clip = tf.constant(np.random.default_rng(0).random((1, 2, 32, 32, 3), dtype=np.float32))
    if manifest.causal:
        states = {s.input_name: tf.zeros(s.shape, s.dtype) for s in manifest.states}
        logits, next_states = model({**states, "image": clip}, training=False)
        assert sorted(next_states) == sorted(states)
        for spec in manifest.states:
            assert tuple(next_states[spec.input_name].shape) == spec.shape
    else:
        logits = model(clip, training=False)
    assert tuple(logits.shape) == (1, 3)
    assert np.isfinite(logits.numpy()).all()
