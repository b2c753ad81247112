"""Max and average pooling with floor or ceil (Caffe, cuda-convnet) output rounding."""
import jax.numpy as jnp
from jax import lax

from .geometry import check_nhwc, pair, resolve_padding, window_output


def pool_geometry(in_shape, kernel, stride=None, padding="VALID", ceil_mode=False):
    """Validated pooling geometry on a (H, W, C) input -> (out_hw, kernel, stride, pads, extra).

    pads are the explicit ((top, bottom), (left, right)); extra is the bottom/right overhang ceil rounding adds.
    """
    kernel = pair(kernel, "kernel")
    stride = kernel if stride is None else pair(stride, "stride")
    pads = resolve_padding(padding, in_shape[:2], kernel, stride)
    if any(p >= k for k, side in zip(kernel, pads) for p in side):
        raise ValueError(f"pooling padding {pads} must be smaller than the kernel {kernel[0]}x{kernel[1]}")
    out_hw, extra = window_output(in_shape[:2], kernel, stride, pads, ceil_mode)
    return out_hw, kernel, stride, pads, extra


def _windows(x, init, op, kernel, stride, pads, extra):
    padding = ((0, 0), (pads[0][0], pads[0][1] + extra[0]), (pads[1][0], pads[1][1] + extra[1]), (0, 0))
    return lax.reduce_window(x, init, op, (1, *kernel, 1), (1, *stride, 1), padding)


def max_pool(x, kernel, stride=None, padding="VALID", *, ceil_mode=False):
    """Max pooling. x: (N, H, W, C) -> (N, OH, OW, C); stride defaults to the kernel.

    Padding never wins a max (it is -inf). ceil_mode=True rounds the output size up as Caffe and
    cuda-convnet do (32x32, 3x3 window, stride 2 -> 16x16); the last window then overhangs the input.
    """
    check_nhwc(x.shape)
    _, kernel, stride, pads, extra = pool_geometry(x.shape[1:], kernel, stride, padding, ceil_mode)
    return _windows(x, -jnp.inf, lax.max, kernel, stride, pads, extra)


def avg_pool(x, kernel, stride=None, padding="VALID", *, ceil_mode=False, count_pad=True):
    """Average pooling. x: (N, H, W, C) -> (N, OH, OW, C); stride defaults to the kernel.

    Each window's sum is divided by the number of cells it covers inside the padded input: with
    count_pad=True (Caffe, PyTorch's default) explicit zero padding counts, with count_pad=False
    (TensorFlow/Keras 'SAME') only real input pixels count. The overhang that ceil rounding adds
    past the padding never counts, as in Caffe.
    """
    check_nhwc(x.shape)
    _, kernel, stride, pads, extra = pool_geometry(x.shape[1:], kernel, stride, padding, ceil_mode)
    sums = _windows(x, 0.0, lax.add, kernel, stride, pads, extra)
    mask = jnp.pad(jnp.ones((1, *x.shape[1:3], 1), x.dtype), ((0, 0), *pads, (0, 0)), constant_values=float(count_pad))
    counts = _windows(mask, 0.0, lax.add, kernel, stride, ((0, 0), (0, 0)), extra)
    return sums / counts
