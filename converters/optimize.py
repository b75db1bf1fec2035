"""Graph optimizations at export: exact rewrites that make a deployment run faster.

Each optimization is kept only where a measurement showed it speeds something up, and applies
to the (model, format) pairs where it does. An optimized format ('tflite-int8+opt',
'onnx+opt', core.formats) is the plain one with every optimization that fits the model;
a format named after one optimization ('tflite-int8+causal-pool-step') applies that one alone.
The names of those applied go into the artifact's cache key and its manifest
(`StateManifest.optimizations`). Which optimizations a format can carry is its exporter's
answer (`Exporter.optimizations`, converters.exporter); which of those fit a model is said
here. Nothing here imports TensorFlow until a model is built.

An optimization either patches Model Garden's layers while the Keras model is built (`patch`:
the TFLite ones) or rewrites the exported ONNX graph (`onnx_pass`: converters.onnx_rewrites,
where the ONNX ones are explained); an optimized ONNX format is made from the plain ONNX
export's file, so it costs no second conversion.

- `int8-hard-swish` (TFLite full int8 of models with hard-swish): XNNPACK has no int8
  HARD_SWISH kernel, and the TFLite converter fuses Model Garden's hard-swish
  (`x * relu6(x + 3) * 1/6`) into that op, so every hard-swish of a full-int8 graph falls back to
  LiteRT's built-in kernels and cuts the delegated graph: on t0 stream at 64², 82 XNNPACK
  partitions, 52 of them cut by HARD_SWISH int8. Written as `relu6(x + 3) * (x * 1/6)`, the same
  function in a form the converter's hard-swish patterns do not match, it stays ADD (with a fused
  RELU6) and two MULs, which XNNPACK runs in int8: 31 partitions on the same graph. In fp32 the
  fused op is itself delegated, so the rewrite is not applied there.
- `causal-pool-step` (TFLite full int8 of causal models): Model Garden's causal global average
  pool (every squeeze-excitation of a stream model, and the head of every causal one) takes a
  cumulative sum over the call's frames, a RANGE of divisors from its int32 frame count, a CAST
  and a DIV. In full int8 the DIV (XNNPACK has no int8 DIV) and the int32 ops stay on LiteRT's
  built-in kernels, in the middle of the graph. For one frame per call the cumulative sum is
  the identity and the divisor a scalar: the rewrite adds the frame's spatial mean to the
  buffer and multiplies by 1 / (count + 1), computed from the count input alone, so the int32
  and reciprocal ops sit at the graph's inputs and the pool itself is MEAN, ADD and MUL, which
  XNNPACK runs in int8. The states keep Model Garden's names, shapes, dtypes and values; calls
  of more than one frame take Model Garden's own path.
- `hard-swish-op` (ONNX of models with hard-swish; ONNX Runtime and OpenVINO): each hard-swish
  chain of four elementwise nodes becomes one ONNX HardSwish, which ONNX Runtime fuses into
  the convolution before it.
- `hard-sigmoid-gate-fold` (ONNX of models whose squeeze-excitation gates with hard-sigmoid):
  the gate's `+3` and `*a` move into its convolution's constants, leaving a Clip the runtime
  fuses.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Callable

from converters.exporter import exporter_for
from core.formats import (
    CAUSAL_POOL_STEP, HARD_SIGMOID_GATE_FOLD, HARD_SWISH_OP, INT8_HARD_SWISH, FormatSpec,
)
from converters.onnx_rewrites import fold_hard_sigmoid_gates, fuse_hard_swish
from core.zoo import ModelConfig


@dataclass(frozen=True)
class Optimization:
    """One exact rewrite: where it applies, and how the model is built or its graph rewritten."""

    name: str
    where: str  # in words: the models and formats it applies to
    # Whether it changes a model (the formats that can carry it are their exporters' answer).
    fits: Callable[[ModelConfig], bool]
    # A context manager active while the Keras model is built, or None.
    patch: Callable[[], object] | None = None
    # Rewrites an exported ONNX ModelProto in place and returns how many sites it changed.
    onnx_pass: Callable[[object], int] | None = None
    # Rewrites a path only a one-frame call takes: an export of more frames per call (or of a
    # symbolic T) would carry the name without the change.
    one_frame_only: bool = False
    # False where the 4-D single-frame graph (converters.stream4d) replaces the layer a patch
    # rewrites with its own form of the same change.
    in_four_d: bool = True


def _uses_hard_swish(config: ModelConfig) -> bool:
    return "hard_swish" in (config.activation, config.head_activation)


def hard_swish_unfused(features):
    """hard-swish as `relu6(x + 3) * (x * 1/6)`: the same function, not fused to HARD_SWISH."""
    import tensorflow as tf

    features = tf.convert_to_tensor(features)
    return tf.nn.relu6(features + tf.cast(3.0, features.dtype)) * (features * (1.0 / 6.0))


@contextmanager
def _unfused_hard_swish() -> Iterator[None]:
    # Model Garden resolves the activation name through official.modeling.activations when a
    # layer is built (tf_utils.get_activation reads the module attribute at each call).
    from official.modeling import activations

    original = activations.hard_swish
    activations.hard_swish = hard_swish_unfused
    try:
        yield
    finally:
        activations.hard_swish = original


def causal_pool_step(layer, inputs, states=None, output_states=False):
    """Model Garden's causal GlobalAveragePool3D.call for a one-frame call, without the
    cumulative sum, RANGE or DIV: the same outputs and states (see the module docstring)."""
    import tensorflow as tf

    states = dict(states) if states is not None else {}
    buffer = states.get(layer._state_name)
    if buffer is None:
        buffer = tf.zeros_like(inputs[:, :1, :1, :1], dtype=inputs.dtype)
    count = tf.cast(states.get(layer._frame_count_name, tf.constant([0])), tf.int32) + 1
    states[layer._frame_count_name] = count
    total = tf.reduce_mean(inputs, axis=[2, 3], keepdims=True) + buffer
    states[layer._state_name] = total
    x = total * tf.math.reciprocal(tf.cast(count, inputs.dtype))
    if not layer._keepdims:
        x = tf.squeeze(x, axis=(1, 2, 3))
    return (x, states) if output_states else x


@contextmanager
def _causal_pool_step() -> Iterator[None]:
    from official.vision.modeling.layers import nn_layers

    original = nn_layers.GlobalAveragePool3D.call

    def call(self, inputs, states=None, output_states=False):
        # Only a causal pool over a call of one (static) frame; anything else is Model Garden's.
        if self._causal and inputs.shape[1] == 1:
            return causal_pool_step(self, inputs, states, output_states)
        return original(self, inputs, states=states, output_states=output_states)

    nn_layers.GlobalAveragePool3D.call = call
    try:
        yield
    finally:
        nn_layers.GlobalAveragePool3D.call = original


OPTIMIZATIONS: tuple[Optimization, ...] = (
    Optimization(INT8_HARD_SWISH, "full-int8 TFLite of models with hard-swish",
                 _uses_hard_swish, patch=_unfused_hard_swish),
    Optimization(CAUSAL_POOL_STEP, "full-int8 TFLite of causal models, one frame per call",
                 lambda config: config.causal, patch=_causal_pool_step, one_frame_only=True,
                 in_four_d=False),
    Optimization(HARD_SWISH_OP, "ONNX of models with hard-swish",
                 _uses_hard_swish, onnx_pass=fuse_hard_swish),
    Optimization(HARD_SIGMOID_GATE_FOLD,
                 "ONNX of models whose squeeze-excitation gates with hard-sigmoid",
                 lambda config: (config.se_type != "none"
                                 and config.gating_activation == "hard_sigmoid"),
                 onnx_pass=fold_hard_sigmoid_gates),
)


def applicable(config: ModelConfig, spec: FormatSpec, frames: int | None = 1) -> tuple[str, ...]:
    """Names of the optimizations that change `config` exported to `spec` for `frames` frames
    per call (None: a symbolic T); empty when none does."""
    config = config.resolved()
    carried = exporter_for(spec).optimizations(spec)
    return tuple(o.name for o in OPTIMIZATIONS
                 if o.name in carried and o.fits(config) and (not spec.only or o.name in spec.only)
                 and (frames == 1 or not o.one_frame_only)
                 and (o.in_four_d or not spec.four_d))


def describe() -> str:
    """The optimizations and where each applies, in one line."""
    return "; ".join(f"{o.name}: {o.where}" for o in OPTIMIZATIONS)


@contextmanager
def optimized_build(names: tuple[str, ...]) -> Iterator[None]:
    """Within the block, models are built with the optimizations `names`."""
    with ExitStack() as stack:
        for optimization in OPTIMIZATIONS:
            if optimization.name in names and optimization.patch is not None:
                stack.enter_context(optimization.patch())
        yield


def rewrite_onnx(model, names: tuple[str, ...]) -> dict[str, int]:
    """Apply the ONNX graph passes `names` to `model` in place; return the sites each changed.

    Raises UnsupportedExportError for a name that is no ONNX graph pass, and for a pass that
    finds nothing to rewrite: the artifact would otherwise claim an optimization it lacks."""
    from core.errors import UnsupportedExportError

    sites = {}
    for optimization in OPTIMIZATIONS:
        if optimization.name not in names:
            continue
        if optimization.onnx_pass is None:
            raise UnsupportedExportError(
                f"optimization {optimization.name} patches the model's build, not its ONNX graph")
        sites[optimization.name] = optimization.onnx_pass(model)
        if not sites[optimization.name]:
            raise UnsupportedExportError(
                f"optimization {optimization.name} found nothing to rewrite in the ONNX "
                f"graph ({optimization.where})")
    return sites
