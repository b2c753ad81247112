"""cuda-convnet layer files (layers.cfg + layer-params.cfg, INI files) as jaxcnn nets.

    >>> from jaxcnn import cudaconvnet
    >>> from jaxcnn.train import SolverConfig, optimizer
    >>> net = cudaconvnet.load("experiments/cudaconvnet/layers-conv-local-11pct.cfg",
    ...                        "experiments/cudaconvnet/layer-params-conv-local-11pct.cfg", (32, 32, 3))
    >>> [node.layer.name for node in net.nodes][:6]
    ['conv1', 'conv1_neuron', 'pool1', 'rnorm1', 'conv2', 'conv2_neuron']
    >>> net.sgd_settings()
    SGDSettings(lr=0.001, momentum=0.9, weight_decay=0.004)
    >>> tx = optimizer(SolverConfig.from_cudaconvnet(net), 10_000, *net.multipliers())

Layer types: data, conv, local, pool (max, avg), rnorm (within a map), cmrnorm (across maps), cnorm (rnorm on the
input less its local mean), fc, neuron, softmax, cost.logreg. Each layer's `neuron` (relu, logistic, abs, tanh with
a=b=1, ident) becomes a layer of its own named "<layer>_neuron", as cuda-convnet's log names it. cuda-convnet's rules
are kept: its `filters` count is per group; a conv or local layer gives 1 + ceil((2 padding + size - filterSize) /
stride) positions, the last window overhanging the far edge where the stride does not divide (zeros there); pooling
gives ceil((size - start - sizeX) / stride) + 1 positions over the input alone (windows clipped to it, `start` <= 0 a
leading offset; avg divides by the pixels inside, as cuda-convnet's later releases; its first divided by sizeX^2);
rnorm and cnorm divide scale by size^2 and cmrnorm by size, all with 1 added (jaxcnn's LRN and ContrastNorm with
alpha=scale; cnorm's local mean over the window's pixels inside the map, as the later releases' average). An fc layer
on a map reads it through a Flatten layer "<fc>_flatten". A softmax read only by a cost.logreg layer becomes the net's
loss (softmax cross-entropy on its input), as the Trainer computes it.

Learning rules: cuda-convnet updates inc <- momW inc - wc epsW w + epsW grad (biases: momB, epsB, no decay), which
is Caffe's SGD with lr * lr_mult = epsW and weight_decay * decay_mult = wc: each layer gets lr_mult epsW / base
and decay_mult wc / wc_max, and `sgd_settings()` gives the base rate (the first layer's epsW), the momentum and
wc_max. Where layers' momenta differ (momW and momB included) it does not map onto Caffe's single momentum, and
sgd_settings() says so. Not supported (an error naming the layer and key): groups on local layers,
unshared conv biases (sharedBiases=0), random sparse connectivity, fc layers with several inputs, other neurons.
"""
import configparser
import logging
import math
from pathlib import Path
from typing import NamedTuple

from . import fillers
from .errors import ConvNetFormatError
from .layers import (
    LRN,
    AbsVal,
    AvgPool,
    ContrastNorm,
    Conv,
    Dense,
    Flatten,
    Local,
    MaxPool,
    ReLU,
    Sigmoid,
    Softmax,
    Tanh,
)
from .net import Graph, Loss, Node

log = logging.getLogger(__name__)

KEYS = {  # the layers.cfg keys of each type (partialSum only tunes cuda-convnet's kernels)
    "data": {"dataIdx"},
    "conv": {"inputs", "channels", "filters", "padding", "stride", "filterSize", "groups", "sharedBiases", "neuron",
             "initW", "initB", "partialSum", "randSparse"},
    "local": {"inputs", "channels", "filters", "padding", "stride", "filterSize", "groups", "neuron", "initW",
              "initB", "randSparse"},
    "pool": {"inputs", "pool", "start", "sizeX", "stride", "outputsX", "channels"},
    "rnorm": {"inputs", "channels", "size", "sizeX", "scale", "pow"},
    "cnorm": {"inputs", "channels", "size", "sizeX", "scale", "pow"},
    "cmrnorm": {"inputs", "channels", "size", "scale", "pow", "blocked"},
    "fc": {"inputs", "outputs", "initW", "initB", "neuron"},
    "neuron": {"inputs", "neuron"},
    "softmax": {"inputs"},
    "cost.logreg": {"inputs"},
}
PARAM_KEYS = {"conv": {"epsW", "epsB", "momW", "momB", "wc"}, "local": {"epsW", "epsB", "momW", "momB", "wc"},
              "fc": {"epsW", "epsB", "momW", "momB", "wc"}, "rnorm": {"scale", "pow"}, "cnorm": {"scale", "pow"},
    "cmrnorm": {"scale", "pow"},
              "cost.logreg": {"coeff"}}
NEURONS = {"relu": ReLU, "logistic": Sigmoid, "abs": AbsVal, "tanh": Tanh, "tanh[1,1]": Tanh}


class SGDSettings(NamedTuple):
    """Caffe-style SGD settings of a cuda-convnet net (jaxcnn.train.SolverConfig.from_cudaconvnet)."""

    lr: float
    momentum: float
    weight_decay: float


class ConvNet(Graph):
    """A Graph loaded from cuda-convnet files: `losses` (its cost.logreg layers as Loss records, the softmax's
    input as logits) and, per weight layer, its learning parameters `learning` ({layer: {'epsW', 'epsB', 'momW',
    'momB', 'wc'}})."""

    def __init__(self, nodes, inputs, outputs, name, *, losses=(), learning=None):
        super().__init__(nodes, inputs, outputs, name)
        self.losses, self.learning = tuple(losses), dict(learning or {})

    def sgd_settings(self) -> SGDSettings:
        """Caffe-style SGD settings under which the layers' lr_mult / decay_mult give cuda-convnet's updates
        (lr = the base epsW, momentum, weight_decay = the largest wc; with a fixed rate); ValueError where the
        layers' momenta differ, which one SGD momentum cannot express."""
        if not self.learning:
            raise ValueError(f"{self.name}: no layer-params file was given: no learning parameters")
        momenta = {v for p in self.learning.values() for v in (p["momW"], p["momB"])}
        if len(momenta) != 1:
            raise ValueError(f"{self.name}: layers use momenta {sorted(momenta)}; Caffe's SGD (and jaxcnn's) has one "
                             "momentum for every parameter")
        base_lr, base_wc = _bases(self.learning)
        return SGDSettings(base_lr, momenta.pop(), base_wc)


def _bases(learning):
    first = next(iter(learning.values()))
    return first["epsW"], max(p["wc"] for p in learning.values())


def params_beside(layers_cfg) -> Path | None:
    """The layer-params file cuda-convnet's examples keep beside a layer file: layer-params-X.cfg for
    layers-X.cfg (layer-params.cfg for layers.cfg), if it exists."""
    path = Path(layers_cfg)
    if not path.name.startswith("layers"):
        return None
    candidate = path.with_name("layer-params" + path.name[len("layers"):])
    return candidate if candidate.is_file() else None


def _parser(path):
    cp = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=("#",), strict=True)
    cp.optionxform = str  # cuda-convnet's keys are case-sensitive (filterSize)
    try:
        if not cp.read(path):
            raise FileNotFoundError(f"{path}: no such file")
    except configparser.Error as e:
        raise ConvNetFormatError(str(path), str(e)) from None
    except UnicodeDecodeError:
        raise ConvNetFormatError(str(path), "not a text layer file") from None
    return cp


def load(layers_cfg, params_cfg=None, input_shape=None) -> ConvNet:
    """Load a cuda-convnet net.

    Args:
      layers_cfg: the layer definition file (layers.cfg).
      params_cfg: the layer parameter file (layer-params.cfg), with epsW/epsB/momW/momB/wc per weight layer and
        scale/pow of the normalisation layers where the definition file does not give them; optional.
      input_shape: per-example (H, W, C) of the images (data layer dataIdx=0); cuda-convnet reads it from the
        data provider.

    Returns:
      A ConvNet (a Graph) with layers named as the sections.
    """
    return _Loader(Path(layers_cfg), None if params_cfg is None else Path(params_cfg), input_shape).build()


class _Loader:
    def __init__(self, layers_cfg, params_cfg, input_shape):
        self.path, self.cfg = layers_cfg, _parser(layers_cfg)
        self.params_path = params_cfg
        self.params = _parser(params_cfg) if params_cfg is not None else None
        self.input_shape = None if input_shape is None else tuple(input_shape)
        self.nodes, self.inputs, self.losses, self.types = [], {}, [], {}
        self.read_by, self.softmax_inputs = {}, {}  # blob -> sections that read it; softmax -> its input
        self.learning = self._read_learning()
        self.bases = _bases(self.learning) if self.learning else None

    def error(self, section, message):
        return ConvNetFormatError(str(self.path), message, layer=section)

    def get(self, section, key, kind=str, default=None):
        cfg = self.cfg[section]
        if key not in cfg:
            if self.params is not None and self.params.has_option(section, key):
                cfg = self.params[section]
            elif default is not None:
                return default
            else:
                where = " (here or in the layer-params file)" if key in ("scale", "pow") else ""
                raise self.error(section, f"needs '{key}'{where}")
        text = cfg[key]
        try:
            if kind is bool:
                return cfg.getboolean(key)
            return kind(text)
        except ValueError:
            raise self.error(section, f"'{key}' must be {kind.__name__}, got {text!r}") from None

    def build(self) -> ConvNet:
        sections = self.cfg.sections()
        for s in sections:
            for b in self._inputs(s) if "inputs" in self.cfg[s] else ():
                self.read_by.setdefault(b, []).append(s)
        for s in sections:
            kind = self.cfg[s].get("type")
            if kind not in KEYS:
                raise self.error(s, f"layer type {kind!r} is not supported ({', '.join(KEYS)})")
            extra = sorted(set(self.cfg[s]) - KEYS[kind] - {"type"})
            if extra:
                raise self.error(s, f"key '{extra[0]}' is not supported for type {kind}")
            self.types[s] = kind
            getattr(self, "_" + kind.replace(".", "_"))(s)
        self._check_params()
        try:
            net = ConvNet(self.nodes, self.inputs, None, self.path.stem, losses=self.losses,
                          learning=self.learning)
        except ValueError as e:  # a LayerError, or wiring that Graph refuses
            raise ConvNetFormatError(str(self.path), str(e)) from e
        if self.input_shape is not None:
            self._check_channels(net)
        return net

    def _check_params(self):
        if self.params is None:
            return
        for s in self.params.sections():
            if s not in self.types:
                raise ConvNetFormatError(str(self.params_path), f"layer '{s}' is not in {self.path}")
            extra = sorted(set(self.params[s]) - PARAM_KEYS.get(self.types[s], set()))
            if extra:
                raise ConvNetFormatError(str(self.params_path), f"key '{extra[0]}' is not supported for type "
                                         f"{self.types[s]}", layer=s)

    def _check_channels(self, net):
        for row in net.shapes():
            s = row.layer.name
            if s in self.types and "channels" in self.cfg[s]:
                want = self.get(s, "channels", int)
                if row.in_shape[-1] != want:
                    raise self.error(s, f"channels={want}, but its input has {row.in_shape[-1]} channels")

    def _inputs(self, section):
        return [v.strip() for v in self.cfg[section]["inputs"].split(",")]

    def _one_input(self, section):
        inputs = self._inputs(section)
        if len(inputs) != 1:
            raise self.error(section, f"takes one input, got {inputs}")
        if not any(inputs[0] in n.outputs for n in self.nodes) and inputs[0] not in self.inputs:
            raise self.error(section, f"input '{inputs[0]}' is not an earlier layer")
        return inputs[0]

    def _add(self, layer, inputs, section, neuron=None):
        self.nodes.append(Node(layer, tuple(inputs), (section,)))
        if neuron is not None:
            self._neuron_node(section, neuron, section, f"{section}_neuron")

    def _neuron_node(self, section, text, blob, name):
        text = text.replace(" ", "")
        if text == "ident":
            return
        if text not in NEURONS:
            raise self.error(section, f"neuron {text!r} is not supported ({', '.join(NEURONS)}, ident)")
        self.nodes.append(Node(NEURONS[text](name), (blob,), (blob,)))

    def _read_learning(self):
        """{weight layer: its epsW, epsB, momW, momB, wc} from the parameter file."""
        learning = {}
        if self.params is None:
            return learning
        for section in self.cfg.sections():
            if self.cfg[section].get("type") not in ("conv", "local", "fc"):
                continue
            if not self.params.has_section(section):
                raise ConvNetFormatError(str(self.params_path), f"no section for weight layer '{section}'")
            p = self.params[section]
            try:
                learning[section] = {k: float(p[k]) for k in ("epsW", "epsB", "momW", "momB", "wc")}
            except KeyError as e:
                raise ConvNetFormatError(str(self.params_path), f"needs {e}", layer=section) from None
            except ValueError as e:
                raise ConvNetFormatError(str(self.params_path), str(e), layer=section) from None
        return learning

    def _mults(self, section):
        """lr_mult and decay_mult of a weight layer: epsW / base, epsB / base; wc / wc_max, none for biases."""
        p = self.learning.get(section)
        if p is None:
            return {}
        base_lr, base_wc = self.bases
        return {"lr_mult": {"w": p["epsW"] / base_lr, "b": p["epsB"] / base_lr},
                "decay_mult": {"w": p["wc"] / base_wc if base_wc else 0.0, "b": 0.0}}

    # -- layer types ----------------------------------------------------------------------------------
    def _data(self, s):
        if self.get(s, "dataIdx", int) == 0:
            self.inputs[s] = self.input_shape

    def _window_layer(self, s, kind):
        x = self._one_input(s)
        if self.get(s, "randSparse", bool, False):
            raise self.error(s, "randSparse (random sparse connectivity) is not supported")
        groups = self.get(s, "groups", int, 1)
        filters = self.get(s, "filters", int) * groups  # cuda-convnet's filters count per group
        size, stride = self.get(s, "filterSize", int), self.get(s, "stride", int, 1)
        pad = self.get(s, "padding", int, 0)
        padding = self._padding(s, x, size, stride, pad)
        init = dict(w_init=fillers.gaussian(self.get(s, "initW", float)), b_init=self.get(s, "initB", float, 0.0),
                    **self._mults(s))
        if kind == "conv":
            if not self.get(s, "sharedBiases", bool, True):
                raise self.error(s, "sharedBiases=0 (a bias per position) is not supported for conv layers")
            layer = Conv(s, filters, size, stride=stride, padding=padding, groups=groups, **init)
        else:
            if groups != 1:
                raise self.error(s, "groups on a local layer is not supported")
            layer = Local(s, filters, size, stride=stride, padding=padding, **init)
        self._add(layer, [x], s, self.get(s, "neuron", str, "ident"))

    def _padding(self, s, x, size, stride, pad):
        """cuda-convnet's 1 + ceil((2 pad + n - size) / stride) positions: pad each side, plus the overhang of a
        last window past the far edge (needs the input size; without it the stride must divide evenly)."""
        shape = self._shape_of(x)
        if shape is None:
            return pad
        extra = []
        for n in shape[:2]:
            if size > n + 2 * pad:
                raise self.error(s, f"filterSize {size} is larger than the padded input {n + 2 * pad}")
            out = 1 + math.ceil((2 * pad + n - size) / stride)
            extra.append((out - 1) * stride + size - (n + 2 * pad))
        return (pad, pad + extra[0]), (pad, pad + extra[1])

    def _shape_of(self, blob):
        """The per-example shape of a blob written so far, or None without an input shape."""
        if self.input_shape is None:
            return None
        graph = Graph(self.nodes, self.inputs, (blob,), "partial") if self.nodes else None
        return self.inputs[blob] if graph is None else graph.output_shapes()

    _conv = lambda self, s: self._window_layer(s, "conv")  # noqa: E731
    _local = lambda self, s: self._window_layer(s, "local")  # noqa: E731

    def _pool(self, s):
        x = self._one_input(s)
        kind, size, stride = self.get(s, "pool"), self.get(s, "sizeX", int), self.get(s, "stride", int)
        start, outputs = self.get(s, "start", int, 0), self.get(s, "outputsX", int, 0)
        if kind not in ("max", "avg"):
            raise self.error(s, f"pool={kind!r} is not supported (max, avg)")
        if start > 0:
            raise self.error(s, f"start={start} > 0 is not supported (a leading offset: start <= 0)")
        if not 1 <= stride <= size:
            raise self.error(s, f"stride {stride} must be in 1..sizeX {size}")
        padding = ((-start, 0), (-start, 0))
        shape = self._shape_of(x)
        if outputs and shape is not None and outputs != math.ceil((shape[0] - start - size) / stride) + 1:
            raise self.error(s, f"outputsX={outputs} other than cuda-convnet's own size is not supported")
        layer = (MaxPool(s, size, stride, padding, ceil_mode=True) if kind == "max"
                 else AvgPool(s, size, stride, padding, ceil_mode=True, count_pad=False))
        self._add(layer, [x], s)

    def _norm(self, s, region):
        x = self._one_input(s)
        size = self.get(s, "size", int) if "size" in self.cfg[s] else self.get(s, "sizeX", int)
        if size % 2 == 0:
            raise self.error(s, f"size={size}: an even window is not supported (jaxcnn's is centred)")
        if region == "across" and self.get(s, "blocked", bool, False):
            raise self.error(s, "blocked=1 is not supported")
        scale, power = self.get(s, "scale", float), self.get(s, "pow", float)
        layer = (ContrastNorm(s, size, scale, power) if region == "contrast"
                 else LRN(s, size, scale, power, 1.0, region=region))
        self._add(layer, [x], s)

    _rnorm = lambda self, s: self._norm(s, "within")  # noqa: E731
    _cmrnorm = lambda self, s: self._norm(s, "across")  # noqa: E731
    _cnorm = lambda self, s: self._norm(s, "contrast")  # noqa: E731

    def _fc(self, s):
        inputs = self._inputs(s)
        if len(inputs) != 1:
            raise self.error(s, f"several inputs {inputs} are not supported")
        x = self._one_input(s)
        shape = self._shape_of(x)
        if shape is None or len(shape) == 3:
            flat = f"{s}_flatten"
            self.nodes.append(Node(Flatten(flat), (x,), (flat,)))
            x = flat
        w_init = self.get(s, "initW", str)
        if "," in w_init:
            raise self.error(s, "several initW values (several inputs) are not supported")
        layer = Dense(s, self.get(s, "outputs", int), w_init=fillers.gaussian(float(w_init)),
                      b_init=self.get(s, "initB", float, 0.0), **self._mults(s))
        self._add(layer, [x], s, self.get(s, "neuron", str, "ident"))

    def _neuron(self, s):
        x = self._one_input(s)
        text = self.get(s, "neuron").replace(" ", "")
        if text not in NEURONS:
            raise self.error(s, f"neuron {text!r} is not supported ({', '.join(NEURONS)})")
        self._add(NEURONS[text](s), [x], s)

    def _softmax(self, s):
        x = self._one_input(s)
        readers = self.read_by.get(s, [])
        if readers and all(self.cfg[r].get("type") == "cost.logreg" for r in readers):
            self.softmax_inputs[s] = x
            return  # the cost computes softmax cross-entropy on x
        self._add(Softmax(s), [x], s)

    def _cost_logreg(self, s):
        inputs = self._inputs(s)
        if len(inputs) != 2:
            raise self.error(s, f"needs inputs=labels,probs, got {inputs}")
        labels, probs = inputs
        logits = self.softmax_inputs.get(probs)
        if logits is None:
            raise self.error(s, f"its second input '{probs}' must be a softmax layer")
        coeff = self.params.getfloat(s, "coeff", fallback=1.0) if self.params is not None else 1.0
        self.losses.append(Loss(s, logits, labels, coeff))
