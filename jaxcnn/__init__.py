"""jaxcnn: pure-function CNN layers, named nets, the classic model zoo and tools, in JAX."""
from . import fillers, ops, zoo
from ._version import __version__ as __version__
from .convert import fc_to_conv
from .fold import fold_batchnorm
from .inference import predictor
from .layers import (
    ELU,
    LRN,
    AbsVal,
    AvgPool,
    BatchNorm,
    Bias,
    Concat,
    ContrastNorm,
    Conv,
    Dense,
    Dropout,
    Eltwise,
    Flatten,
    GlobalAvgPool,
    GlobalMaxPool,
    Layer,
    LayerError,
    Local,
    MaxPool,
    PReLU,
    ReLU,
    Scale,
    Sigmoid,
    Slice,
    Softmax,
    Split,
    Tanh,
)
from .net import Graph, Net, Node
from .summary import summary
from .tuning import tune

__all__ = [
    "ELU", "LRN", "AbsVal", "AvgPool", "BatchNorm", "Bias", "Concat", "ContrastNorm", "Conv", "Dense", "Dropout",
    "Eltwise", "Flatten",
    "GlobalAvgPool", "GlobalMaxPool", "Graph", "Layer", "LayerError", "Local", "MaxPool", "Net", "Node", "PReLU",
    "ReLU", "Scale", "Sigmoid", "Slice", "Softmax", "Split", "Tanh", "fc_to_conv", "fillers", "fold_batchnorm",
    "ops", "predictor", "summary", "tune", "zoo",
]
