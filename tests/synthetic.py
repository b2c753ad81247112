"""Small learnable stand-ins for MNIST and CIFAR-10, written in the datasets' own file formats."""
import numpy as np
from dataset_writers import write_cifar10, write_mnist


def blobs(n, shape, seed):
    """uint8 images (n, *shape) of noise with a bright patch whose place encodes the label; labels (n,) int32."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.int32)
    images = rng.integers(0, 150, (n, *shape), dtype=np.uint8)
    h, w = shape[0] // 2, shape[1] // 5
    for i, c in enumerate(labels):
        r, k = divmod(int(c), 5)
        dy, dx = rng.integers(0, 3, 2)
        images[i, r * h + dy: r * h + dy + h // 2, k * w + dx: k * w + dx + w // 2] = 230
    return images, labels


def write_mnist_like(directory, n_train=1024, n_test=256):
    """IDX files (gzipped) of 28x28x1 blob images in `directory`; returns it."""
    write_mnist(directory, "train", *blobs(n_train, (28, 28, 1), seed=1))
    write_mnist(directory, "test", *blobs(n_test, (28, 28, 1), seed=2))
    return directory


def write_cifar_like(directory, n_train=640, n_test=128):
    """CIFAR-10 binary batches of 32x32x3 blob images under `directory`/cifar-10-batches-bin; returns `directory`."""
    write_cifar10(directory / "cifar-10-batches-bin", "train", *blobs(n_train, (32, 32, 3), seed=3))
    write_cifar10(directory / "cifar-10-batches-bin", "test", *blobs(n_test, (32, 32, 3), seed=4))
    return directory
