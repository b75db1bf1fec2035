"""Exact rewrites of an exported ONNX graph that let ONNX Runtime (and OpenVINO) fuse more.

tf2onnx writes Model Garden's activations op by op. ONNX Runtime's CPU provider then runs every
one of them as a node of its own, outside its blocked-layout (NCHWc) convolutions: on A0 stream,
the hard-swish chains alone were 58 x 4 elementwise nodes, each with a layout reorder around
it. Each rewrite below replaces such a chain by the op, or the fused constants, that computes
the same function, so the runtime folds it into the convolution before it:

- `fuse_hard_swish`: `Mul(Mul(Clip(Add(x, 3), 0, 6), 1/6), x)` (in any operand order) becomes
  ONNX's `HardSwish(x)` (opset 14 and later; an older graph is left as it is), defined as `x * max(0, min(1, x/6 + 1/2))`, the same
  function. ONNX Runtime fuses it into the convolution that produces `x`.
- `fold_hard_sigmoid_gates`: a squeeze-excitation gate `Mul(Clip(Add(Conv(x, W, b), 3), 0, 6), a)`
  (Model Garden's hard-sigmoid, `a` = 0.16667) becomes `Clip(Conv(x, a*W, a*(b + 3)), 0, 6a)`,
  an affine rescaling moved into the convolution's constants (through a layout Transpose
  between them, if tf2onnx left one); ONNX Runtime fuses the Clip.

Both are exact up to float rounding (the tests bound the logits' difference over a streamed
clip). Each returns how many sites it rewrote; nothing here imports TensorFlow.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

HARD_SWISH_OPSET = 14


class _Graph:
    """Producer/consumer maps and constant lookup over a ModelProto's main graph."""

    def __init__(self, model):
        from onnx import numpy_helper

        self.graph = model.graph
        self.constants = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        self.producer = {out: node for node in model.graph.node for out in node.output}
        self.consumers: dict[str, list] = defaultdict(list)
        for node in model.graph.node:
            for name in node.input:
                self.consumers[name].append(node)
        self.outputs = {o.name for o in model.graph.output}

    def scalar(self, name: str) -> float | None:
        value = self.constants.get(name)
        if value is None or value.size != 1 or value.dtype != np.float32:
            return None
        return float(value.ravel()[0])

    def is_scalar(self, name: str, expected: float) -> bool:
        return self.scalar(name) == float(np.float32(expected))

    def only_consumer(self, name: str, op_type: str):
        """The one node reading `name` if it has type `op_type` (and `name` is no graph output)."""
        readers = self.consumers.get(name, [])
        if len(readers) != 1 or readers[0].op_type != op_type or name in self.outputs:
            return None
        return readers[0]

    def relu6_of_plus_3(self, clip) -> str | None:
        """For `Clip(Add(x, 3), 0, 6)` whose Add feeds nothing else, the name of x."""
        if clip.op_type != "Clip" or len(clip.input) != 3:
            return None
        if not (self.is_scalar(clip.input[1], 0.0) and self.is_scalar(clip.input[2], 6.0)):
            return None
        add = self.producer.get(clip.input[0])
        if add is None or add.op_type != "Add" or self.only_consumer(add.output[0], "Clip") is None:
            return None
        a, b = add.input
        if self.is_scalar(b, 3.0) and self.scalar(a) is None:
            return a
        if self.is_scalar(a, 3.0) and self.scalar(b) is None:
            return b
        return None

    def replace_nodes(self, drop: set[int], replacements: dict[int, list]) -> None:
        """Rebuild the node list without `drop` (by id) and with `replacements` in place."""
        nodes = []
        for node in self.graph.node:
            if id(node) in replacements:
                nodes.extend(replacements[id(node)])
            elif id(node) not in drop:
                nodes.append(node)
        del self.graph.node[:]
        self.graph.node.extend(nodes)


def _other_input(node, name: str) -> str | None:
    rest = [i for i in node.input if i != name]
    return rest[0] if len(rest) == 1 else None


def fuse_hard_swish(model) -> int:
    """Replace every hard-swish chain of `model` by one HardSwish node; return how many."""
    from onnx import helper

    if _opset(model) < HARD_SWISH_OPSET:
        return 0
    g = _Graph(model)
    drop: set[int] = set()
    replacements: dict[int, list] = {}
    for clip in list(model.graph.node):
        x = g.relu6_of_plus_3(clip)
        first = g.only_consumer(clip.output[0], "Mul") if x is not None else None
        if first is None:
            continue
        factor = _other_input(first, clip.output[0])
        second = g.only_consumer(first.output[0], "Mul")
        if second is None or factor is None:
            continue
        last = _other_input(second, first.output[0])
        # relu6(x + 3) * 1/6 * x, or relu6(x + 3) * x * 1/6
        if not ((g.is_scalar(factor, 1.0 / 6.0) and last == x)
                or (factor == x and last is not None and g.is_scalar(last, 1.0 / 6.0))):
            continue
        drop.update({id(g.producer[clip.input[0]]), id(clip), id(first)})
        replacements[id(second)] = [helper.make_node(
            "HardSwish", [x], [second.output[0]], name=f"{second.name or second.output[0]}/hard_swish")]
    if replacements:
        g.replace_nodes(drop, replacements)
        _drop_unused_initializers(model)
    return len(replacements)


def fold_hard_sigmoid_gates(model) -> int:
    """Fold every `relu6(conv + 3) * a` gate into its convolution; return how many."""
    from onnx import numpy_helper

    g = _Graph(model)
    drop: set[int] = set()
    initializers = []
    folded = 0
    for clip in list(model.graph.node):
        gate_in = g.relu6_of_plus_3(clip)
        conv = g.producer.get(gate_in) if gate_in is not None else None
        # The gate's scalar ops commute with a layout Transpose tf2onnx may leave between.
        if (conv is not None and conv.op_type == "Transpose"
                and g.only_consumer(gate_in, "Add") is not None):
            conv = g.producer.get(conv.input[0])
            if conv is not None and g.only_consumer(conv.output[0], "Transpose") is None:
                conv = None
        if (conv is None or conv.op_type != "Conv" or len(conv.input) < 2
                or len(g.consumers[gate_in]) != 1):
            continue
        weight = g.constants.get(conv.input[1])
        # tf2onnx drops an all-zero bias: the fold gives the convolution one.
        bias = (g.constants.get(conv.input[2]) if len(conv.input) == 3
                else np.zeros(weight.shape[:1], np.float32) if weight is not None else None)
        mul = g.only_consumer(clip.output[0], "Mul")
        scale = g.scalar(_other_input(mul, clip.output[0]) or "") if mul is not None else None
        if weight is None or bias is None or scale is None or scale <= 0:
            continue
        add = g.producer[clip.input[0]]
        a = np.float32(scale)
        prefix = f"movibench/hard_sigmoid_gate_{folded}"
        initializers += [
            numpy_helper.from_array((weight * a).astype(np.float32), f"{prefix}/weight"),
            numpy_helper.from_array(((bias + np.float32(3.0)) * a).astype(np.float32), f"{prefix}/bias"),
            numpy_helper.from_array(np.array(np.float32(6.0) * a, dtype=np.float32), f"{prefix}/max"),
        ]
        del conv.input[1:]
        conv.input.extend([f"{prefix}/weight", f"{prefix}/bias"])
        clip.input[0], clip.input[2] = gate_in, f"{prefix}/max"
        clip.output[0] = mul.output[0]
        drop.update({id(add), id(mul)})
        folded += 1
    if folded:
        g.replace_nodes(drop, {})
        model.graph.initializer.extend(initializers)
        _drop_unused_initializers(model)
    return folded


def _opset(model) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _drop_unused_initializers(model) -> None:
    used = {name for node in model.graph.node for name in node.input}
    used.update(o.name for o in model.graph.output)
    keep = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
