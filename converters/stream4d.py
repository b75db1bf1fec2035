"""The ≤4-D single-frame stream graph: one frame per call, every tensor of rank 4 or less.

Why. Model Garden's stream graph keeps its activations and states 5-D ([1, T, H, W, C]) even
at one frame per call, and moves between 5-D and 4-D around every convolution. LiteRT's GPU
delegate takes no tensor of rank above 4, so that graph cannot run on a phone's GPU at all,
and the CPU runtimes spend time on the reshapes, 5-D concatenations and slices around the
buffers. With T = 1 the time axis carries nothing but the buffered frames, so the same network
can be written with 4-D tensors only, from the same layers and weights:

- activations are [1, H, W, C], the layout Model Garden's (2+1)D convolutions already run in;
- a stream buffer of k past frames [1, k, H, W, C] becomes [1, k*H, W, C], the frames stacked
  along the height axis oldest first — the same elements in the same order, so the two convert
  by a reshape. Appending the new frame is a concatenation along that axis, dropping the oldest
  a slice of whole rows, and the causal temporal convolution over the k+1 frames is the one
  depthwise (or full) 2D convolution Model Garden runs, over [1, k+1, H*W, C], reached by a
  reshape that moves no data. (Frames stacked along channels, [1, H, W, k*C], measured 1.47x
  slower on ONNX Runtime for A0: its temporal convolution then has output width 1, the worst
  shape for ONNX Runtime's blocked-channel kernels, which vectorise along the width.);
- a pool's running sum [1, 1, 1, 1, C] becomes [1, 1, 1, C]. Frame counts stay int32 [1]
  except in LiteRT's float graphs, which hold them as float32 [1, 1, 1, 1] (exact below 2**24
  frames): the GPU delegate refuses int32 tensors. An int8 graph keeps them int32, because a
  quantized count would saturate at the largest count calibration saw, and so do ONNX's (ONNX
  Runtime's quantizer would quantize a float count's ADD the same way);
- for one frame the causal pool's cumulative sum is the identity and its divisor the count
  plus one: the pool is a spatial mean, an ADD and a MUL by the reciprocal of the count (as in
  converters.optimize's causal-pool-step), never RANGE, CUMSUM or a 5-D DIV.

Every state keeps its Model Garden name and maps to Model Garden's state one to one (the
`model_garden_shape` of its StateSpec; core.state_layout converts both ways), so a stream can
move between a 5-D and a 4-D artifact mid-clip. The graph is made by walking the model's own
layers (stem, blocks, head, classifier) and calling their Keras sublayers — convolutions,
batch norms, activations, pools — on 4-D tensors: the weights are the model's variables, and
what each layer computes is Model Garden's. Only (2+1)D causal models (stream and mobile
variants; '3d_2plus1d' checkpoints are rebuilt as '2plus1d' first) have this form.
"""

from __future__ import annotations

from dataclasses import replace

from core.errors import UnsupportedExportError
from core.formats import INT8, TFLITE, FormatSpec
from core.manifest import LAYOUT_4D, StateManifest, StateSpec
from core.zoo import ModelConfig

STREAM_BUFFER_SUFFIX = "_stream_buffer"
# What the 4-D graph is, in the cache key of its artifacts: a change of layout is another file.
GRAPH = "stream4d: buffers [1, k*H, W, C], one-frame pools, LiteRT float counts [1, 1, 1, 1]"


def refusal(config: ModelConfig, frames_per_call: int | None, dynamic_frames: bool) -> str | None:
    """Why `config` has no 4-D single-frame graph at these settings, in one line; None if it has."""
    config = config.resolved()
    if not config.causal:
        return (f"the 4-D graph is a single-frame stream graph: variant {config.variant!r} is "
                "a clip model with no states")
    if config.conv_type == "3d":
        return ("the 4-D graph needs a (2+1)D model (conv_type '2plus1d' or '3d_2plus1d'); "
                "conv_type '3d' has 3D convolutions over the buffered frames")
    if dynamic_frames or (frames_per_call is not None and frames_per_call != 1):
        return "the 4-D graph takes exactly one frame per call"
    return None


def float_counts(spec: FormatSpec) -> bool:
    """Whether `spec`'s 4-D graph holds its frame counts as float32 (see the module docstring)."""
    return spec.family == TFLITE and spec.precision != INT8


def four_d_state(spec: StateSpec, counts_float: bool) -> StateSpec:
    """The 4-D form of Model Garden state `spec`, recording Model Garden's shape and dtype
    where they differ."""
    shape, dtype = four_d_shape(spec), spec.dtype
    if counts_float and spec.dtype == "int32":
        shape, dtype = (1, 1, 1, 1), "float32"
    return StateSpec(spec.name, shape, dtype,
                     model_garden_shape=None if shape == spec.shape else spec.shape,
                     model_garden_dtype=None if dtype == spec.dtype else spec.dtype)


def four_d_shape(spec: StateSpec) -> tuple[int, ...]:
    """The 4-D shape of Model Garden state `spec` (shapes of rank ≤ 4 stay as they are)."""
    shape = spec.shape
    if len(shape) <= 4:
        return shape
    if spec.name.endswith(STREAM_BUFFER_SUFFIX):
        batch, frames, height, width, channels = shape
        return (batch, frames * height, width, channels)
    if shape[1:4] == (1, 1, 1):
        return (shape[0], 1, 1, shape[4])
    raise UnsupportedExportError(f"state {spec.name!r} of shape {list(shape)} has no 4-D form")


def four_d_manifest(manifest: StateManifest, counts_float: bool = False) -> StateManifest:
    """The manifest of the 4-D graph of the model `manifest` (its reference manifest)
    describes: the same states by name, each in its 4-D form with Model Garden's recorded."""
    states = [four_d_state(s, counts_float) for s in manifest.states]
    return replace(manifest, states=states, layout=LAYOUT_4D, frames_per_call=1)


def single_frame_graph(model, manifest: StateManifest):
    """A callable with the Keras model's stream signature, computing one frame in 4-D.

    `model` is a '2plus1d' causal MovinetClassifier, `manifest` its reference manifest.
    Called as `graph({'image': [1, H, W, 3], 'state_<name>': 4-D state, ...}, training=False)`
    it returns (logits [1, classes], {'state_<name>': next 4-D state}), so core.build's traced
    step function and every exporter take it as they take the model. Its `variables` are the
    model's.
    """
    import tensorflow as tf

    class SingleFrameGraph(tf.Module):
        def __init__(self):
            super().__init__(name="single_frame_graph")
            self.model = model

        def __call__(self, inputs, training=False):
            states = {k: v for k, v in inputs.items() if k != "image"}
            return _classifier(model, inputs["image"], states)

    specs = {s.input_name: s for s in manifest.states}
    _check_model(model, specs)
    return SingleFrameGraph()


def _check_model(model, specs: dict[str, StateSpec]) -> None:
    """Refuse, naming the layer, any part of `model` this module does not write in 4-D."""
    from official.projects.movinet.modeling import movinet_layers

    for layer in model.backbone.layers:
        if isinstance(layer, movinet_layers.MovinetBlock):
            block = layer._mobile_bottleneck
            _check_conv_block(block._feature_layer, specs)
        elif isinstance(layer, movinet_layers.Stem):
            _check_conv_block(layer._stem, specs)
    for layer in model.layers:
        if isinstance(layer, movinet_layers.ClassifierHead) and layer._max_pool_predictions:
            raise UnsupportedExportError(
                f"{layer.name}: temporal softmax pooling of predictions has no 4-D form")


def _check_conv_block(block, specs: dict[str, StateSpec]) -> None:
    if block._conv_type != "2plus1d":
        raise UnsupportedExportError(
            f"{block.name}: conv_type {block._conv_type!r} has no 4-D form (only '2plus1d')")
    temporal = block._conv_temporal
    if temporal is None:
        return
    if getattr(block, "_stream_buffer", None) is None:
        raise UnsupportedExportError(f"{block.name}: a temporal convolution without a stream "
                                     "buffer (a non-causal model) has no single-frame form")
    conv = temporal._conv
    if tuple(conv.strides) != (1, 1) or tuple(conv.dilation_rate) != (1, 1):
        raise UnsupportedExportError(
            f"{block.name}: temporal stride or dilation other than 1 has no single-frame form")
    if block._stream_buffer._state_name not in specs:
        raise UnsupportedExportError(f"{block.name}: its stream buffer is not a model state")


# -- the network in 4-D --------------------------------------------------------------------

def _mobile_conv(layer, x):
    """A MobileConv2D (spatial) on [1, H, W, C]: Model Garden folds time into the batch, which
    is 1 here, so its inner convolution, batch norm and activation apply as they are."""
    x = layer._conv(x)
    if layer._batch_norm_op is not None:
        x = layer._batch_norm_op(x, training=False)
    if layer._activation_op is not None:
        x = layer._activation_op(x)
    return x


def _conv_block(block, x):
    """A ConvBlock with no temporal taps (every 1x1x1 and spatial-only block)."""
    return _mobile_conv(block._conv, x)


def _temporal_conv(block, x, states):
    """The causal temporal convolution of a StreamConvBlock over its buffer and frame `x`."""
    import tensorflow as tf

    layer = block._conv_temporal
    conv = layer._conv
    name = block._stream_buffer._state_name  # 'state_<prefix>_stream_buffer'
    buffer = states[name]
    _, height, width, channels = x.shape
    taps = buffer.shape[1] // height + 1
    window = tf.concat([buffer, x], axis=1)
    states[name] = window[:, height:]
    # Model Garden's own temporal convolution: taps x 1 over [1, taps, H*W, C].
    y = conv(tf.reshape(window, [1, taps, height * width, channels]))
    y = tf.reshape(y, [1, height, width, y.shape[-1]])
    if layer._batch_norm_op is not None:
        y = layer._batch_norm_op(y, training=False)
    if layer._activation_op is not None:
        y = layer._activation_op(y)
    return y


def _stream_conv_block(block, x, states):
    x = _mobile_conv(block._conv, x)
    if block._conv_temporal is not None:
        x = _temporal_conv(block, x, states)
    return x


def _running_mean(pool, x, states, *, spatial_sum: bool):
    """A stateful global average pool (causal or not) for one frame of [1, H, W, C].

    Model Garden's causal pool takes the spatial mean, its non-causal one (the head's) the
    spatial sum over H*W; either adds the buffer, stores the sum and divides by the count.
    """
    import tensorflow as tf

    if spatial_sum:
        mean = tf.reduce_sum(x, axis=(1, 2), keepdims=True) / float(x.shape[1] * x.shape[2])
    else:
        mean = tf.reduce_mean(x, axis=(1, 2), keepdims=True)
    total = mean + states[pool._state_name]
    states[pool._state_name] = total
    count = states[pool._frame_count_name] + 1
    states[pool._frame_count_name] = count
    return total * tf.math.reciprocal(tf.cast(count, x.dtype))


def _positional_encoding(layer, x, states):
    """PositionalEncoding for the one frame at the stream's frame count (Model Garden's
    sinusoid, computed from the frame count without RANGE)."""
    import tensorflow as tf

    count = states[layer._frame_count_name]
    states[layer._frame_count_name] = count + 1
    channels = x.shape[-1]
    idx = tf.range(channels)[tf.newaxis, :]
    power = tf.cast(2 * (idx // 2), x.dtype) / tf.cast(channels, x.dtype)
    angles = 1.0 / tf.math.pow(10_000.0, power)
    radians = tf.cast(tf.reshape(count, [1, 1]), x.dtype) * angles
    encoding = tf.concat([tf.math.sin(radians[:, 0::2]), tf.math.cos(radians[:, 1::2])], axis=-1)
    encoding = layer._rezero(tf.reshape(encoding, [1, 1, 1, channels]))
    return x + encoding


def _squeeze_excitation(layer, x, states):
    import tensorflow as tf

    if layer._se_type == "3d":
        pooled = _running_mean(layer._spatiotemporal_pool, x, states, spatial_sum=False)
    elif layer._se_type == "2d":
        pooled = tf.reduce_mean(x, axis=(1, 2), keepdims=True)
    elif layer._se_type == "2plus3d":
        spatial = tf.reduce_mean(x, axis=(1, 2), keepdims=True)
        pooled = _running_mean(layer._spatiotemporal_pool, spatial, states, spatial_sum=False)
        pooled = tf.concat([pooled, spatial], axis=-1)
    else:
        raise UnsupportedExportError(f"{layer.name}: squeeze-excitation type "
                                     f"{layer._se_type!r} has no 4-D form")
    if layer._pos_encoding is not None:
        pooled = _positional_encoding(layer._pos_encoding, pooled, states)
    gate = _conv_block(layer._se_expand, _conv_block(layer._se_reduce, pooled))
    return gate * x


def _bottleneck(block, x, states):
    """MobileBottleneck at inference (stochastic depth is the identity)."""
    y = _conv_block(block._expansion_layer, x)
    y = _stream_conv_block(block._feature_layer, y, states)
    if block._attention_layer is not None:
        y = _squeeze_excitation(block._attention_layer, y, states)
    y = _conv_block(block._projection_layer, y)
    y = block._rezero(y)
    skip = x
    if block._skip_layer is not None:
        skip_block = block._skip_layer
        if skip_block._pool is not None:
            skip = skip_block._pool(skip)  # AveragePooling2D: already 4-D in Model Garden
        skip = _conv_block(skip_block._projection, skip)
    return y + skip


def _classifier(model, image, states):
    """The whole MovinetClassifier for one frame [1, H, W, 3]; `states` keyed 'state_<name>'."""
    import tensorflow as tf
    from official.projects.movinet.modeling import movinet_layers

    states = dict(states)
    x = image
    for layer in model.backbone.layers:
        if isinstance(layer, movinet_layers.Stem):
            x = _stream_conv_block(layer._stem, x, states)
        elif isinstance(layer, movinet_layers.MovinetBlock):
            x = _bottleneck(layer._mobile_bottleneck, x, states)
        elif isinstance(layer, movinet_layers.Head):
            x = _conv_block(layer._project, x)
            x = _running_mean(layer._pool, x, states, spatial_sum=True)
    head = next(layer for layer in model.layers
                if isinstance(layer, movinet_layers.ClassifierHead))
    x = _conv_block(head._head, x)
    x = _conv_block(head._classifier, x)
    logits = head._cast(tf.reshape(x, [1, x.shape[-1]]))
    return logits, states
