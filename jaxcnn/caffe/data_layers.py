"""Caffe's data layers (Data, ImageData, HDF5Data, MemoryData) as a net sees them: the source a layer reads
(`DataSource`), its transform_param (`Transform`) and the size of its images. Their entries in the one registry of
Caffe types, jaxcnn.caffe.types.TYPES, call the read functions here; the readers of the sources themselves are
jaxcnn.caffe.sources.

Transform is Caffe's DataTransformer (data_transformer.cpp), per image: crop a crop_size square (at a random
offset in TRAIN, the centre in TEST), mirror it left-right (at random, with `mirror`), subtract the mean (mean_file:
the mean image at the crop's offset; mean_value: one value, or one per channel) and multiply by scale. Cropping and
mirroring only move pixels, and the mean and scale act on each pixel where it was read, so jaxcnn subtracts and
scales the whole image first (`normalize`) and then crops and mirrors (`augment` in training, `__call__` in
evaluation): the same numbers, on NHWC batches on the devices. Images keep the channel order they are stored in
(Caffe's BGR for images it decoded, the raw order of raw Datums): a caffemodel sees what Caffe fed it.

Where a data layer does not give its images' size (Data; ImageData without new_height/new_width; HDF5Data) and its
source is there, the size comes from the source's first record, as Caffe's data layers shape their tops; crop_size
then replaces height and width.
"""
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import CaffeFormatError
from . import schema
from .blobs import blob_array


def locate(path: str, file: str | None) -> Path | None:
    """A path a prototxt names (a source, a mean_file): as given (Caffe: from the working directory), else beside
    the prototxt `file`; None where neither exists."""
    candidates = [Path(path)] + ([Path(file).parent / path] if file else [])
    return next((p for p in candidates if p.exists()), None)


def not_found(what: str, path: str, file: str | None, layer: str | None) -> FileNotFoundError:
    """The error for a file a prototxt names (`what`: 'source', 'mean_file') that `locate` did not find."""
    where = f"{file}: layer {layer!r}: " if layer else f"{file}: " if file else ""
    beside = f" or beside {file}" if file else ""
    return FileNotFoundError(f"{where}no such {what} {path!r} (looked in the working directory{beside})")


@dataclass(frozen=True)
class Transform:
    """A data layer's transform_param (Caffe's defaults: scale 1, no mean, no crop, no mirror); `layer` and `file`
    name the layer and its prototxt in errors and place a relative mean_file (see `locate`)."""

    scale: float = 1.0
    mean_value: tuple = ()
    mean_file: str | None = None
    crop_size: int = 0
    mirror: bool = False
    layer: str | None = field(default=None, compare=False)
    file: str | None = field(default=None, compare=False)

    @functools.cached_property
    def mean(self) -> np.ndarray | None:
        """What is subtracted, float32: the mean_file's image (H, W, C), or the mean_value(s) (C,) or (1,), or
        None. FileNotFoundError or CaffeFormatError naming the mean file when it cannot be read."""
        if self.mean_value:
            return np.asarray(self.mean_value, np.float32)
        if self.mean_file is None:
            return None
        return read_mean_file(self.mean_file, self.file, self.layer)

    def output_shape(self, shape: tuple) -> tuple:
        """Per-example (H, W, C) of the source -> what the net gets: (crop_size, crop_size, C) when cropping."""
        return (self.crop_size, self.crop_size, *shape[2:]) if self.crop_size else tuple(shape)

    def check(self, shape: tuple, source: str) -> None:
        """CaffeFormatError naming the layer unless this transform fits images of per-example `shape` (H, W, C)
        from `source`: crop_size within H and W, one mean_value or one per channel, a mean image of the same
        shape (Caffe's CHECKs)."""
        if (self.crop_size or self.mirror) and len(shape) != 3:
            raise self._error(f"crop_size and mirror need images, but {source} holds vectors of shape {shape}")
        if self.crop_size and min(shape[:2]) < self.crop_size:
            raise self._error(f"crop_size {self.crop_size} is larger than the {shape[0]}x{shape[1]} images of "
                              f"{source}")
        mean = self.mean
        if self.mean_value and len(self.mean_value) not in (1, shape[-1]):
            raise self._error(f"{len(self.mean_value)} mean_value entries for the {shape[-1]} channels of "
                              f"{source}: give one, or one per channel")
        if self.mean_file is not None and mean.shape != tuple(shape):
            raise CaffeFormatError(str(locate(self.mean_file, self.file)), f"a mean of shape {_chw(mean.shape)} "
                                   f"(C x H x W) does not fit the {_chw(shape)} images of {source}", layer=self.layer)

    def _error(self, message):
        return CaffeFormatError(self.file, f"transform_param: {message}", layer=self.layer)

    # -- the transformation, on batches (N, H, W, C) -----------------------------------------------------
    def normalize(self, x):
        """uint8 or float (N, ...) -> float32 (x - mean) * scale, on the whole image."""
        x = x.astype(jnp.float32)
        if self.mean is not None:
            x = x - self.mean
        return x * self.scale if self.scale != 1 else x

    def __call__(self, x):
        """The TEST phase's transform of a batch: normalize, then the centre crop_size square."""
        x = self.normalize(x)
        if not self.crop_size:
            return x
        h, w = x.shape[1:3]
        top, left = (h - self.crop_size) // 2, (w - self.crop_size) // 2
        return x[:, top:top + self.crop_size, left:left + self.crop_size]

    @property
    def random(self) -> bool:
        """Whether training draws anything (a crop_size or mirror): else `augment` leaves a batch as it is."""
        return bool(self.crop_size or self.mirror)

    def draw(self, key, n: int, height: int, width: int):
        """The TRAIN phase's random choices for n images of height x width: crop offsets top, left (n,) int32,
        each uniform over 0..H-crop_size (0 without a crop), and flip (n,) bool, true with probability 1/2 when
        `mirror` (else all false)."""
        k_top, k_left, k_flip = jax.random.split(key, 3)
        c = self.crop_size
        top = jax.random.randint(k_top, (n,), 0, height - c + 1) if c else jnp.zeros((n,), jnp.int32)
        left = jax.random.randint(k_left, (n,), 0, width - c + 1) if c else jnp.zeros((n,), jnp.int32)
        flip = jax.random.bernoulli(k_flip, 0.5, (n,)) if self.mirror else jnp.zeros((n,), bool)
        return top, left, flip

    def place(self, x, top, left, flip):
        """Crop each image of x (N, H, W, C) at (top, left) (without a crop_size: the whole image) and mirror
        those with flip."""
        if self.crop_size:
            size = (self.crop_size, self.crop_size, x.shape[-1])
            x = jax.vmap(lambda img, t, l: jax.lax.dynamic_slice(img, (t, l, 0), size))(x, top, left)
        return jnp.where(flip[:, None, None, None], x[:, :, ::-1], x)

    def augment(self, key, x):
        """The TRAIN phase's crop and mirror of a normalized batch (N, H, W, C), drawn from `key`."""
        if not self.random:
            return x
        return self.place(x, *self.draw(key, *x.shape[:3]))


def _chw(shape):
    return "x".join(map(str, (shape[-1], *shape[:-1]))) if len(shape) == 3 else "x".join(map(str, shape))


def read_mean_file(path: str, file: str | None = None, layer: str | None = None) -> np.ndarray:
    """A mean file (a BlobProto .binaryproto, as Caffe's compute_image_mean writes: (1, C, H, W)) -> float32 mean
    image (H, W, C). `file`, `layer`: the prototxt and layer naming it (where it is looked for, and in errors)."""
    found = locate(path, file)
    if found is None or not found.is_file():
        raise not_found("mean_file", path, file, layer)
    blob = schema.BlobProto()
    try:
        blob.ParseFromString(found.read_bytes())
        array = blob_array(blob)
    except Exception as e:  # protobuf's DecodeError, or a blob whose shape and values disagree
        raise CaffeFormatError(str(found), f"not a mean file (a BlobProto): {getattr(e, 'message', e)}",
                               layer=layer) from None
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 3 or not array.size:
        raise CaffeFormatError(str(found), f"a mean file holds one (1, C, H, W) image, got shape {array.shape}",
                               layer=layer)
    return np.ascontiguousarray(array.transpose(1, 2, 0))


def mean_blob(mean) -> bytes:
    """A mean image (H, W, C) as the bytes of a .binaryproto (1, C, H, W), as Caffe's compute_image_mean writes
    it (the inverse of read_mean_file)."""
    mean = np.asarray(mean, np.float32).transpose(2, 0, 1)
    blob = schema.BlobProto(num=1, channels=mean.shape[0], height=mean.shape[1], width=mean.shape[2])
    blob.data.extend(mean.ravel().tolist())
    return blob.SerializeToString()


@dataclass(frozen=True)
class DataSource:
    """A data layer: its type (Data, ImageData, HDF5Data, MemoryData), source (a database, list file, or None),
    batch size and the blobs it writes (images, then labels); `layer` and `file` (its name and prototxt: errors,
    where a relative source is looked for); `options`: how its type reads the source (ImageData: root_folder,
    new_size (new_height, new_width), is_color; Data: force, 'color' or 'gray' from transform_param's force_color /
    force_gray, for encoded images)."""

    type: str
    source: str | None
    batch_size: int | None
    tops: tuple
    layer: str = ""
    file: str | None = None
    options: dict = field(default_factory=dict, hash=False)

    def readable(self) -> Path | None:
        """Where the source is, if it is there in a form jaxcnn reads; None also for a LevelDB (a directory with a
        CURRENT file and no data.mdb), Caffe's other database (jaxcnn reads LMDB)."""
        path = locate(self.source, self.file) if self.source else None
        if path is not None and (path / "CURRENT").is_file() and not (path / "data.mdb").is_file():
            return None
        return path


class Data(NamedTuple):
    """What a data layer gives the net: its transform, its source, and the Caffe dims (N, C, H, W) (or (N, D)) of
    its first top where the file or the source gives them (else None)."""

    transform: Transform
    source: DataSource
    dims: tuple | None


# -- read functions of the data types (Spec: jaxcnn.caffe.types) ----------------------------------------

def _transform(s) -> Transform:
    t = s.lp.transform_param
    for unsupported in ("crop_h", "crop_w"):
        if t.HasField(unsupported):
            raise s.error(f"field transform_param.{unsupported} is not supported (crop_size is)")
    if t.HasField("mean_file") and t.mean_value:
        raise s.error("give transform_param mean_file or mean_value, not both")
    if t.force_color and t.force_gray:
        raise s.error("give transform_param force_color or force_gray, not both")
    return Transform(float(t.scale), tuple(float(v) for v in t.mean_value), t.mean_file if t.HasField("mean_file")
                     else None, int(t.crop_size), bool(t.mirror), layer=s.name, file=s.file)


def _data_layer(s, options: dict, given_dims=None) -> Data:
    """Data(transform, source, dims): dims as the layer gives them, else from its source's first record (when the
    source is there), with crop_size for height and width; the channels from several mean_value entries where
    nothing else gives them."""
    transform, p = _transform(s), s.param
    source = DataSource(s.kind, getattr(p, "source", None) or None, int(p.batch_size) or None, s.tops, s.name,
                        s.file, options)
    batch = source.batch_size or 1
    dims = given_dims
    if dims is None and source.readable() is not None:
        from .sources import open_source  # the readers need lmdb, h5py or Pillow only when a source is read
        with open_source(source, check=False) as reader:
            shape = reader.shape
        dims = (batch, shape[2], shape[0], shape[1]) if len(shape) == 3 else (batch, *shape)
    if dims is None and transform.crop_size and len(transform.mean_value) > 1:
        dims = (batch, len(transform.mean_value), 0, 0)
    if dims is not None and transform.crop_size:
        dims = (*dims[:2], transform.crop_size, transform.crop_size)
    return Data(transform, source, dims)


def read_data(s) -> Data:
    t = s.lp.transform_param
    return _data_layer(s, {"force": "color" if t.force_color else "gray" if t.force_gray else None})


def read_image_data(s) -> Data:
    p = s.param
    if bool(p.new_height) != bool(p.new_width):
        raise s.error("give both new_height and new_width, or neither")
    channels = 3 if p.is_color else 1
    dims = (int(p.batch_size), channels, int(p.new_height), int(p.new_width)) if p.new_height else None
    options = {"root_folder": p.root_folder, "new_size": (int(p.new_height), int(p.new_width)),
               "is_color": bool(p.is_color)}
    return _data_layer(s, options, dims)


def read_hdf5_data(s) -> Data:
    if s.lp.HasField("transform_param"):
        raise s.error("Caffe's HDF5Data layer applies no transform_param: preprocess the data in the .h5 files")
    if len(s.tops) > 2:
        raise s.error(f"{len(s.tops)} tops: jaxcnn trains on a data top and a label top")
    return _data_layer(s, {})


def read_memory_data(s) -> Data:
    p = s.param
    dims = (p.batch_size, p.channels, p.height, p.width) if p.height else None
    return _data_layer(s, {}, dims)
