"""Train the Caffe LeNet with BatchNorm (or any zoo model) on MNIST or Fashion-MNIST.

    python -m experiments.mnist --data-dir ../shared/data/mnist
    python -m experiments.mnist --dataset fashion_mnist          # after apt-get install dataset-fashion-mnist
    python -m experiments.mnist --lr 0.01 --schedule inv --gamma 1e-4 --power 0.75   # Caffe's lenet_solver
"""
import jax.numpy as jnp

from .common import parser, run

FASHION = ["T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Boot"]


def caffe_scale(train_images):
    """Caffe's transform_param { scale: 0.00390625 }: pixels to [0, 1)."""
    return lambda x: x.astype(jnp.float32) * 0.00390625


def arguments(argv=None):
    """The parsed command line (defaults: the measured LeNet-BN recipe)."""
    return parser(__doc__.splitlines()[0], model="lenet_caffe", datasets=["mnist", "fashion_mnist"], epochs=12,
                  batch_size=64, lr=0.05, out="runs/mnist").parse_args(argv)


def main(argv=None):
    args = arguments(argv)
    return run(args, preprocess_for=caffe_scale, class_names=FASHION if args.dataset == "fashion_mnist" else None)


if __name__ == "__main__":
    main()
