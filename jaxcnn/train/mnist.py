"""The MNIST and Fashion-MNIST recipe that `python -m experiments.mnist` and experiments/colab_tpu.ipynb share:
Caffe's LeNet with BatchNorm, batch 64, SGD with momentum 0.9 and weight decay 5e-4 on a cosine schedule from
lr 0.05, 12 epochs, pixels scaled as Caffe's transform_param, random shifts of up to 2 pixels.

    >>> from jaxcnn.train import mnist
    >>> config = mnist.config(epochs=1)
    >>> config.model, config.batch_size, config.solver.lr, config.augment
    ('lenet_caffe', 64, 0.05, 'shift')
    >>> sorted(mnist.recipe(config.dataset, config.augment))
    ['augment', 'class_names', 'preprocess_for']

`run_training(zoo_spec(config, **mnist.recipe(config.dataset, config.augment)), "runs/mnist")` then trains it
(jaxcnn.train.run), as `python -m experiments.mnist --epochs 1` does.
"""
import functools

import jax.numpy as jnp

from ..augment import random_crop_flip
from ..datasets import CAFFE_PIXEL_SCALE
from .run import RunConfig
from .solver import SolverConfig

MODEL, EPOCHS, BATCH_SIZE, LR, AUGMENT = "lenet_caffe", 12, 64, 0.05, "shift"
DATASETS = ("mnist", "fashion_mnist")
FASHION = ["T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Boot"]
# shift: a random 28x28 crop of the 2-pixel zero-padded image; flip: left-right mirroring (clothes, not digits).
AUGMENTATIONS = {"shift": functools.partial(random_crop_flip, pad=2, flip=False),
                 "shift_flip": functools.partial(random_crop_flip, pad=2, flip=True),
                 "flip": functools.partial(random_crop_flip, pad=0, flip=True), "none": None}


def caffe_scale(train_images):
    """Caffe's transform_param { scale: 0.00390625 }: pixels to [0, 1) (the same for any training set)."""
    return lambda x: x.astype(jnp.float32) * CAFFE_PIXEL_SCALE


def config(dataset: str = "mnist", *, epochs: int = EPOCHS, batch_size: int = BATCH_SIZE, dtype: str = "float32",
           augment: str = AUGMENT, seed: int = 0) -> RunConfig:
    """The recipe's RunConfig, with the settings a notebook changes."""
    return RunConfig(model=MODEL, dataset=dataset, batch_size=batch_size, epochs=epochs, solver=SolverConfig(lr=LR),
                     seed=seed, dtype=dtype, augment=augment)


def recipe(dataset: str, augment: str) -> dict:
    """zoo_spec's preprocess_for, augment and class_names for a dataset and an AUGMENTATIONS name."""
    return {"preprocess_for": caffe_scale, "augment": AUGMENTATIONS[augment],
            "class_names": FASHION if dataset == "fashion_mnist" else None}
