"""Normalisation and per-channel affine layers: LRN, ContrastNorm, BatchNorm, Scale, Bias."""
import math
from dataclasses import dataclass
from typing import ClassVar, Mapping

import jax
import jax.numpy as jnp
from jax import lax

from .. import ops
from .base import POINTWISE, Layer, Window, positive_int


def _check_odd_size(size, why):
    positive_int(size, "size")
    if size % 2 == 0:
        raise ValueError(f"size must be odd ({why}), got {size}")


def _centred(extent: int) -> Window:
    """A square window of `extent` pixels centred on each output pixel, stride 1."""
    half = (extent - 1) // 2
    return Window((extent, extent), (1, 1), ((half, half), (half, half)))


@dataclass(frozen=True)
class LRN(Layer):
    """Local response normalisation (see ops.lrn), (H, W, C) -> same shape; region 'across' channels or
    'within' a channel. size must be odd, as in Caffe (the window is centred on each channel or pixel)."""

    size: int = 5
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 1.0
    region: str = "across"
    input_rank: ClassVar[int] = 3

    def configure(self):
        _check_odd_size(self.size, "a window centred on each element, as Caffe requires")
        if self.region not in ("across", "within"):
            raise ValueError(f"lrn region must be 'across' or 'within', got {self.region!r}")

    def forward(self, params, state, x, *, train, rng, lowering):
        return ops.lrn(x, self.size, self.alpha, self.beta, self.k, region=self.region), state

    def cost(self, in_shape, out_shape):
        window = self.size if self.region == "across" else self.size**2
        return 0, math.prod(out_shape) * (window + 4)

    def window(self, input_shape):
        return POINTWISE if self.region == "across" else _centred(self.size)


@dataclass(frozen=True)
class ContrastNorm(Layer):
    """cuda-convnet's contrast normalisation, cnorm (see ops.contrast_norm), (H, W, C) -> same shape: LRN within a
    channel on the input less its local mean. size must be odd."""

    size: int = 5
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 1.0
    input_rank: ClassVar[int] = 3

    def configure(self):
        _check_odd_size(self.size, "a window centred on each pixel")

    def forward(self, params, state, x, *, train, rng, lowering):
        return ops.contrast_norm(x, self.size, self.alpha, self.beta, self.k), state

    def cost(self, in_shape, out_shape):
        return 0, math.prod(out_shape) * (3 * self.size**2 + 6)

    def window(self, input_shape):
        return _centred(2 * self.size - 1)  # the squares of a window's pixels, each less its own window's mean


@dataclass(frozen=True)
class BatchNorm(Layer):
    """Batch normalisation without affine (Caffe's BatchNorm; follow it with Scale). (..., C) -> same shape.

    state: mean (C,), var (C,), the running statistics used in evaluation, and count (), the decayed number of
    batches behind them. As in Caffe, they are a normalised decaying average: after t training batches each is
    sum_k momentum**(t-k) * batch_k / sum_k momentum**(t-k) (Caffe keeps the sums and the count as its three
    blobs). Unlike a plain moving average started at 0 and 1, it is right after the first batch, so a short run
    evaluates with real statistics. A batch whose statistics are not finite (a NaN or inf input) leaves the state
    unchanged. The default momentum 0.99 (Keras, Flax) averages ~100 batches; Caffe's moving_average_fraction is
    0.999. use_global_stats=True (Caffe's use_global_stats: true, a frozen BatchNorm) normalises with the running
    statistics and keeps them even in training.
    """

    momentum: float = 0.99
    eps: float = 1e-5
    use_global_stats: bool = False
    inplace: ClassVar[bool] = True
    batch_statistics: ClassVar[bool] = True
    affine: ClassVar[bool] = True

    def configure(self):
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")
        if not self.eps > 0:
            raise ValueError(f"eps must be positive, got {self.eps!r}")

    def create(self, rng, input_shape):
        c = input_shape[-1]
        return {}, {"mean": jnp.zeros((c,), jnp.float32), "var": jnp.ones((c,), jnp.float32),
                    "count": jnp.zeros((), jnp.float32)}

    def forward(self, params, state, x, *, train, rng, lowering):
        if not train or self.use_global_stats:
            return ops.batch_norm(x, state["mean"], state["var"], train=False, eps=self.eps)[0], state
        y, mean, var = ops.norm.standardize(x, self.eps)
        return y.astype(x.dtype), self.trained_state(state, mean, var, x.size // x.shape[-1])

    def trained_state(self, state, mean, var, n: int):
        """The state after a training batch of n values per channel with this mean and biased variance (C,)."""
        count = self.momentum * state["count"] + 1
        keep = self.momentum * state["count"] / count  # the old average's share of the new one: 0 on the first batch
        mean, var = ops.norm.running_stats(state["mean"], state["var"], mean, var, n, keep)
        new = {"mean": mean, "var": var, "count": count}
        finite = jnp.isfinite(mean).all() & jnp.isfinite(var).all()
        return jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, state)

    def cost(self, in_shape, out_shape):
        return 0, 2 * math.prod(out_shape)

    def window(self, input_shape):
        return POINTWISE

    def affine_terms(self, params, state):
        """In evaluation: factor 1 / sqrt(var + eps), shift -mean * factor."""
        factor = lax.rsqrt(state["var"] + self.eps)
        return factor, -state["mean"] * factor


@dataclass(frozen=True)
class Scale(Layer):
    """Caffe's Scale: per-channel gamma (ones) and, if bias, beta (zeros). (..., C) -> same shape."""

    bias: bool = True
    inplace: ClassVar[bool] = True
    affine: ClassVar[bool] = True

    def create(self, rng, input_shape):
        c = input_shape[-1]
        params = {"gamma": jnp.ones((c,), jnp.float32)}
        if self.bias:
            params["beta"] = jnp.zeros((c,), jnp.float32)
        return params, {}

    def check_params(self, params, input_shape):
        gamma = params.get("gamma") if isinstance(params, Mapping) else None
        if gamma is not None and jnp.shape(gamma) != tuple(input_shape[-1:]):
            raise ValueError(f"input has {input_shape[-1]} channels, gamma has {jnp.shape(gamma)[0]}")
        super().check_params(params, input_shape)

    def forward(self, params, state, x, *, train, rng, lowering):
        return ops.scale(x, params["gamma"], params.get("beta")), state

    def cost(self, in_shape, out_shape):
        return 0, math.prod(out_shape) * (2 if self.bias else 1)

    def window(self, input_shape):
        return POINTWISE

    def affine_terms(self, params, state):
        gamma = params["gamma"]
        return gamma, params["beta"] if self.bias else jnp.zeros_like(gamma)


@dataclass(frozen=True)
class Bias(Layer):
    """Caffe's Bias: a learnt per-channel offset, (..., C) -> same shape; params b (C,), zeros."""

    inplace: ClassVar[bool] = True
    affine: ClassVar[bool] = True

    def create(self, rng, input_shape):
        return {"b": jnp.zeros(input_shape[-1:], jnp.float32)}, {}

    def forward(self, params, state, x, *, train, rng, lowering):
        return x + params["b"], state

    def window(self, input_shape):
        return POINTWISE

    def affine_terms(self, params, state):
        return jnp.ones_like(params["b"]), params["b"]
