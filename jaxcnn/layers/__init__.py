"""Named layers: small frozen values with two pure functions.

    >>> import jax, jax.numpy as jnp
    >>> from jaxcnn.layers import Conv
    >>> layer = Conv("conv1", 20, 5)
    >>> out_shape, params, state = layer.init(jax.random.key(0), (28, 28, 1))   # input_shape per example: (H, W, C)
    >>> out_shape, params["w"].shape, params["b"].shape, state
    ((24, 24, 20), (5, 5, 1, 20), (20,), {})
    >>> y, state = layer.apply(params, state, jnp.ones((8, 28, 28, 1)), train=False, rng=None, lowering="auto")
    >>> y.shape                                                                  # x and y batched: (N, ...)
    (8, 24, 24, 20)

Layers with several inputs (Concat, Eltwise: `arity = None`) take a tuple of per-example shapes in init and a
tuple of arrays in apply; layers with several outputs (Slice, Split: `multi_output = True`) give a tuple of
output shapes and return a tuple of arrays. Every other layer takes one array and gives one.

params hold what training learns, state what it does not (BatchNorm's running statistics). Each layer carries
Caffe-style `lr_mult` / `decay_mult` per parameter name (missing names mean 1.0). Configuration is checked and
normalised when a layer is made (kernel, stride and dilation become (h, w) pairs, padding 'VALID', 'SAME' or
((top, bottom), (left, right))); configuration, shape and parameter errors are LayerErrors naming the layer.

Inputs: floating point. A float input of another dtype than the layer's parameters is cast to theirs (bfloat16
parameters make a bfloat16 computation); integer and boolean inputs are refused (scale images to floats first).
`lowering` chooses how conv2d, local2d and max_pool are computed (see jaxcnn.ops.lowering); the results agree.

Each layer class also states its traits (jaxcnn.layers.base): how it slides over a larger input, whether it is
elementwise, random or batch-normalising, and its form in a converted head, so that tools (jaxcnn.convert,
jaxcnn.nnx) need no table of layer types. Fields that take an int or a pair (kernel, stride, dilation) are typed
IntOrPair, padding PaddingSpec (jaxcnn.ops.geometry). Modules, by family:
  base            Layer, LayerError, Window
  convolution     Conv, Local, Dense
  pooling         MaxPool, AvgPool, GlobalMaxPool, GlobalAvgPool
  normalization   LRN, ContrastNorm, BatchNorm, Scale, Bias
  elementwise     ReLU, Tanh, Sigmoid, AbsVal, ELU, Dropout, PReLU, Softmax
  wiring          Flatten, Concat, Eltwise, Slice, Split
"""
from ..ops.geometry import IntOrPair, PaddingSpec, Pair
from .base import POINTWISE, Layer, LayerError, Shape, Window, named
from .convolution import Conv, Dense, Local
from .elementwise import ELU, AbsVal, Dropout, PReLU, ReLU, Sigmoid, Softmax, Tanh
from .normalization import LRN, BatchNorm, Bias, ContrastNorm, Scale
from .pooling import AvgPool, GlobalAvgPool, GlobalMaxPool, MaxPool
from .wiring import ELTWISE_OPERATIONS, Concat, Eltwise, Flatten, Slice, Split

__all__ = [
    "ELTWISE_OPERATIONS", "ELU", "LRN", "POINTWISE", "AbsVal", "AvgPool", "BatchNorm", "Bias", "Concat",
    "ContrastNorm", "Conv", "Dense", "Dropout", "Eltwise", "Flatten", "GlobalAvgPool", "GlobalMaxPool", "IntOrPair",
    "Layer", "LayerError", "Local", "MaxPool", "PReLU", "PaddingSpec", "Pair", "ReLU", "Scale", "Shape", "Sigmoid",
    "Slice", "Softmax", "Split", "Tanh", "Window", "named",
]
