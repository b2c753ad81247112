"""Pooling: MaxPool and AvgPool over windows (Caffe's and cuda-convnet's ceil rounding), and global pooling."""
import math
from dataclasses import dataclass
from typing import ClassVar

import jax.numpy as jnp

from .. import ops
from ..ops.geometry import IntOrPair, PaddingSpec, normalize_padding, pair
from ..ops.pool import CLIPS, pool_geometry
from .base import Layer, Window


@dataclass(frozen=True)
class _Pool(Layer):
    kernel: IntOrPair
    stride: IntOrPair | None = None
    padding: PaddingSpec = 0
    ceil_mode: bool = False
    clip: str = "always"
    input_rank: ClassVar[int] = 3

    def configure(self):
        kernel = pair(self.kernel, "kernel")
        if self.clip not in CLIPS:
            raise ValueError(f"clip must be one of {', '.join(map(repr, CLIPS))}, got {self.clip!r}")
        self._set(kernel=kernel, stride=kernel if self.stride is None else pair(self.stride, "stride"),
                  padding=normalize_padding(self.padding), ceil_mode=bool(self.ceil_mode))

    def create(self, rng, input_shape):
        pool_geometry(input_shape, self.kernel, self.stride, self.padding, self.ceil_mode, self.clip)
        return {}, {}

    def cost(self, in_shape, out_shape):
        return 0, math.prod(out_shape) * math.prod(self.kernel)

    def window(self, input_shape):
        _, kernel, stride, ((top, bottom), (left, right)), (eh, ew) = pool_geometry(
            input_shape, self.kernel, self.stride, self.padding, self.ceil_mode, self.clip)
        return Window(kernel, stride, ((top, bottom + eh), (left, right + ew)))


@dataclass(frozen=True)
class MaxPool(_Pool):
    """Max pooling, (H, W, C) -> (OH, OW, C); stride defaults to the kernel. ceil_mode=True rounds sizes up
    like Caffe and cuda-convnet (32 -> 16 with 3x3/2); clip='padded' keeps Caffe's last window outside an
    unpadded input (see ops.pool.pool_geometry)."""

    def forward(self, params, state, x, *, train, rng, lowering):
        y = ops.max_pool(x, self.kernel, self.stride, self.padding, ceil_mode=self.ceil_mode, clip=self.clip,
                         lowering=lowering)
        return y, state


@dataclass(frozen=True)
class AvgPool(_Pool):
    """Average pooling, (H, W, C) -> (OH, OW, C); count_pad and clip: see ops.avg_pool."""

    count_pad: bool = True

    def forward(self, params, state, x, *, train, rng, lowering):
        y = ops.avg_pool(x, self.kernel, self.stride, self.padding, ceil_mode=self.ceil_mode,
                         count_pad=self.count_pad, clip=self.clip)
        return y, state


@dataclass(frozen=True)
class _GlobalPool(Layer):
    input_rank: ClassVar[int] = 3
    fixed: ClassVar[type[_Pool]]  # the pooling it is on an input of one size

    def cost(self, in_shape, out_shape):
        return 0, math.prod(in_shape)

    def window(self, input_shape):
        return None  # the window is the whole input, however large

    def as_sliding(self, params, input_shape, window):
        """A pooling over the training-size map, stride 1: each window's pool, where the original net would pool
        the whole larger map (another function)."""
        if tuple(input_shape[:2]) != tuple(window):
            raise self._error(f"its {tuple(input_shape)} input is a map of {window[0]}x{window[1]} positions in "
                              "the converted head; a global pooling converts only on its input's own (H, W)")
        return self.fixed(self.name, window, 1, "VALID"), {}


@dataclass(frozen=True)
class GlobalMaxPool(_GlobalPool):
    """Maximum over all positions: (H, W, C) -> (1, 1, C) (Caffe's global_pooling with MAX)."""

    fixed: ClassVar[type[_Pool]] = MaxPool

    def forward(self, params, state, x, *, train, rng, lowering):
        return jnp.max(x, axis=(1, 2), keepdims=True), state


@dataclass(frozen=True)
class GlobalAvgPool(_GlobalPool):
    """Mean over all positions: (H, W, C) -> (1, 1, C) (Caffe's global_pooling with AVE; NIN's classifier)."""

    fixed: ClassVar[type[_Pool]] = AvgPool

    def forward(self, params, state, x, *, train, rng, lowering):
        return jnp.mean(x, axis=(1, 2), keepdims=True), state
