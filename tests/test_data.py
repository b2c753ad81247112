"""jaxcnn.datasets (loading and formats): real MNIST, synthetic files in the original formats, search order, TFDS.

References are independent of the readers: header fields and pixels are taken from raw file bytes at the offsets
the IDX and CIFAR-10 format descriptions give, and synthetic files are built byte by byte here.
"""
import gzip
import importlib.util
import os
import pickle
import socket
import struct
from pathlib import Path

import dataset_writers as writers
import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxcnn.datasets import download
from jaxcnn.datasets import loading as data
from jaxcnn.datasets.formats import DataFormatError, read_cifar10_python, read_idx

MNIST_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
REAL_DEBIAN_ROOT = data.DEBIAN_ROOT
REAL_TFDS_SOURCE = data._tfds_source
needs_mnist = pytest.mark.skipif(not MNIST_DIR.is_dir(), reason=f"real MNIST not at {MNIST_DIR}")


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No test sees the caller's $JAXCNN_DATA_DIR, the real Debian datasets or jaxcnn's download cache (it is
    tmp_path/cache), or reaches TFDS or a mirror unless it says so; the calls that would have reached TFDS are
    recorded in the returned list, and the URLs that would have been downloaded in its attribute `urls`."""
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    monkeypatch.setattr(data, "DEBIAN_ROOT", tmp_path / "debian")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    calls = Calls()

    def offline(name, split):
        calls.append((name, split))
        raise ConnectionError("no network (test)")

    def unreachable(url, *args):
        calls.urls.append(url)
        raise OSError("no network (test)")

    monkeypatch.setattr(data, "_tfds_source", offline)
    monkeypatch.setattr(download, "_download", unreachable)
    return calls


class Calls(list):
    """TFDS calls (name, split), and the URLs asked for in .urls."""

    def __init__(self):
        super().__init__()
        self.urls = []


@pytest.fixture
def tfds_dir(monkeypatch, tmp_path):
    """TFDS's real code path, with its data directory in tmp_path/tfds (holding one file of the user's)."""
    root = tmp_path / "tfds"
    root.mkdir()
    (root / "keep.txt").write_text("the user's")
    monkeypatch.setattr(tfds.core.constants, "DATA_DIR", str(root))
    monkeypatch.setattr(data, "_tfds_source", REAL_TFDS_SOURCE)
    return root


def raw_bytes(path):
    """A file's bytes, gunzipped if .gz."""
    return gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()


def synthetic(n, shape, seed):
    """n random uint8 images of `shape` and labels in 0..9."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, *shape), dtype=np.uint8), rng.integers(0, 10, n).astype(np.int32)


# --- real MNIST -----------------------------------------------------------------------------------------------

@needs_mnist
@pytest.mark.parametrize("split, stem, n", [("train", "train", 24000), ("test", "t10k", 10000)])
def test_real_mnist_matches_file_bytes(split, stem, n):
    images, labels = data.load("mnist", split, data_dir=MNIST_DIR)
    assert images.shape == (n, 28, 28, 1) and images.dtype == np.uint8
    assert labels.shape == (n,) and labels.dtype == np.int32
    image_bytes = raw_bytes(MNIST_DIR / f"{stem}-images-idx3-ubyte.gz")
    label_bytes = raw_bytes(MNIST_DIR / f"{stem}-labels-idx1-ubyte.gz")
    assert struct.unpack(">4I", image_bytes[:16]) == (0x803, n, 28, 28)
    assert struct.unpack(">2I", label_bytes[:8]) == (0x801, n)
    rng = np.random.default_rng(0)
    for i, r, c in zip(rng.integers(0, n, 50), rng.integers(0, 28, 50), rng.integers(0, 28, 50)):
        assert images[i, r, c, 0] == image_bytes[16 + i * 784 + r * 28 + c]
        assert labels[i] == label_bytes[8 + i]
    assert images.max() == 255 and images.min() == 0
    counts = np.bincount(labels, minlength=10)
    assert counts.size == 10 and (counts > 0.07 * n).all() and (counts < 0.13 * n).all()


@needs_mnist
def test_first_mnist_test_label_is_seven():
    _, labels = data.load("mnist", "test", data_dir=MNIST_DIR)
    with gzip.open(MNIST_DIR / "t10k-labels-idx1-ubyte.gz") as f:
        first = f.read(9)[8]
    assert labels[0] == first == 7


@needs_mnist
def test_uncompressed_and_dotted_idx_names_load_the_same(tmp_path):
    expected = data.load("mnist", "test", data_dir=MNIST_DIR)
    for kind, ndim in (("images", 3), ("labels", 1)):  # one file plain, the other dotted: both are accepted
        name = f"t10k-{kind}-idx{ndim}-ubyte" if kind == "images" else f"t10k-{kind}.idx{ndim}-ubyte"
        (tmp_path / name).write_bytes(raw_bytes(MNIST_DIR / f"t10k-{kind}-idx{ndim}-ubyte.gz"))
    images, labels = data.load("mnist", "test", data_dir=tmp_path)
    np.testing.assert_array_equal(images, expected[0])
    np.testing.assert_array_equal(labels, expected[1])


# --- Fashion-MNIST from Debian's package ---------------------------------------------------------------------

@pytest.mark.skipif(not (REAL_DEBIAN_ROOT / "fashion-mnist").is_dir(),
                    reason="Fashion-MNIST not installed: apt-get install dataset-fashion-mnist")
@pytest.mark.parametrize("split, stem, n", [("train", "train", 60000), ("test", "t10k", 10000)])
def test_debian_fashion_mnist(monkeypatch, split, stem, n):
    monkeypatch.setattr(data, "DEBIAN_ROOT", REAL_DEBIAN_ROOT)
    images, labels = data.load("fashion_mnist", split)
    assert images.shape == (n, 28, 28, 1) and images.dtype == np.uint8 and labels.dtype == np.int32
    np.testing.assert_array_equal(np.bincount(labels), [n // 10] * 10)  # Fashion-MNIST is exactly balanced
    label_bytes = raw_bytes(REAL_DEBIAN_ROOT / "fashion-mnist" / f"{stem}-labels-idx1-ubyte.gz")
    image_bytes = raw_bytes(REAL_DEBIAN_ROOT / "fashion-mnist" / f"{stem}-images-idx3-ubyte.gz")
    assert labels[0] == label_bytes[8] and labels[-1] == label_bytes[-1]
    assert images[-1, 27, 27, 0] == image_bytes[-1] and images[0, 14, 3, 0] == image_bytes[16 + 14 * 28 + 3]


# --- IDX format ----------------------------------------------------------------------------------------------

def test_write_idx_bytes_follow_the_format(tmp_path):
    array = np.arange(6, dtype=np.uint8).reshape(2, 3)
    writers.write_idx(tmp_path / "a-idx2-ubyte", array)
    assert (tmp_path / "a-idx2-ubyte").read_bytes() == bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 0, 1, 2, 3, 4, 5])
    writers.write_idx(tmp_path / "a-idx2-ubyte.gz", array)
    assert gzip.decompress((tmp_path / "a-idx2-ubyte.gz").read_bytes()) == (tmp_path / "a-idx2-ubyte").read_bytes()
    with pytest.raises(ValueError, match="uint8"):
        writers.write_idx(tmp_path / "b", array.astype(np.int32))


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip(tmp_path, gz):
    for split, seed in (("train", 1), ("test", 2)):
        images, labels = synthetic(7, (28, 28, 1), seed)
        writers.write_mnist(tmp_path, split, images, labels, gz=gz)
        got_images, got_labels = data.load("fashion_mnist", split, data_dir=tmp_path)
        np.testing.assert_array_equal(got_images, images)
        np.testing.assert_array_equal(got_labels, labels)
        assert got_labels.dtype == np.int32


def idx_file(path, magic, dims, n_data):
    """Hand-built IDX file: magic, dims, then n_data bytes."""
    path.write_bytes(struct.pack(f">{len(dims) + 1}I", magic, *dims) + bytes(range(256)) * (n_data // 256)
                     + bytes(n_data % 256))
    return path


@pytest.mark.parametrize("magic, dims, n_data, message", [
    (0x803, (3, 28, 28), 3 * 784 - 100, r"shape \(3, 28, 28\), i.e. 2352 data bytes, but the file holds 2252 "
                                         r"\(truncated\)"),
    (0x803, (3, 28, 28), 3 * 784 + 1, r"holds 2353 \(trailing bytes\)"),
    (0x801, (3, 28, 28), 3 * 784, r"magic number 0x00000801, expected 0x00000803"),
    (0xdeadbeef, (3, 28, 28), 3 * 784, r"magic number 0xdeadbeef"),
])
def test_bad_idx_errors_name_the_file(tmp_path, magic, dims, n_data, message):
    path = idx_file(tmp_path / "x-idx3-ubyte", magic, dims, n_data)
    with pytest.raises(DataFormatError, match=message) as err:
        read_idx(path, 3)
    assert str(path) in str(err.value)


def test_short_idx_header(tmp_path):
    (tmp_path / "h").write_bytes(b"\x00\x00\x08")
    with pytest.raises(DataFormatError, match=r"h: 3 bytes, too short for a 16-byte IDX header"):
        read_idx(tmp_path / "h", 3)


def test_truncated_and_corrupt_gzip(tmp_path):
    images, labels = synthetic(5, (28, 28), 3)
    images_path, labels_path = writers.write_mnist(tmp_path, "test", images, labels)
    blob = images_path.read_bytes()
    images_path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataFormatError, match="corrupt or truncated gzip") as err:
        data.load("mnist", "test", data_dir=tmp_path)
    assert str(images_path) in str(err.value)
    images_path.write_bytes(b"this is not gzip")
    with pytest.raises(DataFormatError, match="corrupt or truncated gzip"):
        data.load("mnist", "test", data_dir=tmp_path)


def test_truncated_real_file_is_an_error_not_fewer_examples(tmp_path):
    images, labels = synthetic(6, (28, 28), 4)
    images_path, _ = writers.write_mnist(tmp_path, "train", images, labels, gz=False)
    images_path.write_bytes(images_path.read_bytes()[:-784])  # exactly one image short: still an error
    with pytest.raises(DataFormatError, match=r"train-images-idx3-ubyte: .*4704 data bytes.*holds 3920 \(truncated\)"):
        data.load("mnist", "train", data_dir=tmp_path)


def test_image_label_count_mismatch(tmp_path):
    images, labels = synthetic(5, (28, 28), 5)
    images_path, labels_path = writers.write_mnist(tmp_path, "test", images, labels)
    writers.write_idx(labels_path, labels[:4].astype(np.uint8))
    with pytest.raises(DataFormatError, match="holds 5 images but .* holds 4 labels") as err:
        data.load("mnist", "test", data_dir=tmp_path)
    assert str(images_path) in str(err.value) and str(labels_path) in str(err.value)


def test_missing_label_file_is_an_error(tmp_path):
    images, labels = synthetic(5, (28, 28), 6)
    _, labels_path = writers.write_mnist(tmp_path, "train", images, labels)
    labels_path.unlink()
    with pytest.raises(DataFormatError, match=r"incomplete dataset.*missing \['train-labels-idx1-ubyte'\]"):
        data.load("mnist", "train", data_dir=tmp_path)


def test_wrong_image_size_and_label_range(tmp_path):
    images, labels = synthetic(5, (32, 32), 7)
    writers.write_mnist(tmp_path / "a", "test", images, labels)
    with pytest.raises(DataFormatError, match=r"mnist images must be \(28, 28, 1\), found \(32, 32, 1\)"):
        data.load("mnist", "test", data_dir=tmp_path / "a")
    images, labels = synthetic(5, (28, 28), 7)
    _, labels_path = writers.write_mnist(tmp_path / "b", "test", images, labels)
    writers.write_idx(labels_path, np.array([0, 1, 2, 12, 3], np.uint8))
    with pytest.raises(DataFormatError, match=r"labels must lie in 0..9, found 0..12"):
        data.load("mnist", "test", data_dir=tmp_path / "b")


# --- CIFAR-10 formats ----------------------------------------------------------------------------------------

def hand_record(label, seed):
    """One CIFAR-10 binary record built from the format description: label byte, then R, G, B 32x32 planes."""
    return bytes([label]) + np.random.default_rng(seed).integers(0, 256, 3072, dtype=np.uint8).tobytes()


def test_cifar_binary_planes_become_hwc(tmp_path):
    records = [hand_record(3, 0), hand_record(9, 1)]
    (tmp_path / "test_batch.bin").write_bytes(b"".join(records))
    images, labels = data.load("cifar10", "test", data_dir=tmp_path)
    assert images.shape == (2, 32, 32, 3) and images.dtype == np.uint8 and images.flags.c_contiguous
    np.testing.assert_array_equal(labels, [3, 9])
    # pixel (row 5, column 17) of image 1: red at 1 + 5*32 + 17, green 1024 further, blue 2048 further
    assert tuple(images[1, 5, 17]) == (records[1][178], records[1][1202], records[1][2226])
    assert tuple(images[0, 31, 0]) == (records[0][993], records[0][2017], records[0][3041])


def test_cifar_python_batch_read_as_written_by_hand(tmp_path):
    rows = np.random.default_rng(2).integers(0, 256, (4, 3072), dtype=np.uint8)
    batch = {b"batch_label": b"testing batch 1 of 1", b"labels": [0, 5, 9, 1], b"data": rows}
    (tmp_path / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
    images, labels = data.load("cifar10", "test", data_dir=tmp_path)
    np.testing.assert_array_equal(labels, [0, 5, 9, 1])
    assert tuple(images[2, 5, 17]) == (rows[2, 177], rows[2, 1201], rows[2, 2225])


def test_cifar_python_batch_from_old_numpy(tmp_path):
    """The original archive's pickles name numpy.core.multiarray (Python 2, numpy 1)."""
    rows = np.arange(2 * 3072).astype(np.uint8).reshape(2, 3072)
    blob = pickle.dumps({b"data": rows, b"labels": [4, 2]}, protocol=2)
    (tmp_path / "b").write_bytes(blob.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    images, labels = read_cifar10_python(tmp_path / "b")
    np.testing.assert_array_equal(labels, [4, 2])
    assert images[1, 0, 1, 2] == rows[1, 2049]


@pytest.mark.parametrize("fmt, subdir", [("binary", "cifar-10-batches-bin"), ("python", "cifar-10-batches-py")])
def test_cifar_round_trip(tmp_path, fmt, subdir):
    for split, n, files in (("train", 13, 5), ("test", 4, 1)):
        images, labels = synthetic(n, (32, 32, 3), n)
        paths = writers.write_cifar10(tmp_path / subdir, split, images, labels, fmt=fmt)
        assert len(paths) == files
        got_images, got_labels = data.load("cifar10", split, data_dir=tmp_path)
        np.testing.assert_array_equal(got_images, images)
        np.testing.assert_array_equal(got_labels, labels)
        assert got_labels.dtype == np.int32


def test_written_cifar_matches_the_format(tmp_path):
    images, labels = synthetic(5, (32, 32, 3), 8)
    binary = writers.write_cifar10(tmp_path / "bin", "train", images, labels)
    record = binary[2].read_bytes()  # data_batch_3 holds example 2 alone
    assert binary[2].name == "data_batch_3.bin" and len(record) == 3073 and record[0] == labels[2]
    assert record[1 + 2 * 1024 + 7 * 32 + 30] == images[2, 7, 30, 2]
    python = writers.write_cifar10(tmp_path / "py", "test", images, labels, fmt="python")
    batch = pickle.loads(python[0].read_bytes(), encoding="bytes")
    assert batch[b"labels"] == labels.tolist() and batch[b"data"].shape == (5, 3072)
    assert batch[b"data"][4, 1024 + 31 * 32 + 1] == images[4, 31, 1, 1]


@pytest.mark.parametrize("args, message", [
    (("train", np.zeros((4, 32, 32, 3), np.uint8), np.zeros(4)), "needs at least 5 examples"),
    (("test", np.zeros((4, 32, 32), np.uint8), np.zeros(4)), r"expected images \(N, 32, 32, 3\) uint8"),
    (("test", np.zeros((4, 32, 32, 3), np.uint8), np.full(4, 10)), r"labels must lie in 0..9"),
    (("val", np.zeros((4, 32, 32, 3), np.uint8), np.zeros(4)), "split must be 'train' or 'test'"),
])
def test_write_cifar10_rejects_bad_input(tmp_path, args, message):
    with pytest.raises(ValueError, match=message):
        writers.write_cifar10(tmp_path, *args)


def test_truncated_cifar_binary(tmp_path):
    (tmp_path / "test_batch.bin").write_bytes(hand_record(1, 0) + hand_record(2, 1)[:-10])
    with pytest.raises(DataFormatError, match=r"test_batch.bin: 6136 bytes is not a positive multiple of the "
                                              r"3073-byte CIFAR-10 record"):
        data.load("cifar10", "test", data_dir=tmp_path)


def test_incomplete_cifar_train_set(tmp_path):
    images, labels = synthetic(5, (32, 32, 3), 9)
    writers.write_cifar10(tmp_path, "train", images, labels)[3].unlink()
    with pytest.raises(DataFormatError, match=r"missing \['data_batch_4.bin'\]"):
        data.load("cifar10", "train", data_dir=tmp_path)


def test_bad_cifar_python_batches(tmp_path):
    blob = pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 2]}, protocol=2)
    (tmp_path / "cut").write_bytes(blob[:-20])
    with pytest.raises(DataFormatError, match="cut: not a readable CIFAR-10 python batch"):
        read_cifar10_python(tmp_path / "cut")
    (tmp_path / "nolabels").write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)}, protocol=2))
    with pytest.raises(DataFormatError, match=r"nolabels: CIFAR-10 python batch lacks \[b'labels'\]"):
        read_cifar10_python(tmp_path / "nolabels")
    (tmp_path / "shape").write_bytes(pickle.dumps({b"data": np.zeros((2, 3000), np.uint8), b"labels": [1, 2]}))
    with pytest.raises(DataFormatError, match=r"shape: expected b'data' \(N, 3072\) uint8"):
        read_cifar10_python(tmp_path / "shape")


class _Exploit:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return os.mkdir, (self.target,)


def test_cifar_python_batch_cannot_run_code(tmp_path):
    target = tmp_path / "pwned"
    (tmp_path / "evil").write_bytes(pickle.dumps({b"data": _Exploit(str(target)), b"labels": []}))
    with pytest.raises(DataFormatError, match="refusing to load"):
        read_cifar10_python(tmp_path / "evil")
    assert not target.exists()


# --- where load looks ----------------------------------------------------------------------------------------

def marked_mnist(directory, mark, split="test"):
    """Synthetic MNIST whose labels are all `mark`, to tell sources apart."""
    images, _ = synthetic(3, (28, 28), mark)
    writers.write_mnist(directory, split, images, np.full(3, mark))


def test_search_order(monkeypatch, tmp_path, isolated):
    marked_mnist(tmp_path / "given", 1)
    marked_mnist(tmp_path / "env" / "mnist", 2)  # a parent holding mnist/
    marked_mnist(tmp_path / "debian" / "mnist", 3)
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "env"))
    assert data.load("mnist", "test", data_dir=tmp_path / "given")[1].tolist() == [1, 1, 1]
    assert data.load("mnist", "test")[1].tolist() == [2, 2, 2]
    assert data.load("mnist", "test", data_dir="")[1].tolist() == [2, 2, 2]  # an empty data_dir: not given
    monkeypatch.delenv(data.ENV_VAR)
    assert data.load("mnist", "test")[1].tolist() == [3, 3, 3]
    monkeypatch.setenv(data.ENV_VAR, "")  # set but empty: as if unset
    assert data.load("mnist", "test")[1].tolist() == [3, 3, 3]
    assert not isolated and not isolated.urls


def test_a_given_directory_wins_over_the_environment(monkeypatch, tmp_path):
    marked_mnist(tmp_path / "given", 1)
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "stale"))  # no such directory: ignored when data_dir is given
    assert data.load("mnist", "test", data_dir=tmp_path / "given")[1].tolist() == [1, 1, 1]
    marked_mnist(tmp_path / "env", 2)
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "env"))
    assert data.load("mnist", "test", data_dir=tmp_path / "given")[1].tolist() == [1, 1, 1]


@pytest.mark.parametrize("how", ["data_dir", "environment"])
def test_a_given_directory_with_nothing_usable_fails_at_once(monkeypatch, tmp_path, isolated, how):
    """No fallback to the environment, Debian's copy or TFDS: the directory asked for is the only place looked."""
    (tmp_path / "empty").mkdir()
    marked_mnist(tmp_path / "env", 2)
    marked_mnist(tmp_path / "debian" / "mnist", 3)
    if how == "data_dir":
        monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "env"))
        where, kwargs = "data_dir", {"data_dir": tmp_path / "empty"}
    else:
        monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "empty"))
        where, kwargs = "$JAXCNN_DATA_DIR", {}
    with pytest.raises(FileNotFoundError) as err:
        data.load("mnist", "test", **kwargs)
    message = str(err.value)
    assert message.splitlines()[0] == (f"no local copy of mnist 'test' found: nothing usable in "
                                       f"{where}={tmp_path / 'empty'}.")
    assert f"  - {where}={tmp_path / 'empty'}: {tmp_path / 'empty'}, {tmp_path / 'empty' / 'mnist'}" in message
    assert str(tmp_path / "env") not in message and "debian" not in message and not isolated and not isolated.urls


def test_debian_hyphenated_fashion_mnist_dir(tmp_path):
    marked_mnist(tmp_path / "debian" / "fashion-mnist", 4, split="train")
    assert data.load("fashion_mnist", "train")[1].tolist() == [4, 4, 4]


def test_a_dir_named_mnist_is_not_fashion_mnist(monkeypatch, tmp_path):
    marked_mnist(tmp_path / "mnist", 5)
    marked_mnist(tmp_path / "debian" / "fashion-mnist", 6)
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "mnist"))
    assert data.load("mnist", "test")[1].tolist() == [5, 5, 5]
    with pytest.raises(FileNotFoundError, match="nothing usable in"):  # its files are MNIST's, not Fashion-MNIST's
        data.load("fashion_mnist", "test")
    monkeypatch.delenv(data.ENV_VAR)
    assert data.load("fashion_mnist", "test")[1].tolist() == [6, 6, 6]


def test_cifar_nested_batches_dir(monkeypatch, tmp_path):
    images, labels = synthetic(3, (32, 32, 3), 10)
    writers.write_cifar10(tmp_path / "cifar10" / "cifar-10-batches-py", "test", images, labels, fmt="python")
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path))
    np.testing.assert_array_equal(data.load("cifar10", "test")[0], images)


def test_missing_directories_are_named(monkeypatch, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"data_dir=.*nowhere: no such directory"):
        data.load("mnist", "test", data_dir=tmp_path / "nowhere")
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"\$JAXCNN_DATA_DIR=.*nowhere: no such directory"):
        data.load("mnist", "test")


def test_bad_name_and_split():
    with pytest.raises(ValueError, match=r"unknown dataset 'svhn': expected one of mnist, fashion_mnist, cifar10"):
        data.load("svhn", "train")
    with pytest.raises(ValueError, match=r"unknown split 'validation' for mnist"):
        data.load("mnist", "validation")


def test_not_found_anywhere_lists_every_place(tmp_path, isolated):
    with pytest.raises(download.DownloadError) as err:
        data.load("fashion_mnist", "train")
    message = str(err.value)
    mirrors = download.MIRRORS["fashion_mnist"]
    assert message.splitlines()[0] == ("no local copy of fashion_mnist 'train' found: could not download "
                                       f"train-images-idx3-ubyte.gz: {mirrors[0]}train-images-idx3-ubyte.gz: no "
                                       f"network (test); {mirrors[1]}train-images-idx3-ubyte.gz: no network (test).")
    for place in ("data_dir and $JAXCNN_DATA_DIR: not given", tmp_path / "debian" / "fashion-mnist",
                  f"jaxcnn's downloads: {tmp_path / 'cache' / 'jaxcnn' / 'datasets' / 'fashion_mnist'}",
                  "train-images-idx3-ubyte[.gz]", "TensorFlow Datasets: ConnectionError: no network (test)",
                  "data_dir=DIR", "JAXCNN_DATA_DIR=DIR", "apt-get install dataset-fashion-mnist",
                  f"copy the original files (from {mirrors[0]}) into {tmp_path / 'cache'}"):
        assert str(place) in message
    assert isinstance(err.value.__cause__, download.DownloadError) and isolated == [("fashion_mnist", "train")]
    assert isolated.urls == [m + "train-images-idx3-ubyte.gz" for m in mirrors]
    assert not any((tmp_path / "cache").rglob("*.*"))  # nothing cached
    with pytest.raises(FileNotFoundError) as err:  # no mirrors for CIFAR-10: TFDS was the last place
        data.load("cifar10", "test")
    assert "test_batch.bin (binary batches) or test_batch (python batches)" in str(err.value)
    assert 'pip install -e ".[download]"' in str(err.value) and isinstance(err.value.__cause__, ConnectionError)
    assert "apt-get" not in str(err.value) and "--" not in str(err.value) and "downloads:" not in str(err.value)
    assert len(isolated.urls) == 2


# --- TensorFlow Datasets -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, shape", [("mnist", (28, 28, 1)), ("cifar10", (32, 32, 3))])
def test_tfds_fallback(monkeypatch, tfds_dir, isolated, name, shape):
    """The real TFDS path (builder, download_and_prepare, as_data_source) on TFDS's mock data, asked before the
    original files are downloaded."""
    monkeypatch.setattr(data, "_missing_packages", lambda: [])
    monkeypatch.setattr(data, "_reachable", lambda host, port: True)
    with tfds.testing.mock_data(num_examples=6):
        images, labels = data.load(name, "train")
        source = tfds.data_source(name, split="train", builder_kwargs={"file_format": "array_record"})
        expected = [source[i] for i in range(len(source))]
    assert images.shape == (6, *shape) and images.dtype == np.uint8
    assert labels.shape == (6,) and labels.dtype == np.int32
    np.testing.assert_array_equal(images, [r["image"] for r in expected])
    np.testing.assert_array_equal(labels, [r["label"] for r in expected])
    assert not isolated.urls


def test_local_copy_wins_over_tfds(tmp_path, isolated):
    marked_mnist(tmp_path, 8, split="train")
    assert data.load("mnist", "train", data_dir=tmp_path)[1].tolist() == [8, 8, 8] and not isolated


def _no_download(monkeypatch):
    """Make TFDS's download_and_prepare an error, recording that it was called."""
    calls = []

    def refuse(self, *args, **kwargs):
        calls.append(self.name)
        raise AssertionError("TFDS asked to download")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", refuse)
    return calls


def test_tfds_without_tensorflow_is_skipped_at_once_leaving_nothing(monkeypatch, tfds_dir, isolated):
    """TFDS cannot prepare MNIST without TensorFlow: no network probe, no download_and_prepare; the original files
    are downloaded next (offline here)."""
    downloads = _no_download(monkeypatch)
    probes = []
    monkeypatch.setattr(data, "_reachable", lambda host, port: probes.append(host))
    monkeypatch.setattr(data, "find_spec", lambda module: None if module == "tensorflow" else object())
    with pytest.raises(download.DownloadError) as err:
        data.load("mnist", "train")
    assert ('TensorFlow Datasets: ModuleNotFoundError: TensorFlow not installed, which TFDS needs to prepare the '
            'data: pip install -e ".[download]"') in str(err.value)
    assert not downloads and not probes and [p.name for p in tfds_dir.iterdir()] == ["keep.txt"]
    assert isolated.urls[0] == download.MIRRORS["mnist"][0] + "train-images-idx3-ubyte.gz"


def test_tfds_without_network_fails_at_once_leaving_nothing(monkeypatch, tfds_dir, isolated):
    downloads = _no_download(monkeypatch)
    monkeypatch.setattr(data, "_missing_packages", lambda: [])
    with socket.socket() as s:  # a port nothing listens on: connections are refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setitem(data.DOWNLOAD_HOSTS, "mnist", ("127.0.0.1", port))
    with pytest.raises(download.DownloadError,
                       match=f"ConnectionError: no network: 127.0.0.1:{port} cannot be reached"):
        data.load("mnist", "test")
    assert not downloads and [p.name for p in tfds_dir.iterdir()] == ["keep.txt"] and isolated.urls


def test_a_failed_download_leaves_nothing_behind(monkeypatch, tfds_dir):
    monkeypatch.setattr(data, "_missing_packages", lambda: [])
    monkeypatch.setattr(data, "_reachable", lambda host, port: True)

    def partly(self, *args, **kwargs):  # what an interrupted TFDS download leaves
        (Path(self.data_dir).parent / f"incomplete.{Path(self.data_dir).name}").mkdir(parents=True)
        (tfds_dir / "downloads" / "mnist.tmp.0123").mkdir(parents=True)
        (tfds_dir / "downloads" / "mnist.tmp.0123" / "part").write_bytes(b"x")
        raise ConnectionError("connection reset (test)")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", partly)
    with pytest.raises(download.DownloadError, match=r"ConnectionError: connection reset \(test\)"):
        data.load("mnist", "train")
    assert [p.name for p in tfds_dir.iterdir()] == ["keep.txt"] and (tfds_dir / "keep.txt").read_text() == "the user's"


def test_what_a_download_needs():
    assert data._missing_packages() == [what for module, what in data.DOWNLOAD_PACKAGES.items()
                                        if importlib.util.find_spec(module) is None]
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert data._reachable("127.0.0.1", port)
    assert not data._reachable("127.0.0.1", port)  # closed
