"""Named layers: small frozen values with two pure functions.

    out_shape, params, state = layer.init(rng, input_shape)      # input_shape per example: (H, W, C) or (F,)
    y, state = layer.apply(params, state, x, train=False, rng=None)  # x batched: (N, H, W, C) or (N, F)

params hold what training learns, state what it does not (BatchNorm's running statistics). Each layer
carries Caffe-style `lr_mult` / `decay_mult` per parameter name (missing names mean 1.0). Config and shape
errors are raised as LayerError naming the layer.
"""
import contextlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping

import jax
import jax.numpy as jnp

from . import fillers
from . import ops
from .ops.conv import check_groups, conv_geometry
from .ops.pool import pool_geometry


class LayerError(ValueError):
    """A layer's config does not fit its input, or its input does not fit its parameters."""


@contextlib.contextmanager
def named(layer):
    """Re-raise ValueError / KeyError from inside `layer` as a LayerError that names it."""
    try:
        yield
    except LayerError:
        raise
    except ValueError as e:
        raise LayerError(f"{layer.name} ({type(layer).__name__}): {e}") from e
    except KeyError as e:
        raise LayerError(f"{layer.name} ({type(layer).__name__}): missing parameter or state {e}") from e


@dataclass(frozen=True)
class Layer:
    """Base class. Subclasses set `input_rank` and implement `create` (params, state) and `forward`."""

    name: str
    lr_mult: Mapping[str, float] = field(default_factory=dict, kw_only=True, hash=False)
    decay_mult: Mapping[str, float] = field(default_factory=dict, kw_only=True, hash=False)

    input_rank: ClassVar[int | None] = None  # per-example rank the layer needs (3: H, W, C; 1: features)
    inplace: ClassVar[bool] = False  # elementwise: may overwrite its input (Caffe's in-place layers)

    def init(self, rng, input_shape):
        """-> (output_shape, params, state) for per-example `input_shape` (no batch axis)."""
        input_shape = tuple(input_shape)
        with named(self):
            if self.input_rank is not None and len(input_shape) != self.input_rank:
                want = "(H, W, C)" if self.input_rank == 3 else "(features,); add a Flatten layer before it"
                raise ValueError(f"expected a per-example input shape {want}, got {input_shape}")
            params, state = self.create(rng, input_shape)
            x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
            y = jax.eval_shape(lambda p, s, x: self.forward(p, s, x, train=False, rng=None)[0], params, state, x)
        return tuple(y.shape[1:]), params, state

    def apply(self, params, state, x, *, train=False, rng=None):
        """-> (y, new_state). x has a leading batch axis."""
        with named(self):
            if self.input_rank is not None and x.ndim != self.input_rank + 1:
                raise ValueError(f"expected a {self.input_rank + 1}-d batched input, got shape {tuple(x.shape)}")
            return self.forward(params, state, x, train=train, rng=rng)

    def create(self, rng, input_shape):
        return {}, {}

    def forward(self, params, state, x, *, train, rng):
        raise NotImplementedError

    def cost(self, in_shape, out_shape):
        """Forward (multiply-accumulates, FLOPs) for one example; elementwise work counts one FLOP."""
        return 0, math.prod(out_shape)

    def mults(self, param_name):
        """(lr_mult, decay_mult) of one parameter."""
        return self.lr_mult.get(param_name, 1.0), self.decay_mult.get(param_name, 1.0)


def _bias(params):
    return params.get("b")


@dataclass(frozen=True)
class Conv(Layer):
    """Convolution. (H, W, C) -> (OH, OW, features); params w (KH, KW, C/groups, features), b (features,)."""

    features: int
    kernel: Any
    stride: Any = 1
    padding: Any = 0
    dilation: Any = 1
    groups: int = 1
    bias: bool = True
    w_init: Any = "xavier"
    b_init: Any = 0.0
    input_rank: ClassVar[int] = 3

    def create(self, rng, input_shape):
        check_groups(input_shape[-1], self.features, self.groups)
        (oh, ow), *_ = conv_geometry(input_shape, self.kernel, self.stride, self.padding, self.dilation)
        kh, kw = ops.geometry.pair(self.kernel, "kernel")
        kw_shape = (kh, kw, input_shape[-1] // self.groups, self.features)
        k1, k2 = jax.random.split(rng)
        params = {"w": fillers.resolve(self.w_init)(k1, kw_shape, jnp.float32)}
        if self.bias:
            params["b"] = fillers.resolve(self.b_init)(k2, (self.features,), jnp.float32)
        return params, {}

    def forward(self, params, state, x, *, train, rng):
        y = ops.conv2d(x, params["w"], _bias(params), stride=self.stride, padding=self.padding,
                       dilation=self.dilation, groups=self.groups)
        return y, state

    def cost(self, in_shape, out_shape):
        kh, kw = ops.geometry.pair(self.kernel, "kernel")
        macs = math.prod(out_shape) * kh * kw * in_shape[-1] // self.groups
        return macs, 2 * macs + (math.prod(out_shape) if self.bias else 0)


@dataclass(frozen=True)
class Local(Layer):
    """Locally-connected layer (cuda-convnet's `local`, Keras' LocallyConnected2D): unshared weights.

    (H, W, C) -> (OH, OW, features); params w (OH, OW, KH, KW, C, features) and, by `bias`:
    'position' (default, as cuda-convnet and Keras): b (OH, OW, features); 'filter': b (features,); None: no b.
    """

    features: int
    kernel: Any
    stride: Any = 1
    padding: Any = 0
    bias: str | None = "position"
    w_init: Any = "xavier"
    b_init: Any = 0.0
    input_rank: ClassVar[int] = 3

    def create(self, rng, input_shape):
        if self.bias not in ("position", "filter", None):
            raise ValueError(f"bias must be 'position', 'filter' or None, got {self.bias!r}")
        (oh, ow), *_ = conv_geometry(input_shape, self.kernel, self.stride, self.padding)
        kh, kw = ops.geometry.pair(self.kernel, "kernel")
        k1, k2 = jax.random.split(rng)
        w_shape = (oh, ow, kh, kw, input_shape[-1], self.features)
        params = {"w": fillers.resolve(self.w_init, batch_axis=(0, 1))(k1, w_shape, jnp.float32)}
        if self.bias:
            b_shape = (oh, ow, self.features) if self.bias == "position" else (self.features,)
            params["b"] = fillers.resolve(self.b_init)(k2, b_shape, jnp.float32)
        return params, {}

    def forward(self, params, state, x, *, train, rng):
        return ops.local2d(x, params["w"], _bias(params), stride=self.stride, padding=self.padding), state

    def cost(self, in_shape, out_shape):
        kh, kw = ops.geometry.pair(self.kernel, "kernel")
        macs = math.prod(out_shape) * kh * kw * in_shape[-1]
        return macs, 2 * macs + (math.prod(out_shape) if self.bias else 0)


@dataclass(frozen=True)
class Dense(Layer):
    """Fully-connected (Caffe's InnerProduct). (F,) -> (features,); params w (F, features), b (features,)."""

    features: int
    bias: bool = True
    w_init: Any = "xavier"
    b_init: Any = 0.0
    input_rank: ClassVar[int] = 1

    def create(self, rng, input_shape):
        k1, k2 = jax.random.split(rng)
        params = {"w": fillers.resolve(self.w_init)(k1, (input_shape[0], self.features), jnp.float32)}
        if self.bias:
            params["b"] = fillers.resolve(self.b_init)(k2, (self.features,), jnp.float32)
        return params, {}

    def forward(self, params, state, x, *, train, rng):
        if x.shape[-1] != params["w"].shape[0]:
            raise ValueError(
                f"input has {x.shape[-1]} features but the layer was built for {params['w'].shape[0]} "
                "(is the net's input the size it was built for?)"
            )
        return ops.dense(x, params["w"], _bias(params)), state

    def cost(self, in_shape, out_shape):
        macs = in_shape[0] * self.features
        return macs, 2 * macs + (self.features if self.bias else 0)


@dataclass(frozen=True)
class _Pool(Layer):
    kernel: Any
    stride: Any = None
    padding: Any = 0
    ceil_mode: bool = False
    input_rank: ClassVar[int] = 3

    def create(self, rng, input_shape):
        pool_geometry(input_shape, self.kernel, self.stride, self.padding, self.ceil_mode)
        return {}, {}

    def cost(self, in_shape, out_shape):
        return 0, math.prod(out_shape) * math.prod(ops.geometry.pair(self.kernel, "kernel"))


@dataclass(frozen=True)
class MaxPool(_Pool):
    """Max pooling, (H, W, C) -> (OH, OW, C). ceil_mode=True rounds sizes up like Caffe and cuda-convnet."""

    def forward(self, params, state, x, *, train, rng):
        return ops.max_pool(x, self.kernel, self.stride, self.padding, ceil_mode=self.ceil_mode), state


@dataclass(frozen=True)
class AvgPool(_Pool):
    """Average pooling, (H, W, C) -> (OH, OW, C); see ops.avg_pool for how padding is counted."""

    count_pad: bool = True

    def forward(self, params, state, x, *, train, rng):
        y = ops.avg_pool(x, self.kernel, self.stride, self.padding, ceil_mode=self.ceil_mode, count_pad=self.count_pad)
        return y, state


@dataclass(frozen=True)
class LRN(Layer):
    """Local response normalisation (see ops.lrn); region 'across' channels or 'within' a channel."""

    size: int = 5
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 1.0
    region: str = "across"
    input_rank: ClassVar[int] = 3

    def forward(self, params, state, x, *, train, rng):
        return ops.lrn(x, self.size, self.alpha, self.beta, self.k, region=self.region), state

    def cost(self, in_shape, out_shape):
        window = self.size if self.region == "across" else self.size**2
        return 0, math.prod(out_shape) * (window + 4)


@dataclass(frozen=True)
class BatchNorm(Layer):
    """Batch normalisation without affine (Caffe's BatchNorm; follow it with Scale).

    state: mean (C,), var (C,), the running statistics used in evaluation, and count (), the decayed number of
    batches behind them. As in Caffe, they are a normalised decaying average: after t training batches each is
    sum_k momentum**(t-k) * batch_k / sum_k momentum**(t-k) (Caffe keeps the sums and the count as its three
    blobs). Unlike a plain moving average started at 0 and 1, it is right after the first batch, so a short run
    evaluates with real statistics. The default momentum 0.99 (Keras, Flax) averages ~100 batches; Caffe's
    moving_average_fraction is 0.999.
    """

    momentum: float = 0.99
    eps: float = 1e-5
    inplace: ClassVar[bool] = True

    def create(self, rng, input_shape):
        c = input_shape[-1]
        return {}, {"mean": jnp.zeros((c,), jnp.float32), "var": jnp.ones((c,), jnp.float32),
                    "count": jnp.zeros((), jnp.float32)}

    def forward(self, params, state, x, *, train, rng):
        count = self.momentum * state["count"] + 1 if train else state["count"]
        # the old average's share of the new one: ops.batch_norm's momentum, 0 on the first batch
        keep = self.momentum * state["count"] / count if train else self.momentum
        y, mean, var = ops.batch_norm(x, state["mean"], state["var"], train=train, momentum=keep, eps=self.eps)
        return y, {"mean": mean, "var": var, "count": count}

    def cost(self, in_shape, out_shape):
        return 0, 2 * math.prod(out_shape)


@dataclass(frozen=True)
class Scale(Layer):
    """Caffe's Scale: per-channel gamma (ones) and, if bias, beta (zeros). (..., C) -> same shape."""

    bias: bool = True
    inplace: ClassVar[bool] = True

    def create(self, rng, input_shape):
        c = input_shape[-1]
        params = {"gamma": jnp.ones((c,), jnp.float32)}
        if self.bias:
            params["beta"] = jnp.zeros((c,), jnp.float32)
        return params, {}

    def forward(self, params, state, x, *, train, rng):
        if x.shape[-1] != params["gamma"].shape[0]:
            raise ValueError(f"input has {x.shape[-1]} channels, gamma has {params['gamma'].shape[0]}")
        return ops.scale(x, params["gamma"], params.get("beta")), state

    def cost(self, in_shape, out_shape):
        return 0, math.prod(out_shape) * (2 if self.bias else 1)


@dataclass(frozen=True)
class _Elementwise(Layer):
    fn: ClassVar[Callable]
    inplace: ClassVar[bool] = True

    def forward(self, params, state, x, *, train, rng):
        return type(self).fn(x), state


@dataclass(frozen=True)
class ReLU(_Elementwise):
    """max(x, 0), any shape."""

    fn: ClassVar[Callable] = ops.relu


@dataclass(frozen=True)
class Tanh(_Elementwise):
    """tanh(x), any shape."""

    fn: ClassVar[Callable] = ops.tanh


@dataclass(frozen=True)
class Sigmoid(_Elementwise):
    """1 / (1 + exp(-x)), any shape."""

    fn: ClassVar[Callable] = ops.sigmoid


@dataclass(frozen=True)
class Dropout(Layer):
    """Inverted dropout with probability `rate` in training (needs rng); identity in evaluation."""

    rate: float = 0.5
    inplace: ClassVar[bool] = True

    def create(self, rng, input_shape):
        if not 0.0 <= self.rate < 1.0:
            raise ValueError(f"rate must be in [0, 1), got {self.rate!r}")
        return {}, {}

    def forward(self, params, state, x, *, train, rng):
        return ops.dropout(x, self.rate, rng=rng, train=train), state

    def cost(self, in_shape, out_shape):
        return 0, 0


@dataclass(frozen=True)
class Flatten(Layer):
    """(H, W, C) -> (H*W*C,), row-major (channels fastest), a free reshape."""

    inplace: ClassVar[bool] = True

    def forward(self, params, state, x, *, train, rng):
        return ops.flatten(x), state

    def cost(self, in_shape, out_shape):
        return 0, 0

