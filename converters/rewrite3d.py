"""Making 3D MoViNets exportable: 3D convolutions and pools rewritten exactly into 2D ops, and
'3d_2plus1d' checkpoints rebuilt as '2plus1d'.

Why a rewrite rather than teaching the converters 3D ops. Model Garden's `Conv3D.call` wraps
Keras' convolution in an XLA-compiled `tf.function` (TF has no CPU kernel for a grouped 3D
convolution, and every MoViNet feature conv is depthwise). tf2onnx stops at that nested
`StatefulPartitionedCall`; inlining it would get ONNX through, but TFLite would still refuse:
its CONV_3D kernel is float-only and cannot be grouped, and XNNPACK has no 3D convolution, so
even a legal CONV_3D would run unaccelerated. One rewrite at the source serves every format:

    y[t] = sum_i conv2d(x[t*s_t + i - p_t], W[i])     for i in 0..k_t-1

A k_t x k_h x k_w 3D convolution is the sum over its k_t temporal taps of 2D convolutions of
time-shifted frames (depthwise 3D -> DepthwiseConv2D, full 3D -> Conv2D), with the frames
folded into the batch axis. It is exact up to float summation order, does the same
multiply-adds as the 3D op, and leaves only CONV_2D / DEPTHWISE_CONV_2D / PAD / STRIDED_SLICE /
ADD / RESHAPE, which tf2onnx, the TFLite converter (every precision), XNNPACK and TensorRT all
take. AveragePooling3D (the skip path of downsampling blocks) becomes a per-frame 2D average
pool followed by a mean over the valid temporal taps.

Padding and strides follow Model Garden's layers exactly:
  - temporal 'same' (base models): TensorFlow's SAME rule on the static clip length L
    (total = max((ceil(L/s)-1)*s + k - L, 0), the smaller half before);
  - temporal 'causal' (stream models): the layer's own `_compute_causal_padding` — k-1 frames
    before, or none when the stream buffer already supplies the past frames;
  - spatial: SAME on the 2D op, which is also what Model Garden's causal formula computes.

The rewrite swaps `call` on the model's own layer instances for the duration of an export
(`rewritten_3d`), so it reads the layer's own variables: the official checkpoint layout
(`tf.train.Checkpoint(model=model)` of a conv_type='3d' MovinetClassifier) loads unchanged,
the weights hash is that of the official architecture, and the TensorFlow reference session
keeps running the original 3D graph it is compared against.

'3d_2plus1d' (how Model Garden trains stream models) is handled the way its
tools/convert_3d_2plus1d.py does by hand: the same network is rebuilt as '2plus1d' and every
weight is copied over, squeezing the unit temporal (or spatial) axis of its 3D kernels and
transposing depthwise ones. The rebuilt graph is the official stream TFLite layout and needs
no rewrite at all.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import numpy as np

from core.errors import UnsupportedExportError

# conv_type -> how `exportable` makes the traced graph convertible.
ROUTES = {
    "2plus1d": "direct",
    "3d": "rewrite-3d",
    "3d_2plus1d": "rebuild-2plus1d",
}
ROUTE_NOTES = {
    "direct": "Model Garden's 2D graph exports as built",
    "rewrite-3d": "each 3D conv/pool rewritten at export into 2D ops over time-shifted frames "
                  "(exact; same weights)",
    "rebuild-2plus1d": "rebuilt as conv_type='2plus1d' with the same weights "
                       "(Model Garden's convert_3d_2plus1d, automatic)",
}


def route_for(conv_type: str) -> str:
    """The export route of a conv type: 'direct', 'rewrite-3d' or 'rebuild-2plus1d'."""
    try:
        return ROUTES[conv_type]
    except KeyError:
        raise UnsupportedExportError(
            f"no export route for conv_type={conv_type!r}; known: {', '.join(ROUTES)}") from None


def _dim(x, axis: int):
    """A static dim when known, else the dynamic one (T of a dynamic-frames stream export)."""
    import tensorflow as tf

    return x.shape[axis] if x.shape[axis] is not None else tf.shape(x)[axis]


def temporal_padding(layer, inputs, kernel: int, stride: int) -> tuple[int, int]:
    """Frames of zeros (before, after) the time axis gets, exactly as `layer` pads it.

    Raises UnsupportedExportError when 'same' padding needs a static clip length the input
    does not have.
    """
    padding = layer.padding
    if padding == "valid":
        return 0, 0
    if padding == "causal":
        # Model Garden's own rule: k-1 before, or none when a stream buffer precedes the conv.
        before, after = layer._compute_causal_padding(inputs)[1]
        return int(before), int(after)
    if kernel == 1 and stride == 1:
        return 0, 0
    frames = inputs.shape[1]
    if frames is None:
        raise UnsupportedExportError(
            f"{layer.name}: temporal 'same' padding of a {kernel}-tap kernel needs a static "
            "number of frames (export a fixed clip length)")
    total = max((math.ceil(frames / stride) - 1) * stride + kernel - frames, 0)
    return total // 2, total - total // 2


def _taps(x, kernel: int, stride: int, before: int, after: int):
    """The k_t time-shifted frame stacks [B, T_out, H, W, C] a temporal window sums over."""
    import tensorflow as tf

    if before or after:
        x = tf.pad(x, [[0, 0], [before, after], [0, 0], [0, 0], [0, 0]])
    frames = _dim(x, 1)
    if kernel == 1 and stride == 1:
        return [x], frames
    out = (frames - kernel) // stride + 1
    return [x[:, i:i + (out - 1) * stride + 1:stride] for i in range(kernel)], out


def _to_frames(x):
    """[B, T, H, W, C] -> [B*T, H, W, C]: 2D ops then run on every frame at once."""
    import tensorflow as tf

    return tf.reshape(x, [-1, _dim(x, 2), _dim(x, 3), x.shape[4]])


def _to_clip(y, frames):
    """[B*T, H, W, C] -> [B, T, H, W, C]."""
    import tensorflow as tf

    return tf.reshape(y, [-1, frames, _dim(y, 1), _dim(y, 2), y.shape[3]])


def conv3d_as_2d(layer, inputs):
    """`layer`'s 3D convolution of `inputs` [B, T, H, W, C] computed with 2D convolutions.

    Full (groups=1) and depthwise (groups = input channels) kernels; other groupings and
    dilations raise UnsupportedExportError naming the layer.
    """
    import tensorflow as tf

    kt, kh, kw = layer.kernel_size
    st, sh, sw = layer.strides
    channels = inputs.shape[-1]
    if tuple(layer.dilation_rate) != (1, 1, 1):
        raise UnsupportedExportError(f"{layer.name}: dilated 3D convolution has no 2D rewrite")
    if layer.groups not in (1, channels):
        raise UnsupportedExportError(
            f"{layer.name}: 3D convolution with {layer.groups} groups over {channels} channels "
            "is neither full nor depthwise")
    depthwise = layer.groups > 1
    kernel = tf.convert_to_tensor(layer.kernel)  # [kt, kh, kw, C/groups, filters]
    before, after = temporal_padding(layer, inputs, kt, st)
    taps, frames = _taps(inputs, kt, st, before, after)
    out = None
    for i, tap in enumerate(taps):
        x = _to_frames(tap)
        if depthwise:
            # [kh, kw, 1, C*m] -> [kh, kw, C, m]: output channel c*m+j reads input channel c.
            w = tf.reshape(kernel[i], [kh, kw, channels, layer.filters // channels])
            y = tf.nn.depthwise_conv2d(x, w, [1, sh, sw, 1], "SAME")
        else:
            y = tf.nn.conv2d(x, kernel[i], [1, sh, sw, 1], "SAME")
        out = y if out is None else out + y
    if layer.use_bias:
        out = tf.nn.bias_add(out, layer.bias)
    out = _to_clip(out, frames)
    return layer.activation(out) if layer.activation is not None else out


def avg_pool3d_as_2d(layer, inputs):
    """`layer`'s AveragePooling3D of `inputs` as a per-frame 2D average pool and a temporal mean.

    Both of TF's paddings average only the in-bounds elements; a spatial window's valid count
    is the same on every frame, so the 3D mean is the mean over valid temporal taps of the 2D
    means.
    """
    import tensorflow as tf

    pt, ph, pw = layer.pool_size
    st, sh, sw = layer.strides
    padding = layer.padding.upper()
    pooled = tf.nn.avg_pool2d(_to_frames(inputs), (ph, pw), (sh, sw), padding)
    pooled = _to_clip(pooled, _dim(inputs, 1))
    if pt == 1 and st == 1:
        return pooled
    before, after = temporal_padding(layer, inputs, pt, st)
    taps, frames = _taps(pooled, pt, st, before, after)
    total = functools.reduce(lambda a, b: a + b, taps)
    if not (before or after):
        return total / pt
    # Padded taps are not averaged: the divisor is each output frame's count of real frames.
    length = inputs.shape[1]
    valid = np.array([sum(0 <= t * st + i - before < length for i in range(pt))
                      for t in range(frames)], np.float32)
    return total * tf.constant((1.0 / valid).reshape(1, -1, 1, 1, 1))


def _is_conv3d(layer) -> bool:
    import tf_keras

    return isinstance(layer, tf_keras.layers.Conv3D)


def _is_avg_pool3d(layer) -> bool:
    import tf_keras

    return isinstance(layer, tf_keras.layers.AveragePooling3D)


@contextmanager
def rewritten_3d(model) -> Iterator[dict[str, int]]:
    """Within the block, `model`'s Conv3D and AveragePooling3D layers compute with 2D ops.

    Trace (and convert) inside the block; the model is restored on exit. Yields the number of
    layers rewritten per kind, e.g. {'Conv3D': 91, 'AveragePooling3D': 4}.
    """
    import tensorflow as tf

    swapped = []
    counts: dict[str, int] = {}
    for layer in model.submodules:
        if _is_conv3d(layer):
            fn, kind = conv3d_as_2d, "Conv3D"
        elif _is_avg_pool3d(layer):
            fn, kind = avg_pool3d_as_2d, "AveragePooling3D"
        else:
            continue
        # Bypass Keras' attribute tracking: this is a temporary override, not a sublayer.
        object.__setattr__(layer, "call", tf.autograph.experimental.do_not_convert(
            functools.partial(fn, layer)))
        swapped.append(layer)
        counts[kind] = counts.get(kind, 0) + 1
    try:
        yield counts
    finally:
        for layer in swapped:
            object.__delattr__(layer, "call")


def fit_weight(value: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A '3d_2plus1d' weight reshaped to its '2plus1d' twin's `shape`.

    A 3D kernel [1, kh, kw, a, b] loses its time axis, a temporal one [kt, 1, 1, a, b] one
    spatial axis; a depthwise kernel's [.., 1, C] becomes [.., C, 1]. Raises
    UnsupportedExportError when no such reading gives `shape`.
    """
    shape = tuple(shape)
    if value.shape == shape:
        return value
    if value.ndim == 5 and len(shape) == 4:
        squeezed = value[0] if value.shape[0] == 1 else value[:, 0]
        if squeezed.shape == shape:
            return squeezed
        transposed = np.transpose(squeezed, (0, 1, 3, 2))
        if transposed.shape == shape:
            return transposed
    raise UnsupportedExportError(
        f"cannot map a '3d_2plus1d' weight of shape {list(value.shape)} onto the '2plus1d' "
        f"rebuild's {list(shape)}")


def rebuild_as_2plus1d(model, config):
    """A '2plus1d' MovinetClassifier computing what the '3d_2plus1d' `model` computes.

    Weights are paired in order (both conv types create their layers in the same order) and
    each is reshaped by `fit_weight`; a count or shape mismatch raises UnsupportedExportError.
    """
    from core.build import build_model, state_specs

    config = config.resolved()
    twin_config = replace(config, conv_type="2plus1d")
    twin = build_model(twin_config, seed=None)
    source, target = model.get_weights(), twin.get_weights()
    if len(source) != len(target):
        raise UnsupportedExportError(
            f"the '3d_2plus1d' model has {len(source)} weights, its '2plus1d' rebuild "
            f"{len(target)}: they cannot be paired")
    twin.set_weights([fit_weight(v, t.shape) for v, t in zip(source, target)])
    if state_specs(twin, twin_config) != state_specs(model, config):
        raise UnsupportedExportError("the '2plus1d' rebuild has different stream states")
    twin.movibench_label = getattr(model, "movibench_label", twin.movibench_label)
    return twin


@dataclass
class ExportGraph:
    """What an exporter traces: the model to call and how it was made convertible."""

    model: object
    route: str
    details: dict = field(default_factory=dict)


@contextmanager
def exportable(model, config) -> Iterator[ExportGraph]:
    """The convertible form of `model` (built for `config`), valid within the block.

    '2plus1d' is the model itself; '3d' is the model with its 3D ops rewritten (restored on
    exit); '3d_2plus1d' is the '2plus1d' rebuild with the same weights. `details` records the
    route for the artifact's build record (empty for 'direct').
    """
    config = config.resolved()
    route = route_for(config.conv_type)
    if route == "rewrite-3d":
        with rewritten_3d(model) as counts:
            yield ExportGraph(model, route, {"route": route, "rewritten_layers": counts})
    elif route == "rebuild-2plus1d":
        yield ExportGraph(rebuild_as_2plus1d(model, config), route,
                          {"route": route, "rebuilt_as": "2plus1d"})
    else:
        yield ExportGraph(model, route)


# Op types that mean a 3D op (or the XLA-compiled call wrapping one) is still in a graph.
THREE_D_OPS = ("Conv3D", "AvgPool3D", "MaxPool3D", "StatefulPartitionedCall", "PartitionedCall")


def graph_ops(concrete_function) -> set[str]:
    """Every op type in a concrete function's graph and the functions it calls."""
    graph_def = concrete_function.graph.as_graph_def()
    ops = {node.op for node in graph_def.node}
    for function in graph_def.library.function:
        ops.update(node.op for node in function.node_def)
    return ops
