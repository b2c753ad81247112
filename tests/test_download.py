"""jaxcnn.datasets.download, and load's last resort: MNIST's original files from a local HTTP server (Python's
http.server on 127.0.0.1) serving copies of ../shared/data/mnist.

The size and SHA-256 table is computed here from the served files (the shared training files hold the first
24,000 images, not the original 60,000); the shared test files are the originals, which checks the published
table itself.
"""
import hashlib
import http.server
import shutil
import threading

import numpy as np
import pytest
import tensorflow_datasets as tfds
import test_data
from test_data import MNIST_DIR, needs_mnist

from jaxcnn import cli
from jaxcnn.datasets import download
from jaxcnn.datasets import loading as data

# test_data's fixtures, here too: `isolated` (autouse: no real cache, TFDS or mirror unless a test says so) and
# `tfds_dir` (TFDS's real code path).
isolated, tfds_dir = test_data.isolated, test_data.tfds_dir
REAL_DOWNLOAD = download._download
TEST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
pytestmark = needs_mnist


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Mirrors:
    """An HTTP server on 127.0.0.1 serving root/<mirror>/<file> (a mirror with no folder answers 404), recording
    each path asked for in `requests`; a file named in `drop` is answered once with its full Content-Length and
    half its bytes, then the connection is closed."""

    def __init__(self, root):
        self.root, self.requests, self.drop = root, [], set()
        mirrors = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self):
                mirrors.requests.append(self.path)
                name = self.path.rsplit("/", 1)[-1]
                if name not in mirrors.drop:
                    return super().do_GET()
                mirrors.drop.discard(name)
                body = (root / self.path.lstrip("/")).read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, mirror):
        return f"http://127.0.0.1:{self.server.server_address[1]}/{mirror}/"

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def mirrors(monkeypatch, tmp_path):
    """Mirrors serving copies of the shared MNIST files under /a/ (mirror 'a'), the only MNIST mirror load knows;
    download.FILES['mnist'] is the table of the served files; downloads really happen (not `isolated`'s fake)."""
    served = tmp_path / "www" / "a"
    shutil.copytree(MNIST_DIR, served, ignore=shutil.ignore_patterns("*.md"))
    server = Mirrors(tmp_path / "www")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.setattr(download, "_download", REAL_DOWNLOAD)
    monkeypatch.setitem(download.FILES, "mnist", {p.name: (p.stat().st_size, sha256(p)) for p in served.iterdir()})
    monkeypatch.setitem(download.MIRRORS, "mnist", (server.url("a"),))
    yield server
    server.close()


@pytest.fixture(scope="module")
def mnist_test():
    """The shared MNIST test set, (images, labels), read from its own directory."""
    return data.load("mnist", "test", data_dir=MNIST_DIR)


def cache(tmp_path):
    """jaxcnn's download cache for MNIST in these tests (isolated sets $XDG_CACHE_HOME to tmp_path/cache)."""
    return tmp_path / "cache" / "jaxcnn" / "datasets" / "mnist"


def cached_files(tmp_path):
    """The names of all files under the cache, hidden temporary ones included."""
    return sorted(p.name for p in (tmp_path / "cache").rglob("*") if p.is_file())


def assert_same(got, expected):
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])


def test_the_published_table_matches_the_original_test_files():
    """The shared test files are byte-identical to the originals: the table's entries for them must match."""
    for name in TEST_FILES:
        path = MNIST_DIR / name
        assert download.FILES["mnist"][name] == (path.stat().st_size, sha256(path))
    assert set(download.FILES["mnist"]) == set(download.FILES["fashion_mnist"]) == {
        f"{prefix}-{kind}-ubyte.gz" for prefix in ("train", "t10k") for kind in ("images-idx3", "labels-idx1")}
    assert all(url.endswith("/") for urls in download.MIRRORS.values() for url in urls)


def test_cache_dir(monkeypatch, tmp_path):
    assert download.cache_dir("mnist") == cache(tmp_path)
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert download.cache_dir("fashion_mnist") == tmp_path / "home" / ".cache" / "jaxcnn" / "datasets" / "fashion_mnist"


def test_downloaded_verified_cached_then_served_from_the_cache(mirrors, tmp_path, isolated, mnist_test, caplog):
    caplog.set_level("INFO", logger="jaxcnn")
    assert_same(data.load("mnist", "test"), mnist_test)
    assert mirrors.requests == ["/a/" + name for name in TEST_FILES]
    assert isolated == [("mnist", "test")]  # TFDS was asked first
    assert cached_files(tmp_path) == sorted(TEST_FILES)
    for name in TEST_FILES:
        assert (cache(tmp_path) / name).read_bytes() == (MNIST_DIR / name).read_bytes()
    assert f"downloading t10k-images-idx3-ubyte.gz (1.6 MB) from {mirrors.url('a')}t10k-images-idx3-ubyte.gz" \
        in caplog.messages
    assert "downloading t10k-labels-idx1-ubyte.gz (4.5 kB) from" in caplog.text

    assert_same(data.load("mnist", "test"), mnist_test)  # from the cache: no request, TFDS not asked
    assert len(mirrors.requests) == 2 and len(isolated) == 1


def test_a_corrupt_file_is_one_line_naming_it_and_nothing_is_cached(mirrors, tmp_path, capsys):
    path = tmp_path / "www" / "a" / "t10k-images-idx3-ubyte.gz"
    blob = bytearray(path.read_bytes())
    blob[1000] ^= 0xFF  # same size, other bytes
    path.write_bytes(bytes(blob))
    expected = download.FILES["mnist"][path.name][1]
    with pytest.raises(download.DownloadError) as err:
        data.load("mnist", "test")
    first = str(err.value).splitlines()[0]
    assert first == (f"no local copy of mnist 'test' found: could not download t10k-images-idx3-ubyte.gz: "
                     f"{mirrors.url('a')}t10k-images-idx3-ubyte.gz: sha256 {sha256(path)} (1,648,877 bytes), "
                     f"expected {expected} (1,648,877 bytes).")
    assert cached_files(tmp_path) == []

    with pytest.raises(SystemExit) as exit_:  # what a command-line user reads: the same line, last
        cli.entry(lambda: data.load("mnist", "test"))
    assert exit_.value.code == cli.RUNTIME
    stderr = capsys.readouterr().err
    assert stderr.splitlines()[-1] == f"error: {first}" and "Traceback" not in stderr
    assert cached_files(tmp_path) == []


def test_a_dropped_connection_caches_nothing_and_a_retry_succeeds(mirrors, tmp_path, mnist_test):
    mirrors.drop.add("t10k-images-idx3-ubyte.gz")
    size = download.FILES["mnist"]["t10k-images-idx3-ubyte.gz"][0]
    with pytest.raises(download.DownloadError,
                       match=f"t10k-images-idx3-ubyte.gz: the connection broke off after {size // 2:,} of {size:,} "
                             "bytes"):
        data.load("mnist", "test")
    assert cached_files(tmp_path) == []
    assert_same(data.load("mnist", "test"), mnist_test)
    assert mirrors.requests == ["/a/t10k-images-idx3-ubyte.gz"] * 2 + ["/a/t10k-labels-idx1-ubyte.gz"]
    assert cached_files(tmp_path) == sorted(TEST_FILES)


def test_a_missing_file_falls_back_to_the_next_mirror(monkeypatch, mirrors, tmp_path, mnist_test, caplog):
    monkeypatch.setitem(download.MIRRORS, "mnist", (mirrors.url("gone"), mirrors.url("a")))
    assert_same(data.load("mnist", "test"), mnist_test)
    assert mirrors.requests == [f"/{m}/{name}" for name in TEST_FILES for m in ("gone", "a")]
    assert (f"could not download {mirrors.url('gone')}t10k-images-idx3-ubyte.gz (HTTP 404 File not found); "
            f"trying {mirrors.url('a')}") in caplog.messages
    assert cached_files(tmp_path) == sorted(TEST_FILES)

    monkeypatch.setitem(download.MIRRORS, "mnist", (mirrors.url("gone"),))  # no mirror has it
    with pytest.raises(download.DownloadError, match=r"could not download train-images-idx3-ubyte.gz: "
                                                     r"http://127.0.0.1:\d+/gone/train-images-idx3-ubyte.gz: HTTP 404"):
        data.load("mnist", "train")
    assert cached_files(tmp_path) == sorted(TEST_FILES)


def test_a_damaged_cache_entry_is_downloaded_again(mirrors, tmp_path, mnist_test):
    directory = cache(tmp_path)
    directory.mkdir(parents=True)
    for name in TEST_FILES:
        shutil.copy(MNIST_DIR / name, directory / name)
    (directory / TEST_FILES[1]).write_bytes(b"\x00" * (MNIST_DIR / TEST_FILES[1]).stat().st_size)  # same size
    assert download.cached(TEST_FILES[0], download.FILES["mnist"], directory) == directory / TEST_FILES[0]
    assert download.cached(TEST_FILES[1], download.FILES["mnist"], directory) is None
    assert_same(data.load("mnist", "test"), mnist_test)
    assert mirrors.requests == ["/a/" + TEST_FILES[1]]
    assert (directory / TEST_FILES[1]).read_bytes() == (MNIST_DIR / TEST_FILES[1]).read_bytes()


def test_without_tensorflow_tfds_is_skipped_and_the_files_downloaded(monkeypatch, mirrors, tfds_dir, mnist_test):
    """The real TFDS path, without TensorFlow: no network probe and no download_and_prepare before the files
    are downloaded."""
    asked = []
    monkeypatch.setattr(data, "find_spec", lambda module: None if module == "tensorflow" else object())
    monkeypatch.setattr(data, "_reachable", lambda host, port: asked.append(host))
    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", lambda self, *a, **k: asked.append(self))
    assert_same(data.load("mnist", "test"), mnist_test)
    assert not asked and mirrors.requests == ["/a/" + name for name in TEST_FILES]
    assert [p.name for p in tfds_dir.iterdir()] == ["keep.txt"]


def test_a_given_directory_is_never_downloaded_into(monkeypatch, mirrors, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="nothing usable in data_dir="):
        data.load("mnist", "test", data_dir=tmp_path / "empty")
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match=r"nothing usable in \$JAXCNN_DATA_DIR="):
        data.load("mnist", "test")
    assert not mirrors.requests and cached_files(tmp_path) == [] and not any((tmp_path / "empty").iterdir())
