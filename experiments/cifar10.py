"""Train cuda-convnet's CIFAR-10 net with locally-connected layers (or any zoo model) on CIFAR-10.

    python -m experiments.cifar10 --data-dir DIR      # DIR holds cifar-10-batches-bin/ or -py/, else TFDS
Augmentation: random 32x32 crops of the 4-pixel zero-padded image and left-right flips, inside the jitted step.
"""
import sys

import jax.numpy as jnp
import numpy as np

from jaxcnn.augment import random_crop_flip
from jaxcnn.cli import entry

from .training import parser, run

CLASSES = ["plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def standardize(train_images):
    """Per-channel mean/std of the training images -> uint8-to-float fn (x / 255 - mean) / std."""
    x = train_images.reshape(-1, train_images.shape[-1]).astype(np.float64) / 255
    mean, std = jnp.asarray(x.mean(0), jnp.float32), jnp.asarray(x.std(0) + 1e-8, jnp.float32)
    return lambda batch: (batch.astype(jnp.float32) / 255 - mean) / std


def main(argv=None):
    args = parser("python -m experiments.cifar10", __doc__.splitlines()[0], model="cifar10_local",
                  datasets=["cifar10"], epochs=60, batch_size=128, lr=0.01, out="runs/cifar10").parse_args(argv)
    return run(args, preprocess_for=standardize, augment=random_crop_flip, augment_name="crop_flip",
               class_names=CLASSES)


if __name__ == "__main__":
    sys.exit(entry(main))
