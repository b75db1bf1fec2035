"""Graph optimizations at export: exact rewrites that make a deployment run faster.

Each optimization is kept only where a measurement showed it speeds something up, and applies
to the (model, format) pairs where it does. An optimized format ('tflite-int8+opt',
converters.formats) is the plain one with every optimization that fits the model; the names of
those applied go into the artifact's cache key and its manifest
(`StateManifest.optimizations`). Nothing here imports TensorFlow until a model is built.

- `int8-hard-swish` (TFLite full int8 of models with hard-swish): XNNPACK has no int8
  HARD_SWISH kernel, and the TFLite converter fuses Model Garden's hard-swish
  (`x * relu6(x + 3) * 1/6`) into that op, so every hard-swish of a full-int8 graph falls back to
  LiteRT's built-in kernels and cuts the delegated graph: on t0 stream at 64², 82 XNNPACK
  partitions, 52 of them cut by HARD_SWISH int8. Written as `relu6(x + 3) * (x * 1/6)`, the same
  function in a form the converter's hard-swish patterns do not match, it stays ADD (with a fused
  RELU6) and two MULs, which XNNPACK runs in int8: 31 partitions on the same graph. In fp32 the
  fused op is itself delegated, so the rewrite is not applied there.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Callable

from converters.formats import FormatSpec
from converters.zoo import ModelConfig

INT8_HARD_SWISH = "int8-hard-swish"


@dataclass(frozen=True)
class Optimization:
    """One exact rewrite: where it applies, and how the model is built with it."""

    name: str
    where: str  # in words: the models and formats it applies to
    applies: Callable[[ModelConfig, FormatSpec], bool]
    patch: Callable[[], object]  # a context manager active while the Keras model is built


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


OPTIMIZATIONS: tuple[Optimization, ...] = (
    Optimization(INT8_HARD_SWISH, "full-int8 TFLite of models with hard-swish",
                 lambda config, spec: spec.family == "tflite" and spec.precision == "int8"
                 and _uses_hard_swish(config),
                 _unfused_hard_swish),
)


def applicable(config: ModelConfig, spec: FormatSpec) -> tuple[str, ...]:
    """Names of the optimizations that change `config` exported to `spec` (empty: none)."""
    config = config.resolved()
    return tuple(o.name for o in OPTIMIZATIONS if o.applies(config, spec))


def describe() -> str:
    """The optimizations and where each applies, in one line."""
    return "; ".join(f"{o.name}: {o.where}" for o in OPTIMIZATIONS)


@contextmanager
def optimized_build(names: tuple[str, ...]) -> Iterator[None]:
    """Within the block, models are built with the optimizations `names`."""
    with ExitStack() as stack:
        for optimization in OPTIMIZATIONS:
            if optimization.name in names:
                stack.enter_context(optimization.patch())
        yield
