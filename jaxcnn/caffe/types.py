"""The Caffe layer types jaxcnn reads: one entry per type, keyed by its name, saying how a layer of it is read, what
it becomes and how its blobs map to params. jaxcnn.caffe.prototxt reads every layer through this table and
jaxcnn.caffe.weights every blob: adding a type is adding its entry (and its read function) here.

    >>> from google.protobuf import text_format
    >>> from jaxcnn.caffe import schema
    >>> from jaxcnn.caffe.types import TYPES, Spec
    >>> lp = text_format.Parse('name: "conv1" type: "Convolution" convolution_param { num_output: 20 kernel_size: 5 }',
    ...                        schema.LayerParameter())
    >>> TYPES["Convolution"].read(Spec(lp, "Convolution", ("data",), ("conv1",), (4,), "lenet.prototxt"))
    Conv(name='conv1', lr_mult={}, decay_mult={}, features=20, kernel=(5, 5), stride=(1, 1), ...)
    >>> TYPES["Convolution"].blobs.names    # ConvBlobs: w (O, C/groups, KH, KW) <-> HWIO, b (O,)
    ('w', 'b')

A read function takes a Spec (one layer entry of the file) and returns a jaxcnn Layer, or the part of the net the
layer stands for: a Loss (SoftmaxWithLoss), a Metric (Accuracy), Data (Data, ImageData, HDF5Data, MemoryData:
their read functions and transform_param are jaxcnn.caffe.data_layers), Inputs (Input) or Silence. Errors name the
file, the layer and its type (Spec.error).
"""
from dataclasses import dataclass
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from .. import fillers
from ..errors import CaffeFormatError
from ..layers import (
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
    GlobalAvgPool,
    GlobalMaxPool,
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
from ..net import Loss
from . import schema
from .blobs import BatchNormBlobs, Blobs, ConvBlobs, DenseBlobs, PReLUBlobs
from .data_layers import read_data, read_hdf5_data, read_image_data, read_memory_data
from .schema import enum_name

MANY = None  # no upper limit on a count of blobs


@dataclass(frozen=True)
class CaffeType:
    """One Caffe layer type.

    read: Spec -> what the layer becomes (a Layer, Loss, Metric, Data, Inputs or Silence).
    param, fields: the type's *_param message and the fields of it jaxcnn implements (given space-separated); a
      file setting any other is an error naming it.
    layers: the jaxcnn layer classes it becomes (a caffemodel names them by this type).
    blobs: how its blobs map to the layer's params and state (jaxcnn.caffe.blobs); None: it has none.
    v1: its name in the legacy V1 format (`layers { type: CONVOLUTION }`).
    bottoms, tops: the (least, most) blobs it reads and writes; most MANY: no limit.
    flat: its top is 2-d (N, C) (else of its bottom's rank); flattens: it reads a 4-d bottom through a Flatten
      layer "<name>_flatten" (jaxcnn flattens (H, W, C) where Caffe flattens (C, H, W)).
    extra: LayerParameter fields beyond the common ones, `param` and the `param {}` entries of a type with blobs.
    """

    read: Callable
    param: str | None = None
    fields: frozenset = frozenset()
    layers: tuple = ()
    blobs: Blobs | None = None
    v1: str | None = None
    bottoms: tuple = (1, 1)
    tops: tuple = (1, 1)
    flat: bool = False
    flattens: bool = False
    extra: frozenset = frozenset()

    def __post_init__(self):
        if isinstance(self.fields, str):
            object.__setattr__(self, "fields", frozenset(self.fields.split()))


@dataclass(frozen=True)
class Spec:
    """One layer entry of a prototxt as its type's read function sees it: lp (its LayerParameter, or the legacy
    V1LayerParameter when v1), its type `kind`, the bottoms it reads (each of Caffe rank `ranks`: 4 for (N, C, H,
    W), 2 for (N, C), 1 for labels) and the tops it writes, and the file it is in (for errors)."""

    lp: object
    kind: str
    bottoms: tuple
    tops: tuple
    ranks: tuple
    file: str
    v1: bool = False

    @property
    def name(self) -> str:
        return self.lp.name

    @property
    def entry(self) -> CaffeType:
        return TYPES[self.kind]

    @property
    def param(self):
        """The type's *_param message, or None for a type without one: Caffe's defaults where the file sets
        nothing (or a legacy V1 layer has no such field, as V1 has no flatten_param)."""
        name = self.entry.param
        if name is None:
            return None
        if name in self.lp.DESCRIPTOR.fields_by_name:
            return getattr(self.lp, name)
        return schema.message(schema.LayerParameter.DESCRIPTOR.fields_by_name[name].message_type.name)()

    @property
    def rank(self) -> int:
        """The Caffe rank of its (first) bottom."""
        return self.ranks[0]

    def error(self, message: str) -> CaffeFormatError:
        """A CaffeFormatError naming the file, this layer and its type."""
        return CaffeFormatError(self.file, message, layer=self.name, kind=self.kind)

    def mults(self) -> dict:
        """`param { lr_mult decay_mult }` (V1: blobs_lr, weight_decay) as the layer's lr_mult and decay_mult
        keyword arguments, in the order of the type's blobs (1, the default, left out)."""
        lp, blobs = self.lp, self.entry.blobs
        if self.v1:
            if lp.param:
                raise self.error("field param (weight sharing) is not supported")
            lr, decay = list(lp.blobs_lr), list(lp.weight_decay)
        else:
            if any(spec.name or spec.HasField("share_mode") for spec in lp.param):
                raise self.error("field param.name (weight sharing) is not supported")
            lr, decay = [s.lr_mult for s in lp.param], [s.decay_mult for s in lp.param]
        if max(len(lr), len(decay)) > blobs.count:
            raise self.error(f"{max(len(lr), len(decay))} param entries for {blobs.count} blobs")
        return {"lr_mult": {n: float(v) for n, v in zip(blobs.names, lr) if v != 1},
                "decay_mult": {n: float(v) for n, v in zip(blobs.names, decay) if v != 1}}


# -- what layers that are not jaxcnn layers become ------------------------------------------------------

@dataclass(frozen=True)
class Metric:
    """An Accuracy layer: the fraction of examples whose label is among the top_k scores of `logits`."""

    name: str
    logits: str
    label: str
    top_k: int = 1


class Inputs(NamedTuple):
    """An Input layer: its tops as net inputs, ((blob, Caffe dims or None), ...)."""

    blobs: tuple


class Silence(NamedTuple):
    """A Silence layer: its bottoms are no outputs of the net."""

    blobs: tuple


# -- reading the fields -------------------------------------------------------------------------------

def _pair(s: Spec, c, field: str, default, h: str | None = None, w: str | None = None) -> tuple:
    """Caffe's `field: a` (also repeated, `field: a field: b`) or `h: a w: b` forms -> (a, a) or (a, b);
    `default` where none is given (None: required)."""
    value = getattr(c, field)
    values = [int(v) for v in value] if hasattr(value, "__len__") else [int(value)] if c.HasField(field) else []
    if h and (c.HasField(h) or c.HasField(w)):
        if values:
            raise s.error(f"give {field} or {h}/{w}, not both")
        return int(getattr(c, h)), int(getattr(c, w))
    if not values:
        if default is None:
            raise s.error(f"needs {field} (or {h} and {w})")
        return default, default
    if len(values) > 2:
        raise s.error(f"{field} has {len(values)} values; only 2-d convolutions are supported")
    return values[0], values[-1]


def _window(s: Spec, c) -> tuple:
    """kernel, stride, pad of a convolution or pooling -> three (h, w) pairs."""
    kernel = _pair(s, c, "kernel_size", None, "kernel_h", "kernel_w")
    if not all(kernel):
        raise s.error("needs kernel_size (or kernel_h and kernel_w)")
    return (kernel, _pair(s, c, "stride", 1, "stride_h", "stride_w"), _pair(s, c, "pad", 0, "pad_h", "pad_w"))


def _filler(s: Spec, c, field: str, default: float = 0.0):
    """A FillerParameter field -> a jax initializer (Caffe's fan-in/fan-out: jaxcnn.fillers); the constant
    `default` where the file gives none."""
    if not c.HasField(field):
        return fillers.constant(default)
    f = getattr(c, field)
    if f.sparse != -1:
        raise s.error("filler field 'sparse' is not supported")
    if f.type == "constant":
        return fillers.constant(f.value)
    if f.type == "gaussian":
        mean, std = f.mean, f.std
        return lambda key, shape, dtype=jnp.float32: mean + std * jax.random.normal(key, shape, dtype)
    if f.type == "uniform":
        lo, hi = f.min, f.max
        return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, lo, hi)
    if f.type in ("xavier", "msra"):
        mode = {"FAN_IN": "fan_in", "FAN_OUT": "fan_out", "AVERAGE": "fan_avg"}[enum_name(f, "variance_norm")]
        scale, dist = (1.0, "uniform") if f.type == "xavier" else (2.0, "normal")
        return jax.nn.initializers.variance_scaling(scale, mode, dist)
    raise s.error(f"filler type {f.type!r} is not supported (constant, gaussian, uniform, xavier, msra)")


def _constant_fillers(s: Spec, c, fills):
    """Refuse fillers other than the constants `fills` gives ({field: value}) where the layer has no other."""
    for field, value in fills.items():
        f = getattr(c, field)
        if c.HasField(field) and (f.type != "constant" or f.value != value):
            raise s.error(f"only the default constant {value} filler is supported")


def _axis(s: Spec, axis: int) -> int:
    """A Caffe axis of the bottom -> jaxcnn's per-example axis (channels are last)."""
    rank = s.rank
    a = axis % rank if -rank <= axis < rank else None
    table = {4: {1: -1, 2: 0, 3: 1}, 2: {1: -1}}.get(rank, {})
    if a not in table:
        raise s.error(f"axis {axis} of a {rank}-d blob is not supported (channels, height or width of a 4-d blob; "
                      "features of a 2-d one)")
    return table[a]


def _map_bottom(s: Spec):
    """CaffeFormatError unless the bottom is a 4-d (N, C, H, W) map."""
    if s.rank != 4:
        raise s.error("needs a 4-d (N, C, H, W) bottom")


# -- one read function per type -----------------------------------------------------------------------

def _convolution(s: Spec):
    c = s.param
    if c.axis != 1:
        raise s.error("field convolution_param.axis other than 1 is not supported")
    _map_bottom(s)
    kernel, stride, pad = _window(s, c)
    return Conv(s.name, int(c.num_output), kernel, stride=stride, padding=pad,
                dilation=_pair(s, c, "dilation", 1), groups=int(c.group), bias=c.bias_term,
                w_init=_filler(s, c, "weight_filler"), b_init=_filler(s, c, "bias_filler"), **s.mults())


def _inner_product(s: Spec):
    c = s.param
    if c.axis % s.rank != 1:
        raise s.error("field inner_product_param.axis other than 1 is not supported")
    return Dense(s.name, int(c.num_output), bias=c.bias_term, w_init=_filler(s, c, "weight_filler"),
                 b_init=_filler(s, c, "bias_filler"), **s.mults())


def _pooling(s: Spec):
    c = s.param
    method = enum_name(c, "pool")
    if method == "STOCHASTIC":
        raise s.error("field pooling_param.pool STOCHASTIC is not supported")
    _map_bottom(s)
    if c.global_pooling:
        if any(c.HasField(f) for f in ("kernel_size", "kernel_h", "kernel_w")):
            raise s.error("global_pooling takes no kernel size")
        if c.pad or c.pad_h or c.pad_w or c.stride != 1:
            raise s.error("global_pooling needs pad 0 and stride 1")
        return (GlobalMaxPool if method == "MAX" else GlobalAvgPool)(s.name)
    kernel, stride, pad = _window(s, c)
    if c.HasField("ceil_mode") and c.HasField("round_mode"):
        raise s.error("give ceil_mode or round_mode, not both")
    ceil = enum_name(c, "round_mode") == "CEIL" if c.HasField("round_mode") else c.ceil_mode
    return (MaxPool if method == "MAX" else AvgPool)(s.name, kernel, stride, pad, ceil_mode=ceil, clip="padded")


def _lrn(s: Spec):
    c = s.param
    within = enum_name(c, "norm_region") == "WITHIN_CHANNEL"
    # Caffe's WITHIN_CHANNEL computes (1 + alpha/n^2 * sum)^-beta: its k is not used
    return LRN(s.name, int(c.local_size), c.alpha, c.beta, 1.0 if within else c.k,
               region="within" if within else "across")


def _batch_norm(s: Spec):
    c = s.param
    s.mults()  # checks the param entries, which have no effect
    return BatchNorm(s.name, momentum=c.moving_average_fraction, eps=c.eps,
                     use_global_stats=c.HasField("use_global_stats") and c.use_global_stats)


def _per_channel(s: Spec, c):
    if c.axis != 1 or c.num_axes != 1:
        raise s.error(f"only axis 1 with num_axes 1 (a per-channel {s.kind}) is supported")


def _scale(s: Spec):
    c = s.param
    _per_channel(s, c)
    _constant_fillers(s, c, {"filler": 1.0, **({"bias_filler": 0.0} if c.bias_term else {})})
    return Scale(s.name, bias=c.bias_term, **s.mults())


def _bias(s: Spec):
    c = s.param
    _per_channel(s, c)
    _constant_fillers(s, c, {"filler": 0.0})
    return Bias(s.name, **s.mults())


def _prelu(s: Spec):
    c = s.param
    if c.HasField("filler") and c.filler.type != "constant":
        raise s.error("only a constant filler is supported")
    value = c.filler.value if c.HasField("filler") else 0.25
    return PReLU(s.name, channel_shared=c.channel_shared, init_value=value, **s.mults())


def _concat(s: Spec):
    c = s.param
    axis = c.axis if c.HasField("axis") or not c.HasField("concat_dim") else c.concat_dim
    return Concat(s.name, axis=_axis(s, axis))


def _slice(s: Spec):
    c = s.param
    axis = c.axis if c.HasField("axis") or not c.HasField("slice_dim") else c.slice_dim
    points = tuple(int(v) for v in c.slice_point)
    if points and len(points) != len(s.tops) - 1:
        raise s.error(f"{len(points)} slice points for {len(s.tops)} tops")
    return Slice(s.name, axis=_axis(s, axis), points=points, parts=None if points else len(s.tops))


def _flatten(s: Spec):
    c = s.param
    if c.axis != 1 or c.end_axis != -1:
        raise s.error("only flatten_param axis 1 to end_axis -1 is supported")
    return Flatten(s.name)


def _input(s: Spec):
    shapes = [tuple(shape.dim) for shape in s.param.shape]
    if len(shapes) not in (0, 1, len(s.tops)):
        raise s.error(f"{len(shapes)} shapes for {len(s.tops)} tops")
    return Inputs(tuple((top, shapes[i if len(shapes) > 1 else 0] if shapes else None)
                        for i, top in enumerate(s.tops)))


def _softmax_loss(s: Spec):
    lossp = s.lp.loss_param
    if lossp.HasField("ignore_label") or enum_name(lossp, "normalization") == "NONE" or (
            lossp.HasField("normalize") and not lossp.normalize):
        raise s.error("fields loss_param.ignore_label and an unnormalised loss are not supported (the loss is the "
                      "mean over the batch)")
    if s.param.axis != 1:
        raise s.error("field softmax_param.axis other than 1 is not supported")
    return Loss(s.name, s.bottoms[0], s.bottoms[1], float(s.lp.loss_weight[0] if s.lp.loss_weight else 1.0))


def _accuracy(s: Spec):
    if s.param.axis != 1:
        raise s.error("field accuracy_param.axis other than 1 is not supported")
    return Metric(s.name, s.bottoms[0], s.bottoms[1], int(s.param.top_k))


TYPES = {
    "Convolution": CaffeType(
        _convolution, "convolution_param", "num_output bias_term pad kernel_size stride dilation pad_h pad_w kernel_h "
        "kernel_w stride_h stride_w group weight_filler bias_filler engine axis force_nd_im2col", (Conv,),
        ConvBlobs("w", "b"), "CONVOLUTION"),
    "InnerProduct": CaffeType(
        _inner_product, "inner_product_param", "num_output bias_term weight_filler bias_filler axis transpose",
        (Dense,), DenseBlobs("w", "b"), "INNER_PRODUCT", flat=True, flattens=True),
    "Pooling": CaffeType(
        _pooling, "pooling_param", "pool pad pad_h pad_w kernel_size kernel_h kernel_w stride stride_h stride_w "
        "engine global_pooling ceil_mode round_mode", (MaxPool, AvgPool, GlobalMaxPool, GlobalAvgPool),
        v1="POOLING"),
    "LRN": CaffeType(_lrn, "lrn_param", "local_size alpha beta norm_region k engine", (LRN,), v1="LRN"),
    "BatchNorm": CaffeType(_batch_norm, "batch_norm_param", "use_global_stats moving_average_fraction eps",
                           (BatchNorm,), BatchNormBlobs()),
    "Scale": CaffeType(_scale, "scale_param", "axis num_axes filler bias_term bias_filler", (Scale,),
                       Blobs("gamma", "beta")),
    "Bias": CaffeType(_bias, "bias_param", "axis num_axes filler", (Bias,), Blobs("b")),
    "ReLU": CaffeType(lambda s: ReLU(s.name, negative_slope=s.param.negative_slope), "relu_param",
                      "negative_slope engine", (ReLU,), v1="RELU"),
    "PReLU": CaffeType(_prelu, "prelu_param", "filler channel_shared", (PReLU,), PReLUBlobs("slope")),
    "ELU": CaffeType(lambda s: ELU(s.name, alpha=s.param.alpha), "elu_param", "alpha", (ELU,)),
    "Sigmoid": CaffeType(lambda s: Sigmoid(s.name), "sigmoid_param", "engine", (Sigmoid,), v1="SIGMOID"),
    "TanH": CaffeType(lambda s: Tanh(s.name), "tanh_param", "engine", (Tanh,), v1="TANH"),
    "AbsVal": CaffeType(lambda s: AbsVal(s.name), layers=(AbsVal,), v1="ABSVAL"),
    "Dropout": CaffeType(lambda s: Dropout(s.name, s.param.dropout_ratio), "dropout_param", "dropout_ratio",
                         (Dropout,), v1="DROPOUT"),
    "Concat": CaffeType(_concat, "concat_param", "axis concat_dim", (Concat,), v1="CONCAT", bottoms=(1, MANY)),
    "Eltwise": CaffeType(
        lambda s: Eltwise(s.name, enum_name(s.param, "operation").lower(), coeffs=tuple(s.param.coeff)),
        "eltwise_param", "operation coeff stable_prod_grad", (Eltwise,), v1="ELTWISE", bottoms=(1, MANY)),
    "Slice": CaffeType(_slice, "slice_param", "axis slice_point slice_dim", (Slice,), v1="SLICE", tops=(1, MANY)),
    "Split": CaffeType(lambda s: Split(s.name, copies=len(s.tops)), layers=(Split,), v1="SPLIT", tops=(1, MANY)),
    "Softmax": CaffeType(lambda s: Softmax(s.name, axis=_axis(s, s.param.axis)), "softmax_param", "engine axis",
                         (Softmax,), v1="SOFTMAX"),
    "Flatten": CaffeType(_flatten, "flatten_param", "axis end_axis", (Flatten,), v1="FLATTEN", flat=True),
    "Silence": CaffeType(lambda s: Silence(s.bottoms), v1="SILENCE", bottoms=(0, MANY), tops=(0, MANY)),
    "Input": CaffeType(_input, "input_param", "shape", bottoms=(0, MANY), tops=(0, MANY)),
    "Data": CaffeType(read_data, "data_param", "source batch_size backend rand_skip prefetch", v1="DATA",
                      bottoms=(0, MANY), tops=(1, MANY), extra=frozenset({"transform_param"})),
    "ImageData": CaffeType(
        read_image_data, "image_data_param", "source batch_size rand_skip shuffle new_height new_width is_color "
        "root_folder", v1="IMAGE_DATA", bottoms=(0, MANY), tops=(1, MANY), extra=frozenset({"transform_param"})),
    "HDF5Data": CaffeType(read_hdf5_data, "hdf5_data_param", "source batch_size shuffle", v1="HDF5_DATA",
                          bottoms=(0, MANY), tops=(1, MANY), extra=frozenset({"transform_param"})),
    "MemoryData": CaffeType(read_memory_data, "memory_data_param", "batch_size channels height width",
                            v1="MEMORY_DATA", bottoms=(0, MANY), tops=(1, MANY), extra=frozenset({"transform_param"})),
    "SoftmaxWithLoss": CaffeType(_softmax_loss, "softmax_param", "engine axis", v1="SOFTMAX_LOSS",
                                 bottoms=(2, 2), tops=(0, MANY), extra=frozenset({"loss_param", "loss_weight"})),
    "Accuracy": CaffeType(_accuracy, "accuracy_param", "top_k axis", v1="ACCURACY", bottoms=(2, 2),
                          tops=(0, MANY)),
}
V1_TYPES = {t.v1: name for name, t in TYPES.items() if t.v1}  # legacy enum name -> type


def saved_as(layer) -> tuple[str, CaffeType] | None:
    """The Caffe type (name, entry) a caffemodel stores `layer`'s params and state as, or None."""
    return next(((name, t) for name, t in TYPES.items() if t.blobs is not None and type(layer) in t.layers), None)
