"""Caffe net definitions (*.prototxt) as jaxcnn nets.

    net = load_prototxt("deploy.prototxt")                     # phase TEST
    net = load_prototxt("lenet_train_test.prototxt", phase="TRAIN", input_shape=(28, 28, 1))

Both layer formats are read (`layer { type: "Convolution" }` and the legacy V1 `layers { type: CONVOLUTION }`),
inputs given as `input:` + `input_shape` / `input_dim`, an Input layer, or a Data, ImageData or MemoryData
layer, and include/exclude rules for the phase (level 0, no stages). Blobs keep their Caffe names; layers
their names, so params["conv1"]["w"] is Caffe's conv1 weight blob (in jaxcnn's HWIO layout). Activations are
NHWC: a per-example Caffe shape (C, H, W) is (H, W, C) here. An InnerProduct on a (C, H, W) blob reads it
through a Flatten layer named "<ip>_flatten" (jaxcnn flattens (H, W, C); jaxcnn.caffe.weights permutes the
weight rows to match). SoftmaxWithLoss and Accuracy layers become the net's `losses` and `metrics`, a data
layer's transform_param its `transform`, and Silence layers go away; every other layer type, and every field
jaxcnn does not implement, is a CaffeFormatError naming the layer, its type and the field.
"""
import re
from dataclasses import dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
from google.protobuf import text_format

from .. import fillers
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
    LayerError,
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
from ..net import Graph, Loss, Node, unread_blobs
from . import schema

PHASES = ("TRAIN", "TEST")
# V1 enum names -> layer types
V1_NAMES = {
    "ABSVAL": "AbsVal", "ACCURACY": "Accuracy", "CONCAT": "Concat", "CONVOLUTION": "Convolution", "DATA": "Data",
    "DROPOUT": "Dropout", "ELTWISE": "Eltwise", "FLATTEN": "Flatten", "IMAGE_DATA": "ImageData",
    "INNER_PRODUCT": "InnerProduct", "LRN": "LRN", "MEMORY_DATA": "MemoryData", "POOLING": "Pooling",
    "RELU": "ReLU", "SIGMOID": "Sigmoid", "SILENCE": "Silence", "SOFTMAX": "Softmax",
    "SOFTMAX_LOSS": "SoftmaxWithLoss", "SPLIT": "Split", "SLICE": "Slice", "TANH": "TanH",
}
DATA_TYPES = {"Data": "data_param", "ImageData": "image_data_param", "MemoryData": "memory_data_param"}
# the *_param message each type reads and the fields of it jaxcnn implements (ignored: engine choices)
FIELDS = {
    "Convolution": ("convolution_param", {
        "num_output", "bias_term", "pad", "kernel_size", "stride", "dilation", "pad_h", "pad_w", "kernel_h",
        "kernel_w", "stride_h", "stride_w", "group", "weight_filler", "bias_filler", "engine", "axis",
        "force_nd_im2col"}),
    "InnerProduct": ("inner_product_param", {"num_output", "bias_term", "weight_filler", "bias_filler", "axis",
                                             "transpose"}),
    "Pooling": ("pooling_param", {"pool", "pad", "pad_h", "pad_w", "kernel_size", "kernel_h", "kernel_w", "stride",
                                  "stride_h", "stride_w", "engine", "global_pooling", "ceil_mode", "round_mode"}),
    "LRN": ("lrn_param", {"local_size", "alpha", "beta", "norm_region", "k", "engine"}),
    "BatchNorm": ("batch_norm_param", {"use_global_stats", "moving_average_fraction", "eps"}),
    "Scale": ("scale_param", {"axis", "num_axes", "filler", "bias_term", "bias_filler"}),
    "Bias": ("bias_param", {"axis", "num_axes", "filler"}),
    "ReLU": ("relu_param", {"negative_slope", "engine"}),
    "PReLU": ("prelu_param", {"filler", "channel_shared"}),
    "ELU": ("elu_param", {"alpha"}),
    "Sigmoid": ("sigmoid_param", {"engine"}),
    "TanH": ("tanh_param", {"engine"}),
    "AbsVal": (None, set()),
    "Dropout": ("dropout_param", {"dropout_ratio"}),
    "Concat": ("concat_param", {"axis", "concat_dim"}),
    "Eltwise": ("eltwise_param", {"operation", "coeff", "stable_prod_grad"}),
    "Slice": ("slice_param", {"axis", "slice_point", "slice_dim"}),
    "Split": (None, set()),
    "Softmax": ("softmax_param", {"engine", "axis"}),
    "Flatten": ("flatten_param", {"axis", "end_axis"}),
    "Silence": (None, set()),
    "Input": ("input_param", {"shape"}),
    "Data": ("data_param", {"source", "batch_size", "backend", "rand_skip", "prefetch"}),
    "ImageData": ("image_data_param", {"source", "batch_size", "rand_skip", "shuffle", "new_height", "new_width",
                                       "is_color", "root_folder"}),
    "MemoryData": ("memory_data_param", {"batch_size", "channels", "height", "width"}),
    "SoftmaxWithLoss": ("softmax_param", {"engine", "axis"}),
    "Accuracy": ("accuracy_param", {"top_k", "axis"}),
}
BLOB_NAMES = {"Convolution": ("w", "b"), "InnerProduct": ("w", "b"), "Scale": ("gamma", "beta"), "Bias": ("b",),
              "PReLU": ("slope",), "BatchNorm": ()}  # BatchNorm's three blobs are statistics: state, not params
COMMON = {"name", "type", "bottom", "top", "include", "exclude", "phase"}
# fields beyond COMMON and the type's own *_param, and the types that may set them (BatchNorm's `param` entries are
# accepted and have no effect: its blobs are statistics, never trained; Caffe's LeNet-BN gives them lr_mult 0)
EXTRA = {"param": set(BLOB_NAMES), "blobs_lr": set(BLOB_NAMES), "weight_decay": set(BLOB_NAMES),
         "transform_param": set(DATA_TYPES), "loss_param": {"SoftmaxWithLoss"}, "loss_weight": {"SoftmaxWithLoss"}}


class CaffeFormatError(ValueError):
    """A Caffe file jaxcnn cannot read: malformed, or using a layer type or field it does not implement."""


def read_text(path: Path, what: str = "text prototxt (a .caffemodel?)") -> str:
    """A Caffe text file's contents; CaffeFormatError "PATH: not a WHAT" when it is binary (not UTF-8, or holding
    NUL bytes, as Caffe's binary protobuf files do)."""
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        text = None
    if text is None or "\0" in text:
        raise CaffeFormatError(f"{path}: not a {what}")
    return text


@dataclass(frozen=True)
class Transform:
    """A data layer's transform_param, the run's preprocessing of uint8 images (N, H, W, C): Caffe crops
    (crop_size, a centre crop here; Caffe crops at random in training), subtracts mean_value (one value or one
    per channel) and multiplies by scale; mirror flips training images left-right at random (`augment`)."""

    scale: float = 1.0
    mean_value: tuple = ()
    crop_size: int = 0
    mirror: bool = False

    def __call__(self, x):
        """uint8 or float images (N, H, W, C) -> float32 (N, H', W', C), cropped, centred and scaled."""
        if self.crop_size:
            h, w = x.shape[1:3]
            top, left = (h - self.crop_size) // 2, (w - self.crop_size) // 2
            x = x[:, top:top + self.crop_size, left:left + self.crop_size]
        x = x.astype(jnp.float32)
        if self.mean_value:
            x = x - jnp.asarray(self.mean_value, jnp.float32)
        return x * self.scale if self.scale != 1 else x

    def augment(self, key, x):
        """Random left-right flips of a float batch (N, H, W, C) (mirror: true), else x unchanged."""
        if not self.mirror:
            return x
        flip = jax.random.bernoulli(key, 0.5, (x.shape[0], 1, 1, 1))
        return jnp.where(flip, x[:, :, ::-1], x)


@dataclass(frozen=True)
class Metric:
    """An Accuracy layer: the fraction of examples whose label is among the top_k scores of `logits`."""

    name: str
    logits: str
    label: str
    top_k: int = 1


@dataclass(frozen=True)
class DataSource:
    """A data layer: its type (Data, ImageData, MemoryData), source (a database or list file, or None), batch
    size and the blobs it writes (images, then labels)."""

    type: str
    source: str | None
    batch_size: int | None
    tops: tuple


class CaffeNet(Graph):
    """A Graph loaded from a prototxt, with what Caffe keeps around it: `phase`, `transform` (a Transform or
    None), `losses` and `metrics` (tuples of Loss and Metric), `data` (a DataSource or None), `caffe_types`
    ({layer name: Caffe type}) and `transposed` (InnerProduct layers whose blob is stored (inputs, outputs))."""

    def __init__(self, nodes, inputs, outputs=None, name="net", *, phase="TEST", transform=None, losses=(),
                 metrics=(), data=None, caffe_types=None, transposed=()):
        super().__init__(nodes, inputs, outputs, name)
        self.phase, self.transform, self.data = phase, transform, data
        self.losses, self.metrics = tuple(losses), tuple(metrics)
        self.caffe_types = dict(caffe_types or {})
        self.transposed = frozenset(transposed)


def parse_net(text: str, where: str = "prototxt"):
    """Text-format NetParameter -> message; CaffeFormatError naming the line (and its layer) on a syntax error
    or a field Caffe's schema, as jaxcnn declares it, does not have."""
    net = schema.NetParameter()
    try:
        text_format.Parse(text, net)
    except text_format.ParseError as e:
        raise CaffeFormatError(f"{where}: {_enclosing_layer(text, e)}{e}") from None
    return net


def _enclosing_layer(text, error):
    """'layer NAME: ' for the layer block around the line of a ParseError (best effort), else ''."""
    line = getattr(error, "GetLine", lambda: None)()
    if not line:
        return ""
    before = "\n".join(text.splitlines()[:line])
    starts = [m.end() for m in re.finditer(r"\blayers?\s*\{", before)]
    if not starts:
        return ""
    name = re.search(r"\bname\s*:\s*\"([^\"]*)\"", text[starts[-1]:])
    return f"layer {name.group(1)!r}: " if name else ""


def load_prototxt(path_or_text, phase: str = "TEST", input_shape=None) -> CaffeNet:
    """Load a Caffe net definition.

    Args:
      path_or_text: a path to a .prototxt file, or its text.
      phase: 'TRAIN' or 'TEST': which layers the include/exclude rules keep, and the default of BatchNorm's
        use_global_stats (TEST: a loaded BatchNorm is evaluated with train=False anyway).
      input_shape: per-example (H, W, C) for input blobs whose size the file does not give (a Data layer's
        images), or a dict {blob: shape}.

    Returns:
      A CaffeNet (a Graph): params and state keyed by Caffe's layer names.
    """
    if phase not in PHASES:
        raise ValueError(f"phase must be 'TRAIN' or 'TEST', got {phase!r}")
    text, where = _read(path_or_text)
    proto = parse_net(text, where)
    if proto.layer and proto.layers:
        raise CaffeFormatError(f"{where}: mixes `layer` and legacy `layers` entries")
    return _Builder(proto, phase, where, input_shape).build()


def _read(path_or_text):
    text = str(path_or_text)
    if "\n" not in text and "{" not in text:
        path = Path(text)
        if not path.is_file():
            raise FileNotFoundError(f"{text}: no such prototxt file")
        return read_text(path), str(path)
    return text, "prototxt"


def per_example(dims, where):
    """Caffe blob dims (N, C, H, W) or (N, C) -> jaxcnn's per-example (H, W, C) or (C,)."""
    dims = tuple(int(d) for d in dims)
    if len(dims) == 4:
        return dims[2], dims[3], dims[1]
    if len(dims) == 2:
        return (dims[1],)
    raise CaffeFormatError(f"{where}: input shape {dims}: only 4-d (N, C, H, W) and 2-d (N, C) blobs are supported")


def _filler(proto, where, default_constant=0.0):
    """A FillerParameter -> a jax initializer (Caffe's fan-in/fan-out: jaxcnn.fillers)."""
    if proto is None:
        return fillers.constant(default_constant)
    kind = proto.type
    if proto.sparse != -1:
        raise CaffeFormatError(f"{where}: filler field 'sparse' is not supported")
    if kind == "constant":
        return fillers.constant(proto.value)
    if kind == "gaussian":
        mean, std = proto.mean, proto.std
        return lambda key, shape, dtype=jnp.float32: mean + std * jax.random.normal(key, shape, dtype)
    if kind == "uniform":
        lo, hi = proto.min, proto.max
        return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, lo, hi)
    if kind in ("xavier", "msra"):
        mode = {0: "fan_in", 1: "fan_out", 2: "fan_avg"}[proto.variance_norm]
        scale, dist = (1.0, "uniform") if kind == "xavier" else (2.0, "normal")
        return jax.nn.initializers.variance_scaling(scale, mode, dist)
    raise CaffeFormatError(f"{where}: filler type {kind!r} is not supported (constant, gaussian, uniform, xavier, "
                           "msra)")


def _pair(repeated, h, w, has_h, default, what, where):
    """Caffe's `x: a` / `x: a x: b` / `x_h`, `x_w` forms -> (h, w)."""
    if has_h:
        if len(repeated):
            raise CaffeFormatError(f"{where}: give {what} or {what}_h/{what}_w, not both")
        return int(h), int(w)
    values = [int(v) for v in repeated]
    if not values:
        if default is None:
            raise CaffeFormatError(f"{where}: needs {what} (or {what}_h and {what}_w)")
        return default, default
    if len(values) == 1:
        return values[0], values[0]
    if len(values) == 2:
        return values[0], values[1]
    raise CaffeFormatError(f"{where}: {what} has {len(values)} values; only 2-d convolutions are supported")


@dataclass
class _Builder:
    proto: object
    phase: str
    where: str
    input_shape: object
    nodes: list = field(default_factory=list)
    inputs: dict = field(default_factory=dict)
    rank: dict = field(default_factory=dict)  # blob -> Caffe rank (4: N, C, H, W; 2: N, C)
    losses: list = field(default_factory=list)
    metrics: list = field(default_factory=list)
    silenced: set = field(default_factory=set)
    transform: Transform | None = None
    data: DataSource | None = None
    caffe_types: dict = field(default_factory=dict)
    transposed: set = field(default_factory=set)

    def build(self) -> CaffeNet:
        p = self.proto
        self._net_inputs()
        v1 = bool(p.layers)
        for lp in (p.layers if v1 else p.layer):
            kind = self._type(lp, v1)
            if self._included(lp):
                self._layer(lp, kind, v1)
        if not self.nodes:
            raise CaffeFormatError(f"{self.where}: no layers in phase {self.phase}")
        read = {b for n in self.nodes for b in n.inputs}
        inputs = {b: s for b, s in self.inputs.items() if b in read}
        inputs = self._fill_shapes(inputs)
        outputs = [b for b in unread_blobs(self.nodes) if b not in self.silenced]
        name = p.name or Path(self.where).stem
        try:
            return CaffeNet(self.nodes, inputs, outputs or None, name, phase=self.phase, transform=self.transform,
                            losses=self.losses, metrics=self.metrics, data=self.data, caffe_types=self.caffe_types,
                            transposed=self.transposed)
        except (LayerError, ValueError) as e:
            raise CaffeFormatError(f"{self.where}: {e}") from e

    # -- inputs ---------------------------------------------------------------------------------------
    def _net_inputs(self):
        p = self.proto
        if not p.input:
            if p.input_shape or p.input_dim:
                raise CaffeFormatError(f"{self.where}: input_shape/input_dim without `input:` names")
            return
        if p.input_shape:
            if len(p.input_shape) != len(p.input):
                raise CaffeFormatError(f"{self.where}: {len(p.input)} inputs but {len(p.input_shape)} input_shape")
            shapes = [tuple(s.dim) for s in p.input_shape]
        elif p.input_dim:
            if len(p.input_dim) != 4 * len(p.input):
                raise CaffeFormatError(f"{self.where}: input_dim needs 4 values (N, C, H, W) per input, got "
                                       f"{len(p.input_dim)} for {len(p.input)}")
            shapes = [tuple(p.input_dim[4 * i:4 * i + 4]) for i in range(len(p.input))]
        else:
            shapes = [None] * len(p.input)
        for blob, dims in zip(p.input, shapes):
            self._add_input(blob, dims, f"{self.where}: input {blob!r}")

    def _add_input(self, blob, dims, where):
        if blob in self.inputs:
            raise CaffeFormatError(f"{where}: input blob {blob!r} is declared twice")
        self.inputs[blob] = None if dims is None else per_example(dims, where)
        self.rank[blob] = 4 if dims is None else len(dims)

    def _fill_shapes(self, inputs):
        """The `input_shape` argument over the shapes the file gives: one shape for the one input blob of
        unknown size (or the only input), or a dict {blob: shape}."""
        given = self.input_shape
        if given is None:
            return inputs
        if not isinstance(given, dict):
            unknown = [b for b, s in inputs.items() if s is None] or list(inputs)
            if len(unknown) != 1:
                raise ValueError(f"input_shape: the net has input blobs {list(inputs)}; give a dict {{blob: shape}}")
            given = {unknown[0]: given}
        extra = sorted(set(given) - set(inputs))
        if extra:
            raise ValueError(f"input_shape names blobs {extra} that are not inputs of the net: {list(inputs)}")
        return {b: tuple(given[b]) if b in given else s for b, s in inputs.items()}

    # -- layers ---------------------------------------------------------------------------------------
    def _type(self, lp, v1):
        if not v1:
            return lp.type
        name = schema.V1LayerParameter.DESCRIPTOR.fields_by_name["type"].enum_type.values_by_number[lp.type].name
        return V1_NAMES.get(name, name)

    def _included(self, lp):
        if lp.include and lp.exclude:
            raise CaffeFormatError(f"{self.where}: layer {lp.name!r}: give include or exclude rules, not both")
        if lp.include:
            return any(self._meets(rule) for rule in lp.include)
        return not any(self._meets(rule) for rule in lp.exclude)

    def _meets(self, rule):
        """Caffe's NetStateRule for this phase, level 0 and no stages."""
        if rule.HasField("phase") and PHASES[rule.phase] != self.phase:
            return False
        if (rule.HasField("min_level") and 0 < rule.min_level) or (rule.HasField("max_level") and 0 > rule.max_level):
            return False
        return not rule.stage

    def _check_fields(self, lp, kind, where):
        allowed_param, allowed = FIELDS[kind]
        for f, _ in lp.ListFields():
            name = f.name
            if name in COMMON or name == allowed_param or kind in EXTRA.get(name, ()):
                continue
            raise CaffeFormatError(f"{where}: field {name!r} is not supported for this layer type")
        if allowed_param is not None and lp.HasField(allowed_param):
            for f, _ in getattr(lp, allowed_param).ListFields():
                if f.name not in allowed:
                    raise CaffeFormatError(f"{where}: field {allowed_param}.{f.name} is not supported")

    def _layer(self, lp, kind, v1):
        where = f"{self.where}: layer {lp.name!r} ({kind})"
        if not lp.name:
            raise CaffeFormatError(f"{self.where}: a {kind} layer has no name")
        if kind not in FIELDS:
            raise CaffeFormatError(f"{where}: layer type {kind!r} is not supported")
        self._check_fields(lp, kind, where)
        bottoms, tops = list(lp.bottom), list(lp.top)
        for b in bottoms:
            if b not in self.rank:
                raise CaffeFormatError(f"{where}: bottom blob {b!r} is not produced by an earlier layer or input")
        if kind in DATA_TYPES or kind == "Input":
            return self._data_layer(lp, kind, tops, where)
        if kind == "SoftmaxWithLoss":
            self._two_bottoms(bottoms, where)
            weight = lp.loss_weight[0] if lp.loss_weight else 1.0
            lossp = lp.loss_param
            if lossp.HasField("ignore_label") or lossp.normalization == 3 or (
                    lossp.HasField("normalize") and not lossp.normalize):
                raise CaffeFormatError(f"{where}: fields loss_param.ignore_label and an unnormalised loss are not "
                                       "supported (the loss is the mean over the batch)")
            if lp.softmax_param.axis != 1:
                raise CaffeFormatError(f"{where}: field softmax_param.axis other than 1 is not supported")
            self.losses.append(Loss(lp.name, bottoms[0], bottoms[1], float(weight)))
            return
        if kind == "Accuracy":
            self._two_bottoms(bottoms, where)
            if lp.accuracy_param.axis != 1:
                raise CaffeFormatError(f"{where}: field accuracy_param.axis other than 1 is not supported")
            self.metrics.append(Metric(lp.name, bottoms[0], bottoms[1], int(lp.accuracy_param.top_k)))
            return
        if kind == "Silence":
            self.silenced.update(bottoms)
            return
        if not bottoms or not tops:
            raise CaffeFormatError(f"{where}: needs bottom and top blobs")
        ranks = [self.rank[b] for b in bottoms]
        try:
            layer = self._make(lp, kind, v1, ranks, tops, where)
        except LayerError as e:
            raise CaffeFormatError(f"{where}: {e}") from e
        if kind == "InnerProduct" and ranks[0] == 4:  # Caffe flattens (C, H, W); jaxcnn reads it through a Flatten
            flat = self._fresh(f"{lp.name}_flatten")
            self.nodes.append(Node(Flatten(flat), tuple(bottoms), (flat,)))
            self.rank[flat] = 2
            bottoms = [flat]
        rank = 2 if kind in ("InnerProduct", "Flatten") else ranks[0]
        self.nodes.append(Node(layer, tuple(bottoms), tuple(tops)))
        self.caffe_types[lp.name] = kind
        for t in tops:
            self.rank[t] = rank

    def _fresh(self, name):
        taken = set(self.rank) | {n.layer.name for n in self.nodes}
        candidate, i = name, 1
        while candidate in taken:
            i += 1
            candidate = f"{name}{i}"
        return candidate

    @staticmethod
    def _two_bottoms(bottoms, where):
        if len(bottoms) != 2:
            raise CaffeFormatError(f"{where}: needs two bottoms (scores, labels), got {bottoms}")

    def _data_layer(self, lp, kind, tops, where):
        if kind == "Input":
            shapes = [tuple(s.dim) for s in lp.input_param.shape]
            if len(shapes) not in (0, 1, len(tops)):
                raise CaffeFormatError(f"{where}: {len(shapes)} shapes for {len(tops)} tops")
            for i, top in enumerate(tops):
                self._add_input(top, shapes[i if len(shapes) > 1 else 0] if shapes else None, where)
            return
        if self.data is not None:
            raise CaffeFormatError(f"{where}: a second data layer in phase {self.phase}")
        if not tops:
            raise CaffeFormatError(f"{where}: needs a top blob")
        p = getattr(lp, DATA_TYPES[kind])
        t = lp.transform_param
        for unsupported in ("mean_file", "crop_h", "crop_w", "force_color", "force_gray"):
            if t.HasField(unsupported):
                raise CaffeFormatError(f"{where}: field transform_param.{unsupported} is not supported")
        self.transform = Transform(float(t.scale), tuple(float(v) for v in t.mean_value), int(t.crop_size),
                                   bool(t.mirror))
        dims = None
        if kind == "MemoryData" and p.height:
            dims = (p.batch_size, p.channels, p.height, p.width)
        if kind == "ImageData" and p.new_height and p.new_width:
            dims = (p.batch_size, 3 if p.is_color else 1, p.new_height, p.new_width)
        if dims is not None and t.crop_size:
            dims = (*dims[:2], t.crop_size, t.crop_size)
        self._add_input(tops[0], dims, where)
        for label in tops[1:]:
            self.rank[label] = 1
        self.data = DataSource(kind, getattr(p, "source", None) or None, int(p.batch_size) or None, tuple(tops))

    def _mults(self, lp, kind, v1, where):
        """param { lr_mult decay_mult } (or V1's blobs_lr / weight_decay) -> (lr_mult, decay_mult) dicts."""
        names = BLOB_NAMES.get(kind, ())
        if v1:
            if lp.param:
                raise CaffeFormatError(f"{where}: field param (weight sharing) is not supported")
            lr, decay = list(lp.blobs_lr), list(lp.weight_decay)
        else:
            for spec in lp.param:
                if spec.name or spec.HasField("share_mode"):
                    raise CaffeFormatError(f"{where}: field param.name (weight sharing) is not supported")
            lr, decay = [s.lr_mult for s in lp.param], [s.decay_mult for s in lp.param]
        if kind == "BatchNorm":
            return {}, {}
        if len(lr) > len(names) or len(decay) > len(names):
            raise CaffeFormatError(f"{where}: {max(len(lr), len(decay))} param entries for {len(names)} blobs")
        return ({n: float(v) for n, v in zip(names, lr) if v != 1},
                {n: float(v) for n, v in zip(names, decay) if v != 1})

    def _axis(self, axis, rank, where, what="axis"):
        """A Caffe axis of a blob of `rank` -> jaxcnn's per-example axis (channels are last)."""
        a = axis % rank if -rank <= axis < rank else None
        table = {4: {1: -1, 2: 0, 3: 1}, 2: {1: -1}}.get(rank, {})
        if a not in table:
            raise CaffeFormatError(f"{where}: {what} {axis} of a {rank}-d blob is not supported (channels, height "
                                   "or width of a 4-d blob; features of a 2-d one)")
        return table[a]

    def _make(self, lp, kind, v1, ranks, tops, where):
        name = lp.name
        lr, decay = self._mults(lp, kind, v1, where)
        mults = {"lr_mult": lr, "decay_mult": decay}
        single = kind not in ("Concat", "Eltwise")
        if single and len(ranks) != 1:
            raise CaffeFormatError(f"{where}: takes one bottom blob, got {len(ranks)}")
        if kind not in ("Slice", "Split") and len(tops) != 1:
            raise CaffeFormatError(f"{where}: writes one top blob, got {len(tops)}")
        if kind == "Convolution":
            c = lp.convolution_param
            if c.axis != 1:
                raise CaffeFormatError(f"{where}: field convolution_param.axis other than 1 is not supported")
            if ranks[0] != 4:
                raise CaffeFormatError(f"{where}: needs a 4-d (N, C, H, W) bottom")
            kernel = _pair(c.kernel_size, c.kernel_h, c.kernel_w, c.HasField("kernel_h") or c.HasField("kernel_w"),
                           None, "kernel_size", where)
            stride = _pair(c.stride, c.stride_h, c.stride_w, c.HasField("stride_h") or c.HasField("stride_w"), 1,
                           "stride", where)
            pad = _pair(c.pad, c.pad_h, c.pad_w, c.HasField("pad_h") or c.HasField("pad_w"), 0, "pad", where)
            dilation = _pair(c.dilation, 1, 1, False, 1, "dilation", where)
            return Conv(name, int(c.num_output), kernel, stride=stride, padding=pad, dilation=dilation,
                        groups=int(c.group), bias=c.bias_term,
                        w_init=_filler(c.weight_filler if c.HasField("weight_filler") else None, where),
                        b_init=_filler(c.bias_filler if c.HasField("bias_filler") else None, where), **mults)
        if kind == "InnerProduct":
            c = lp.inner_product_param
            if c.axis % ranks[0] != 1:
                raise CaffeFormatError(f"{where}: field inner_product_param.axis other than 1 is not supported")
            if c.transpose:
                self.transposed.add(name)
            return Dense(name, int(c.num_output), bias=c.bias_term,
                         w_init=_filler(c.weight_filler if c.HasField("weight_filler") else None, where),
                         b_init=_filler(c.bias_filler if c.HasField("bias_filler") else None, where), **mults)
        if kind == "Pooling":
            return self._pooling(lp.pooling_param, name, ranks[0], where)
        if kind == "LRN":
            c = lp.lrn_param
            within = c.norm_region == 1
            # Caffe's WITHIN_CHANNEL computes (1 + alpha/n^2 * sum)^-beta: its k is not used
            return LRN(name, int(c.local_size), c.alpha, c.beta, 1.0 if within else c.k,
                       region="within" if within else "across")
        if kind == "BatchNorm":
            c = lp.batch_norm_param
            return BatchNorm(name, momentum=c.moving_average_fraction, eps=c.eps,
                             use_global_stats=c.HasField("use_global_stats") and c.use_global_stats)
        if kind in ("Scale", "Bias"):
            c = lp.scale_param if kind == "Scale" else lp.bias_param
            if c.axis != 1 or c.num_axes != 1:
                raise CaffeFormatError(f"{where}: only axis 1 with num_axes 1 (a per-channel {kind}) is supported")
            default = 1.0 if kind == "Scale" else 0.0
            fills = [(c.filler if c.HasField("filler") else None, default)]
            if kind == "Scale" and c.bias_term:
                fills.append((c.bias_filler if c.HasField("bias_filler") else None, 0.0))
            for filler, value in fills:
                if filler is not None and (filler.type != "constant" or filler.value != value):
                    raise CaffeFormatError(f"{where}: only the default constant {value} filler is supported")
            return Scale(name, bias=c.bias_term, **mults) if kind == "Scale" else Bias(name, **mults)
        if kind == "ReLU":
            return ReLU(name, negative_slope=lp.relu_param.negative_slope)
        if kind == "PReLU":
            c = lp.prelu_param
            value = 0.25
            if c.HasField("filler"):
                if c.filler.type != "constant":
                    raise CaffeFormatError(f"{where}: only a constant filler is supported")
                value = c.filler.value
            return PReLU(name, channel_shared=c.channel_shared, init_value=value, **mults)
        if kind == "ELU":
            return ELU(name, alpha=lp.elu_param.alpha)
        if kind in ("Sigmoid", "TanH", "AbsVal"):
            return {"Sigmoid": Sigmoid, "TanH": Tanh, "AbsVal": AbsVal}[kind](name)
        if kind == "Dropout":
            return Dropout(name, lp.dropout_param.dropout_ratio)
        if kind == "Concat":
            c = lp.concat_param
            axis = c.axis if c.HasField("axis") or not c.HasField("concat_dim") else c.concat_dim
            return Concat(name, axis=self._axis(axis, ranks[0], where))
        if kind == "Eltwise":
            c = lp.eltwise_param
            return Eltwise(name, {0: "prod", 1: "sum", 2: "max"}[c.operation], coeffs=tuple(c.coeff))
        if kind == "Slice":
            c = lp.slice_param
            axis = c.axis if c.HasField("axis") or not c.HasField("slice_dim") else c.slice_dim
            points = tuple(int(v) for v in c.slice_point)
            if points and len(points) != len(tops) - 1:
                raise CaffeFormatError(f"{where}: {len(points)} slice points for {len(tops)} tops")
            return Slice(name, axis=self._axis(axis, ranks[0], where), points=points,
                         parts=None if points else len(tops))
        if kind == "Split":
            return Split(name, copies=len(tops))
        if kind == "Softmax":
            return Softmax(name, axis=self._axis(lp.softmax_param.axis, ranks[0], where))
        if kind == "Flatten":
            c = lp.flatten_param
            if c.axis != 1 or c.end_axis != -1:
                raise CaffeFormatError(f"{where}: only flatten_param axis 1 to end_axis -1 is supported")
            return Flatten(name)
        raise CaffeFormatError(f"{where}: layer type {kind!r} is not supported")

    def _pooling(self, c, name, rank, where):
        if c.pool == 2:
            raise CaffeFormatError(f"{where}: field pooling_param.pool STOCHASTIC is not supported")
        if rank != 4:
            raise CaffeFormatError(f"{where}: needs a 4-d (N, C, H, W) bottom")
        if c.global_pooling:
            if any(c.HasField(f) for f in ("kernel_size", "kernel_h", "kernel_w")):
                raise CaffeFormatError(f"{where}: global_pooling takes no kernel size")
            if c.pad or c.pad_h or c.pad_w or c.stride != 1:
                raise CaffeFormatError(f"{where}: global_pooling needs pad 0 and stride 1")
            return (GlobalMaxPool if c.pool == 0 else GlobalAvgPool)(name)
        has_hw = c.HasField("kernel_h") or c.HasField("kernel_w")
        kernel = (c.kernel_h, c.kernel_w) if has_hw else (c.kernel_size,) * 2
        if not all(kernel):
            raise CaffeFormatError(f"{where}: needs kernel_size (or kernel_h and kernel_w)")
        stride = (c.stride_h, c.stride_w) if c.HasField("stride_h") or c.HasField("stride_w") else (c.stride,) * 2
        pad = (c.pad_h, c.pad_w) if c.HasField("pad_h") or c.HasField("pad_w") else (c.pad,) * 2
        if c.HasField("ceil_mode") and c.HasField("round_mode"):
            raise CaffeFormatError(f"{where}: give ceil_mode or round_mode, not both")
        ceil = c.round_mode == 0 if c.HasField("round_mode") else c.ceil_mode
        kind = MaxPool if c.pool == 0 else AvgPool
        return kind(name, tuple(map(int, kernel)), tuple(map(int, stride)), tuple(map(int, pad)), ceil_mode=ceil,
                    clip="padded")
