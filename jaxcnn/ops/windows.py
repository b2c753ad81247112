"""Sliding windows as strided slices: the building block of the patch-based lowerings and the local layer."""
import jax.numpy as jnp

from .geometry import dilated, window_output


def window_views(xp, kernel, stride, dilation=(1, 1)):
    """The KH*KW strided slices of an already padded (N, H, W, C) input, one per kernel tap in row-major order:
    view (i, j) is (N, OH, OW, C) with view[n, y, x] = xp[n, y*sh + i*dh, x*sw + j*dw]."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    (oh, ow), _ = window_output(xp.shape[1:3], dilated(kernel, dilation), stride, ((0, 0), (0, 0)))
    return [xp[:, i * dh : i * dh + (oh - 1) * sh + 1 : sh, j * dw : j * dw + (ow - 1) * sw + 1 : sw, :]
            for i in range(kh) for j in range(kw)]


def patches(x, kernel, stride, pads, dilation=(1, 1)):
    """Sliding-window patches by strided slicing: (N, H, W, C) -> (N, OH, OW, KH, KW, C)."""
    views = window_views(jnp.pad(x, ((0, 0), *pads, (0, 0))), kernel, stride, dilation)
    return jnp.stack(views, axis=3).reshape(*views[0].shape[:3], *kernel, x.shape[-1])
