"""Layers that reshape, join, combine or copy blobs: Flatten, Concat, Eltwise, Slice, Split."""
import math
from dataclasses import dataclass
from typing import ClassVar

import jax
import jax.numpy as jnp

from .. import ops
from .base import POINTWISE, Layer, along_channels, axis_index, positive_int


@dataclass(frozen=True)
class Flatten(Layer):
    """(H, W, C) -> (H*W*C,), row-major (channels fastest), a free reshape."""

    inplace: ClassVar[bool] = True

    def forward(self, params, state, x, *, train, rng, lowering):
        return ops.flatten(x), state

    def cost(self, in_shape, out_shape):
        return 0, 0

    def window(self, input_shape):
        return None  # each pixel to its own features

    def as_sliding(self, params, input_shape, window):
        """Nothing: the map is its input, flattened."""
        return None, {}


@dataclass(frozen=True)
class Concat(Layer):
    """Several inputs joined along a per-example `axis` (default -1, channels: GoogLeNet's inception output).
    Inputs: a tuple of shapes equal but along the axis."""

    axis: int = -1
    arity: ClassVar[None] = None

    def create(self, rng, input_shape):
        first, axis = input_shape[0], axis_index(self.axis, len(input_shape[0])) - 1
        for shape in input_shape[1:]:
            if len(shape) != len(first) or any(a != b for i, (a, b) in enumerate(zip(shape, first)) if i != axis):
                raise ValueError(f"inputs {list(input_shape)} differ outside the concatenation axis {self.axis}")
        return {}, {}

    def forward(self, params, state, x, *, train, rng, lowering):
        return jnp.concatenate(x, axis=axis_index(self.axis, x[0].ndim - 1)), state

    def cost(self, in_shape, out_shape):
        return 0, 0

    def window(self, input_shape):
        return along_channels(self.axis, input_shape[0])


ELTWISE_OPERATIONS = ("sum", "prod", "max")


@dataclass(frozen=True)
class Eltwise(Layer):
    """Two or more inputs of one shape combined elementwise: 'sum' (with optional per-input `coeffs`, e.g.
    (1, -1) for a difference; ResNet's shortcut), 'prod' or 'max'."""

    operation: str = "sum"
    coeffs: tuple = ()
    arity: ClassVar[None] = None

    def configure(self):
        if self.operation not in ELTWISE_OPERATIONS:
            raise ValueError(f"operation must be one of {', '.join(ELTWISE_OPERATIONS)}, got {self.operation!r}")
        self._set(coeffs=tuple(float(c) for c in self.coeffs))
        if self.coeffs and self.operation != "sum":
            raise ValueError(f"coeffs apply to the 'sum' operation only, not {self.operation!r}")

    def create(self, rng, input_shape):
        if len(input_shape) < 2:
            raise ValueError(f"needs two or more inputs, got {len(input_shape)}")
        if len(set(input_shape)) > 1:
            raise ValueError(f"inputs must have one shape, got {list(input_shape)}")
        if self.coeffs and len(self.coeffs) != len(input_shape):
            raise ValueError(f"{len(self.coeffs)} coeffs for {len(input_shape)} inputs")
        return {}, {}

    def forward(self, params, state, x, *, train, rng, lowering):
        if self.operation == "sum":
            if self.coeffs:
                x = [c * v if c != 1 else v for c, v in zip(self.coeffs, x)]
            return sum(x[1:], x[0]), state
        combine = jnp.multiply if self.operation == "prod" else jnp.maximum
        y = x[0]
        for v in x[1:]:
            y = combine(y, v)
        return y, state

    def cost(self, in_shape, out_shape):
        return 0, (len(in_shape) - 1 + len(self.coeffs)) * math.prod(out_shape)

    def window(self, input_shape):
        return POINTWISE


@dataclass(frozen=True)
class Slice(Layer):
    """One input cut along a per-example `axis` (default -1, channels) into pieces: at the indices `points`
    (increasing), or into `parts` equal pieces. Returns a tuple of len(points) + 1 (or parts) arrays."""

    axis: int = -1
    points: tuple = ()
    parts: int | None = None
    multi_output: ClassVar[bool] = True

    def configure(self):
        self._set(points=tuple(self.points))
        if self.points:
            if self.parts is not None:
                raise ValueError("give points or parts, not both")
            increasing = list(self.points) == sorted(set(self.points))
            if any(not isinstance(p, int) or p < 1 for p in self.points) or not increasing:
                raise ValueError(f"points must be increasing positive ints, got {self.points}")
        else:
            positive_int(self.parts, "parts")

    @property
    def num_outputs(self):
        return len(self.points) + 1 if self.points else self.parts

    def _bounds(self, size):
        if self.points:
            if self.points[-1] >= size:
                raise ValueError(f"slice points {self.points} must be smaller than the axis size {size}")
            return (0, *self.points, size)
        if size % self.parts:
            raise ValueError(f"axis size {size} does not divide into {self.parts} equal parts")
        return tuple(range(0, size + 1, size // self.parts))

    def create(self, rng, input_shape):
        self._bounds(input_shape[axis_index(self.axis, len(input_shape)) - 1])
        return {}, {}

    def forward(self, params, state, x, *, train, rng, lowering):
        axis = axis_index(self.axis, x.ndim - 1)
        bounds = self._bounds(x.shape[axis])
        return tuple(jax.lax.slice_in_dim(x, a, b, axis=axis) for a, b in zip(bounds[:-1], bounds[1:])), state

    def cost(self, in_shape, out_shape):
        return 0, 0

    def window(self, input_shape):
        return along_channels(self.axis, input_shape)


@dataclass(frozen=True)
class Split(Layer):
    """Its one input `copies` times (Caffe's Split: one blob read by several layers). Returns a tuple."""

    copies: int = 2
    multi_output: ClassVar[bool] = True

    def configure(self):
        positive_int(self.copies, "copies")

    @property
    def num_outputs(self):
        return self.copies

    def forward(self, params, state, x, *, train, rng, lowering):
        return (x,) * self.copies, state

    def cost(self, in_shape, out_shape):
        return 0, 0

    def window(self, input_shape):
        return POINTWISE
