"""Train the Caffe LeNet with BatchNorm (or any zoo model) on MNIST or Fashion-MNIST.

    python -m experiments.mnist --data-dir ../shared/data/mnist
    python -m experiments.mnist --dataset fashion_mnist          # after apt-get install dataset-fashion-mnist
    python -m experiments.mnist --lr 0.01 --schedule inv --gamma 1e-4 --power 0.75   # Caffe's lenet_solver
Augmentation (default): each training image shifted by up to 2 pixels (a random 28x28 crop of the 2-pixel
zero-padded image), inside the jitted step; --augment flip mirrors them left-right instead (clothes, not digits),
shift_flip does both, and none trains on the images as they are, as Caffe's example.
"""
import functools
import sys

import jax.numpy as jnp

from jaxcnn.augment import random_crop_flip
from jaxcnn.cli import entry
from jaxcnn.datasets import CAFFE_PIXEL_SCALE

from .training import parser, run

FASHION = ["T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Boot"]


def caffe_scale(train_images):
    """Caffe's transform_param { scale: 0.00390625 }: pixels to [0, 1)."""
    return lambda x: x.astype(jnp.float32) * CAFFE_PIXEL_SCALE


AUGMENTATIONS = {"shift": functools.partial(random_crop_flip, pad=2, flip=False),
                 "shift_flip": functools.partial(random_crop_flip, pad=2, flip=True),
                 "flip": functools.partial(random_crop_flip, pad=0, flip=True), "none": None}


def arguments(argv=None):
    """The parsed command line (defaults: the measured LeNet-BN recipe)."""
    p = parser("python -m experiments.mnist", __doc__.splitlines()[0], model="lenet_caffe",
               datasets=["mnist", "fashion_mnist"], epochs=12, batch_size=64, lr=0.05, out="runs/mnist",
               solver_title="solver (Caffe's lenet_solver.prototxt: --lr 0.01 --schedule inv --gamma 1e-4 "
                            "--power 0.75)")
    p.add_argument("--augment", default="shift", choices=list(AUGMENTATIONS),
                   help="shift: random translations of up to 2 pixels; flip: random left-right mirroring (for "
                        "Fashion-MNIST, not digits); shift_flip: both; none: the images as they are")
    return p.parse_args(argv)


def main(argv=None):
    args = arguments(argv)
    return run(args, preprocess_for=caffe_scale, augment=AUGMENTATIONS[args.augment], augment_name=args.augment,
               class_names=FASHION if args.dataset == "fashion_mnist" else None)


if __name__ == "__main__":
    sys.exit(entry(main))
