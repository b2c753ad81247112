"""Layers with weights over their inputs: Conv (shared, grouped), Local (unshared), Dense (fully connected)."""
import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from .. import fillers, ops
from ..ops.conv import check_groups, conv_geometry
from ..ops.geometry import IntOrPair, PaddingSpec, dilated, normalize_padding, pair
from .base import Layer, Window, positive_int


def _check_fillers(layer):
    fillers.resolve(layer.w_init)
    fillers.resolve(layer.b_init)


def _with_bias(layer):
    """Conv and Dense's absorbing(): the layer with a bias."""
    return dataclasses.replace(layer, bias=True)


def _absorb(layer, params, factor, shift):
    """Conv and Dense's absorb: w's last axis and the bias (zeros if none) are the output channels, so w * factor
    and b * factor + shift; in w's dtype."""
    w = params["w"]
    b = params["b"] * factor + shift if layer.bias else shift
    return {"w": (w * factor).astype(w.dtype), "b": jnp.asarray(b, w.dtype)}


def _as_conv(layer, matrix, bias, window):
    """A layer computing `matrix` (inputs, outputs) and `bias` on its row-major flattened input -> (Conv, params)
    for that input held as a map of `window` positions: a VALID Conv whose kernel is the window."""
    conv = Conv(layer.name, matrix.shape[1], window, bias=bias is not None, lr_mult=layer.lr_mult,
                decay_mult=layer.decay_mult)
    params = {"w": matrix.reshape(*window, -1, matrix.shape[1])}
    return conv, params if bias is None else {**params, "b": bias}


@dataclass(frozen=True)
class Conv(Layer):
    """Convolution (Caffe's Convolution), groups as XLA's feature_group_count (AlexNet's conv2).

    (H, W, C) -> (OH, OW, features); params w (KH, KW, C/groups, features) and, with bias, b (features,).
    kernel, stride, dilation: int or (h, w); padding: 'VALID', 'SAME', int, (h, w) or ((top, bottom), (left,
    right)). Fillers (w_init, b_init): see jaxcnn.fillers.
    """

    features: int
    kernel: IntOrPair
    stride: IntOrPair = 1
    padding: PaddingSpec = 0
    dilation: IntOrPair = 1
    groups: int = 1
    bias: bool = True
    w_init: Any = "xavier"
    b_init: Any = 0.0
    input_rank: ClassVar[int] = 3

    def configure(self):
        positive_int(self.features, "features")
        positive_int(self.groups, "groups")
        if self.features % self.groups:
            raise ValueError(f"groups={self.groups} does not divide {self.features} output channels")
        self._set(kernel=pair(self.kernel, "kernel"), stride=pair(self.stride, "stride"),
                  dilation=pair(self.dilation, "dilation"), padding=normalize_padding(self.padding))
        _check_fillers(self)

    def create(self, rng, input_shape):
        check_groups(input_shape[-1], self.features, self.groups)
        conv_geometry(input_shape, self.kernel, self.stride, self.padding, self.dilation)
        kw_shape = (*self.kernel, input_shape[-1] // self.groups, self.features)
        k1, k2 = jax.random.split(rng)
        params = {"w": fillers.resolve(self.w_init)(k1, kw_shape, jnp.float32)}
        if self.bias:
            params["b"] = fillers.resolve(self.b_init)(k2, (self.features,), jnp.float32)
        return params, {}

    def forward(self, params, state, x, *, train, rng, lowering):
        y = ops.conv2d(x, params["w"], params.get("b"), stride=self.stride, padding=self.padding,
                       dilation=self.dilation, groups=self.groups, lowering=lowering)
        return y, state

    def cost(self, in_shape, out_shape):
        macs = math.prod(out_shape) * math.prod(self.kernel) * in_shape[-1] // self.groups
        return macs, 2 * macs + (math.prod(out_shape) if self.bias else 0)

    def window(self, input_shape):
        _, pads, stride, dilation = conv_geometry(input_shape, self.kernel, self.stride, self.padding, self.dilation)
        return Window(dilated(self.kernel, dilation), stride, pads)

    def probe_input(self, channels):
        return (*dilated(self.kernel, self.dilation), channels)

    absorbing, absorb = _with_bias, _absorb


@dataclass(frozen=True)
class Local(Layer):
    """Locally-connected layer (cuda-convnet's `local`, Keras' LocallyConnected2D): unshared weights.

    (H, W, C) -> (OH, OW, features); params w (OH, OW, KH, KW, C, features) and, by `bias`:
    'position' (default, as cuda-convnet and Keras): b (OH, OW, features); 'filter': b (features,); None: no b.
    The weight filler fills each output position's (KH, KW, C, features) kernel on its own, so fan-in is
    KH*KW*C as for a convolution.
    """

    features: int
    kernel: IntOrPair
    stride: IntOrPair = 1
    padding: PaddingSpec = 0
    bias: str | None = "position"
    w_init: Any = "xavier"
    b_init: Any = 0.0
    input_rank: ClassVar[int] = 3

    def configure(self):
        positive_int(self.features, "features")
        if self.bias not in ("position", "filter", None):
            raise ValueError(f"bias must be 'position', 'filter' or None, got {self.bias!r}")
        self._set(kernel=pair(self.kernel, "kernel"), stride=pair(self.stride, "stride"),
                  padding=normalize_padding(self.padding))
        _check_fillers(self)

    def create(self, rng, input_shape):
        (oh, ow), *_ = conv_geometry(input_shape, self.kernel, self.stride, self.padding)
        k1, k2 = jax.random.split(rng)
        kernel = (*self.kernel, input_shape[-1], self.features)
        fill = fillers.resolve(self.w_init)
        # one compiled fill (eagerly, vmap would dispatch its random-number ops one by one, for seconds)
        w = jax.jit(jax.vmap(lambda k: fill(k, kernel, jnp.float32)))(jax.random.split(k1, oh * ow))
        params = {"w": w.reshape(oh, ow, *kernel)}
        if self.bias:
            b_shape = (oh, ow, self.features) if self.bias == "position" else (self.features,)
            params["b"] = fillers.resolve(self.b_init)(k2, b_shape, jnp.float32)
        return params, {}

    def forward(self, params, state, x, *, train, rng, lowering):
        y = ops.local2d(x, params["w"], params.get("b"), stride=self.stride, padding=self.padding,
                        lowering=lowering)
        return y, state

    def cost(self, in_shape, out_shape):
        macs = math.prod(out_shape) * math.prod(self.kernel) * in_shape[-1]
        return macs, 2 * macs + (math.prod(out_shape) if self.bias else 0)

    def window(self, input_shape):
        return None  # weights per output position

    def as_sliding(self, params, input_shape, window):
        """The equivalent dense matrix (its zero padding included, outputs flattened (OH, OW, F) -> OH*OW*F) as a
        Conv over the window."""
        (h, w, c), p = input_shape, params
        oh, ow, kh, kw, _, f = p["w"].shape
        _, ((top, _), (left, _)), (sh, sw), _ = conv_geometry(input_shape, (kh, kw), self.stride, self.padding)
        i, j, a, b = np.indices((oh, ow, kh, kw)).reshape(4, -1)  # output position (i, j), kernel tap (a, b)
        r, s = i * sh + a - top, j * sw + b - left  # the input pixel each tap reads
        inside = (r >= 0) & (r < h) & (s >= 0) & (s < w)  # taps on zero padding get no weight
        i, j, a, b, r, s = (v[inside] for v in (i, j, a, b, r, s))
        matrix = jnp.zeros((h, w, c, oh, ow, f), p["w"].dtype).at[r, s, :, i, j, :].set(p["w"][i, j, a, b])
        bias = p.get("b")
        if bias is not None:
            bias = jnp.broadcast_to(bias, (oh, ow, f)).reshape(-1)  # 'filter' (F,) or 'position' (OH, OW, F)
        return _as_conv(self, matrix.reshape(h * w * c, oh * ow * f), bias, window)


@dataclass(frozen=True)
class Dense(Layer):
    """Fully-connected (Caffe's InnerProduct). (F,) -> (features,); params w (F, features), b (features,)."""

    features: int
    bias: bool = True
    w_init: Any = "xavier"
    b_init: Any = 0.0
    input_rank: ClassVar[int] = 1

    def configure(self):
        positive_int(self.features, "features")
        _check_fillers(self)

    def create(self, rng, input_shape):
        k1, k2 = jax.random.split(rng)
        params = {"w": fillers.resolve(self.w_init)(k1, (input_shape[0], self.features), jnp.float32)}
        if self.bias:
            params["b"] = fillers.resolve(self.b_init)(k2, (self.features,), jnp.float32)
        return params, {}

    def check_params(self, params, input_shape):
        w = params.get("w") if isinstance(params, Mapping) else None
        if w is not None and jnp.ndim(w) == 2 and jnp.shape(w)[0] != input_shape[0]:
            raise ValueError(f"input has {input_shape[0]} features but the layer was built for {jnp.shape(w)[0]} "
                             "(is the net's input the size it was built for?)")
        super().check_params(params, input_shape)

    def forward(self, params, state, x, *, train, rng, lowering):
        return ops.dense(x, params["w"], params.get("b")), state

    def cost(self, in_shape, out_shape):
        macs = in_shape[0] * self.features
        return macs, 2 * macs + (self.features if self.bias else 0)

    def window(self, input_shape):
        return None  # all of its input

    def as_sliding(self, params, input_shape, window):
        """A Conv over the window: w (F, O) -> (H, W, F / (H * W), O), row-major as the flatten."""
        return _as_conv(self, params["w"], params.get("b"), window)

    absorbing, absorb = _with_bias, _absorb
