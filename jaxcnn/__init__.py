"""jaxcnn: pure-function CNN layers, named nets, the classic model zoo and tools, in JAX."""
from . import fillers, ops, zoo
from .convert import fc_to_conv
from .layers import (
    LRN, AvgPool, BatchNorm, Conv, Dense, Dropout, Flatten, Layer, LayerError, Local, MaxPool, ReLU, Scale,
    Sigmoid, Tanh,
)
from .net import Net
from .summary import summary
from .tuning import tune

__version__ = "0.1.0"

__all__ = [
    "LRN", "AvgPool", "BatchNorm", "Conv", "Dense", "Dropout", "Flatten", "Layer", "LayerError", "Local",
    "MaxPool", "Net", "ReLU", "Scale", "Sigmoid", "Tanh", "fc_to_conv", "fillers", "ops", "summary", "tune", "zoo",
]
