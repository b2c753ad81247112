"""The datasets' original file formats: IDX (MNIST, Fashion-MNIST) and CIFAR-10 binary and python batches.

Readers return uint8 images (N, H, W, C) and int32 labels (N,), and raise DataFormatError naming the file for
anything corrupt, truncated or malformed.
"""
import gzip
import io
import math
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np

IDX_PREFIX = {"train": "train", "test": "t10k"}  # train-images-idx3-ubyte, t10k-labels-idx1-ubyte, ...
CIFAR10_BATCHES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
CIFAR10_SHAPE = (32, 32, 3)
_CIFAR10_RECORD = 1 + math.prod(CIFAR10_SHAPE)  # one label byte, then 1024 R, 1024 G, 1024 B bytes


class DataFormatError(ValueError):
    """A dataset file is corrupt, truncated or not in the expected format."""


def _read_bytes(path):
    """The bytes of `path`, gunzipped when its name ends in .gz."""
    raw = Path(path).read_bytes()
    if not str(path).endswith(".gz"):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise DataFormatError(f"{path}: corrupt or truncated gzip data ({e})") from e


def read_idx(path, ndim):
    """An IDX file of unsigned bytes with `ndim` dimensions (magic 0x0000080<ndim>) -> uint8 array of its shape."""
    raw = _read_bytes(path)
    header = 4 * (ndim + 1)
    if len(raw) < header:
        raise DataFormatError(f"{path}: {len(raw)} bytes, too short for a {header}-byte IDX header")
    magic, *shape = struct.unpack(f">{ndim + 1}I", raw[:header])
    if magic != 0x800 + ndim:
        raise DataFormatError(
            f"{path}: IDX magic number 0x{magic:08x}, expected 0x{0x800 + ndim:08x} (unsigned bytes, {ndim} dims)")
    expected, actual = math.prod(shape), len(raw) - header
    if actual != expected:
        what = "truncated" if actual < expected else "trailing bytes"
        raise DataFormatError(
            f"{path}: header declares shape {tuple(shape)}, i.e. {expected} data bytes, but the file holds "
            f"{actual} ({what})")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape).copy()


def read_idx_pair(images_path, labels_path):
    """IDX images (N, H, W) and labels (N,) files -> images (N, H, W, 1) uint8, labels (N,) int32."""
    images, labels = read_idx(images_path, 3), read_idx(labels_path, 1)
    if len(images) != len(labels):
        raise DataFormatError(f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels")
    return images[..., None], labels.astype(np.int32)


def _planes_to_hwc(rows):
    """CIFAR-10 rows (N, 3072), each three 32x32 colour planes R, G, B -> images (N, 32, 32, 3)."""
    return np.ascontiguousarray(rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def read_cifar10_binary(path):
    """A CIFAR-10 binary batch (3073-byte records) -> images (N, 32, 32, 3) uint8, labels (N,) int32."""
    raw = Path(path).read_bytes()
    if not raw or len(raw) % _CIFAR10_RECORD:
        raise DataFormatError(
            f"{path}: {len(raw)} bytes is not a positive multiple of the {_CIFAR10_RECORD}-byte CIFAR-10 record "
            "(1 label byte + 3072 pixel bytes): truncated or not a CIFAR-10 binary batch")
    rows = np.frombuffer(raw, np.uint8).reshape(-1, _CIFAR10_RECORD)
    return _planes_to_hwc(rows[:, 1:]), rows[:, 0].astype(np.int32)


class _ArrayUnpickler(pickle.Unpickler):
    """Builds numpy arrays and plain containers only: a data file must not run arbitrary code."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def read_cifar10_python(path):
    """A CIFAR-10 python batch (pickled {b'data': (N, 3072) uint8, b'labels': N ints}) -> images, labels."""
    raw = Path(path).read_bytes()
    try:
        batch = _ArrayUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as e:  # a damaged pickle fails in many ways: EOFError, UnpicklingError, ValueError, ...
        raise DataFormatError(f"{path}: not a readable CIFAR-10 python batch ({type(e).__name__}: {e})") from e
    missing = [k for k in (b"data", b"labels") if not isinstance(batch, dict) or k not in batch]
    if missing:
        found = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise DataFormatError(f"{path}: CIFAR-10 python batch lacks {missing} (found {found})")
    data, labels = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"])
    pixels = _CIFAR10_RECORD - 1
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != pixels or labels.shape != data.shape[:1]:
        raise DataFormatError(
            f"{path}: expected b'data' (N, 3072) uint8 and b'labels' (N,), got {data.shape} {data.dtype} and "
            f"{labels.shape}")
    return _planes_to_hwc(data), labels.astype(np.int32)
