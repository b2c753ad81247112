"""A net with its weights as an ONNX graph of native operators (opset 13), one conversion per layer class.

    >>> import jax, numpy as np, onnxruntime
    >>> from jaxcnn import zoo
    >>> net = zoo.lenet_caffe()
    >>> _, params, state = net.init(jax.random.key(0))
    >>> model = to_onnx(net, params, state)          # an onnx.ModelProto; save_onnx(..., path) writes one
    >>> session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    >>> x = np.random.default_rng(0).random((2, 28, 28, 1), np.float32)
    >>> y = session.run(None, {"data": x.transpose(0, 3, 1, 2)})[0]
    >>> bool(np.allclose(y, net.apply(params, state, x)[0], atol=1e-5))
    True

The graph takes each input blob as NCHW float32 ((N, F) for a (features,) blob) under the blob's name, N
symbolic ('N') or fixed by `batch`, and gives the net's output blobs under their names ((H, W, C) outputs as
NCHW). Inside, activations stay NCHW; a value gets the name of the blob it writes the first time (conv1), the
name of its layer after that (an in-place relu1), and the net's outputs their blob names. Weights are
initializers named layer/param.

jaxcnn flattens (H, W, C), ONNX (C, H, W): a Flatten leaves its value in ONNX's order and marks it; a Dense
reading it takes its weight rows permuted to match, elementwise layers pass the mark on, and any other reader
(or a net output) gets the value transposed back to jaxcnn's order first.

The conversions (CONVERTERS, keyed by layer class; a class without one is a LayerError naming the layer):
  Conv            Conv with group, dilations and asymmetric pads
  Dense           Gemm
  Local           the patches by a fixed grouped Conv of one-hot kernels, then MatMul batched over the output
                  positions: (OH*OW, N, C*KH*KW) x (OH*OW, C*KH*KW, O)
  MaxPool         MaxPool, the pads carrying ceil rounding's bottom/right overhang (so ceil_mode=0: runtimes
                  differ on ceil_mode's last window); Caffe's window wholly outside an unpadded input (clip
                  'padded') by an explicit Pad of the lowest float, which that window then gives, as Caffe
  AvgPool         AveragePool with count_include_pad=0 over pads and overhang; explicit padding that counts
                  (count_pad, Caffe) as a Pad of zeros before it (OpenCV 4.14 ignores count_include_pad=1);
                  Caffe's windows outside the input: the mean over k*k times k*k / Caffe's divisor (0 or below
                  there: NaN or -0)
  GlobalMax/AvgPool  GlobalMaxPool, GlobalAveragePool
  LRN             LRN across channels; within a channel: x / (k + alpha * AveragePool(x*x))^beta over a Pad of
                  zeros (the pool divides by size**2, as Caffe's alpha does)
  ContrastNorm    the same on x less its AveragePool mean (padding not counted)
  BatchNorm       BatchNormalization with the running statistics (scale 1, bias 0)
  Scale, Bias     Mul and Add of per-channel constants
  ReLU ... AbsVal Relu (LeakyRelu with a negative slope), PRelu, Elu, Sigmoid, Tanh, Abs
  Dropout, Split  nothing (the value itself)
  Softmax, Concat Softmax, Concat along the matching NCHW axis
  Eltwise         Sum (Mul by each coefficient first), Mul, Max
  Slice           Split
"""
import math
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import numpy as np

try:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError as e:  # pragma: no cover - the export extra
    raise ImportError("ONNX export needs the onnx package: pip install 'jaxcnn[export]'") from e

from .._version import __version__
from ..errors import LayerError
from ..layers import (
    ELU,
    LRN,
    AbsVal,
    AvgPool,
    BatchNorm,
    Bias,
    Concat,
    ContrastNorm,
    Conv,
    Dense,
    Dropout,
    Eltwise,
    Flatten,
    GlobalAvgPool,
    GlobalMaxPool,
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
    named,
)
from ..layers.base import axis_index
from ..models import check_weights
from ..ops.conv import conv_geometry
from ..ops.pool import caffe_window_sizes, pool_geometry, wholly_outside
from . import write_atomic

OPSET = 13
IR_VERSION = 7  # the IR of opset 13 (ONNX 1.8): runtimes of that age on read it
BATCH = "N"  # the symbolic batch dimension's name


class Value(NamedTuple):
    """An ONNX value: its name, and for a (features,) value flattened from an (H, W, C) map in ONNX's (C, H, W)
    order, that map's shape (jaxcnn's order is (H, W, C))."""

    name: str
    flat_from: tuple | None = None


@dataclass
class Site:
    """One layer as a conversion sees it: the layer, its params and state (NumPy), per-example in/out shapes
    (jaxcnn's, a tuple of them for several inputs or outputs), the names of the values it reads and of those it
    writes, and flat_from: the (H, W, C) map its input holds flattened in ONNX's order, for a conversion that
    reads that order (else its inputs are in jaxcnn's)."""

    layer: object
    params: dict
    state: dict
    in_shape: tuple
    out_shape: tuple
    inputs: list
    names: list
    flat_from: tuple | None = None


@dataclass
class Builder:
    """The graph under construction: nodes, initializers and the names taken."""

    nodes: list = field(default_factory=list)
    initializers: list = field(default_factory=list)
    taken: set = field(default_factory=set)

    def unique(self, name: str) -> str:
        """`name`, or name_2, name_3, ... if taken; marks it taken."""
        candidate, i = name, 1
        while candidate in self.taken:
            i += 1
            candidate = f"{name}_{i}"
        self.taken.add(candidate)
        return candidate

    def const(self, name: str, array, dtype=np.float32) -> str:
        """An initializer holding `array` (float32 unless dtype says otherwise) -> its name."""
        name = self.unique(name)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype), name))
        return name

    def op(self, op_type: str, inputs, output: str, **attrs) -> str:
        """A node writing one value named `output` (the node has that name too) -> output."""
        self.nodes.append(helper.make_node(op_type, list(inputs), [output], name=output, **attrs))
        return output

    def plain(self, value: Value, output: str | None = None) -> str:
        """A value in jaxcnn's element order: flattened (C, H, W) values are transposed back to (H, W, C)."""
        if value.flat_from is None:
            return value.name
        h, w, c = value.flat_from
        x = self.op("Reshape", [value.name, self.const(f"{value.name}/chw", [0, c, h, w], np.int64)],
                    self.unique(f"{value.name}/chw"))
        x = self.op("Transpose", [x], self.unique(f"{value.name}/hwc"), perm=[0, 2, 3, 1])
        return self.op("Flatten", [x], output or self.unique(f"{value.name}/hwc_flat"), axis=1)


def onnx_axis(axis: int, rank: int) -> int:
    """A per-example axis of a rank-`rank` jaxcnn value -> the axis of its ONNX (NCHW) value."""
    i = axis_index(axis, rank)
    return {1: 2, 2: 3, 3: 1}[i] if rank == 3 else i


def channel_const(b: Builder, name: str, vector, shape) -> str:
    """A per-channel vector as a constant that broadcasts over an NCHW value (C, 1, 1) or an (N, C) one."""
    vector = np.asarray(vector, np.float32)
    return b.const(name, vector.reshape(-1, 1, 1) if len(shape) == 3 else vector)


def pads_of(pads) -> list:
    """((top, bottom), (left, right)) -> ONNX's [top, left, bottom, right]."""
    (t, bo), (le, r) = pads
    return [t, le, bo, r]


# -- the conversions ------------------------------------------------------------------------------------------
class Conversion(NamedTuple):
    """fn(builder, site) -> the name of the value written, a list of names (several outputs) or a Value (a
    flattened map in ONNX's order); reads_order: fn takes a flattened input in ONNX's order (site.flat_from)."""

    fn: Callable[[Builder, Site], object]
    reads_order: bool = False


CONVERTERS: dict[type, Conversion] = {}


def converts(*classes, reads_order: bool = False):
    """Register the conversion of layer classes (exactly those: a subclass may compute something else)."""
    def register(fn):
        for cls in classes:
            CONVERTERS[cls] = Conversion(fn, reads_order)
        return fn
    return register


def converter(layer) -> Conversion:
    """The conversion of `layer`'s class; LayerError if it has none."""
    if type(layer) not in CONVERTERS:
        raise LayerError("ONNX export has no conversion for this layer type (jaxcnn.export.onnx.CONVERTERS)", layer)
    return CONVERTERS[type(layer)]


def check_layers(net) -> None:
    """LayerError naming the first layer of `net` that has no conversion (before any weights are made or read)."""
    for layer in net.layers:
        converter(layer)


def _unary(op_type: str, attrs: Callable = lambda layer: {}):
    """A layer as one ONNX op of one input and output."""
    return lambda b, s: b.op(op_type, s.inputs, s.names[0], **attrs(s.layer))


converts(Tanh)(_unary("Tanh"))
converts(Sigmoid)(_unary("Sigmoid"))
converts(AbsVal)(_unary("Abs"))
converts(ELU)(_unary("Elu", lambda layer: {"alpha": float(layer.alpha)}))
converts(ReLU)(lambda b, s: _unary("Relu")(b, s) if s.layer.negative_slope == 0 else
               _unary("LeakyRelu", lambda layer: {"alpha": float(layer.negative_slope)})(b, s))
converts(Dropout)(lambda b, s: s.inputs[0])  # identity in evaluation
converts(Split)(lambda b, s: [s.inputs[0]] * s.layer.num_outputs)


@converts(PReLU)
def _prelu(b, s):
    slope = channel_const(b, f"{s.layer.name}/slope", s.params["slope"], s.in_shape)
    return b.op("PRelu", [s.inputs[0], slope], s.names[0])


@converts(Conv)
def _conv(b, s):
    layer, p = s.layer, s.params
    _, pads, stride, dilation = conv_geometry(s.in_shape, layer.kernel, layer.stride, layer.padding, layer.dilation)
    inputs = [s.inputs[0], b.const(f"{layer.name}/w", p["w"].transpose(3, 2, 0, 1))]
    if "b" in p:
        inputs.append(b.const(f"{layer.name}/b", p["b"]))
    return b.op("Conv", inputs, s.names[0], kernel_shape=list(layer.kernel), strides=list(stride),
                dilations=list(dilation), group=layer.groups, pads=pads_of(pads))


@converts(Dense, reads_order=True)
def _dense(b, s):
    w = s.params["w"]
    if s.flat_from is not None:  # rows in ONNX's (C, H, W) order
        h, wd, c = s.flat_from
        w = w.reshape(h, wd, c, -1).transpose(2, 0, 1, 3).reshape(h * wd * c, -1)
    inputs = [s.inputs[0], b.const(f"{s.layer.name}/w", w)]
    if "b" in s.params:
        inputs.append(b.const(f"{s.layer.name}/b", s.params["b"]))
    return b.op("Gemm", inputs, s.names[0])


@converts(Local)
def _local(b, s):
    layer, p, name = s.layer, s.params, s.layer.name
    oh, ow, kh, kw, c, o = p["w"].shape
    _, pads, stride, _ = conv_geometry(s.in_shape, (kh, kw), layer.stride, layer.padding)
    taps = c * kh * kw
    one_hot = np.zeros((c, kh, kw, 1, kh, kw), np.float32)  # patch channel (c, i, j) reads input c at tap (i, j)
    i, j = np.indices((kh, kw)).reshape(2, -1)
    one_hot[:, i, j, 0, i, j] = 1
    x = b.op("Conv", [s.inputs[0], b.const(f"{name}/one_hot", one_hot.reshape(taps, 1, kh, kw))],
             b.unique(f"{name}/patches"), kernel_shape=[kh, kw], strides=list(stride), group=c, pads=pads_of(pads))
    x = b.op("Reshape", [x, b.const(f"{name}/rows", [0, taps, oh * ow], np.int64)], b.unique(f"{name}/rows"))
    x = b.op("Transpose", [x], b.unique(f"{name}/by_position"), perm=[2, 0, 1])  # (OH*OW, N, C*KH*KW)
    w = p["w"].transpose(0, 1, 4, 2, 3, 5).reshape(oh * ow, taps, o)
    x = b.op("MatMul", [x, b.const(f"{name}/w", w)], b.unique(f"{name}/matmul"))  # (OH*OW, N, O)
    x = b.op("Transpose", [x], b.unique(f"{name}/nco"), perm=[1, 2, 0])
    if "b" not in p:
        return b.op("Reshape", [x, b.const(f"{name}/shape", [0, o, oh, ow], np.int64)], s.names[0])
    x = b.op("Reshape", [x, b.const(f"{name}/shape", [0, o, oh, ow], np.int64)], b.unique(f"{name}/nchw"))
    bias = p["b"].transpose(2, 0, 1) if p["b"].ndim == 3 else p["b"].reshape(-1, 1, 1)
    return b.op("Add", [x, b.const(f"{name}/b", bias)], s.names[0])


def _pad(b, name, x, pads, value) -> str:
    """x padded with `value` by ((top, bottom), (left, right))."""
    full = [0, 0, pads[0][0], pads[1][0], 0, 0, pads[0][1], pads[1][1]]
    return b.op("Pad", [x, b.const(f"{name}/pads", full, np.int64), b.const(f"{name}/pad_value", value)],
                b.unique(f"{name}/padded"), mode="constant")


def _grown(pads, extra):
    """pads with ceil rounding's bottom/right overhang added."""
    return (pads[0][0], pads[0][1] + extra[0]), (pads[1][0], pads[1][1] + extra[1])


@converts(MaxPool)
def _max_pool(b, s):
    layer, x = s.layer, s.inputs[0]
    out_hw, kernel, stride, pads, extra = pool_geometry(s.in_shape, layer.kernel, layer.stride, layer.padding,
                                                        layer.ceil_mode, layer.clip)
    attrs = dict(kernel_shape=list(kernel), strides=list(stride))
    if wholly_outside(s.in_shape[:2], stride, pads, out_hw):  # Caffe's -FLT_MAX for such a window
        x = _pad(b, layer.name, x, _grown(pads, extra), np.finfo(np.float32).min)
        return b.op("MaxPool", [x], s.names[0], **attrs)
    return b.op("MaxPool", [x], s.names[0], pads=pads_of(_grown(pads, extra)), **attrs)


@converts(AvgPool)
def _avg_pool(b, s):
    layer, x, name = s.layer, s.inputs[0], s.layer.name
    out_hw, kernel, stride, pads, extra = pool_geometry(s.in_shape, layer.kernel, layer.stride, layer.padding,
                                                        layer.ceil_mode, layer.clip)
    attrs = dict(kernel_shape=list(kernel), strides=list(stride))
    if wholly_outside(s.in_shape[:2], stride, pads, out_hw):
        x = b.op("AveragePool", [_pad(b, name, x, _grown(pads, extra), 0.0)], b.unique(f"{name}/mean"), **attrs)
        sizes = caffe_window_sizes(s.in_shape[:2], kernel, stride, pads, out_hw)[..., 0]
        with np.errstate(divide="ignore"):
            factor = math.prod(kernel) / np.asarray(sizes, np.float32)
        return b.op("Mul", [x, b.const(f"{name}/divisor", factor)], s.names[0])
    if layer.count_pad and any(p for side in pads for p in side):  # explicit padding counts: real zeros
        x, pads = _pad(b, name, x, pads, 0.0), ((0, 0), (0, 0))
    return b.op("AveragePool", [x], s.names[0], pads=pads_of(_grown(pads, extra)), count_include_pad=0, **attrs)


converts(GlobalMaxPool)(lambda b, s: b.op("GlobalMaxPool", [s.inputs[0]], s.names[0]))
converts(GlobalAvgPool)(lambda b, s: b.op("GlobalAveragePool", [s.inputs[0]], s.names[0]))


def _divide_by_norm(b, name, x, sums, alpha, beta, k, output) -> str:
    """x / (k + alpha * sums) ** beta."""
    t = b.op("Mul", [sums, b.const(f"{name}/alpha", alpha)], b.unique(f"{name}/scaled"))
    t = b.op("Add", [t, b.const(f"{name}/k", k)], b.unique(f"{name}/plus_k"))
    t = b.op("Pow", [t, b.const(f"{name}/beta", beta)], b.unique(f"{name}/norm"))
    return b.op("Div", [x, t], output)


def _window_mean(b, name, x, size, counted, what) -> str:
    """The mean over size x size windows centred on each pixel (stride 1), zero padding counted (as a Pad: OpenCV
    4.14 ignores count_include_pad=1) or not."""
    half = (size - 1) // 2
    attrs = dict(kernel_shape=[size, size], strides=[1, 1], count_include_pad=0)
    if counted:
        return b.op("AveragePool", [_pad(b, name, x, ((half, half), (half, half)), 0.0)], b.unique(f"{name}/{what}"),
                    **attrs)
    return b.op("AveragePool", [x], b.unique(f"{name}/{what}"), pads=[half] * 4, **attrs)


@converts(LRN)
def _lrn(b, s):
    layer, x = s.layer, s.inputs[0]
    if layer.region == "across":
        return b.op("LRN", [x], s.names[0], size=layer.size, alpha=float(layer.alpha), beta=float(layer.beta),
                    bias=float(layer.k))
    squares = b.op("Mul", [x, x], b.unique(f"{layer.name}/squares"))
    sums = _window_mean(b, layer.name, squares, layer.size, True, "mean_square")  # sum / size**2
    return _divide_by_norm(b, layer.name, x, sums, layer.alpha, layer.beta, layer.k, s.names[0])


@converts(ContrastNorm)
def _contrast_norm(b, s):
    layer, x, name = s.layer, s.inputs[0], s.layer.name
    d = b.op("Sub", [x, _window_mean(b, name, x, layer.size, False, "local_mean")], b.unique(f"{name}/centred"))
    squares = b.op("Mul", [d, d], b.unique(f"{name}/squares"))
    sums = _window_mean(b, name, squares, layer.size, True, "mean_square")
    return _divide_by_norm(b, name, x, sums, layer.alpha, layer.beta, layer.k, s.names[0])


@converts(BatchNorm)
def _batch_norm(b, s):
    name, st, c = s.layer.name, s.state, s.in_shape[-1]
    inputs = [s.inputs[0], b.const(f"{name}/scale", np.ones(c)), b.const(f"{name}/bias", np.zeros(c)),
              b.const(f"{name}/mean", st["mean"]), b.const(f"{name}/var", st["var"])]
    return b.op("BatchNormalization", inputs, s.names[0], epsilon=float(s.layer.eps))


@converts(Scale)
def _scale(b, s):
    name, x = s.layer.name, s.inputs[0]
    gamma = channel_const(b, f"{name}/gamma", s.params["gamma"], s.in_shape)
    if "beta" not in s.params:
        return b.op("Mul", [x, gamma], s.names[0])
    y = b.op("Mul", [x, gamma], b.unique(f"{name}/scaled"))
    return b.op("Add", [y, channel_const(b, f"{name}/beta", s.params["beta"], s.in_shape)], s.names[0])


@converts(Bias)
def _bias(b, s):
    bias = channel_const(b, f"{s.layer.name}/b", s.params["b"], s.in_shape)
    return b.op("Add", [s.inputs[0], bias], s.names[0])


@converts(Flatten)
def _flatten(b, s):
    if len(s.in_shape) != 3:
        return s.inputs[0]
    h, w, c = s.in_shape
    y = b.op("Flatten", [s.inputs[0]], s.names[0], axis=1)
    return Value(y, None if h * w == 1 or c == 1 else (h, w, c))  # one order where either is 1


@converts(Softmax)
def _softmax(b, s):
    return b.op("Softmax", [s.inputs[0]], s.names[0], axis=onnx_axis(s.layer.axis, len(s.in_shape)))


@converts(Concat)
def _concat(b, s):
    axis = onnx_axis(s.layer.axis, len(s.in_shape[0]))
    return b.op("Concat", list(s.inputs), s.names[0], axis=axis)


@converts(Eltwise)
def _eltwise(b, s):
    layer, xs = s.layer, list(s.inputs)
    if layer.operation == "sum" and layer.coeffs:
        xs = [x if c == 1 else b.op("Mul", [x, b.const(f"{layer.name}/coeff{i}", c)], b.unique(f"{layer.name}/x{i}"))
              for i, (x, c) in enumerate(zip(xs, layer.coeffs))]
    op_type = {"sum": "Sum", "prod": "Mul", "max": "Max"}[layer.operation]
    if op_type != "Mul":
        return b.op(op_type, xs, s.names[0])
    y = xs[0]
    for i, x in enumerate(xs[1:], start=1):
        y = b.op("Mul", [y, x], s.names[0] if i == len(xs) - 1 else b.unique(f"{layer.name}/product{i}"))
    return y


@converts(Slice)
def _slice(b, s):
    axis = onnx_axis(s.layer.axis, len(s.in_shape))
    sizes = [shape[axis_index(s.layer.axis, len(s.in_shape)) - 1] for shape in s.out_shape]
    inputs = [s.inputs[0], b.const(f"{s.layer.name}/sizes", sizes, np.int64)]
    b.nodes.append(helper.make_node("Split", inputs, list(s.names), name=b.unique(s.layer.name), axis=axis))
    return list(s.names)


# -- the graph ------------------------------------------------------------------------------------------------
def _value_info(name: str, shape, batch):
    """A float32 graph input/output of per-example jaxcnn shape `shape`, NCHW."""
    dims = (shape[2], shape[0], shape[1]) if len(shape) == 3 else tuple(shape)
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, [batch or BATCH, *dims])


def _check_rank(shape, what, layer=None):
    if len(shape) not in (1, 3):
        raise LayerError(f"{what} has per-example shape {tuple(shape)}; ONNX export takes (H, W, C) maps and "
                         "(features,) vectors", layer)


def _proposed_names(net, b: Builder) -> list:
    """Per node, the names of the values it writes, taken in `b`: the blob's name where it is free, else the
    layer's (the net's input and output blob names stay free: to_onnx gives them to the graph's inputs and
    outputs)."""
    b.taken.update(net.inputs, net.outputs)
    return [[b.unique(blob if blob not in b.taken else node.layer.name) for blob in node.outputs]
            for node in net.nodes]


def _rename(nodes, old: str, new: str) -> None:
    """Value `old` is called `new` in every node (and a node named after it too)."""
    for node in nodes:
        node.input[:] = [new if v == old else v for v in node.input]
        node.output[:] = [new if v == old else v for v in node.output]
        if node.name == old:
            node.name = new


def _convert(b: Builder, node, row, names, values: dict, params: dict, state: dict) -> list:
    """One node's conversion -> the Values it writes. A flattened map in ONNX's order reaches only a conversion that
    reads that order; it passes through an elementwise layer (the trait: one function of each element), and
    every other layer reads it back in jaxcnn's order."""
    layer, conversion = node.layer, converter(node.layer)
    ins = [values[blob] for blob in node.inputs]
    order = ins[0].flat_from if layer.elementwise or conversion.reads_order else None
    site = Site(layer, _numpy(params.get(layer.name, {})), _numpy(state.get(layer.name, {})), row.in_shape,
                row.out_shape, [v.name if order else b.plain(v) for v in ins], names,
                order if conversion.reads_order else None)
    with named(layer):
        result = conversion.fn(b, site)
    items = result if isinstance(result, list) else [result]
    keep = order if layer.elementwise else None
    return [v if isinstance(v, Value) else Value(v, keep) for v in items]


def _numpy(tree: dict) -> dict:
    return {k: np.asarray(v, np.float32) for k, v in tree.items()}


def to_onnx(net, params: dict, state: dict, *, input_shape=None, batch: int | None = None) -> "onnx.ModelProto":
    """`net` with `params` and `state` (evaluation: running statistics, no dropout) as a checked ONNX model.

    Args:
      net: a Graph or Net.
      params, state: its weights, as net.init gives them (their shapes are checked).
      input_shape: per-example (H, W, C) (a dict {blob: shape} for several inputs); default the net's own.
      batch: a fixed batch size, or None for a symbolic one named 'N'.
    Returns:
      an onnx.ModelProto, opset 13. LayerError naming the layer for a layer it cannot convert; ValueError for
      weights that do not fit the net.
    """
    if batch is not None and (not isinstance(batch, int) or batch < 1):
        raise ValueError(f"batch must be a positive int or None, got {batch!r}")
    shapes, rows = net.input_shapes(input_shape), net.shapes(input_shape)
    check_weights(net, params, state, net.name, input_shape, rows)
    b = Builder()
    names = _proposed_names(net, b)
    for blob, shape in shapes.items():
        _check_rank(shape, f"{net.name}: input blob {blob!r}")
    values = {blob: Value(blob) for blob in shapes}
    out_shapes = dict(shapes)
    for node, row, mine in zip(net.nodes, rows, names):
        outs = row.out_shape if node.layer.multi_output else (row.out_shape,)
        for shape in outs:
            _check_rank(shape, "its output", node.layer)
        for blob, value, shape in zip(node.outputs, _convert(b, node, row, mine, values, params, state), outs):
            values[blob], out_shapes[blob] = value, shape
    outputs, renamed = [], {}
    for blob in net.outputs:
        value = values[blob]
        name = b.plain(Value(renamed.get(value.name, value.name), value.flat_from))
        if name in shapes or name in renamed.values():  # an input, or already another output: a copy
            b.op("Identity", [name], blob)
        elif name != blob:
            _rename(b.nodes, name, blob)
            renamed[name] = blob
        outputs.append(_value_info(blob, out_shapes[blob], batch))
    graph = helper.make_graph(b.nodes, net.name, [_value_info(k, s, batch) for k, s in shapes.items()], outputs,
                              b.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
                              producer_name="jaxcnn", producer_version=__version__)
    onnx.checker.check_model(model, full_check=True)
    return model


def save_onnx(net, params: dict, state: dict, path, *, input_shape=None, batch: int | None = None):
    """to_onnx(...) written to `path` whole or not at all (a temporary file renamed) -> the model."""
    model = to_onnx(net, params, state, input_shape=input_shape, batch=batch)
    write_atomic(path, model.SerializeToString())
    return model
