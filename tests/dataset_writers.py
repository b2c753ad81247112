"""Writers of the datasets' original file formats (IDX; CIFAR-10 binary and python batches), for tests: the
inverse of jaxcnn.datasets.formats."""
import gzip
import pickle
import struct
from pathlib import Path

import numpy as np

from jaxcnn.datasets.formats import CIFAR10_BATCHES, CIFAR10_SHAPE, IDX_PREFIX


def write_idx(path, array):
    """Write a uint8 array of any rank as an IDX file, gzipped when `path` ends in .gz."""
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"write_idx({path}): expected uint8 data, got {array.dtype}")
    data = struct.pack(f">{array.ndim + 1}I", 0x800 + array.ndim, *array.shape) + array.tobytes()
    Path(path).write_bytes(gzip.compress(data) if str(path).endswith(".gz") else data)


def _check_split_labels(split, labels, who):
    """Raise ValueError unless split is 'train' or 'test' and all labels lie in 0..9."""
    if split not in IDX_PREFIX:
        raise ValueError(f"{who}: split must be 'train' or 'test', got {split!r}")
    if labels.size and not 0 <= labels.min() <= labels.max() <= 9:
        raise ValueError(f"{who}: labels must lie in 0..9, got {labels.min()}..{labels.max()}")


def write_mnist(directory, split, images, labels, gz=True):
    """Write images (N, H, W[, 1]) uint8 and labels (N,) as the IDX pair of `split`; returns the two paths."""
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim != 3 or labels.shape != images.shape[:1]:
        raise ValueError(f"write_mnist: expected images (N, H, W[, 1]) and labels (N,), got {images.shape} and "
                         f"{labels.shape}")
    _check_split_labels(split, labels, "write_mnist")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stem, suffix = IDX_PREFIX[split], ".gz" if gz else ""
    paths = [directory / f"{stem}-{kind}-idx{n}-ubyte{suffix}" for kind, n in (("images", 3), ("labels", 1))]
    write_idx(paths[0], images)
    write_idx(paths[1], labels.astype(np.uint8))
    return paths


def write_cifar10(directory, split, images, labels, fmt="binary"):
    """Write images (N, 32, 32, 3) uint8 and labels (N,) in 0..9 as CIFAR-10 batches; returns the paths.

    split 'train' spreads the examples over data_batch_1..5 (N >= 5), 'test' writes test_batch; fmt 'binary'
    writes `<batch>.bin` records, 'python' writes pickled dicts, as the original archives do.
    """
    images, labels = np.asarray(images), np.asarray(labels)
    if images.dtype != np.uint8 or images.shape[1:] != CIFAR10_SHAPE or labels.shape != images.shape[:1]:
        raise ValueError(f"write_cifar10: expected images (N, 32, 32, 3) uint8 and labels (N,), got "
                         f"{images.shape} {images.dtype} and {labels.shape}")
    _check_split_labels(split, labels, "write_cifar10")
    if fmt not in ("binary", "python"):
        raise ValueError(f"write_cifar10: fmt must be 'binary' or 'python', got {fmt!r}")
    names = CIFAR10_BATCHES[split]
    if len(images) < len(names):
        raise ValueError(f"write_cifar10: split {split!r} needs at least {len(names)} examples, got {len(images)}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    labels = labels.astype(np.uint8)
    paths = []
    for name, part in zip(names, np.array_split(np.arange(len(images)), len(names))):
        if fmt == "binary":
            path = directory / f"{name}.bin"
            path.write_bytes(np.concatenate([labels[part, None], rows[part]], axis=1).tobytes())
        else:
            path = directory / name
            batch = {b"batch_label": name.encode(), b"labels": labels[part].tolist(), b"data": rows[part]}
            path.write_bytes(pickle.dumps(batch, protocol=2))
        paths.append(path)
    return paths


# -- Caffe's data files (Data, ImageData, HDF5Data layers), written without jaxcnn's readers or schema ------------

def _varint(n):
    out = bytearray()
    n &= (1 << 64) - 1  # protobuf writes negative int32 as 10-byte two's complement
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number, wire, payload):
    """One protobuf field: a varint (wire 0) or length-delimited bytes (wire 2)."""
    key = _varint(number << 3 | wire)
    return key + (_varint(payload) if wire == 0 else _varint(len(payload)) + payload)


def datum_bytes(label, *, chw=None, float_chw=None, encoded=None):
    """A serialized caffe.Datum (caffe.proto: channels 1, height 2, width 3, data 4, label 5, float_data 6 packed,
    encoded 7), encoded by hand: raw uint8 `chw` (C, H, W), float32 `float_chw`, or `encoded` image bytes."""
    out = b""
    shaped = chw if chw is not None else float_chw
    if shaped is not None:
        c, h, w = np.shape(shaped)
        out += _field(1, 0, c) + _field(2, 0, h) + _field(3, 0, w)
    if chw is not None:
        out += _field(4, 2, np.asarray(chw, np.uint8).tobytes())
    if encoded is not None:
        out += _field(4, 2, encoded)
    out += _field(5, 0, int(label))
    if float_chw is not None:
        out += _field(6, 2, np.asarray(float_chw, "<f4").tobytes())
    if encoded is not None:
        out += _field(7, 0, 1)
    return out


def write_datum_lmdb(path, records):
    """An LMDB holding `records`, (key bytes, value bytes) pairs, as Caffe's convert tools write them."""
    import lmdb
    with lmdb.open(str(path), map_size=1 << 26) as env, env.begin(write=True) as txn:
        for key, value in records:
            txn.put(key, value)
    return Path(path)


def write_mean_binaryproto(path, mean_chw):
    """A mean file as Caffe's compute_image_mean writes it: a BlobProto with num 1, channels, height, width (fields
    1-4) and the float32 values (field 5, packed), encoded by hand."""
    mean = np.asarray(mean_chw, "<f4")
    c, h, w = mean.shape
    blob = _field(1, 0, 1) + _field(2, 0, c) + _field(3, 0, h) + _field(4, 0, w) + _field(5, 2, mean.tobytes())
    Path(path).write_bytes(blob)
    return Path(path)


def write_images_and_list(directory, images_bgr, labels, list_name="list.txt", ext=".png"):
    """Each image (H, W, C) uint8 in OpenCV's order (BGR, or one gray channel) written by OpenCV (cv2.imwrite, what
    Caffe's tools use) as `directory`/img_<i><ext>, and a list file of "img_<i><ext> label" lines; returns its
    path."""
    import cv2
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (image, label) in enumerate(zip(images_bgr, labels)):
        name = f"img_{i}{ext}"
        if not cv2.imwrite(str(directory / name), np.asarray(image)):
            raise ValueError(f"cv2.imwrite could not write {name}")
        lines.append(f"{name} {int(label)}")
    (directory / list_name).write_text("\n".join(lines) + "\n")
    return directory / list_name


def write_h5_list(directory, parts, list_name="list.txt"):
    """One HDF5 file per dict of `parts` ({dataset name: array}), as part_<i>.h5 in `directory`, and a list file of
    their names; returns its path."""
    import h5py
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    names = []
    for i, datasets in enumerate(parts):
        names.append(f"part_{i}.h5")
        with h5py.File(directory / names[-1], "w") as f:
            for key, value in datasets.items():
                f[key] = value
    (directory / list_name).write_text("\n".join(names) + "\n")
    return directory / list_name
