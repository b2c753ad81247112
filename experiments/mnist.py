"""Train the Caffe LeNet with BatchNorm (or any zoo model) on MNIST or Fashion-MNIST.

    python -m experiments.mnist --data-dir ../shared/data/mnist
    python -m experiments.mnist --dataset fashion_mnist          # after apt-get install dataset-fashion-mnist
    python -m experiments.mnist --lr 0.01 --schedule inv --gamma 1e-4 --power 0.75   # Caffe's lenet_solver
Augmentation (default): each training image shifted by up to 2 pixels (a random 28x28 crop of the 2-pixel
zero-padded image), inside the jitted step; --augment flip mirrors them left-right instead (clothes, not digits),
shift_flip does both, and none trains on the images as they are, as Caffe's example.
"""
import sys

from jaxcnn.cli import entry
from jaxcnn.train import mnist

from .training import parser, run


def arguments(argv=None):
    """The parsed command line (defaults: the measured LeNet-BN recipe)."""
    p = parser("python -m experiments.mnist", __doc__.splitlines()[0], model=mnist.MODEL, datasets=list(mnist.DATASETS),
               epochs=mnist.EPOCHS, batch_size=mnist.BATCH_SIZE, lr=mnist.LR, out="runs/mnist",
               solver_title="solver (Caffe's lenet_solver.prototxt: --lr 0.01 --schedule inv --gamma 1e-4 "
                            "--power 0.75)")
    p.add_argument("--augment", default=mnist.AUGMENT, choices=list(mnist.AUGMENTATIONS),
                   help="shift: random translations of up to 2 pixels; flip: random left-right mirroring (for "
                        "Fashion-MNIST, not digits); shift_flip: both; none: the images as they are")
    return p.parse_args(argv)


def main(argv=None):
    args = arguments(argv)
    return run(args, augment_name=args.augment, **mnist.recipe(args.dataset, args.augment))


if __name__ == "__main__":
    sys.exit(entry(main))
