"""Caffe net definitions (*.prototxt) as jaxcnn nets.

    >>> import jax
    >>> from jaxcnn.caffe import load_prototxt, parse_prototxt
    >>> net = load_prototxt("experiments/caffe/lenet_bn_deploy.prototxt")                    # phase TEST
    >>> net = load_prototxt("experiments/caffe/lenet_bn_train_test.prototxt", phase="TRAIN", input_shape=(28, 28, 1))
    >>> net.losses, net.transform.scale
    ((Loss(name='loss', logits='ip2', label='label', weight=1.0),), 0.00390625)
    >>> net = parse_prototxt('input: "data" input_shape { dim: 1 dim: 3 dim: 8 dim: 8 } '
    ...                      'layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" '
    ...                      'convolution_param { num_output: 4 kernel_size: 3 } }')
    >>> net.inputs, net.init(jax.random.key(0))[0]                                          # (H, W, C)
    ({'data': (8, 8, 3)}, (6, 6, 4))

Both layer formats are read (`layer { type: "Convolution" }` and the legacy V1 `layers { type: CONVOLUTION }`),
inputs given as `input:` + `input_shape` / `input_dim`, an Input layer, or a Data, ImageData, HDF5Data or MemoryData
layer (jaxcnn.caffe.data_layers), and include/exclude rules for the phase (level 0, no stages). Blobs keep their
Caffe names; layers their names, so params["conv1"]["w"] is Caffe's conv1 weight blob (in jaxcnn's HWIO layout).
Activations are NHWC: a per-example Caffe shape (C, H, W) is (H, W, C) here. An InnerProduct on a (C, H, W) blob
reads it through a Flatten layer named "<ip>_flatten" (jaxcnn flattens (H, W, C); jaxcnn.caffe.weights permutes the
weight rows to match). SoftmaxWithLoss and Accuracy layers become the net's `losses` and `metrics`, a data layer's
transform_param its `transform`, and Silence layers go away; every other layer type, and every field jaxcnn does not
implement, is a CaffeFormatError naming the layer, its type and the field. What each type reads and becomes:
jaxcnn.caffe.types.
"""
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from google.protobuf import text_format

from ..errors import CaffeFormatError, LayerError, existing_file
from ..layers import Flatten, Layer
from ..net import Graph, Loss, Node, unread_blobs
from . import schema
from .data_layers import Data, DataSource, Transform
from .types import TYPES, V1_TYPES, Inputs, Metric, Silence, Spec

__all__ = ["CaffeFormatError", "CaffeLayer", "CaffeNet", "DataSource", "Metric", "Transform", "load_prototxt",
           "parse_prototxt", "per_example", "read_text"]

PHASES = ("TRAIN", "TEST")
COMMON = {"name", "type", "bottom", "top", "include", "exclude", "phase"}  # fields every layer may set
MULTIPLIERS = {"param", "blobs_lr", "weight_decay"}  # and every layer of a type with blobs
NUMBERS = {0: "no", 1: "one", 2: "two"}


def read_text(path, kind: str = "prototxt", text: str = "text prototxt (a .caffemodel?)") -> str:
    """A Caffe text file's contents (errors.existing_file's error when there is no such file); CaffeFormatError
    "PATH: not a TEXT" when it is binary (not UTF-8, or holding NUL bytes, as Caffe's binary protobuf files do)."""
    path = existing_file(path, kind)
    try:
        contents = path.read_text()
    except UnicodeDecodeError:
        contents = None
    if contents is None or "\0" in contents:
        raise CaffeFormatError(str(path), f"not a {text}")
    return contents


class CaffeLayer(NamedTuple):
    """A layer as the prototxt gave it: its Caffe type and its *_param message (None for a type without one)."""

    kind: str
    param: object


class CaffeNet(Graph):
    """A Graph loaded from a prototxt, with what Caffe keeps around it: `phase`, `transform` (a Transform or
    None), `losses` and `metrics` (tuples of Loss and Metric), `data` (a DataSource or None) and `caffe_layers`
    ({layer name: CaffeLayer}, how the file gave each layer)."""

    def __init__(self, nodes, inputs, outputs=None, name="net", *, phase="TEST", transform=None, losses=(),
                 metrics=(), data=None, caffe_layers=None):
        super().__init__(nodes, inputs, outputs, name)
        self.phase, self.transform, self.data = phase, transform, data
        self.losses, self.metrics = tuple(losses), tuple(metrics)
        self.caffe_layers = dict(caffe_layers or {})


def load_prototxt(path, phase: str = "TEST", input_shape=None) -> CaffeNet:
    """Load a Caffe net definition from a file.

    Args:
      path: the .prototxt file (a str or a path).
      phase: 'TRAIN' or 'TEST': which layers the include/exclude rules keep, and the default of BatchNorm's
        use_global_stats (TEST: a loaded BatchNorm is evaluated with train=False anyway).
      input_shape: per-example (H, W, C) for input blobs whose size the file does not give (a Data layer's
        images), or a dict {blob: shape}.

    Returns:
      A CaffeNet (a Graph): params and state keyed by Caffe's layer names. FileNotFoundError when there is no
      such file; CaffeFormatError naming the file (and layer) for what jaxcnn cannot read.
    """
    return parse_prototxt(read_text(path), phase, input_shape, file=str(path))


def parse_prototxt(text: str, phase: str = "TEST", input_shape=None, *, file: str = "prototxt") -> CaffeNet:
    """A Caffe net definition from its text (see load_prototxt); `file` names it in errors, and the net where the
    text gives no name (its stem)."""
    if phase not in PHASES:
        raise ValueError(f"phase must be 'TRAIN' or 'TEST', got {phase!r}")
    proto = _message(text, file)
    if proto.layer and proto.layers:
        raise CaffeFormatError(file, "mixes `layer` and legacy `layers` entries")
    return _Builder(proto, phase, file, input_shape).build()


def _message(text: str, file: str):
    """Text-format NetParameter -> message; CaffeFormatError naming the line (and its layer) on a syntax error
    or a field Caffe's schema, as jaxcnn declares it, does not have."""
    net = schema.NetParameter()
    try:
        text_format.Parse(text, net)
    except text_format.ParseError as e:
        raise CaffeFormatError(file, str(e), layer=_enclosing_layer(text, e)) from None
    return net


def _enclosing_layer(text, error):
    """The name of the layer block around the line of a ParseError (best effort), else None."""
    line = getattr(error, "GetLine", lambda: None)()
    if not line:
        return None
    before = "\n".join(text.splitlines()[:line])
    starts = [m.end() for m in re.finditer(r"\blayers?\s*\{", before)]
    if not starts:
        return None
    name = re.search(r"\bname\s*:\s*\"([^\"]*)\"", text[starts[-1]:])
    return name.group(1) if name else None


def per_example(dims, error=ValueError):
    """Caffe blob dims (N, C, H, W) or (N, C) -> jaxcnn's per-example (H, W, C) or (C,); error(message) for
    other ranks."""
    dims = tuple(int(d) for d in dims)
    if len(dims) == 4:
        return dims[2], dims[3], dims[1]
    if len(dims) == 2:
        return (dims[1],)
    raise error(f"input shape {dims}: only 4-d (N, C, H, W) and 2-d (N, C) blobs are supported")


def _v1_type(lp) -> str:
    """A legacy V1 layer's type (CONVOLUTION -> Convolution; a type jaxcnn does not read keeps its V1 name)."""
    name = schema.enum_name(lp, "type")
    return V1_TYPES.get(name, name)


def _count(spec, blobs, limits, verb, noun):
    """Caffe's rule for how many bottoms (tops) a type reads (writes): limits (least, most or None)."""
    least, most = limits
    if least <= len(blobs) and (most is None or len(blobs) <= most):
        return
    wanted = NUMBERS.get(least, least) if least == most else f"at least {NUMBERS.get(least, least)}"
    raise spec.error(f"{verb} {wanted} {noun} blob{'s' if least != 1 else ''}, got {len(blobs)}")


@dataclass
class _Builder:
    proto: object
    phase: str
    file: str
    input_shape: object
    nodes: list = field(default_factory=list)
    inputs: dict = field(default_factory=dict)
    rank: dict = field(default_factory=dict)  # blob -> Caffe rank (4: N, C, H, W; 2: N, C; 1: labels)
    losses: list = field(default_factory=list)
    metrics: list = field(default_factory=list)
    silenced: set = field(default_factory=set)
    transform: Transform | None = None
    data: DataSource | None = None
    caffe_layers: dict = field(default_factory=dict)

    def build(self) -> CaffeNet:
        p = self.proto
        self._net_inputs()
        v1 = bool(p.layers)
        for lp in (p.layers if v1 else p.layer):
            kind = _v1_type(lp) if v1 else lp.type
            if self._included(lp):
                self._layer(lp, kind, v1)
        if not self.nodes:
            raise CaffeFormatError(self.file, f"no layers in phase {self.phase}")
        read = {b for n in self.nodes for b in n.inputs}
        inputs = self._fill_shapes({b: s for b, s in self.inputs.items() if b in read})
        outputs = [b for b in unread_blobs(self.nodes) if b not in self.silenced]
        name = p.name or Path(self.file).stem
        try:
            return CaffeNet(self.nodes, inputs, outputs or None, name, phase=self.phase, transform=self.transform,
                            losses=self.losses, metrics=self.metrics, data=self.data,
                            caffe_layers=self.caffe_layers)
        except ValueError as e:
            raise CaffeFormatError(self.file, str(e)) from e

    # -- inputs ---------------------------------------------------------------------------------------
    def _net_inputs(self):
        p = self.proto
        if not p.input:
            if p.input_shape or p.input_dim:
                raise CaffeFormatError(self.file, "input_shape/input_dim without `input:` names")
            return
        if p.input_shape:
            if len(p.input_shape) != len(p.input):
                raise CaffeFormatError(self.file, f"{len(p.input)} inputs but {len(p.input_shape)} input_shape")
            shapes = [tuple(s.dim) for s in p.input_shape]
        elif p.input_dim:
            if len(p.input_dim) != 4 * len(p.input):
                raise CaffeFormatError(self.file, f"input_dim needs 4 values (N, C, H, W) per input, got "
                                                  f"{len(p.input_dim)} for {len(p.input)}")
            shapes = [tuple(p.input_dim[4 * i:4 * i + 4]) for i in range(len(p.input))]
        else:
            shapes = [None] * len(p.input)
        for blob, dims in zip(p.input, shapes):
            self._add_input(blob, dims, lambda message, b=blob: CaffeFormatError(self.file, f"input {b!r}: {message}"))

    def _add_input(self, blob, dims, error):
        if blob in self.inputs:
            raise error(f"input blob {blob!r} is declared twice")
        self.inputs[blob] = None if dims is None else per_example(dims, error)
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
    def _included(self, lp):
        if lp.include and lp.exclude:
            raise CaffeFormatError(self.file, "give include or exclude rules, not both", layer=lp.name)
        if lp.include:
            return any(self._meets(rule) for rule in lp.include)
        return not any(self._meets(rule) for rule in lp.exclude)

    def _meets(self, rule):
        """Caffe's NetStateRule for this phase, level 0 and no stages."""
        if rule.HasField("phase") and schema.enum_name(rule, "phase") != self.phase:
            return False
        if (rule.HasField("min_level") and 0 < rule.min_level) or (rule.HasField("max_level") and 0 > rule.max_level):
            return False
        return not rule.stage

    def _layer(self, lp, kind, v1):
        if not lp.name:
            raise CaffeFormatError(self.file, f"a {kind} layer has no name")
        if kind not in TYPES:
            raise CaffeFormatError(self.file, f"layer type {kind!r} is not supported", layer=lp.name, kind=kind)
        spec = Spec(lp, kind, tuple(lp.bottom), tuple(lp.top), tuple(self.rank.get(b) for b in lp.bottom),
                    self.file, v1)
        entry = spec.entry
        self._check_fields(spec)
        for b in spec.bottoms:
            if b not in self.rank:
                raise spec.error(f"bottom blob {b!r} is not produced by an earlier layer or input")
        _count(spec, spec.bottoms, entry.bottoms, "takes", "bottom")
        _count(spec, spec.tops, entry.tops, "writes", "top")
        try:
            made = entry.read(spec)
        except LayerError as e:
            raise spec.error(str(e)) from e
        self._add(spec, made)

    def _add(self, spec, made):
        """Put what a layer became into the net: a Layer as a node; a Loss, Metric, Silence, Inputs or Data where
        each goes."""
        if isinstance(made, Layer):
            self._add_layer(spec, made)
        elif isinstance(made, (Loss, Metric)):
            (self.losses if isinstance(made, Loss) else self.metrics).append(made)
        elif isinstance(made, Silence):
            self.silenced.update(made.blobs)
        elif isinstance(made, Inputs):
            for blob, dims in made.blobs:
                self._add_input(blob, dims, spec.error)
        else:
            self._add_data(spec, made)

    def _check_fields(self, spec):
        entry, lp = spec.entry, spec.lp
        allowed = COMMON | entry.extra | {entry.param} | (MULTIPLIERS if entry.blobs else set())
        for f, _ in lp.ListFields():
            if f.name not in allowed:
                raise spec.error(f"field {f.name!r} is not supported for this layer type")
        if entry.param is not None:
            for f, _ in spec.param.ListFields():
                if f.name not in entry.fields:
                    raise spec.error(f"field {entry.param}.{f.name} is not supported")

    def _add_layer(self, spec, layer):
        bottoms = spec.bottoms
        if spec.entry.flattens and spec.rank == 4:  # Caffe flattens (C, H, W); jaxcnn reads it through a Flatten
            flat = self._fresh(f"{spec.name}_flatten")
            self.nodes.append(Node(Flatten(flat), bottoms, (flat,)))
            self.rank[flat] = 2
            bottoms = (flat,)
        self.nodes.append(Node(layer, bottoms, spec.tops))
        self.caffe_layers[spec.name] = CaffeLayer(spec.kind, spec.param)
        for t in spec.tops:
            self.rank[t] = 2 if spec.entry.flat else spec.rank

    def _add_data(self, spec, data: Data):
        if self.data is not None:
            raise spec.error(f"a second data layer in phase {self.phase}")
        self.transform, self.data = data.transform, data.source
        self._add_input(spec.tops[0], data.dims, spec.error)
        for label in spec.tops[1:]:
            self.rank[label] = 1

    def _fresh(self, name):
        taken = set(self.rank) | {n.layer.name for n in self.nodes}
        candidate, i = name, 1
        while candidate in taken:
            i += 1
            candidate = f"{name}{i}"
        return candidate
