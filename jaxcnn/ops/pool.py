"""Max and average pooling with floor or ceil (Caffe, cuda-convnet) output rounding."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .fusion import boundary
from .geometry import IntOrPair, PaddingSpec, check_nhwc, pair, resolve_padding, window_output
from .lowering import Tuned, resolve
from .windows import window_views

CLIPS = ("always", "padded")


def pool_geometry(in_shape, kernel, stride=None, padding="VALID", ceil_mode=False, clip="always"):
    """Validated pooling geometry on a (H, W, C) input -> (out_hw, kernel, stride, pads, extra).

    pads are the explicit ((top, bottom), (left, right)); extra is the bottom/right overhang ceil rounding adds.
    clip: when ceil rounding drops a last window that would start past the input and its top/left padding:
    'always' (PyTorch, jaxcnn), or 'padded', only when the pooling has any padding (Caffe), so that an
    unpadded pooling with stride > kernel keeps a last window wholly outside the input.
    """
    if clip not in CLIPS:
        raise ValueError(f"clip must be one of {', '.join(map(repr, CLIPS))}, got {clip!r}")
    kernel = pair(kernel, "kernel")
    stride = kernel if stride is None else pair(stride, "stride")
    pads = resolve_padding(padding, in_shape[:2], kernel, stride)
    if any(p >= k for k, side in zip(kernel, pads) for p in side):
        raise ValueError(f"pooling padding {pads} must be smaller than the kernel {kernel[0]}x{kernel[1]}")
    clip_last = clip == "always" or any(p for side in pads for p in side)
    out_hw, extra = window_output(in_shape[:2], kernel, stride, pads, ceil_mode, clip_last)
    return out_hw, kernel, stride, pads, extra


def wholly_outside(in_hw, stride, pads, out_hw):
    """Whether the last window of some axis starts past the input and its top/left padding (clip='padded')."""
    return any((o - 1) * s >= n + lo for n, s, (lo, _), o in zip(in_hw, stride, pads, out_hw))


def _full_pads(pads, extra):
    return ((0, 0), (pads[0][0], pads[0][1] + extra[0]), (pads[1][0], pads[1][1] + extra[1]), (0, 0))


def _windows(x, init, op, kernel, stride, pads, extra):
    return lax.reduce_window(x, init, op, (1, *kernel, 1), (1, *stride, 1), _full_pads(pads, extra))


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2))
def _max_of_views(xp, kernel, stride):
    """Max over the KH*KW strided views of a padded (N, H, W, C) input: one elementwise pass."""
    return functools.reduce(jnp.maximum, window_views(xp, kernel, stride))


def _first_max(xp, kernel, stride):
    """-> (max, tap), both (N, OH, OW, C): each window's maximum and the row-major number of the kernel tap that
    holds its first maximum, the element XLA's select-and-scatter (reduce_window max's gradient) picks."""
    views = window_views(xp, kernel, stride)
    y, tap = views[0], jnp.zeros(views[0].shape, jnp.int32)
    for t, view in enumerate(views[1:], start=1):
        tap = jnp.where(view > y, t, tap)
        y = jnp.maximum(y, view)
    return y, tap


def _flat_index(xp_shape, tap, kernel, stride):
    """Flat index into the padded input of each window's `tap`."""
    _, hp, wp, c = xp_shape
    iota = functools.partial(lax.broadcasted_iota, jnp.int32, tap.shape)
    row, col = iota(1) * stride[0] + tap // kernel[1], iota(2) * stride[1] + tap % kernel[1]
    return ((iota(0) * hp + row) * wp + col) * c + iota(3)


@_max_of_views.defjvp
def _max_of_views_jvp(kernel, stride, primals, tangents):
    """Each window passes on the tangent of its first maximum, between fusion boundaries (ops.fusion): where
    windows are disjoint, by selecting among its taps' views (an elementwise pass both ways); where they
    overlap, by a gather, which reverse mode transposes to a scatter-add (each the faster there on XLA:CPU:
    docs/performance.md)."""
    xp = primals[0]
    y, tap = _first_max(xp, kernel, stride)
    t = boundary(tangents[0], xp)
    if all(s >= k for s, k in zip(stride, kernel)):
        views = window_views(t, kernel, stride)
        t_y = views[0]
        for i, view in enumerate(views[1:], start=1):
            t_y = jnp.where(tap == i, view, t_y)
    else:
        t_y = t.reshape(-1).at[_flat_index(xp.shape, tap, kernel, stride)].get(mode="promise_in_bounds")
    return y, boundary(t_y, xp)


def max_pool(x: jax.Array, kernel: IntOrPair, stride: IntOrPair | None = None, padding: PaddingSpec = "VALID", *,
             ceil_mode: bool = False, clip: str = "always", lowering: str | Tuned = "auto") -> jax.Array:
    """Max pooling. x: (N, H, W, C) -> (N, OH, OW, C); stride defaults to the kernel.

    Padding never wins a max (it is -inf). ceil_mode=True rounds the output size up as Caffe and
    cuda-convnet do (32x32, 3x3 window, stride 2 -> 16x16); the last window then overhangs the input.
    clip (see pool_geometry): with 'padded', a window wholly outside the input gives the lowest finite
    float, as Caffe's -FLT_MAX.
    lowering (see ops.lowering): 'native' is lax.reduce_window, whose gradient XLA:CPU runs as a slow
    select-and-scatter; 'cpu' takes the max over the KH*KW strided views in one elementwise pass, and its
    gradient goes to each window's first maximum, the element select-and-scatter picks: elementwise where the
    windows are disjoint, else a scatter-add.
    """
    check_nhwc(x.shape)
    out_hw, kernel, stride, pads, extra = pool_geometry(x.shape[1:], kernel, stride, padding, ceil_mode, clip)
    if resolve(lowering, x) == "cpu":
        xp = jnp.pad(x, _full_pads(pads, extra), constant_values=-jnp.inf)
        y = _max_of_views(xp, kernel, stride) if xp.size < 2**31 else None  # the gradient's flat indices: int32
    else:
        y = None
    if y is None:
        y = _windows(x, -jnp.inf, lax.max, kernel, stride, pads, extra)
    if wholly_outside(x.shape[1:3], stride, pads, out_hw):
        y = jnp.maximum(y, jnp.finfo(y.dtype).min)
    return y


def avg_pool(x: jax.Array, kernel: IntOrPair, stride: IntOrPair | None = None, padding: PaddingSpec = "VALID", *,
             ceil_mode: bool = False, count_pad: bool = True, clip: str = "always") -> jax.Array:
    """Average pooling. x: (N, H, W, C) -> (N, OH, OW, C); stride defaults to the kernel.

    Each window's sum is divided by the number of cells it covers inside the padded input: with
    count_pad=True (Caffe, PyTorch's default) explicit zero padding counts, with count_pad=False
    (TensorFlow/Keras 'SAME') only real input pixels count. The overhang that ceil rounding adds
    past the padding never counts, as in Caffe. clip: see pool_geometry; where clip='padded' leaves a window
    wholly outside the input, every window is divided by Caffe's own window size, which for that window is zero
    or negative: it gives Caffe's NaN (0 / 0) or -0 (count_pad does not apply there).
    """
    check_nhwc(x.shape)
    out_hw, kernel, stride, pads, extra = pool_geometry(x.shape[1:], kernel, stride, padding, ceil_mode, clip)
    sums = _windows(x, 0.0, lax.add, kernel, stride, pads, extra)
    if wholly_outside(x.shape[1:3], stride, pads, out_hw):
        return sums / caffe_window_sizes(x.shape[1:3], kernel, stride, pads, out_hw).astype(x.dtype)
    mask = jnp.pad(jnp.ones((1, *x.shape[1:3], 1), x.dtype), ((0, 0), *pads, (0, 0)), constant_values=float(count_pad))
    counts = _windows(mask, 0.0, lax.add, kernel, stride, ((0, 0), (0, 0)), extra)
    return sums / counts


def caffe_window_sizes(in_hw, kernel, stride, pads, out_hw):
    """Caffe's AVE divisor per window, (OH, OW, 1): the product of each axis' extent min(start + k, n + pad_end) -
    start with start = i * s - pad_begin, zero or negative for a window wholly past the input."""
    def extents(n, k, s, lo, hi, o):
        start = np.arange(o) * s - lo
        return np.minimum(start + k, n + hi) - start

    h, w = (extents(*args) for args in zip(in_hw, kernel, stride, *zip(*pads), out_hw))
    return jnp.asarray((h[:, None] * w[None, :])[..., None])
