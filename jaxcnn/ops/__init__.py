"""Pure array functions: NHWC activations, HWIO kernels, no state."""
from .basic import dense, dropout, flatten, relu, sigmoid, tanh
from .conv import conv2d, local2d
from .loss import accuracy, softmax_cross_entropy, top_k_accuracy
from .lowering import LOWERINGS, compiler_options
from .norm import batch_norm, contrast_norm, lrn, scale
from .pool import avg_pool, max_pool

__all__ = [
    "LOWERINGS", "accuracy", "avg_pool", "batch_norm", "compiler_options", "contrast_norm", "conv2d", "dense",
    "dropout", "flatten", "local2d", "lrn", "max_pool", "relu", "scale", "sigmoid", "softmax_cross_entropy",
    "tanh", "top_k_accuracy",
]
