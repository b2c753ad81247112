"""Load MNIST, Fashion-MNIST and CIFAR-10 as images (N, H, W, C) uint8 and labels (N,) int32.

Sources, first hit wins: `data_dir` (the experiments' --data-dir), then $JAXCNN_DATA_DIR, then Debian's
/usr/share/datasets/<name> (`apt-get install dataset-fashion-mnist`), each in the datasets' original formats (IDX,
gzipped or not; CIFAR-10 binary or python batches), in the directory itself or in a sub-folder named after the
dataset (`mnist/`, `fashion-mnist/`, `cifar-10-batches-py/`, ...). Otherwise TensorFlow Datasets, which downloads
and caches under $TFDS_DATA_DIR (default ~/tensorflow_datasets); it needs TensorFlow to prepare the data and
Pillow to decode it.
"""
import logging
import os
from pathlib import Path

import numpy as np

from .formats import (
    CIFAR10_BATCHES, IDX_PREFIX, DataFormatError, read_cifar10_binary, read_cifar10_python, read_idx_pair,
)

log = logging.getLogger(__name__)
ENV_VAR = "JAXCNN_DATA_DIR"
DEBIAN_ROOT = Path("/usr/share/datasets")
DEBIAN_PACKAGES = {"fashion_mnist": "dataset-fashion-mnist"}
IMAGE_SHAPES = {"mnist": (28, 28, 1), "fashion_mnist": (28, 28, 1), "cifar10": (32, 32, 3)}
SPLITS = ("train", "test")
# Sub-folders of a data root that may hold a dataset's files, in search order.
SUBDIRS = {
    "mnist": ("mnist",),
    "fashion_mnist": ("fashion_mnist", "fashion-mnist"),
    "cifar10": ("cifar-10-batches-bin", "cifar-10-batches-py", "cifar10", "cifar-10",
                "cifar10/cifar-10-batches-bin", "cifar10/cifar-10-batches-py",
                "cifar-10/cifar-10-batches-bin", "cifar-10/cifar-10-batches-py"),
}


def load(name, split, data_dir=None):
    """Dataset `name` ('mnist', 'fashion_mnist', 'cifar10'), `split` ('train', 'test') -> (images, labels).

    images (N, 28, 28, 1), or (N, 32, 32, 3) RGB for CIFAR-10, uint8; labels (N,) int32 in 0..9. Raises
    DataFormatError naming the file for a corrupt, truncated or incomplete local copy, and FileNotFoundError
    listing every place looked (and why TFDS failed) when no source has the data.
    """
    if name not in IMAGE_SHAPES:
        raise ValueError(f"unknown dataset {name!r}: expected one of {', '.join(IMAGE_SHAPES)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} for {name}: expected 'train' or 'test'")
    places = []
    for where, root, subdirs in _local_roots(name, data_dir):
        for directory in [root / sub for sub in subdirs]:
            found = _read_directory(directory, name, split)
            if found is not None:
                return _checked(*found, name, directory)
        places.append(f"{where}: {', '.join(str(root / sub) for sub in subdirs)}" if root else where)
    log.warning("no local copy of %s %r; asking TensorFlow Datasets (it downloads on first use; without a "
                "network it retries for a few minutes, then fails)", name, split)
    try:
        source = _tfds_source(name, split)
    except Exception as e:  # TFDS fails in many ways offline: missing TensorFlow, DownloadError, ConnectionError
        first_line = (str(e).splitlines() or [""])[0]
        places.append(f"TensorFlow Datasets: tfds.data_source({name!r}, split={split!r}) failed with "
                      f"{type(e).__name__}: {first_line}")
        raise FileNotFoundError(_not_found_message(name, split, places)) from e
    records = [source[i] for i in range(len(source))]
    images = np.stack([r["image"] for r in records]).astype(np.uint8)
    labels = np.array([r["label"] for r in records], np.int32)
    return _checked(images, labels, name, f"TensorFlow Datasets {name!r}")


def _local_roots(name, data_dir):
    """(description, root or None, sub-folders to search) for each local source, in search order."""
    roots = []
    for where, root in (("data_dir (--data-dir)", data_dir or None), (f"${ENV_VAR}", os.environ.get(ENV_VAR) or None)):
        if root is None:
            roots.append((f"{where}: not given", None, ()))
            continue
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"{where}={root}: no such directory")
        # The root itself may hold the files, unless it is named after another dataset (MNIST is no Fashion-MNIST).
        others = {sub.split("/")[0] for other, subs in SUBDIRS.items() if other != name for sub in subs}
        roots.append((f"{where}={root}", root, SUBDIRS[name] if root.name in others else (".", *SUBDIRS[name])))
    roots.append((f"Debian's {DEBIAN_ROOT}", DEBIAN_ROOT, SUBDIRS[name]))
    return roots


def _find_files(directory, required):
    """One existing path for each entry of `required` (alternative file names), or None when none exists.

    Raises DataFormatError when only some exist: an incomplete copy must not pass for a smaller dataset.
    """
    found = [next((directory / n for n in names if (directory / n).is_file()), None) for names in required]
    if all(path is None for path in found):
        return None
    missing = [names[0] for names, path in zip(required, found) if path is None]
    if missing:
        present = [path.name for path in found if path is not None]
        raise DataFormatError(f"{directory}: incomplete dataset, has {present} but is missing {missing}")
    return found


def _read_directory(directory, name, split):
    """(images, labels) of `split` from the original files in `directory`, or None if it holds none of them."""
    if not directory.is_dir():
        return None
    if name == "cifar10":
        for suffix, reader in ((".bin", read_cifar10_binary), ("", read_cifar10_python)):
            paths = _find_files(directory, [[batch + suffix] for batch in CIFAR10_BATCHES[split]])
            if paths:
                images, labels = zip(*[reader(path) for path in paths])
                return np.concatenate(images), np.concatenate(labels)
        return None
    prefix = IDX_PREFIX[split]
    paths = _find_files(directory, [[f"{prefix}-{kind}{sep}idx{ndim}-ubyte{gz}" for sep in "-." for gz in ("", ".gz")]
                                    for kind, ndim in (("images", 3), ("labels", 1))])
    return read_idx_pair(*paths) if paths else None


def _checked(images, labels, name, where):
    """Images and labels after checking the image shape and label range expected of `name`."""
    if images.shape[1:] != IMAGE_SHAPES[name]:
        raise DataFormatError(f"{where}: {name} images must be {IMAGE_SHAPES[name]}, found {images.shape[1:]}")
    if labels.size and not 0 <= labels.min() <= labels.max() <= 9:
        raise DataFormatError(f"{where}: labels must lie in 0..9, found {labels.min()}..{labels.max()}")
    return images, labels


def _tfds_source(name, split):
    """TensorFlow Datasets' random-access source for the split; downloads and prepares it on first use."""
    import tensorflow_datasets as tfds  # slow to import: only on this path

    return tfds.data_source(name, split=split, builder_kwargs={"file_format": "array_record"})


def _not_found_message(name, split, places):
    """What was looked for, where, and the ways to make the data available."""
    if name == "cifar10":
        batches = "test_batch" if split == "test" else "data_batch_1..5"
        files = f"{batches}.bin (binary batches) or {batches} (python batches)"
    else:
        files = f"{IDX_PREFIX[split]}-images-idx3-ubyte[.gz] and {IDX_PREFIX[split]}-labels-idx1-ubyte[.gz]"
    fixes = [f"pass --data-dir DIR (data_dir=DIR in Python) with those files in DIR or DIR/{SUBDIRS[name][0]}",
             f"set {ENV_VAR}=DIR, likewise"]
    if name in DEBIAN_PACKAGES:
        fixes.append(f"apt-get install {DEBIAN_PACKAGES[name]} (installs it under {DEBIAN_ROOT})")
    fixes.append("connect to the network, `pip install tensorflow pillow` (TFDS prepares data with TensorFlow and "
                 "decodes it with Pillow) and TFDS downloads and caches it")
    return "\n".join([f"no local copy of {name} {split!r} found, and TensorFlow Datasets could not provide it.",
                      f"Looked for {files} in:", *[f"  - {p}" for p in places],
                      "To fix, do one of:", *[f"  - {f}" for f in fixes]])
