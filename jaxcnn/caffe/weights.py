"""Caffe weights (*.caffemodel, a binary NetParameter) to and from a jaxcnn net's params and state.

    >>> import jax
    >>> from jaxcnn.caffe import load_caffemodel, load_prototxt, save_caffemodel
    >>> net = load_prototxt("experiments/caffe/lenet_bn_deploy.prototxt")  # bvlc_alexnet_deploy.prototxt: AlexNet's
    >>> _, params, state = net.init(jax.random.key(0))
    >>> save_caffemodel(net, params, state, "mine.caffemodel")
    >>> params, state = load_caffemodel(net, "mine.caffemodel")            # bvlc_alexnet.caffemodel: AlexNet's
    >>> params["conv1"]["w"].shape, sorted(state["bn_conv1"])              # HWIO; the BatchNorm blobs as state
    ((5, 5, 1, 20), ['count', 'mean', 'var'])

Blobs are matched to layers by name and converted at the edge, as the entry of each layer's Caffe type says
(jaxcnn.caffe.types; the conversions in jaxcnn.caffe.blobs): Convolution (O, C/groups, KH, KW) -> HWIO;
InnerProduct (O, I) -> (I, O), its rows permuted from Caffe's (C, H, W) flatten to jaxcnn's (H, W, C) where the
layer reads a flattened map; Scale gamma (and beta), Bias and PReLU blobs as they are; BatchNorm's three blobs
(mean and variance sums and the scale factor they are divided by, 0 meaning 0) become the state mean, var and
count (jaxcnn keeps the normalised statistics and the factor as the count). save_caffemodel writes the inverse;
every blob but BatchNorm's sums goes back bit for bit. A BatchNorm sum is chosen so that Caffe's division by the factor
gives back the statistic exactly where a float32 sum can (always when the count is a power of two, such as 1),
else to one float32 ulp: Caffe's format stores sums, not the statistics.
"""
import logging

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import CaffeFormatError, existing_file
from ..layers import Flatten
from ..net import Graph
from . import schema
from .blobs import Site, blob_array, blob_proto
from .types import saved_as

log = logging.getLogger(__name__)


def _flattened_from(net: Graph, rows: dict, name: str):
    """The (H, W, C) map a layer's input was flattened from (through shape-keeping layers without params or
    state), or None if its input was not a flattened map."""
    index = next(i for i, n in enumerate(net.nodes) if n.layer.name == name)
    blob = net.nodes[index].inputs[0]
    for node in reversed(net.nodes[:index]):
        if blob not in node.outputs:
            continue
        row = rows[node.layer.name]
        if isinstance(node.layer, Flatten):
            return row.in_shape if len(row.in_shape) == 3 and row.in_shape[:2] != (1, 1) else None
        if node.layer.arity != 1 or row.params or row.state or row.in_shape != row.out_shape:
            return None
        blob = node.inputs[0]
    return None


def _layer_type(rows, name, file):
    """(Caffe type name, its entry) that a caffemodel stores layer `name` as; CaffeFormatError if none."""
    layer = rows[name].layer
    found = saved_as(layer)
    if found is None:
        raise CaffeFormatError(file, "has no Caffe layer type to save as", layer=name, kind=type(layer).__name__)
    return found


def _site(net: Graph, rows: dict, name: str) -> Site:
    row, caffe = rows[name], getattr(net, "caffe_layers", {}).get(name)
    return Site(row.layer, row.params, row.state, _flattened_from(net, rows, name),
                None if caffe is None else caffe.param)


def _from_caffe(net: Graph, rows: dict, name: str, blobs: list, file) -> tuple[dict, dict]:
    """One layer's Caffe blobs -> (params, state) of the shapes the net gives it."""
    kind, entry = _layer_type(rows, name, file)
    site = _site(net, rows, name)
    want = entry.blobs.shapes(site)
    if len(blobs) != len(want):
        raise CaffeFormatError(file, f"the caffemodel has {len(blobs)} blobs, the layer needs {len(want)}",
                               layer=name, kind=kind)
    arrays = []
    for i, (blob, shape) in enumerate(zip(blobs, want)):
        try:
            a = blob_array(blob)
        except CaffeFormatError as e:
            raise e.at(file, layer=name, kind=kind) from None
        if a.size != int(np.prod(shape)):
            raise CaffeFormatError(file, f"blob {i} has shape {a.shape}, the layer needs {shape} (Caffe's layout)",
                                   layer=name, kind=kind)
        arrays.append(a.reshape(shape))
    return entry.blobs.from_caffe(site, arrays)


def _rows(net, input_shape):
    try:
        return {r.layer.name: r for r in net.shapes(input_shape)}
    except ValueError as e:
        raise ValueError(f"{net.name}: the weights' shapes depend on the input size: {e}") from e


def read_caffemodel(path) -> dict:
    """A .caffemodel -> {layer name: list of BlobProto} for its layers with blobs (both layer formats).
    errors.existing_file's when there is no such file; CaffeFormatError naming it when it is not
    a NetParameter with layers."""
    path = existing_file(path, "caffemodel")
    net = schema.NetParameter()
    try:
        with open(path, "rb") as f:
            net.ParseFromString(f.read())
    except Exception as e:  # protobuf's DecodeError and friends
        if isinstance(e, OSError):
            raise
        raise CaffeFormatError(str(path), f"not a binary Caffe NetParameter ({type(e).__name__}: {e})") from e
    if not (net.layer or net.layers or net.name):  # what an empty file or another protobuf (a mean file) parses to
        raise CaffeFormatError(str(path), "holds no layers: not a caffemodel (Caffe's binary NetParameter)")
    return {lp.name: list(lp.blobs) for lp in [*net.layer, *net.layers] if len(lp.blobs)}


def matching_weights(net: Graph, path, *, input_shape=None) -> tuple[dict, dict]:
    """The params and state of the layers of `net` that the caffemodel at `path` has blobs for, matched by name
    (Caffe's rule when it copies weights for fine-tuning: a layer renamed in the net starts from its fillers).
    Blobs of layers the net lacks are ignored, with a warning naming them; a matched layer whose blobs differ in
    count or shape from the net's is a CaffeFormatError naming the file, the layer and both shapes."""
    rows = _rows(net, input_shape)
    blobs = read_caffemodel(path)
    wanted = [name for name, r in rows.items() if r.params or r.state]
    unused = sorted(set(blobs) - set(wanted))
    if unused:
        log.warning("%s: blobs of layers %s that %s does not have were not loaded", path, unused, net.name)
    params, state = {}, {}
    for name in wanted:
        if name in blobs:
            p, s = _from_caffe(net, rows, name, blobs[name], str(path))
            if p:
                params[name] = {k: jnp.asarray(v) for k, v in p.items()}
            if s:
                state[name] = {k: jnp.asarray(v) for k, v in s.items()}
    return params, state


def load_caffemodel(net: Graph, path, *, input_shape=None, strict: bool = True) -> tuple[dict, dict]:
    """Load a .caffemodel's blobs into the params and state of `net` (e.g. from load_prototxt).

    Args:
      net: a Graph whose layer names are the caffemodel's.
      path: the .caffemodel file.
      input_shape: per-example input shape, if the net has none (the InnerProduct blobs depend on it).
      strict: if True, a layer with params or state that the file lacks is an error; if False it keeps the values
        net.init(jax.random.key(0)) gives it (to draw them from another key: matching_weights over one's own init).

    Returns:
      (params, state): dicts keyed by layer name, as net.init makes them, float32.
    """
    params, state = matching_weights(net, path, input_shape=input_shape)
    missing = [r.layer.name for r in _rows(net, input_shape).values()
               if (r.params and r.layer.name not in params) or (r.state and r.layer.name not in state)]
    if missing and strict:
        raise CaffeFormatError(str(path), f"no blobs for layers {missing} of {net.name}")
    if missing:
        _, init_params, init_state = net.init(jax.random.key(0), input_shape)
        params, state = {**init_params, **params}, {**init_state, **state}
    return params, state


def param_blobs(net: Graph, tree: dict, *, input_shape=None) -> list:
    """A tree shaped like net's params (the params, or an optimizer's buffer of each) -> Caffe's learnable blobs in
    Caffe's order and layout: every blob of every layer saved with blobs, in the net's layer order, zeros for the
    blobs that jaxcnn keeps as state (BatchNorm's statistics, which Caffe's solvers hold history for too)."""
    rows = _rows(net, input_shape)
    out = []
    for name in _blob_layers(net, rows):
        _, entry = _layer_type(rows, name, net.name)
        site = _site(net, rows, name)
        if rows[name].params:
            out += entry.blobs.to_caffe(site, {k: np.asarray(v) for k, v in tree[name].items()}, {})
        else:
            out += [np.zeros(shape, np.float32) for shape in entry.blobs.shapes(site)]
    return [np.asarray(a, np.float32) for a in out]


def params_from_blobs(net: Graph, blobs: list, file, *, input_shape=None) -> dict:
    """The inverse of param_blobs: Caffe's learnable blobs (arrays, in Caffe's order) -> a tree shaped like net's
    params (the blobs of state-only layers are dropped). CaffeFormatError naming `file` for a count or a shape
    that is not the net's."""
    rows = _rows(net, input_shape)
    layers = [(name, *_layer_type(rows, name, file), _site(net, rows, name)) for name in _blob_layers(net, rows)]
    want = sum(len(entry.blobs.shapes(site)) for _, _, entry, site in layers)
    if len(blobs) != want:
        raise CaffeFormatError(str(file), f"{len(blobs)} blobs for the {want} learnable blobs of {net.name}")
    tree, rest = {}, list(blobs)
    for name, kind, entry, site in layers:
        shapes = entry.blobs.shapes(site)
        mine, rest = [np.asarray(a, np.float32) for a in rest[:len(shapes)]], rest[len(shapes):]
        for i, (a, shape) in enumerate(zip(mine, shapes)):
            if a.size != int(np.prod(shape)):  # as a caffemodel's blobs: any shape of the size (legacy 4-d ones)
                raise CaffeFormatError(str(file), f"blob {i} has shape {a.shape}, the layer needs {tuple(shape)} "
                                                  "(Caffe's layout)", layer=name, kind=kind)
        mine = [a.reshape(shape) for a, shape in zip(mine, shapes)]
        if rows[name].params:
            tree[name] = {k: jnp.asarray(v) for k, v in entry.blobs.from_caffe(site, mine)[0].items()}
    return tree


def _blob_layers(net, rows) -> list:
    """The names of net's layers that a caffemodel holds blobs for, in the net's order."""
    return [n.layer.name for n in net.nodes if rows[n.layer.name].params or rows[n.layer.name].state]


def save_caffemodel(net: Graph, params: dict, state: dict, path, *, input_shape=None) -> None:
    """Write `net`'s params and state as a .caffemodel (a NetParameter named net.name with one layer entry, of the
    layer's Caffe type, per layer with params or state) that Caffe and OpenCV read with the net's prototxt."""
    rows = _rows(net, input_shape)
    proto = schema.NetParameter(name=net.name)
    for name in _blob_layers(net, rows):
        kind, entry = _layer_type(rows, name, str(path))
        p = {k: np.asarray(v) for k, v in params.get(name, {}).items()}
        s = {k: np.asarray(v) for k, v in state.get(name, {}).items()}
        blobs = entry.blobs.to_caffe(_site(net, rows, name), p, s)
        proto.layer.add(name=name, type=kind).blobs.extend(blob_proto(b) for b in blobs)
    with open(path, "wb") as f:
        f.write(proto.SerializeToString())
