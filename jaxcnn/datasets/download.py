"""The original MNIST and Fashion-MNIST files (gzipped IDX), downloaded with the standard library and cached.

Each file comes from the first of its dataset's mirrors that serves it whole and with its published size and
SHA-256 (`FILES`): a failing mirror (HTTP error, broken connection, wrong bytes) is logged and the next one tried.
A download is written to a temporary file beside its cache entry and renamed into place only once it checks out,
so the cache never holds a partial or wrong file under a dataset file's name; a cached file is checked again
(size and SHA-256, no request) each time it is used. TensorFlow is not needed.

`fetch("t10k-labels-idx1-ubyte.gz", MIRRORS["mnist"], FILES["mnist"], cache_dir("mnist"))` gives MNIST's test
labels; here a file of its own, from a mirror on this disk:

    >>> import hashlib
    >>> from pathlib import Path
    >>> from jaxcnn.datasets.download import FILES, cache_dir, cached, fetch
    >>> FILES["mnist"]["t10k-labels-idx1-ubyte.gz"][0], cache_dir("mnist").parts[-3:]     # bytes; the cache
    (4542, ('jaxcnn', 'datasets', 'mnist'))
    >>> Path("mirror").mkdir()
    >>> _ = Path("mirror/labels.gz").write_bytes(b"0123456789")
    >>> files = {"labels.gz": (10, hashlib.sha256(b"0123456789").hexdigest())}          # {name: (size, sha256)}
    >>> print(fetch("labels.gz", [Path("mirror").absolute().as_uri() + "/"], files, "cache"))  # downloaded, checked
    cache/labels.gz
    >>> print(cached("labels.gz", files, "cache"))                                      # checked again, no request
    cache/labels.gz
"""
import hashlib
import http.client
import logging
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

log = logging.getLogger(__name__)

# Where each dataset's original files are served, tried in order. The sizes (bytes) and SHA-256 sums are those
# TensorFlow Datasets publishes for the same files (its url_checksums/mnist.txt and fashion_mnist.txt, whose
# sources are the first MNIST mirror and the second Fashion-MNIST one).
MIRRORS = {
    "mnist": ("https://storage.googleapis.com/cvdf-datasets/mnist/",  # CVDF's copy of yann.lecun.com/exdb/mnist
              "https://ossci-datasets.s3.amazonaws.com/mnist/"),  # PyTorch's, which torchvision downloads from
    "fashion_mnist": ("https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
                      "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"),  # Zalando Research's, both
}
FILES = {
    "mnist": {
        "train-images-idx3-ubyte.gz": (9912422, "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
        "train-labels-idx1-ubyte.gz": (28881, "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
        "t10k-images-idx3-ubyte.gz": (1648877, "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
        "t10k-labels-idx1-ubyte.gz": (4542, "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte.gz": (26421880, "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
        "train-labels-idx1-ubyte.gz": (29515, "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
        "t10k-images-idx3-ubyte.gz": (4422102, "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
        "t10k-labels-idx1-ubyte.gz": (5148, "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
    },
}
TIMEOUT = 30.0  # seconds a connection or a read may wait
CHUNK = 1 << 16


class DownloadError(OSError):
    """A dataset file could not be downloaded whole and with its published SHA-256 from any of its mirrors."""


def cache_dir(name) -> Path:
    """Where downloads of dataset `name` are kept: $XDG_CACHE_HOME/jaxcnn/datasets/<name>, by default under
    ~/.cache."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "jaxcnn" / "datasets" / name


def cached(filename, files, directory) -> Path | None:
    """directory/filename if it is there with the size and SHA-256 that `files` ({name: (size, sha256)}) gives,
    else None."""
    path = Path(directory) / filename
    size, sha256 = files[filename]
    return path if path.is_file() and path.stat().st_size == size and _sha256(path) == sha256 else None


def fetch(filename, mirrors, files, directory) -> Path:
    """directory/filename: the cached copy if it checks out, else downloaded from the first of `mirrors` (base
    URLs ending in '/') that serves it with the size and SHA-256 that `files` ({name: (size, sha256)}) gives.

    Raises DownloadError, one line naming the file and what each mirror did, when none does; nothing is cached
    then.
    """
    path = cached(filename, files, directory)
    if path is not None:
        return path
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    failures = []
    for i, base in enumerate(mirrors):
        url = base + filename
        try:
            return _download(url, directory / filename, *files[filename])
        except (OSError, http.client.HTTPException) as e:
            failures.append(f"{url}: {_reason(e)}")
            if i + 1 < len(mirrors):
                log.warning("could not download %s (%s); trying %s", url, _reason(e), mirrors[i + 1])
    raise DownloadError(f"could not download {filename}: {'; '.join(failures)}")


def _download(url, path, size, sha256) -> Path:
    """url -> path, through a temporary file renamed into place once its size and SHA-256 match."""
    log.info("downloading %s (%s) from %s", path.name, _megabytes(size), url)
    digest, received = hashlib.sha256(), 0
    fd, part = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "jaxcnn"})
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            length = response.headers.get("Content-Length", "")
            while chunk := response.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
                received += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        if length.isdigit() and received < int(length):
            raise DownloadError(f"the connection broke off after {received:,} of {int(length):,} bytes")
        if (received, digest.hexdigest()) != (size, sha256):
            raise DownloadError(f"sha256 {digest.hexdigest()} ({received:,} bytes), expected {sha256} ({size:,} "
                                "bytes)")
        os.replace(part, path)
    finally:
        Path(part).unlink(missing_ok=True)
    return path


def _sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _reason(error) -> str:
    """An exception from urllib or from the checks above, in a few words."""
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    return str(error) or type(error).__name__


def _megabytes(size) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.1f} kB"
