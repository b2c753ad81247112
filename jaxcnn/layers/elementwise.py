"""Activations and dropout: elementwise functions (ReLU, Tanh, Sigmoid, AbsVal, ELU, Dropout), PReLU's learnt
slope per channel, and Softmax along an axis."""
import math
from dataclasses import dataclass
from typing import Callable, ClassVar

import jax
import jax.numpy as jnp

from .. import ops
from .base import POINTWISE, Layer, along_channels, axis_index


@dataclass(frozen=True)
class _Elementwise(Layer):
    fn: ClassVar[Callable]
    inplace: ClassVar[bool] = True
    elementwise: ClassVar[bool] = True

    def forward(self, params, state, x, *, train, rng, lowering):
        return type(self).fn(x), state


@dataclass(frozen=True)
class ReLU(_Elementwise):
    """max(x, 0), any shape; with a negative_slope (Caffe's leaky ReLU) x * negative_slope where x < 0."""

    negative_slope: float = 0.0
    fn: ClassVar[Callable] = ops.relu

    def forward(self, params, state, x, *, train, rng, lowering):
        if self.negative_slope == 0:
            return ops.relu(x), state
        return jnp.where(x > 0, x, x * jnp.asarray(self.negative_slope, x.dtype)), state


@dataclass(frozen=True)
class Tanh(_Elementwise):
    """tanh(x), any shape."""

    fn: ClassVar[Callable] = ops.tanh


@dataclass(frozen=True)
class Sigmoid(_Elementwise):
    """1 / (1 + exp(-x)), any shape."""

    fn: ClassVar[Callable] = ops.sigmoid


@dataclass(frozen=True)
class AbsVal(_Elementwise):
    """|x|, any shape (Caffe's AbsVal, cuda-convnet's abs neuron)."""

    fn: ClassVar[Callable] = jnp.abs


@dataclass(frozen=True)
class ELU(_Elementwise):
    """x where x > 0, alpha * (exp(x) - 1) elsewhere; any shape."""

    alpha: float = 1.0

    def forward(self, params, state, x, *, train, rng, lowering):
        return jax.nn.elu(x, self.alpha), state

    def cost(self, in_shape, out_shape):
        return 0, 3 * math.prod(out_shape)


@dataclass(frozen=True)
class Dropout(_Elementwise):
    """Inverted dropout with probability `rate` in training (needs rng); identity in evaluation. Any shape."""

    rate: float = 0.5
    stochastic: ClassVar[bool] = True

    def configure(self):
        if not 0.0 <= self.rate < 1.0:
            raise ValueError(f"rate must be in [0, 1), got {self.rate!r}")

    def forward(self, params, state, x, *, train, rng, lowering):
        return ops.dropout(x, self.rate, rng=rng, train=train), state

    def cost(self, in_shape, out_shape):
        return 0, 0


@dataclass(frozen=True)
class PReLU(Layer):
    """x where x > 0, slope * x elsewhere, with a learnt slope per channel (..., C) or, channel_shared, one.

    params: slope (C,) or (1,), filled with `init_value` (Caffe's default 0.25)."""

    channel_shared: bool = False
    init_value: float = 0.25
    inplace: ClassVar[bool] = True

    def create(self, rng, input_shape):
        shape = (1,) if self.channel_shared else input_shape[-1:]
        return {"slope": jnp.full(shape, self.init_value, jnp.float32)}, {}

    def forward(self, params, state, x, *, train, rng, lowering):
        return jnp.where(x > 0, x, x * params["slope"]), state

    def cost(self, in_shape, out_shape):
        return 0, 2 * math.prod(out_shape)

    def window(self, input_shape):
        return POINTWISE


@dataclass(frozen=True)
class Softmax(Layer):
    """exp(x) / sum(exp(x)) along a per-example `axis` (default the last: channels, as Caffe's axis 1)."""

    axis: int = -1

    def create(self, rng, input_shape):
        axis_index(self.axis, len(input_shape))
        return {}, {}

    def forward(self, params, state, x, *, train, rng, lowering):
        return jax.nn.softmax(x, axis=axis_index(self.axis, x.ndim - 1)), state

    def cost(self, in_shape, out_shape):
        return 0, 3 * math.prod(out_shape)

    def window(self, input_shape):
        return along_channels(self.axis, input_shape)
