"""Caffe weights (*.caffemodel, a binary NetParameter) to and from a jaxcnn net's params and state.

    params, state = load_caffemodel(net, "bvlc_alexnet.caffemodel")
    save_caffemodel(net, params, state, "mine.caffemodel")

Blobs are matched to layers by name and converted at the edge: Convolution (O, C/groups, KH, KW) -> HWIO;
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

from ..layers import BatchNorm, Bias, Conv, Dense, Flatten, PReLU, Scale
from ..net import Graph
from . import schema
from .prototxt import CaffeFormatError

log = logging.getLogger(__name__)
CAFFE_TYPES = {Conv: "Convolution", Dense: "InnerProduct", BatchNorm: "BatchNorm", Scale: "Scale", Bias: "Bias",
               PReLU: "PReLU"}
BLOB_ORDER = ("w", "gamma", "slope", "b", "beta")  # Caffe's blob order: weights (or scale) first, then bias


def _ordered(names):
    return sorted(names, key=BLOB_ORDER.index)


def blob_array(blob) -> np.ndarray:
    """A BlobProto -> float32 array of its shape (legacy num/channels/height/width if it has no shape)."""
    if blob.HasField("shape"):
        dims = tuple(blob.shape.dim)
    else:
        dims = tuple(d for d in (blob.num, blob.channels, blob.height, blob.width))
    values = blob.double_data if len(blob.double_data) else blob.data
    data = np.asarray(values, dtype=np.float32)
    if blob.HasField("shape") or any(dims):
        if int(np.prod(dims)) != data.size:
            raise CaffeFormatError(f"blob of shape {dims} holds {data.size} values")
        return data.reshape(dims)
    return data


def _blob(array) -> object:
    blob = schema.BlobProto()
    array = np.asarray(array, np.float32)
    blob.shape.dim.extend(array.shape)
    blob.data.extend(array.ravel().tolist())
    return blob


def _flattened_from(net: Graph, rows: dict, name: str):
    """The (H, W, C) map a Dense layer's input was flattened from (through shape-keeping layers without params
    or state), or None if its input was not a flattened map."""
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


def _dense_layout(net, rows, name):
    return _flattened_from(net, rows, name), name in getattr(net, "transposed", ())


def to_caffe(net: Graph, rows: dict, name: str, params: dict, state: dict) -> list:
    """One layer's params/state -> its Caffe blobs (float32 arrays in Caffe's layout)."""
    layer = rows[name].layer
    if isinstance(layer, Conv):
        blobs = [np.transpose(params["w"], (3, 2, 0, 1))]
        return blobs + ([params["b"]] if "b" in params else [])
    if isinstance(layer, Dense):
        w, (flat, transposed) = np.asarray(params["w"]), _dense_layout(net, rows, name)
        if flat is not None:  # rows (h, w, c) -> (c, h, w)
            w = w.reshape(*flat, -1).transpose(2, 0, 1, 3).reshape(w.shape)
        return [w if transposed else w.T] + ([params["b"]] if "b" in params else [])
    if isinstance(layer, BatchNorm):
        count = np.float32(state["count"])
        return [_bn_sum(state["mean"], count), _bn_sum(state["var"], count), np.array([count], np.float32)]
    if isinstance(layer, Scale):
        return [params["gamma"]] + ([params["beta"]] if "beta" in params else [])
    if isinstance(layer, Bias):
        return [params["b"]]
    if isinstance(layer, PReLU):
        return [np.reshape(params["slope"], () if layer.channel_shared else (-1,))]
    raise CaffeFormatError(f"{name} ({type(layer).__name__}): has no Caffe layer type to save as")


def from_caffe(net: Graph, rows: dict, name: str, blobs: list) -> tuple[dict, dict]:
    """One layer's Caffe blobs -> (params, state) of the shapes the net gives it."""
    row, layer = rows[name], rows[name].layer
    kind = type(layer).__name__
    if isinstance(layer, BatchNorm):
        want = [row.state["mean"].shape, row.state["var"].shape, (1,)]
    else:
        keys = _ordered(row.params)
        want = [_caffe_shape(net, rows, name, k, row.params[k].shape) for k in keys]
    if len(blobs) != len(want):
        raise CaffeFormatError(f"{name} ({kind}): the caffemodel has {len(blobs)} blobs, the layer needs "
                               f"{len(want)}")
    arrays = []
    for i, (blob, shape) in enumerate(zip(blobs, want)):
        a = blob_array(blob)
        if a.size != int(np.prod(shape)):
            raise CaffeFormatError(f"{name} ({kind}): blob {i} has shape {a.shape}, the layer needs {shape} "
                                   f"(Caffe's layout)")
        arrays.append(a.reshape(shape))
    if isinstance(layer, BatchNorm):
        count = arrays[2][0]
        factor = np.float32(0) if count == 0 else np.float32(1) / count  # Caffe: 0 means 0
        return {}, {"mean": arrays[0] * factor, "var": arrays[1] * factor, "count": np.float32(count)}
    params = dict(zip(keys, arrays))
    if isinstance(layer, Conv):
        params["w"] = np.transpose(params["w"], (2, 3, 1, 0))
    elif isinstance(layer, Dense):
        w, (flat, transposed) = params["w"], _dense_layout(net, rows, name)
        w = w if transposed else w.T
        if flat is not None:  # rows (c, h, w) -> (h, w, c)
            h, ww, c = flat
            w = w.reshape(c, h, ww, -1).transpose(1, 2, 0, 3).reshape(w.shape)
        params["w"] = w
    return params, {}


def _caffe_shape(net, rows, name, key, shape):
    """The Caffe shape of jaxcnn parameter `key` of jaxcnn shape `shape`."""
    layer = rows[name].layer
    if isinstance(layer, Conv) and key == "w":
        kh, kw, c, o = shape
        return o, c, kh, kw
    if isinstance(layer, Dense) and key == "w":
        return shape if name in getattr(net, "transposed", ()) else shape[::-1]
    return shape


def _bn_sum(stat, count):
    """Float32 sums s whose Caffe loading, float32(s * float32(1 / count)), gives back `stat`: exactly where some
    float32 s does (always for a count that is a power of two), else the nearest (one float32 ulp off); zeros
    when count is 0."""
    stat = np.asarray(stat, np.float32)
    if count == 0:
        return np.zeros_like(stat)
    factor = np.float32(1) / np.float32(count)
    up = down = (stat.astype(np.float64) * np.float64(count)).astype(np.float32)
    candidates = [up]
    for _ in range(4):  # one ulp of s moves s * factor by at most about two ulps of stat
        up, down = np.nextafter(up, np.float32(np.inf)), np.nextafter(down, np.float32(-np.inf))
        candidates += [up, down]
    candidates = np.stack(candidates)
    miss = np.abs((candidates * factor).astype(np.float64) - stat)
    return np.take_along_axis(candidates, np.argmin(miss, axis=0)[None], axis=0)[0]


def _rows(net, input_shape):
    try:
        return {r.layer.name: r for r in net.shapes(input_shape)}
    except ValueError as e:
        raise ValueError(f"{net.name}: the weights' shapes depend on the input size: {e}") from e


def read_caffemodel(path) -> dict:
    """A .caffemodel -> {layer name: list of BlobProto} for its layers with blobs (both layer formats)."""
    net = schema.NetParameter()
    try:
        with open(path, "rb") as f:
            net.ParseFromString(f.read())
    except Exception as e:  # protobuf's DecodeError and friends
        if isinstance(e, OSError):
            raise
        raise CaffeFormatError(f"{path}: not a binary Caffe NetParameter ({type(e).__name__}: {e})") from e
    return {lp.name: list(lp.blobs) for lp in [*net.layer, *net.layers] if len(lp.blobs)}


def load_caffemodel(net: Graph, path, *, input_shape=None, strict: bool = True) -> tuple[dict, dict]:
    """Load a .caffemodel's blobs into the params and state of `net` (e.g. from load_prototxt).

    Args:
      net: a Graph whose layer names are the caffemodel's.
      path: the .caffemodel file.
      input_shape: per-example input shape, if the net has none (the InnerProduct blobs depend on it).
      strict: if True, a layer with params or state that the file lacks is an error; if False it keeps the values
        net.init(jax.random.key(0)) gives it (e.g. a new classifier to fine-tune).

    Returns:
      (params, state): dicts keyed by layer name, as net.init makes them, float32.
    """
    rows = _rows(net, input_shape)
    blobs = read_caffemodel(path)
    wanted = [name for name, r in rows.items() if r.params or r.state]
    missing = [name for name in wanted if name not in blobs]
    if missing and strict:
        raise CaffeFormatError(f"{path}: no blobs for layers {missing} of {net.name}")
    params, state = {}, {}
    if missing:
        _, params, state = net.init(jax.random.key(0), input_shape)
    unused = sorted(set(blobs) - set(wanted))
    if unused:
        log.warning("%s: blobs of layers %s that %s does not have were not loaded", path, unused, net.name)
    for name in wanted:
        if name in blobs:
            p, s = from_caffe(net, rows, name, blobs[name])
            if p:
                params[name] = {k: jnp.asarray(v) for k, v in p.items()}
            if s:
                state[name] = {k: jnp.asarray(v) for k, v in s.items()}
    return params, state


def save_caffemodel(net: Graph, params: dict, state: dict, path, *, input_shape=None) -> None:
    """Write `net`'s params and state as a .caffemodel (a NetParameter named net.name with one layer entry, of the
    layer's Caffe type, per layer with params or state) that Caffe and OpenCV read with the net's prototxt."""
    rows = _rows(net, input_shape)
    proto = schema.NetParameter(name=net.name)
    for node in net.nodes:
        name, row = node.layer.name, rows[node.layer.name]
        if not (row.params or row.state):
            continue
        lp = proto.layer.add(name=name, type=CAFFE_TYPES.get(type(node.layer), type(node.layer).__name__))
        p = {k: np.asarray(v) for k, v in params.get(name, {}).items()}
        s = {k: np.asarray(v) for k, v in state.get(name, {}).items()}
        lp.blobs.extend(_blob(b) for b in to_caffe(net, rows, name, p, s))
    with open(path, "wb") as f:
        f.write(proto.SerializeToString())
