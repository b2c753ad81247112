"""Fully-connected heads as convolutions, so a trained net slides over a larger image in one pass (as the cs231n
notes describe for VGG16).

    conv_net, conv_params = fc_to_conv(net, params)           # VGG16 built for 224x224x3
    scores, _ = conv_net.apply(conv_params, state, x)         # x (N, 384, 384, 3) -> scores (N, 6, 6, 1000)

A net splits into a *trunk*, which runs on any input size (Conv, MaxPool, AvgPool, LRN, BatchNorm, Scale and
elementwise layers), and a *head*, which needs the fixed map the trunk makes at the training size: it starts at
the first Flatten, Dense or Local layer. Position (i, j) of the converted net's score map is the head applied to
the trunk's map at (i, j), i.e. to the training-size crop at pixel (i * sh, j * sw), where (sh, sw) is the
product of the trunk's strides (`sliding_geometry`).

That equals the original net applied to the *isolated* crop only when the trunk reads no zero padding at the
training size: no padded convolution, no padded or ceil-rounded pooling whose last window overhangs, no
within-channel LRN (`Sliding.padded` names the layers that do). Where the trunk pads (VGG16, AlexNet,
cuda-convnet's CIFAR-10 net), a position sees the image around its crop where the isolated crop sees zeros, so
the two differ (each padded layer carries the difference further in; in VGG16 it reaches every position); the
head itself is converted exactly either way. Evaluate the converted net with train=False (Dropout off,
BatchNorm on its running statistics), on inputs of the training size plus a multiple of the stride.
"""
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from .layers import (
    ELU,
    LRN,
    AbsVal,
    AvgPool,
    BatchNorm,
    Bias,
    Concat,
    Conv,
    Dense,
    Dropout,
    Eltwise,
    Flatten,
    LayerError,
    Local,
    MaxPool,
    PReLU,
    ReLU,
    Scale,
    Sigmoid,
    Slice,
    Softmax,
    Split,
    Tanh,
)
from .net import Graph, Net, Node
from .ops.conv import conv_geometry
from .ops.pool import pool_geometry

_HEAD = (Flatten, Dense, Local)  # layers that need a fixed input size: the head starts at the first of them
_ELEMENTWISE = (ReLU, Tanh, Sigmoid, Dropout, ELU, AbsVal)
_PER_CHANNEL = (BatchNorm, Scale, Bias, PReLU, Softmax)
_WIRING = (Concat, Eltwise, Split, Slice)  # trunk layers that join or copy maps of one stride


def head_start(net: Graph) -> int:
    """Index of the first Flatten, Dense or Local layer of `net` (len(net.layers) if it has none)."""
    return next((i for i, layer in enumerate(net.layers) if isinstance(layer, _HEAD)), len(net.layers))


def _check_head(net: Graph, k: int) -> None:
    """The head (nodes k..) must be a chain from one trunk blob to the net's one output."""
    prev = net.nodes[k].inputs
    for node in net.nodes[k:]:
        if node.inputs != prev or len(node.outputs) != 1 or len(prev) != 1:
            raise LayerError(f"{node.layer.name} ({type(node.layer).__name__}): the head of {net.name} (from its "
                             "first Flatten, Dense or Local layer on) must be a chain, each layer reading what the "
                             "one before it wrote")
        prev = node.outputs
    if net.outputs != prev:
        raise LayerError(f"{net.name}: its outputs {list(net.outputs)} must be the last layer's, {list(prev)}")


def _rebuild(net: Graph, nodes, input_shape, name) -> Graph:
    """A net of the same kind as `net` (a Net for a chain) from new nodes, keeping its inputs and outputs."""
    shapes = net.input_shapes(input_shape)
    if net.is_chain and all(len(n.inputs) == 1 for n in nodes):
        return Net([n.layer for n in nodes], next(iter(shapes.values())), name)
    return Graph(nodes, shapes, nodes[-1].outputs, name)


def split(net: Graph, input_shape=None) -> tuple[Graph, Net]:
    """-> (trunk, head): two nets that compose to `net` (the trunk a Net too if `net` is a chain); the head
    is a Net whose input_shape is the trunk's output map at the training size. Both take the original params
    and state dicts."""
    k, rows = head_start(net), net.shapes(input_shape)
    if not 0 < k < len(rows):
        raise LayerError(f"{net.name}: needs layers before and from its first Flatten, Dense or Local layer")
    _check_head(net, k)
    trunk_nodes = list(net.nodes[:k])
    if trunk_nodes[-1].outputs != net.nodes[k].inputs:  # the head reads a blob an earlier trunk layer wrote
        trunk = Graph(trunk_nodes, net.input_shapes(input_shape), net.nodes[k].inputs, f"{net.name}_trunk")
    else:
        trunk = _rebuild(net, trunk_nodes, input_shape, f"{net.name}_trunk")
    return trunk, Net(net.layers[k:], rows[k].in_shape, f"{net.name}_head")


def fc_to_conv(net: Graph, params: dict, input_shape=None) -> tuple[Graph, dict]:
    """Convert `net`'s head to convolutions -> (conv_net, conv_params), keyed by the same layer names.

    input_shape: the per-example training size (default net.input_shape). In the head, the first Dense or
    Local layer becomes a VALID Conv whose kernel covers the trunk's (H, W, C) map; every later one a 1x1 Conv;
    Flatten layers go away; elementwise layers (ReLU, Tanh, Sigmoid, Dropout) stay, and so do BatchNorm and
    Scale on a flat (features,) input after that first one. Weights are reshaped, never re-learned: Dense
    (H*W*C, O) -> (H, W, C, O), row-major as the flatten; a Local layer becomes its equivalent dense matrix,
    its zero padding included, with outputs flattened (OH, OW, F) -> OH*OW*F channels. State (BatchNorm
    statistics) needs no change: pass the original.
    On an input of the training size conv_net gives (N, 1, 1, classes) where net gives (N, classes); on a
    larger one, see the module docstring. Raises LayerError naming a layer that cannot be converted.
    """
    rows = net.shapes(input_shape)
    _check_params(rows, params)
    k = head_start(net)
    nodes = list(net.nodes[:k])
    conv_params = {r.layer.name: params[r.layer.name] for r in rows[:k] if r.params}
    if k < len(rows):
        _check_head(net, k)
        if len(rows[k].in_shape) != 3:
            raise LayerError(f"{net.layers[k].name} ({type(net.layers[k]).__name__}): its input "
                             f"{rows[k].in_shape} has no (H, W, C) map to slide over")
    window = rows[k].in_shape[:2] if k < len(rows) else None  # kernel of the next Dense/Local: the map, then 1x1
    blob = net.nodes[k].inputs if k < len(rows) else None  # what the next converted head layer reads
    for row in rows[k:]:
        layer, kind = row.layer, type(row.layer).__name__
        if isinstance(layer, (Dense, Local)):
            matrix, bias = _as_matrix(row, params[layer.name])
            conv = Conv(layer.name, matrix.shape[1], window, bias=bias is not None, lr_mult=layer.lr_mult,
                        decay_mult=layer.decay_mult)
            nodes.append(Node(conv, blob, row.outputs))
            conv_params[layer.name] = {"w": matrix.reshape(*window, -1, matrix.shape[1])}
            if bias is not None:
                conv_params[layer.name]["b"] = bias
            window, blob = (1, 1), row.outputs
        elif isinstance(layer, _ELEMENTWISE) or (
                isinstance(layer, _PER_CHANNEL) and window == (1, 1) and len(row.in_shape) == 1):
            nodes.append(Node(layer, blob, row.outputs))
            blob = row.outputs
            if row.params:
                conv_params[layer.name] = params[layer.name]
        elif isinstance(layer, _PER_CHANNEL):
            raise LayerError(f"{layer.name} ({kind}): a per-channel layer on a {row.in_shape} input inside the "
                             "head cannot be converted; only on a flat (features,) input after a Dense or Local")
        elif not isinstance(layer, Flatten):
            raise LayerError(f"{layer.name} ({kind}): cannot be converted; from the first Flatten, Dense or Local "
                             "layer on, only Dense, Local, Flatten, elementwise layers, and BatchNorm/Scale on a "
                             "flat input may follow")
    return _rebuild(net, nodes, input_shape, f"{net.name}_conv"), conv_params


def _check_params(rows, params):
    """Every layer's params must have the shapes the net gives them at the training size."""
    for row in rows:
        name, want = row.layer.name, {k: tuple(v.shape) for k, v in row.params.items()}
        if want and name not in params:
            raise LayerError(f"{name} ({type(row.layer).__name__}): params have no entry {name!r}")
        got = {k: tuple(np.shape(v)) for k, v in params.get(name, {}).items()}
        if got != want:
            raise LayerError(f"{name} ({type(row.layer).__name__}): params {got} do not fit the net at input "
                             f"{rows[0].in_shape}: expected {want}")


def _as_matrix(row, p):
    """A Dense or Local layer -> (w (inputs, outputs), b (outputs,) or None) on its row-major flattened
    per-example input and output."""
    if isinstance(row.layer, Dense):
        return p["w"], p.get("b")
    layer, (h, w, c) = row.layer, row.in_shape
    oh, ow, kh, kw, _, f = p["w"].shape
    _, ((top, _), (left, _)), (sh, sw), _ = conv_geometry(row.in_shape, (kh, kw), layer.stride, layer.padding)
    i, j, a, b = np.indices((oh, ow, kh, kw)).reshape(4, -1)  # output position (i, j), kernel tap (a, b)
    r, s = i * sh + a - top, j * sw + b - left  # the input pixel each tap reads
    inside = (r >= 0) & (r < h) & (s >= 0) & (s < w)  # taps on zero padding get no weight
    i, j, a, b, r, s = (v[inside] for v in (i, j, a, b, r, s))
    matrix = jnp.zeros((h, w, c, oh, ow, f), p["w"].dtype).at[r, s, :, i, j, :].set(p["w"][i, j, a, b])
    bias = p.get("b")
    if bias is not None:
        bias = jnp.broadcast_to(bias, (oh, ow, f)).reshape(-1)  # 'filter' (F,) or 'position' (OH, OW, F)
    return matrix.reshape(h * w * c, oh * ow * f), bias


class Sliding(NamedTuple):
    """Where a converted net's score-map positions sit on its input: position (i, j) sees the `window` (the
    training (H, W)) at pixel (i * stride[0], j * stride[1]). `padded` names the trunk layers that read zero
    padding at the training size (empty: every position equals the net on the isolated crop)."""

    window: tuple
    stride: tuple
    padded: tuple

    def positions(self, in_hw) -> tuple:
        """(P, Q) score-map size on an input of (H, W) = window + a multiple of the stride; raises ValueError
        for other sizes (there ceil-rounded pooling can shift the map)."""
        out = []
        for n, k, s in zip(in_hw, self.window, self.stride):
            if n < k or (n - k) % s:
                raise ValueError(f"input {in_hw[0]}x{in_hw[1]} is not the training size {self.window[0]}x"
                                 f"{self.window[1]} plus a multiple of the stride {self.stride[0]}x{self.stride[1]}")
            out.append((n - k) // s + 1)
        return tuple(out)


def sliding_geometry(net: Graph, input_shape=None) -> Sliding:
    """The stride and exactness of `net`'s converted score map, from its trunk at the training size (a
    branched trunk's joins must meet maps of one stride)."""
    rows, k = net.shapes(input_shape), head_start(net)
    (blob, shape), = net.input_shapes(input_shape).items() if len(net.inputs) == 1 else [(None, None)]
    if blob is None:
        raise LayerError(f"{net.name}: slides over one input, not {list(net.inputs)}")
    strides, padded = {blob: (1, 1)}, []
    for row in rows[:k]:
        incoming = {strides[b] for b in row.inputs}
        if len(incoming) > 1:
            raise LayerError(f"{row.layer.name} ({type(row.layer).__name__}): joins maps of different strides "
                             f"{sorted(incoming)}")
        step, pads = _trunk_window(row)
        stride = incoming.pop()
        strides.update({b: (stride[0] * step[0], stride[1] * step[1]) for b in row.outputs})
        if pads:
            padded.append(row.layer.name)
    end = net.nodes[k].inputs[0] if k < len(rows) else net.outputs[0]
    return Sliding(shape[:2], strides[end], tuple(padded))


def _trunk_window(row):
    """A trunk layer -> (its stride (h, w), whether it reads zero padding at its input shape)."""
    layer = row.layer
    if isinstance(layer, Conv):
        _, pads, stride, _ = conv_geometry(row.in_shape, layer.kernel, layer.stride, layer.padding, layer.dilation)
        return stride, any(np.ravel(pads))
    if isinstance(layer, (MaxPool, AvgPool)):
        _, _, stride, pads, extra = pool_geometry(row.in_shape, layer.kernel, layer.stride, layer.padding,
                                                  layer.ceil_mode, layer.clip)
        return stride, any(np.ravel(pads)) or any(extra)
    if isinstance(layer, LRN):
        return (1, 1), layer.region == "within" and layer.size > 1
    if isinstance(layer, (*_ELEMENTWISE, *_PER_CHANNEL, *_WIRING)):
        return (1, 1), False
    raise LayerError(f"{layer.name} ({type(layer).__name__}): not a layer whose sliding stride is known")


def crops(x, window: tuple[int, int], stride: tuple[int, int]):
    """All windows of size `window` at multiples of `stride`: x (N, H, W, C) -> (N, P, Q, wh, ww, C)."""
    (wh, ww), (sh, sw) = window, stride
    p, q = (x.shape[1] - wh) // sh + 1, (x.shape[2] - ww) // sw + 1
    rows = (np.arange(p) * sh)[:, None] + np.arange(wh)  # (P, wh)
    cols = (np.arange(q) * sw)[:, None] + np.arange(ww)  # (Q, ww)
    patches = x[:, rows[:, :, None, None], cols[None, None, :, :]]  # (N, P, wh, Q, ww, C)
    return patches.transpose(0, 1, 3, 2, 4, 5)
