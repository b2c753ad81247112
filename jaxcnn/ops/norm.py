"""Normalisation: local response normalisation, batch normalisation and Caffe's Scale."""
import functools

import jax
import jax.numpy as jnp
from jax import lax

from .geometry import check_nhwc


def inverse_power(t: jax.Array, beta: float) -> jax.Array:
    """t ** -beta for t > 0, with square roots where beta is 0.5 or 0.75 (LRN's usual powers): XLA computes a
    general power as exp(-beta * log(t)), five times slower than rsqrt(t) * rsqrt(sqrt(t)) on the CPU."""
    if beta == 0.75:
        return lax.rsqrt(t) * lax.rsqrt(jnp.sqrt(t))
    if beta == 0.5:
        return lax.rsqrt(t)
    return t ** -beta


def lrn(x: jax.Array, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0, *,
        region: str = "across") -> jax.Array:
    """Local response normalisation. x: (N, H, W, C) -> same shape.

    region='across' (AlexNet, Caffe ACROSS_CHANNELS, cuda-convnet cmrnorm):
        y = x / (k + alpha / size * sum_{c' in window(c)} x[..., c']**2) ** beta,
        the window covering `size` channels centred on c (zero beyond the edges).
    region='within' (Caffe WITHIN_CHANNEL): the sum runs over a size x size spatial window of the
        same channel, zero-padded, and alpha is divided by size**2.
    """
    check_nhwc(x.shape)
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"lrn size must be a positive int, got {size!r}")
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
    if region == "across":
        window, pad, scale = (1, 1, 1, size), ((0, 0), (0, 0), (0, 0), (lo, hi)), alpha / size
    elif region == "within":
        window, pad, scale = (1, size, size, 1), ((0, 0), (lo, hi), (lo, hi), (0, 0)), alpha / size**2
    else:
        raise ValueError(f"lrn region must be 'across' or 'within', got {region!r}")
    sums = lax.reduce_window(x * x, 0.0, lax.add, window, (1, 1, 1, 1), pad)
    return x * inverse_power(k + scale * sums, beta)


def contrast_norm(x: jax.Array, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0) -> jax.Array:
    """cuda-convnet's contrast normalisation (cnorm). x: (N, H, W, C) -> same shape.

    With windows of size x size pixels of one channel centred on each pixel (size odd) and clipped to the map:
    m = the mean of x over the window's pixels inside the map, d = x - m, and
        y = x / (k + alpha / size**2 * sum_{window} d**2) ** beta
    (the sum of each window pixel's own d; zero beyond the edges): lrn(region='within') on x with the local mean
    removed from the sum of squares.
    """
    check_nhwc(x.shape)
    if not isinstance(size, int) or size < 1 or size % 2 == 0:
        raise ValueError(f"contrast_norm size must be a positive odd int, got {size!r}")
    half = (size - 1) // 2
    window, pad = (1, size, size, 1), ((0, 0), (half, half), (half, half), (0, 0))

    def window_sum(v):
        return lax.reduce_window(v, 0.0, lax.add, window, (1, 1, 1, 1), pad)

    counts = window_sum(jnp.ones((1, *x.shape[1:3], 1), x.dtype))
    d = x - window_sum(x) / counts
    return x * inverse_power(k + alpha / size**2 * window_sum(d * d), beta)


def per_channel(v: jax.Array, x: jax.Array) -> jax.Array:
    """v (C,) broadcast against x (N, ..., C), for a per-channel factor or term of x.

    On GPUs and TPUs the vector goes through (N, C) behind an optimization barrier, so that reverse mode sums each
    image first and the batch after: two short reductions, where XLA:GPU would run one column reduction over the
    N*H*W rows, serially for few channels (LeNet-BN's conv2 at batch 64: 60 of a step's 330 us on an H200,
    docs/performance.md). The CPU, where the barrier costs time, keeps the plain broadcast."""
    if x.ndim < 3:
        return v
    per_image = (x.shape[0],) + (1,) * (x.ndim - 2) + v.shape
    return lax.platform_dependent(v, cpu=functools.partial(jnp.broadcast_to, shape=per_image),
                                  default=functools.partial(through_images, per_image=per_image))


def through_images(v: jax.Array, per_image: tuple) -> jax.Array:
    """v (C,) -> per_image (N, 1, ..., 1, C), materialised as (N, C) behind an optimization barrier (which XLA
    neither fuses across nor simplifies away, in reverse mode too)."""
    return lax.optimization_barrier(jnp.broadcast_to(v, (per_image[0], *v.shape))).reshape(per_image)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def standardize(x, eps):
    """x (..., C) -> (y, mean, var): y = (x - mean) / sqrt(var + eps) with the mean and biased variance (C,)
    over every axis but the last."""
    axes = tuple(range(x.ndim - 1))
    mean, var = jnp.mean(x, axes), jnp.var(x, axes)
    return (x - mean) * lax.rsqrt(var + eps), mean, var


@standardize.defjvp
def _standardize_jvp(eps, primals, tangents):
    """The derivative in closed form: with r = 1/sqrt(var + eps), dy = r (dx - mean(dx) - y mean(y dx)),
    dmean = mean(dx), dvar = 2 mean(y dx) / r; reverse mode transposes it into one pass for the two channel means
    and one elementwise pass (faster than differentiating the forward: docs/performance.md)."""
    (x,), (t,) = primals, tangents
    y, mean, var = standardize(x, eps)
    axes = tuple(range(x.ndim - 1))
    r = lax.rsqrt(var + eps)
    t_mean, t_cov = jnp.mean(t, axes), jnp.mean(y * t, axes)
    tangent = per_channel(r, t) * (t - per_channel(t_mean, t) - y * per_channel(t_cov, t))
    return (y, mean, var), (tangent, t_mean, 2 * t_cov / r)


def batch_norm(x: jax.Array, mean: jax.Array, var: jax.Array, *, train: bool, momentum: float = 0.99,
               eps: float = 1e-5) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Batch normalisation over every axis but the last (channels), without scale and shift.

    x: (..., C); mean, var: (C,) running statistics -> (y, new_mean, new_var); y has x's dtype, the
    statistics keep theirs (float32 statistics with bfloat16 activations).
    train=True normalises with the batch mean and biased variance and returns running statistics
    updated as momentum * old + (1 - momentum) * batch (the variance unbiased, as Caffe and PyTorch);
    train=False normalises with the running statistics and returns them unchanged.
    """
    if mean.shape != x.shape[-1:] or var.shape != x.shape[-1:]:
        raise ValueError(f"batch_norm statistics {mean.shape}/{var.shape} do not match {x.shape[-1]} channels")
    if train:
        y, batch_mean, batch_var = standardize(x, eps)
        return y.astype(x.dtype), *running_stats(mean, var, batch_mean, batch_var, x.size // x.shape[-1], momentum)
    return ((x - mean) * lax.rsqrt(var + eps)).astype(x.dtype), mean, var


def running_stats(mean, var, batch_mean, batch_var, n: int, momentum):
    """Running statistics (C,) after a batch of n values per channel with this mean and biased variance:
    momentum * old + (1 - momentum) * batch, the variance made unbiased (as Caffe and PyTorch); no gradient flows
    into them."""
    unbiased = batch_var * (n / max(n - 1, 1))
    return (momentum * mean + (1 - momentum) * lax.stop_gradient(batch_mean),
            momentum * var + (1 - momentum) * lax.stop_gradient(unbiased))


def scale(x: jax.Array, gamma: jax.Array, beta: jax.Array | None = None) -> jax.Array:
    """Caffe's Scale layer: per-channel x * gamma (+ beta). x: (..., C); gamma, beta: (C,)."""
    y = x * per_channel(gamma, x)
    return y if beta is None else y + per_channel(beta, x)
