"""Fully-connected heads as convolutions, so a trained net slides over a larger image in one pass (as the cs231n
notes describe for VGG16).

    >>> import jax, jax.numpy as jnp
    >>> from jaxcnn import fc_to_conv, zoo
    >>> from jaxcnn.convert import sliding_geometry
    >>> net = zoo.lenet_caffe()                                   # built for 28x28x1 (VGG16: 224x224x3)
    >>> _, params, state = net.init(jax.random.key(0))
    >>> conv_net, conv_params = fc_to_conv(net, params)
    >>> scores, _ = conv_net.apply(conv_params, state, jnp.zeros((2, 44, 44, 1)))    # VGG16: (N, 384, 384, 3)
    >>> scores.shape                                                                  # VGG16: (N, 6, 6, 1000)
    (2, 5, 5, 10)
    >>> sliding_geometry(net)                            # score (i, j): the 28x28 crop at pixel (4i, 4j)
    Sliding(window=(28, 28), stride=(4, 4), padded=())

A net splits into a *trunk*, which runs on any input size (layers that slide, such as Conv, MaxPool, AvgPool,
LRN, ContrastNorm, BatchNorm, Scale and elementwise layers), and a *head*, which needs the fixed map the trunk
makes at the training size: it starts at the first layer that does not slide (each layer says so in its
`window` trait: Flatten, Dense, Local, global pooling). Position (i, j) of the converted net's score map is the
head applied to the trunk's map at (i, j), i.e. to the training-size crop at pixel (i * sh, j * sw), where
(sh, sw) is the product of the trunk's strides (`sliding_geometry`).

A global pooling layer ends the trunk too: at the training size it pools the trunk's whole map, and on a larger
input the original net would pool the whole larger map, another function than the net on each crop. In the
converted net it pools each training-size window of the trunk's map (a MaxPool or AvgPool of that window's
size, stride 1), so every position is the head on its window as for a Dense head.

That equals the original net applied to the *isolated* crop only when the trunk reads no zero padding at the
training size: no padded convolution, no padded or ceil-rounded pooling whose last window overhangs, no
within-channel LRN or contrast normalisation (`Sliding.padded` names the layers that do). Where the trunk pads
(VGG16, AlexNet, cuda-convnet's CIFAR-10 net), a position sees the image around its crop where the isolated crop
sees zeros, so the two differ (each padded layer carries the difference further in; in VGG16 it reaches every
position); the head itself is converted exactly either way. Evaluate the converted net with train=False (Dropout
off, BatchNorm on its running statistics), on inputs of the training size plus a multiple of the stride.
"""
import math
from typing import NamedTuple

import numpy as np

from .layers import LayerError
from .net import Graph, Net, Node


def _head_start(rows) -> int:
    """Index of the first layer that does not slide (its window is None: Flatten, Dense, Local, global pooling),
    len(rows) if every layer slides; LayerError for a layer whose window is unknown."""
    return next((i for i, r in enumerate(rows) if r.layer.window(r.in_shape) is None), len(rows))


def _check_head(net: Graph, k: int) -> None:
    """The head (nodes k..) must be a chain from one trunk blob to the net's one output."""
    prev = net.nodes[k].inputs
    for node in net.nodes[k:]:
        if node.inputs != prev or len(node.outputs) != 1 or len(prev) != 1:
            raise LayerError(f"the head of {net.name} (from {net.nodes[k].layer.name}, its first layer that does not "
                             "slide, on) must be a chain, each layer reading what the one before it wrote", node.layer)
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
    rows = net.shapes(input_shape)
    k = _head_start(rows)
    if not 0 < k < len(rows):
        raise LayerError(f"{net.name}: needs layers before and from its first layer that does not slide (Flatten, "
                         "Dense, Local, global pooling)")
    _check_head(net, k)
    trunk_nodes = list(net.nodes[:k])
    if trunk_nodes[-1].outputs != net.nodes[k].inputs:  # the head reads a blob an earlier trunk layer wrote
        trunk = Graph(trunk_nodes, net.input_shapes(input_shape), net.nodes[k].inputs, f"{net.name}_trunk")
    else:
        trunk = _rebuild(net, trunk_nodes, input_shape, f"{net.name}_trunk")
    return trunk, Net(net.layers[k:], rows[k].in_shape, f"{net.name}_head")


def fc_to_conv(net: Graph, params: dict, input_shape=None) -> tuple[Graph, dict]:
    """Convert `net`'s head to convolutions -> (conv_net, conv_params), keyed by the same layer names.

    input_shape: the per-example training size (default net.input_shape). Each head layer becomes its
    `as_sliding` form on the map the converted layers before it make: the first Dense or Local layer a VALID
    Conv whose kernel covers the trunk's (H, W, C) map, every later one a 1x1 Conv; a global pooling a pooling
    over that map, stride 1; Flatten layers go away; elementwise layers (ReLU, Tanh, Sigmoid, Dropout) stay, and
    so do per-channel ones (BatchNorm, Scale, Softmax) on a flat (features,) input after a Dense or Local.
    Weights are reshaped, never re-learned: Dense (H*W*C, O) -> (H, W, C, O), row-major as the flatten; a Local
    layer becomes its equivalent dense matrix, its zero padding included, with outputs flattened (OH, OW, F) ->
    OH*OW*F channels. State (BatchNorm statistics) needs no change: pass the original.
    On an input of the training size conv_net gives (N, 1, 1, classes) where net gives (N, classes); on a
    larger one, see the module docstring. Raises LayerError naming a layer that cannot be converted.
    """
    rows = net.shapes(input_shape)
    _check_params(rows, params)
    k = _head_start(rows)
    nodes = list(net.nodes[:k])
    conv_params = {r.layer.name: params[r.layer.name] for r in rows[:k] if r.params}
    if k < len(rows):
        _check_head(net, k)
        if len(rows[k].in_shape) != 3:
            raise LayerError(f"its input {rows[k].in_shape} has no (H, W, C) map to slide over", net.layers[k])
        window, blob = rows[k].in_shape[:2], net.nodes[k].inputs  # the map the next head layer reads, and its blob
    for row in rows[k:]:
        layer, p = row.layer.as_sliding(params.get(row.layer.name, {}), row.in_shape, window)
        if layer is not None:
            nodes.append(Node(layer, blob, row.outputs))
            if p:
                conv_params[layer.name] = p
            channels = math.prod(row.in_shape) // math.prod(window)
            window, blob = layer.abstract_init((*window, channels))[0][:2], row.outputs
    return _rebuild(net, nodes, input_shape, f"{net.name}_conv"), conv_params


def _check_params(rows, params):
    """Every layer's params must have the shapes the net gives them at the training size."""
    for row in rows:
        name, want = row.layer.name, {k: tuple(v.shape) for k, v in row.params.items()}
        if want and name not in params:
            raise LayerError(f"params have no entry {name!r}", row.layer)
        got = {k: tuple(np.shape(v)) for k, v in params.get(name, {}).items()}
        if got != want:
            raise LayerError(f"params {got} do not fit the net at input {rows[0].in_shape}: expected {want}",
                             row.layer)


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
    rows = net.shapes(input_shape)
    k = _head_start(rows)
    (blob, shape), = net.input_shapes(input_shape).items() if len(net.inputs) == 1 else [(None, None)]
    if blob is None:
        raise LayerError(f"{net.name}: slides over one input, not {list(net.inputs)}")
    strides, padded = {blob: (1, 1)}, []
    for row in rows[:k]:
        incoming = {strides[b] for b in row.inputs}
        if len(incoming) > 1:
            raise LayerError(f"joins maps of different strides {sorted(incoming)}", row.layer)
        window, stride = row.layer.window(row.in_shape), incoming.pop()
        strides.update({b: (stride[0] * window.stride[0], stride[1] * window.stride[1]) for b in row.outputs})
        if window.padded:
            padded.append(row.layer.name)
    end = net.nodes[k].inputs[0] if k < len(rows) else net.outputs[0]
    return Sliding(shape[:2], strides[end], tuple(padded))


def crops(x, window: tuple[int, int], stride: tuple[int, int]):
    """All windows of size `window` at multiples of `stride`: x (N, H, W, C) -> (N, P, Q, wh, ww, C)."""
    (wh, ww), (sh, sw) = window, stride
    p, q = (x.shape[1] - wh) // sh + 1, (x.shape[2] - ww) // sw + 1
    rows = (np.arange(p) * sh)[:, None] + np.arange(wh)  # (P, wh)
    cols = (np.arange(q) * sw)[:, None] + np.arange(ww)  # (Q, ww)
    patches = x[:, rows[:, :, None, None], cols[None, None, :, :]]  # (N, P, wh, Q, ww, C)
    return patches.transpose(0, 1, 3, 2, 4, 5)
