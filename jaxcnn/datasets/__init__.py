"""The datasets the experiments train on (MNIST, Fashion-MNIST, CIFAR-10): where they are found (`loading`),
MNIST's and Fashion-MNIST's original files downloaded when nothing else has them (`download`), and their original
file formats (`formats`).

    >>> from jaxcnn import datasets
    >>> images, labels = datasets.load("mnist", "train", data_dir="../shared/data/mnist")
    >>> images.shape[1:], images.dtype, labels.dtype
    ((28, 28, 1), dtype('uint8'), dtype('int32'))
"""
from .download import DownloadError
from .formats import DataFormatError
from .loading import CAFFE_PIXEL_SCALE, ENV_VAR, IMAGE_SHAPES, DataNotFound, load

__all__ = ["CAFFE_PIXEL_SCALE", "DataFormatError", "DataNotFound", "DownloadError", "ENV_VAR", "IMAGE_SHAPES",
           "load"]
