"""How a Caffe layer type's blobs map to a jaxcnn layer's params and state, both ways: Caffe's layout at the edge
(OIHW kernels, (O, I) matrices over a (C, H, W) flatten, BatchNorm's sums), jaxcnn's inside (HWIO, (I, O) over an
(H, W, C) flatten, normalised statistics). Each Caffe type with blobs names one of these in its entry
(jaxcnn.caffe.types); jaxcnn.caffe.weights reads and writes the files.
"""
from typing import NamedTuple

import numpy as np

from ..errors import CaffeFormatError
from . import schema


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
            raise CaffeFormatError(None, f"blob of shape {dims} holds {data.size} values")
        return data.reshape(dims)
    return data


def blob_proto(array):
    """An array -> a BlobProto of its shape and float32 data."""
    blob = schema.BlobProto()
    array = np.asarray(array, np.float32)
    blob.shape.dim.extend(array.shape)
    blob.data.extend(array.ravel().tolist())
    return blob


class Site(NamedTuple):
    """One layer of a net as its blobs see it: the layer, its params and state (arrays or ShapeDtypeStructs),
    the per-example (H, W, C) map its input was flattened from (None if it reads no flattened map) and its
    *_param message where the net was read from a prototxt (None for a net made in jaxcnn)."""

    layer: object
    params: dict
    state: dict
    flat: tuple | None
    param: object | None


class Blobs:
    """Blobs that are the layer's params as they are (Scale's gamma and beta, Bias's b). names: the params in
    Caffe's blob order (a layer may lack the later ones: no bias); count: the most blobs a layer of the type has
    (and the most `param { lr_mult decay_mult }` entries it takes). Subclasses change one param's layout."""

    def __init__(self, *names: str):
        self.names, self.count = names, len(names)

    def shapes(self, site: Site) -> list:
        """The Caffe shapes of the blobs the layer needs, in order."""
        return [self.caffe_shape(site, k, tuple(site.params[k].shape)) for k in self._keys(site)]

    def to_caffe(self, site: Site, params: dict, state: dict) -> list:
        """The layer's params and state -> its blobs (arrays in Caffe's layout, in order)."""
        return [self.to_caffe_one(site, k, np.asarray(params[k])) for k in self._keys(site)]

    def from_caffe(self, site: Site, arrays: list) -> tuple[dict, dict]:
        """Its blobs, shaped as shapes(site) says -> (params, state)."""
        return {k: self.from_caffe_one(site, k, a) for k, a in zip(self._keys(site), arrays)}, {}

    def _keys(self, site):
        return [k for k in self.names if k in site.params]

    def caffe_shape(self, site, key, shape):
        return shape

    def to_caffe_one(self, site, key, a):
        return a

    def from_caffe_one(self, site, key, a):
        return a


class ConvBlobs(Blobs):
    """Convolution: weights (O, C/groups, KH, KW) <-> HWIO (KH, KW, C/groups, O); bias (O,)."""

    def caffe_shape(self, site, key, shape):
        return (shape[3], shape[2], shape[0], shape[1]) if key == "w" else shape

    def to_caffe_one(self, site, key, a):
        return np.transpose(a, (3, 2, 0, 1)) if key == "w" else a

    def from_caffe_one(self, site, key, a):
        return np.transpose(a, (2, 3, 1, 0)) if key == "w" else a


class DenseBlobs(Blobs):
    """InnerProduct: weights (O, I) <-> (I, O), or (I, O) both ways with `transpose: true`; where the layer reads
    a flattened (H, W, C) map its rows go from Caffe's (C, H, W) flatten order to jaxcnn's (H, W, C)."""

    @staticmethod
    def _transposed(site):
        return site.param is not None and site.param.transpose

    def caffe_shape(self, site, key, shape):
        return shape if key != "w" or self._transposed(site) else shape[::-1]

    def to_caffe_one(self, site, key, a):
        if key != "w":
            return a
        if site.flat is not None:  # rows (h, w, c) -> (c, h, w)
            a = a.reshape(*site.flat, -1).transpose(2, 0, 1, 3).reshape(a.shape)
        return a if self._transposed(site) else a.T

    def from_caffe_one(self, site, key, a):
        if key != "w":
            return a
        a = a if self._transposed(site) else a.T
        if site.flat is not None:  # rows (c, h, w) -> (h, w, c)
            h, w, c = site.flat
            a = a.reshape(c, h, w, -1).transpose(1, 2, 0, 3).reshape(a.shape)
        return a


class PReLUBlobs(Blobs):
    """PReLU: the slopes, one per channel (C,), or a single one () when channel_shared."""

    def to_caffe_one(self, site, key, a):
        return np.reshape(a, () if site.layer.channel_shared else (-1,))


class BatchNormBlobs(Blobs):
    """BatchNorm: three blobs, the mean and variance sums and the scale factor they are divided by (0 meaning 0)
    <-> the state mean, var and count (jaxcnn keeps the normalised statistics, and the factor as the count). No
    params: its `param` entries (Caffe's LeNet-BN gives them lr_mult 0) have no effect."""

    def __init__(self):
        super().__init__()
        self.count = 3

    def shapes(self, site):
        return [tuple(site.state["mean"].shape), tuple(site.state["var"].shape), (1,)]

    def to_caffe(self, site, params, state):
        count = np.float32(state["count"])
        return [_bn_sum(state["mean"], count), _bn_sum(state["var"], count), np.array([count], np.float32)]

    def from_caffe(self, site, arrays):
        count = arrays[2][0]
        factor = np.float32(0) if count == 0 else np.float32(1) / count  # Caffe: 0 means 0
        return {}, {"mean": arrays[0] * factor, "var": arrays[1] * factor, "count": np.float32(count)}


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
