"""The datasets the experiments train on (MNIST, Fashion-MNIST, CIFAR-10): where they are found (`loading`) and
their original file formats (`formats`).

    images, labels = jaxcnn.datasets.load("mnist", "train", data_dir="path/to/mnist")
"""
from .formats import DataFormatError
from .loading import CAFFE_PIXEL_SCALE, ENV_VAR, IMAGE_SHAPES, DataNotFound, load

__all__ = ["CAFFE_PIXEL_SCALE", "DataFormatError", "DataNotFound", "ENV_VAR", "IMAGE_SHAPES", "load"]
