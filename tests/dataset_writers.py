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
