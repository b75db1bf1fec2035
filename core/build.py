"""Build MoViNets with TF Model Garden, load checkpoints and trace step functions.

The traced step function is the single source every format starts from: the TF runtime calls
it, the exporters convert it. Inputs are `image` + `state_*`, outputs `logits` + `next_state_*`.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402
from official.projects.movinet.modeling import movinet, movinet_model  # noqa: E402

from core.checkpoints import checkpoint_files_sha256, resolve_checkpoint_prefix  # noqa: E402
from core.errors import CheckpointMismatchError, first_line  # noqa: E402
from core.formats import FP32, TENSORFLOW  # noqa: E402
from core.manifest import (  # noqa: E402
    IMAGE_INPUT, LAYOUT_4D, LOGITS_OUTPUT, StateManifest, StateSpec, state_name_from_tensor,
)
from core.zoo import CONFIG_SIDECAR, ModelConfig  # noqa: E402



def build_model(config: ModelConfig, seed: int | None = 0) -> tf_keras.Model:
    """Build a MovinetClassifier for `config` (causal variants take and return states).

    Random initialisation is seeded so a model without a checkpoint is reproducible.
    """
    config = config.resolved()
    if seed is not None:
        tf_keras.utils.set_random_seed(seed)
    backbone = movinet.Movinet(
        model_id=config.model_id,
        causal=config.causal,
        conv_type=config.conv_type,
        se_type=config.se_type,
        activation=config.activation,
        gating_activation=config.gating_activation,
        use_positional_encoding=config.use_positional_encoding,
        use_external_states=config.causal,
        norm_momentum=config.norm_momentum,
    )
    model = movinet_model.MovinetClassifier(
        backbone,
        num_classes=config.num_classes,
        activation=config.head_activation,
        output_states=config.causal,
    )
    model.build([1, 1 if config.causal else 8, config.resolution, config.resolution, 3])
    model.movibench_label = (f"{config.model_id}/{config.variant}@{config.resolution} "
                             f"({config.num_classes} classes, conv {config.conv_type})")
    model.movibench_conv_type = config.conv_type
    return model


def state_specs(model: tf_keras.Model, config: ModelConfig) -> list[StateSpec]:
    """The model's stream states (empty for non-causal models), sorted by name."""
    config = config.resolved()
    if not config.causal:
        return []
    states = model.init_states(tf.constant([1, 1, config.resolution, config.resolution, 3]))
    return sorted(
        (StateSpec(state_name_from_tensor(k), tuple(int(d) for d in v.shape), v.dtype.name)
         for k, v in states.items()),
        key=lambda s: s.name,
    )


def checkpoint_conv_type(prefix: str | Path) -> str | None:
    """The conv_type a MovinetClassifier checkpoint was saved with, read off its variables.

    '2plus1d' nests a Keras conv in MobileConv2D (`_conv/_conv/...`); '3d_2plus1d' has 5-D
    temporal kernels (`_conv_temporal/kernel`); '3d' has 5-D feature kernels with more than one
    temporal tap. None when nothing tells.
    """
    variables = tf.train.list_variables(str(prefix))
    if any("/_conv/_conv/" in name for name, _ in variables):
        return "2plus1d"
    if any("/_conv_temporal/kernel/" in name and len(shape) == 5 for name, shape in variables):
        return "3d_2plus1d"
    if any("/_feature/_conv/kernel/" in name and len(shape) == 5 and shape[0] > 1
           for name, shape in variables):
        return "3d"
    return None


def load_checkpoint(model: tf_keras.Model, path: str | Path) -> str:
    """Restore `path` (official Kinetics-600 layout or the project's) into `model`.

    Returns the checkpoint's SHA-256. Any variable the checkpoint lacks, or whose shape differs
    (e.g. a 600-class head into a 5-class model), raises CheckpointMismatchError naming it, and
    the checkpoint's own conv type when that is what differs.
    """
    prefix = str(resolve_checkpoint_prefix(path))
    try:
        # Files that are not a checkpoint at all (truncated, another format, random bytes) fail
        # here in one OpError; restore() would log tracebacks from its own threads first.
        tf.train.load_checkpoint(prefix)
    except (ValueError, tf.errors.OpError) as exc:
        raise CheckpointMismatchError(
            f"checkpoint {prefix} is not a readable TensorFlow checkpoint ({first_line(exc)}): "
            "pass the prefix of its .index/.data files as saved") from None
    status = None
    try:
        status = tf.train.Checkpoint(model=model).restore(prefix)
        status.assert_existing_objects_matched()
    except (ValueError, AssertionError, tf.errors.OpError) as exc:
        if status is not None:
            # A refused checkpoint would otherwise log every unused value when collected.
            status.expect_partial()
        first = first_line(exc)
        found = checkpoint_conv_type(prefix)
        built = getattr(model, "movibench_conv_type", None)
        hint = (f" (the checkpoint holds conv_type={found!r}: pass --conv-type {found})"
                if found and built and found != built else "")
        raise CheckpointMismatchError(
            f"checkpoint {prefix} does not fit model "
            f"{getattr(model, 'movibench_label', model.name)}{hint}: {first}") from None
    return checkpoint_files_sha256(prefix)


def save_checkpoint(model: tf_keras.Model, config: ModelConfig, directory: str | Path) -> str:
    """Write a project checkpoint (tf.train.Checkpoint layout + config sidecar); return prefix."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # save() (not write()) also stores save_counter, as the official checkpoints do, so
    # restore's assert_existing_objects_matched() holds for both.
    prefix = tf.train.Checkpoint(model=model).save(str(directory / "ckpt"))
    (directory / CONFIG_SIDECAR).write_text(json.dumps(config.resolved().to_dict(), indent=2) + "\n")
    return prefix


def weights_sha256(model: tf_keras.Model) -> str:
    """SHA-256 of every weight value in order: the identity of what a model computes.

    Shapes and values only: Keras uniquifies layer names per process ('..._2'), which would
    make the same weights hash differently.
    """
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(str(tuple(weight.shape)).encode())
        digest.update(np.ascontiguousarray(weight.numpy()).tobytes())
    return digest.hexdigest()


def make_manifest(model: tf_keras.Model, config: ModelConfig, checkpoint_hash: str = "",
                  frames_per_call: int | None = None) -> StateManifest:
    """The reference (TensorFlow) manifest of a built model."""
    config = config.resolved()
    return StateManifest(
        model_id=config.model_id,
        variant=config.variant,
        resolution=config.resolution,
        num_classes=config.num_classes,
        states=state_specs(model, config),
        frames_per_call=frames_per_call,
        format=TENSORFLOW,
        precision=FP32,
        model_config=config.to_dict(),
        checkpoint_sha256=checkpoint_hash,
        weights_sha256=weights_sha256(model),
        converter_versions={"tensorflow": tf.__version__},
    )


def input_signature(manifest: StateManifest, frames: int | None) -> list[tf.TensorSpec]:
    """TensorSpecs named by the state contract: image first, then states in manifest order."""
    res = manifest.resolution
    shape = manifest.image_shape if manifest.layout == LAYOUT_4D else [1, frames, res, res, 3]
    specs = [tf.TensorSpec(shape, tf.float32, name=IMAGE_INPUT)]
    specs += [tf.TensorSpec(s.shape, tf.as_dtype(s.dtype), name=s.input_name)
              for s in manifest.states]
    return specs


def step_function(model: tf_keras.Model, manifest: StateManifest, frames: int | None):
    """A tf.function(image, *states) -> {'logits', 'next_state_*'} with a fixed signature.

    `frames=None` accepts any number of frames per call (TF runtime); exporters pass the
    static T their format needs. Non-causal models take only the image.
    """
    specs = manifest.states

    @tf.function(input_signature=input_signature(manifest, frames))
    def step(image, *states):
        if not specs:
            return {LOGITS_OUTPUT: model(image, training=False)}
        inputs = {IMAGE_INPUT: image}
        # Model Garden's own state keys are exactly our input names ('state_<name>').
        inputs.update({spec.input_name: value for spec, value in zip(specs, states)})
        logits, next_states = model(inputs, training=False)
        outputs = {LOGITS_OUTPUT: logits}
        outputs.update({spec.output_name: next_states[spec.input_name] for spec in specs})
        return outputs

    return step


def library_versions() -> dict[str, str]:
    """Versions of the libraries a TF-side build depends on (part of cache keys)."""
    import official  # noqa: F401  (tf-models-official carries no __version__)
    from importlib.metadata import version

    return {"tensorflow": tf.__version__, "tf-models-official": version("tf-models-official"),
            "tf-keras": version("tf-keras")}
