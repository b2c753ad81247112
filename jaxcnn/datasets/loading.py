"""Load MNIST, Fashion-MNIST and CIFAR-10 as images (N, H, W, C) uint8 and labels (N,) int32.

Where the data is found: a `data_dir` given is the only place looked; otherwise $JAXCNN_DATA_DIR, when set, is
the only place looked; otherwise Debian's /usr/share/datasets/<name> (`apt-get install dataset-fashion-mnist`),
then the files jaxcnn downloaded before (MNIST, Fashion-MNIST: `download.cache_dir`), then TensorFlow Datasets,
then (MNIST, Fashion-MNIST) the original files are downloaded (`download`). A directory holds the datasets'
original formats (IDX, gzipped or not; CIFAR-10 binary or python batches), in itself or in a sub-folder named
after the dataset (`mnist/`, `fashion-mnist/`, `cifar-10-batches-py/`, ...); a directory that is given and holds
none of them is an error at once.

TensorFlow Datasets uses what it has prepared under $TFDS_DATA_DIR (default ~/tensorflow_datasets); to download
and prepare a dataset it needs TensorFlow and Pillow (`pip install -e ".[download]"`) and a network. Without
either it is skipped at once (no TFDS download is tried), and a failed TFDS download leaves nothing behind there.
"""
import contextlib
import logging
import os
import shutil
import socket
import threading
from importlib.util import find_spec
from pathlib import Path

import numpy as np

from ..settings import Setting, SettingError
from . import download
from .download import DownloadError
from .formats import (
    CIFAR10_BATCHES,
    IDX_PREFIX,
    DataFormatError,
    read_cifar10_binary,
    read_cifar10_python,
    read_idx_pair,
)

log = logging.getLogger(__name__)
ENV_VAR = "JAXCNN_DATA_DIR"
DEBIAN_ROOT = Path("/usr/share/datasets")
DEBIAN_PACKAGES = {"fashion_mnist": "dataset-fashion-mnist"}
IMAGE_SHAPES = {"mnist": (28, 28, 1), "fashion_mnist": (28, 28, 1), "cifar10": (32, 32, 3)}
CAFFE_PIXEL_SCALE = 0.00390625  # Caffe's transform_param { scale } for MNIST: uint8 pixels to [0, 1)
SPLITS = ("train", "test")
# Sub-folders of a data root that may hold a dataset's files, in search order.
SUBDIRS = {
    "mnist": ("mnist",),
    "fashion_mnist": ("fashion_mnist", "fashion-mnist"),
    "cifar10": ("cifar-10-batches-bin", "cifar-10-batches-py", "cifar10", "cifar-10",
                "cifar10/cifar-10-batches-bin", "cifar10/cifar-10-batches-py",
                "cifar-10/cifar-10-batches-bin", "cifar-10/cifar-10-batches-py"),
}
# Where TensorFlow Datasets downloads each dataset from (host, port): reachable or not, checked before asking it.
DOWNLOAD_HOSTS = {"mnist": ("storage.googleapis.com", 443),
                  "fashion_mnist": ("fashion-mnist.s3-website.eu-central-1.amazonaws.com", 80),
                  "cifar10": ("www.cs.toronto.edu", 443)}
DOWNLOAD_PACKAGES = {"tensorflow": "TensorFlow", "PIL": "Pillow"}  # what TFDS needs to prepare a dataset
INSTALL_DOWNLOAD = 'pip install -e ".[download]"'
NETWORK_TIMEOUT = 3.0  # seconds


class DataNotFound(SettingError, FileNotFoundError):
    """No place looked holds the dataset: the message lists each place and what to do. setting: 'data_dir' when
    the data_dir given is at fault (None when none was given)."""


class DownloadFailed(DataNotFound, DownloadError):
    """No place looked holds the dataset, and downloading its original files failed (the cause: the
    DownloadError)."""


def load(name, split, data_dir=None):
    """Dataset `name` ('mnist', 'fashion_mnist', 'cifar10'), `split` ('train', 'test') -> (images, labels).

    Args:
      name, split: which data.
      data_dir: a directory holding the original files (or a sub-folder with them); when given (not None or
        ''), the only place looked, whatever $JAXCNN_DATA_DIR says.
    Returns:
      images (N, 28, 28, 1), or (N, 32, 32, 3) RGB for CIFAR-10, uint8; labels (N,) int32 in 0..9.
    Raises:
      DataFormatError naming the file for a corrupt, truncated or incomplete local copy; DataNotFound (a
      FileNotFoundError) listing every place looked, and what to do, when none has the data; DownloadFailed (a
      DataNotFound and a download.DownloadError), likewise, when downloading MNIST's or Fashion-MNIST's original
      files failed.
    """
    if name not in IMAGE_SHAPES:
        raise ValueError(f"unknown dataset {name!r}: expected one of {', '.join(IMAGE_SHAPES)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} for {name}: expected 'train' or 'test'")
    env = os.environ.get(ENV_VAR) or None
    for where, root, setting in ((Setting("data_dir", data_dir), data_dir or None, "data_dir"),
                                 (f"${ENV_VAR}={env}", env, None)):
        if root is not None:  # given: the only place looked
            if not Path(root).is_dir():
                raise DataNotFound([where, ": no such directory"], setting)
            found, places = _search(where, Path(root), _subdirs(name, Path(root)), name, split)
            if found is None:
                raise DataNotFound(_not_found_message(name, split, places, ["nothing usable in ", where]), setting)
            return found
    found, places = _search(f"Debian's {DEBIAN_ROOT}", DEBIAN_ROOT, SUBDIRS[name], name, split)
    if found is not None:
        return found
    places.insert(0, [Setting("data_dir"), f" and ${ENV_VAR}: not given"])
    originals = _download_files(name, split)
    if originals:
        cached = [download.cached(f, download.FILES[name], download.cache_dir(name)) for f in originals]
        if all(cached):
            return _read_downloads(name, cached)
        places.append([f"jaxcnn's downloads: {download.cache_dir(name)}"])
    try:
        return _from_tfds(name, split)
    except Exception as e:  # TFDS fails in many ways offline: missing TensorFlow, its DownloadError, ConnectionError
        first_line = (str(e).splitlines() or [""])[0]
        places.append([f"TensorFlow Datasets: {type(e).__name__}: {first_line}"])
        if not originals:
            raise DataNotFound(_not_found_message(name, split, places, ["TensorFlow Datasets could not provide it"])) \
                from e
        log.debug("TensorFlow Datasets cannot provide %s (%s): downloading the original files", name, first_line)
    try:
        paths = [download.fetch(f, download.MIRRORS[name], download.FILES[name], download.cache_dir(name))
                 for f in originals]
    except DownloadError as e:
        places.append(["the original files' mirrors: the download failed"])
        raise DownloadFailed(_not_found_message(name, split, places, [str(e)])) from e
    return _read_downloads(name, paths)


def _download_files(name, split):
    """The original files of `split` that can be downloaded (the IDX images and labels), or () (CIFAR-10)."""
    if name not in download.FILES:
        return ()
    return tuple(f"{IDX_PREFIX[split]}-{kind}-idx{ndim}-ubyte.gz" for kind, ndim in (("images", 3), ("labels", 1)))


def _read_downloads(name, paths):
    """(images, labels) from the downloaded IDX images and labels files."""
    return _checked(*read_idx_pair(*paths), name, paths[0].parent)


def _from_tfds(name, split):
    """(images, labels) of `split` from TensorFlow Datasets."""
    source = _tfds_source(name, split)
    records = [source[i] for i in range(len(source))]
    images = np.stack([r["image"] for r in records]).astype(np.uint8)
    labels = np.array([r["label"] for r in records], np.int32)
    return _checked(images, labels, name, f"TensorFlow Datasets {name!r}")


def _subdirs(name, root):
    """The folders of `root` to search: itself (unless named after another dataset: MNIST is no Fashion-MNIST)
    and the sub-folders named after the dataset."""
    others = {sub.split("/")[0] for other, subs in SUBDIRS.items() if other != name for sub in subs}
    return SUBDIRS[name] if root.name in others else (".", *SUBDIRS[name])


def _search(where, root, subdirs, name, split):
    """-> ((images, labels) or None, [the parts of a line naming the places looked (see DataNotFound)])."""
    for directory in [root / sub for sub in subdirs]:
        found = _read_directory(directory, name, split)
        if found is not None:
            return _checked(*found, name, directory), []
    return None, [[where, f": {', '.join(str(root / sub) for sub in subdirs)}"]]


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
    """TensorFlow Datasets' random-access source for the split: what it has prepared, else downloaded and
    prepared now when it can be (TensorFlow and Pillow installed, the download host reachable), else an error
    at once. A failed download leaves no new files in TFDS's data directory."""
    import tensorflow_datasets as tfds  # slow to import: only on this path

    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)  # is_prepared() warns of the missing folder it checks for
    try:
        builder = tfds.builder(name, file_format="array_record")
        prepared = builder.is_prepared()
    finally:
        absl.setLevel(level)
    if not prepared:
        missing = _missing_packages()
        if missing:
            raise ModuleNotFoundError(f"{' and '.join(missing)} not installed, which TFDS needs to prepare the data: "
                                      f"{INSTALL_DOWNLOAD}")
        host, port = DOWNLOAD_HOSTS[name]
        if not _reachable(host, port):
            raise ConnectionError(f"no network: {host}:{port} cannot be reached")
        log.warning("no local copy of %s; TensorFlow Datasets downloads and prepares it", name)
        with _removed_on_failure(Path(builder.data_dir).parents[1]):
            builder.download_and_prepare()
    return builder.as_data_source(split=split)


def _missing_packages() -> list[str]:
    """The names of what TFDS needs to prepare a dataset that is not installed."""
    return [what for module, what in DOWNLOAD_PACKAGES.items() if find_spec(module) is None]


def _reachable(host, port, timeout=NETWORK_TIMEOUT) -> bool:
    """Whether a TCP connection to host:port opens within `timeout` seconds (name lookup included)."""
    result = []

    def connect():
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
            result.append(True)

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result)


def _entries(root, depth=3):
    """root and the paths under it, `depth` levels deep."""
    paths = {root} if root.exists() else set()
    if depth and root.is_dir():
        for child in root.iterdir():
            paths |= _entries(child, depth - 1)
    return paths


@contextlib.contextmanager
def _removed_on_failure(root):
    """If the block fails, remove what appeared under `root` (3 levels deep) while it ran."""
    before = _entries(root)
    try:
        yield
    except BaseException:
        for path in sorted(_entries(root) - before, key=lambda p: len(p.parts)):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            elif path.exists():
                path.unlink()
        raise


def _not_found_message(name, split, places, why):
    """What was looked for, where, and the ways to make the data available, as DataNotFound's parts (places:
    the parts of each place's line; why: the parts of the reason)."""
    if name == "cifar10":
        batches = "test_batch" if split == "test" else "data_batch_1..5"
        files = f"{batches}.bin (binary batches) or {batches} (python batches)"
    else:
        files = f"{IDX_PREFIX[split]}-images-idx3-ubyte[.gz] and {IDX_PREFIX[split]}-labels-idx1-ubyte[.gz]"
    fixes = [["give ", Setting("data_dir", "DIR"), f", a directory with those files in DIR or DIR/{SUBDIRS[name][0]}"],
             [f"or set {ENV_VAR}=DIR, likewise"]]
    if name in DEBIAN_PACKAGES:
        fixes.append([f"or apt-get install {DEBIAN_PACKAGES[name]} (installs it under {DEBIAN_ROOT})"])
    if name in download.FILES:
        fixes.append([f"or copy the original files (from {download.MIRRORS[name][0]}) into "
                      f"{download.cache_dir(name)}, or run again where the mirrors can be reached"])
    else:
        fixes.append([f"or, with a network, {INSTALL_DOWNLOAD} (TensorFlow and Pillow) and TensorFlow Datasets "
                      "downloads and caches it"])
    lines = [[f"no local copy of {name} {split!r} found: ", *why, "."], [f"Looked for {files} in:"],
             *[["  - ", *p] for p in places], ["To fix:"], *[["  - ", *f] for f in fixes]]
    return [part for i, line in enumerate(lines) for part in (["\n"] if i else []) + line]
