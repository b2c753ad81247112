"""The sources of Caffe's data layers, read from disk: an LMDB of Datum records (Data), a list file of "path label"
lines (ImageData) and a list of HDF5 files (HDF5Data). Each gives its records as NHWC batches: open_source(the
DataSource of a prototxt's data layer) is a context manager whose source has len(source) records of
source.shape per example ((H, W, C) or (D,)) and source.dtype (uint8 or float32); source.read(indices) gives
(images (k, H, W, C), labels (k,) int32) in the order asked, source.load() every record in the source's order.

Channels keep the order they are stored in, so that an imported caffemodel sees what Caffe fed it: a raw Datum's
bytes (C, H, W) as its writer stored them (convert_imageset: OpenCV's BGR; Caffe's convert_cifar_data: RGB), and
images decoded here (ImageData, encoded Datums) as OpenCV decodes them for Caffe: BGR, or one gray channel
(jaxcnn.caffe.images: Pillow's decoders, OpenCV's bilinear resize for new_height/new_width). All records of a source
must have one shape (Caffe too batches images of one size, unless it crops them). Errors name the file, the record
(an LMDB key, a list line) and the layer.
"""
import functools
from pathlib import Path

import numpy as np

from ..errors import CaffeFormatError
from . import schema
from .data_layers import DataSource, locate, not_found
from .images import decode_image, encode_image, resize_linear

LOAD_CHUNK = 1024  # records per read when a source is loaded whole


class Source:
    """Records on disk, read by index. Subclasses set `path` (the file or directory), `shape`, `dtype` and
    `layer` (the data layer reading it), and implement __len__ and _read_one or read."""

    path: Path
    shape: tuple
    dtype: np.dtype
    layer: str | None = None

    def __len__(self) -> int:
        raise NotImplementedError

    @property
    def nbytes(self) -> int:
        """The bytes of all its records decoded."""
        return len(self) * int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize

    def read(self, indices) -> tuple[np.ndarray, np.ndarray]:
        """Records `indices` -> (images (n, *shape) of `dtype`, labels (n,) int32), in the order given."""
        indices = np.asarray(indices, np.int64)
        images = np.empty((len(indices), *self.shape), self.dtype)
        labels = np.empty(len(indices), np.int32)
        for j, i in enumerate(indices):
            images[j], labels[j] = self._read_one(int(i))
        return images, labels

    def _read_one(self, i: int):
        raise NotImplementedError

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """Every record, in order: (images (N, *shape), labels (N,))."""
        images = np.empty((len(self), *self.shape), self.dtype)
        labels = np.empty(len(self), np.int32)
        for start in range(0, len(self), LOAD_CHUNK):
            part = np.arange(start, min(start + LOAD_CHUNK, len(self)))
            images[part], labels[part] = self.read(part)
        return images, labels

    def _checked(self, array, what: str):
        """`array` of a record, checked against the source's shape (that of its first record) and dtype."""
        if array.shape != self.shape or array.dtype != self.dtype:
            raise self.error(f"{what}: {_describe(array)} where the first record is {_describe(self)}; the records "
                             "of a source must have one shape")
        return array

    def error(self, message: str) -> CaffeFormatError:
        return CaffeFormatError(str(self.path), message, layer=self.layer)

    def _decoded(self, data, mode: str | None, record: str) -> np.ndarray:
        """An image file's bytes (or path) decoded (jaxcnn.caffe.images.decode_image); errors name the record."""
        try:
            return decode_image(data, mode, record)
        except CaffeFormatError as e:
            raise self.error(f"{record}: {e.message}") from None

    def close(self):
        """Release the files it holds open."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _describe(a) -> str:
    shape = a.shape
    text = f"{shape[2]}x{shape[0]}x{shape[1]} (C x H x W)" if len(shape) == 3 else "x".join(map(str, shape))
    return f"{text} {np.dtype(a.dtype).name}"


def open_source(data: DataSource, check: bool = True) -> Source:
    """The reader of a data layer's source (Data: an LMDB; ImageData: a list file; HDF5Data: a list of .h5 files),
    found as given or beside the layer's prototxt (jaxcnn.caffe.data_layers.locate). FileNotFoundError naming the
    layer when it is not there; CaffeFormatError naming the file, record and layer when it is not what the layer
    reads. check=False: only as much as its shape needs is read (the files of an image list are not looked for)."""
    if data.type not in READERS or not data.source:
        raise CaffeFormatError(data.file, f"a {data.type} layer has no source on disk to read", layer=data.layer)
    path = locate(data.source, data.file)
    if path is None:
        raise not_found("source", data.source, data.file, data.layer)
    return READERS[data.type](path, data, check)


def _lines(source: Source) -> list:
    """The lines of a source's list file; CaffeFormatError unless it is text."""
    try:
        return source.path.read_text().splitlines()
    except (UnicodeDecodeError, IsADirectoryError):
        raise source.error("not a text list file") from None


# -- Data: an LMDB of Datums -----------------------------------------------------------------------------

class LmdbSource(Source):
    """An LMDB of serialized Caffe Datums (convert_imageset, convert_mnist_data, convert_cifar_data), in key order:
    raw uint8 `data` (C, H, W), `float_data` (C, H, W) or an `encoded` image, and `label`. data.options['force']:
    'color' or 'gray' decodes encoded images so (transform_param force_color / force_gray)."""

    def __init__(self, path: Path, data: DataSource, check: bool = True):
        import lmdb
        self.path, self.layer, self.force = path, data.layer, data.options.get("force")
        if path.is_dir() and not (path / "data.mdb").is_file():
            kind = "a LevelDB (convert it to LMDB: Caffe's convert_imageset -backend lmdb)" if (
                path / "CURRENT").is_file() else "no data.mdb"
            raise self.error(f"not an LMDB: {kind}")
        try:
            self.env = _open_lmdb(path)
        except lmdb.Error as e:
            raise self.error(f"not an LMDB ({e})") from None
        try:
            with self.env.begin() as txn:
                cursor = txn.cursor()
                first = cursor.item() if cursor.first() else None
                self.count = self.env.stat()["entries"]
            if first is None:
                raise self.error("the database holds no records")
            array, _ = self._decode(*first)
        except BaseException:
            self.close()
            raise
        self.shape, self.dtype = array.shape, array.dtype

    @functools.cached_property
    def keys(self) -> list:
        """The records' keys, in the database's order."""
        with self.env.begin() as txn:
            return list(txn.cursor().iternext(keys=True, values=False))

    def __len__(self):
        return self.count

    def read(self, indices):
        with self.env.begin() as txn:
            records = [(self.keys[i], txn.get(self.keys[i])) for i in np.asarray(indices, np.int64)]
        images = np.empty((len(records), *self.shape), self.dtype)
        labels = np.empty(len(records), np.int32)
        for j, (key, value) in enumerate(records):
            array, labels[j] = self._decode(key, value)
            images[j] = self._checked(array, _record(key))
        return images, labels

    def _decode(self, key: bytes, value: bytes):
        """One record -> (array (H, W, C), label); CaffeFormatError naming the record unless it is a Datum."""
        datum = schema.Datum()
        try:
            datum.ParseFromString(value)
        except Exception as e:  # protobuf's DecodeError
            raise self.error(f"{_record(key)}: not a Caffe Datum ({e})") from None
        if datum.encoded:
            return self._decoded(datum.data, self.force, _record(key)), datum.label
        c, h, w = datum.channels, datum.height, datum.width
        values = datum.data if datum.data else datum.float_data
        if min(c, h, w) < 1 or len(values) != c * h * w:
            raise self.error(f"{_record(key)}: not a Caffe Datum (channels {c}, height {h}, width {w} with "
                             f"{len(values)} values)")
        array = (np.frombuffer(datum.data, np.uint8) if datum.data else np.asarray(datum.float_data, np.float32))
        return array.reshape(c, h, w).transpose(1, 2, 0), datum.label

    def close(self):
        _close_lmdb(self.path)


_LMDB = {}  # resolved path -> [environment, readers]: LMDB opens an environment once per process


def _open_lmdb(path: Path):
    import lmdb
    key = path.resolve()
    if key not in _LMDB:
        _LMDB[key] = [lmdb.open(str(path), readonly=True, lock=False, readahead=False, subdir=path.is_dir()), 0]
    _LMDB[key][1] += 1
    return _LMDB[key][0]


def _close_lmdb(path: Path):
    entry = _LMDB.get(path.resolve())
    if entry is not None:
        entry[1] -= 1
        if entry[1] == 0:
            entry[0].close()
            del _LMDB[path.resolve()]


def _record(key: bytes) -> str:
    return f"record {key.decode('utf-8', 'replace')!r}"


def write_lmdb(path, images, labels, encode: str | None = None, map_size: int = 1 << 40) -> None:
    """Write images (N, H, W, C) uint8 (in the channel order to store, BGR for Caffe's convention) and labels (N,)
    as an LMDB of Datums keyed '00000000', '00000001', ..., as Caffe's convert_imageset does: raw (C, H, W) bytes,
    or images encoded as encode ('png' or 'jpeg', convert_imageset --encoded)."""
    import lmdb
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim != 4 or images.dtype != np.uint8 or labels.shape != images.shape[:1]:
        raise ValueError(f"write_lmdb: expected images (N, H, W, C) uint8 and labels (N,), got {images.shape} "
                         f"{images.dtype} and {labels.shape}")
    with lmdb.open(str(path), map_size=map_size) as env, env.begin(write=True) as txn:
        for i, (image, label) in enumerate(zip(images, labels)):
            h, w, c = image.shape
            datum = schema.Datum(channels=c, height=h, width=w, label=int(label))
            if encode:
                datum.data, datum.encoded = encode_image(image, encode), True
            else:
                datum.data = np.ascontiguousarray(image.transpose(2, 0, 1)).tobytes()
            txn.put(f"{i:08d}".encode(), datum.SerializeToString())


# -- ImageData: a list of image files ---------------------------------------------------------------------

class ImageListSource(Source):
    """A list file of "path label" lines (Caffe's ImageData: the label after the last space), each path read as
    root_folder + path (Caffe joins them as strings) from the working directory, else beside the list file.
    data.options: root_folder, new_size (height, width; (0, 0): as stored), is_color (3 BGR channels, else 1 gray).
    Every listed file must exist (checked when opened, unless `check` is false: then only the first is)."""

    def __init__(self, path: Path, data: DataSource, check: bool = True):
        self.path, self.layer = path, data.layer
        root, self.new_size = data.options.get("root_folder", ""), data.options.get("new_size", (0, 0))
        self.mode = "color" if data.options.get("is_color", True) else "gray"
        self.entries = []
        for n, line in enumerate(_lines(self), 1):
            if not line.strip():
                continue
            name, _, label = line.rstrip().rpartition(" ")
            if not name or not label.lstrip("-").isdigit():
                raise self.error(f"line {n}: expected 'path label' (an integer label after the last space), got "
                                 f"{line!r}")
            if not check and self.entries:  # only the first image is read
                self.entries.append((Path(root + name), int(label), n))
                continue
            image = locate(root + name, str(path))
            if image is None or not image.is_file():
                raise FileNotFoundError(f"{path}: line {n}: no such image {root + name!r} (root_folder {root!r}; "
                                        f"looked in the working directory and beside {path}); layer {self.layer!r}")
            self.entries.append((image, int(label), n))
        if not self.entries:
            raise self.error("the list names no images")
        self.shape, self.dtype = self._image(0).shape, np.dtype(np.uint8)

    def __len__(self):
        return len(self.entries)

    def _image(self, i):
        image, _, n = self.entries[i]
        array = self._decoded(image, self.mode, f"line {n}: {image}")
        if self.new_size[0]:
            array = resize_linear(array, *self.new_size)
        return array

    def _read_one(self, i):
        image, label, n = self.entries[i]
        return self._checked(self._image(i), f"line {n}: {image}"), label


# -- HDF5Data: a list of .h5 files ------------------------------------------------------------------------

class Hdf5Source(Source):
    """A list file of HDF5 files (Caffe's HDF5Data), each holding a dataset per top of the layer: images (N, C, H, W)
    (here (N, H, W, C)) or vectors (N, D), and labels (N,) or (N, 1) of integer values; the files' records in
    the list's order. uint8 data stays uint8, any other becomes float32 (Caffe reads it as float)."""

    def __init__(self, path: Path, data: DataSource, check: bool = True):
        import h5py
        self.path, self.layer, self.files = path, data.layer, []
        if len(data.tops) != 2:
            raise self.error(f"the layer has tops {list(data.tops)}: training reads a data and a label top")
        self.tops, counts = data.tops, []
        names = [line.strip() for line in _lines(self) if line.strip()]
        if not names:
            raise self.error("the list names no HDF5 files")
        for name in names:
            found = locate(name, str(path))
            if found is None:
                raise FileNotFoundError(f"{path}: no such HDF5 file {name!r} (looked in the working directory and "
                                        f"beside {path}); layer {self.layer!r}")
            try:
                self.files.append(h5py.File(found, "r"))
            except OSError as e:
                raise CaffeFormatError(str(found), f"not an HDF5 file ({e})", layer=self.layer) from None
            counts.append(self._check_file(self.files[-1], first=len(self.files) == 1))
        self.starts = np.cumsum([0] + counts)

    def _check_file(self, f, first: bool) -> int:
        """The records of one open file; CaffeFormatError unless it holds the tops' datasets, in step."""
        for top in self.tops:
            if top not in f:
                raise CaffeFormatError(f.filename, f"no dataset {top!r} (the layer's top {top!r})", layer=self.layer)
        data, label = f[self.tops[0]], f[self.tops[1]]
        if data.ndim not in (2, 4):
            raise CaffeFormatError(f.filename, f"dataset {self.tops[0]!r} has shape {data.shape}: expected (N, C, H, "
                                   "W) images or (N, D) vectors", layer=self.layer)
        if label.shape not in ((len(data),), (len(data), 1)):
            raise CaffeFormatError(f.filename, f"dataset {self.tops[1]!r} has shape {label.shape}: expected one "
                                   f"label per record of {self.tops[0]!r}, ({len(data)},)", layer=self.layer)
        shape = (*data.shape[2:], data.shape[1]) if data.ndim == 4 else data.shape[1:]
        dtype = np.dtype(np.uint8 if data.dtype == np.uint8 else np.float32)
        if first:
            self.shape, self.dtype = shape, dtype
        elif (shape, dtype) != (self.shape, self.dtype):
            raise CaffeFormatError(f.filename, f"records of {_describe(np.empty(shape, dtype))} where the first file's "
                                   f"are {_describe(self)}", layer=self.layer)
        return len(data)

    def __len__(self):
        return int(self.starts[-1])

    def read(self, indices):
        indices = np.asarray(indices, np.int64)
        images = np.empty((len(indices), *self.shape), self.dtype)
        labels = np.empty(len(indices), np.int32)
        which = np.searchsorted(self.starts, indices, side="right") - 1
        for k in np.unique(which):
            at = np.flatnonzero(which == k)
            rows = indices[at] - self.starts[k]
            order = np.argsort(rows)  # h5py reads rows in increasing order
            f = self.files[k]
            part, label = f[self.tops[0]][rows[order]], f[self.tops[1]][rows[order]]
            images[at[order]] = part.transpose(0, 2, 3, 1) if part.ndim == 4 else part
            labels[at[order]] = self._labels(label.reshape(-1), f.filename)
        return images, labels

    def _labels(self, values, filename):
        if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
            raise CaffeFormatError(filename, f"dataset {self.tops[1]!r} holds labels that are not integers",
                                   layer=self.layer)
        return values.astype(np.int32)

    def close(self):
        for f in self.files:
            f.close()


READERS = {"Data": LmdbSource, "ImageData": ImageListSource, "HDF5Data": Hdf5Source}
