"""Convolution (shared weights, optional groups) and the unshared-weight local layer."""
import jax.numpy as jnp
from jax import lax

from .geometry import check_nhwc, dilated, pair, resolve_padding, window_output

_DIMS = ("NHWC", "HWIO", "NHWC")


def conv_geometry(in_shape, kernel, stride=1, padding="VALID", dilation=1):
    """Validated geometry of a convolution on a (H, W, C) input.

    Returns (out_hw, pads, stride, dilation) with explicit ((top, bottom), (left, right)) pads.
    """
    kernel, stride, dilation = pair(kernel, "kernel"), pair(stride, "stride"), pair(dilation, "dilation")
    window = dilated(kernel, dilation)
    pads = resolve_padding(padding, in_shape[:2], window, stride)
    out_hw, _ = window_output(in_shape[:2], window, stride, pads)
    return out_hw, pads, stride, dilation


def check_groups(in_channels: int, out_channels: int, groups: int) -> None:
    if not isinstance(groups, int) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    if in_channels % groups:
        raise ValueError(f"groups={groups} does not divide {in_channels} input channels")
    if out_channels % groups:
        raise ValueError(f"groups={groups} does not divide {out_channels} output channels")


def conv2d(x, w, b=None, *, stride=1, padding="VALID", dilation=1, groups=1):
    """2-d convolution (cross-correlation, as in Caffe and XLA).

    x: (N, H, W, C); w: (KH, KW, C // groups, O); b: (O,) or None -> (N, OH, OW, O).
    groups splits C and O into that many independent convolutions (XLA's feature_group_count):
    output channels [g*O/groups, (g+1)*O/groups) see input channels [g*C/groups, (g+1)*C/groups).
    """
    check_nhwc(x.shape)
    kh, kw, cin_g, cout = w.shape
    check_groups(x.shape[-1], cout, groups)
    if cin_g * groups != x.shape[-1]:
        raise ValueError(
            f"input has {x.shape[-1]} channels but the kernel {tuple(w.shape)} with groups={groups} "
            f"expects {cin_g * groups}"
        )
    _, pads, stride, dilation = conv_geometry(x.shape[1:], (kh, kw), stride, padding, dilation)
    y = lax.conv_general_dilated(
        x, w, stride, pads, rhs_dilation=dilation, dimension_numbers=_DIMS, feature_group_count=groups
    )
    return y if b is None else y + b


def patches(x, kernel, stride, pads, dilation=(1, 1)):
    """Sliding-window patches by strided slicing: (N, H, W, C) -> (N, OH, OW, KH, KW, C)."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    out_hw, _ = window_output(x.shape[1:3], dilated(kernel, dilation), stride, pads)
    xp = jnp.pad(x, ((0, 0), *pads, (0, 0)))
    oh, ow = out_hw
    rows = []
    for i in range(kh):
        cols = []
        for j in range(kw):
            r, c = i * dh, j * dw
            cols.append(xp[:, r : r + (oh - 1) * sh + 1 : sh, c : c + (ow - 1) * sw + 1 : sw, :])
        rows.append(jnp.stack(cols, axis=3))
    return jnp.stack(rows, axis=3)


def local2d(x, w, b=None, *, stride=1, padding="VALID"):
    """Locally-connected layer: a convolution whose weights differ at every output position.

    x: (N, H, W, C); w: (OH, OW, KH, KW, C, O) -> (N, OH, OW, O).
    b: (O,) (one bias per filter, shared over positions), (OH, OW, O) (one per output position), or None.
    """
    check_nhwc(x.shape)
    oh, ow, kh, kw, cin, cout = w.shape
    if x.shape[-1] != cin:
        raise ValueError(f"input has {x.shape[-1]} channels but the local kernel {tuple(w.shape)} expects {cin}")
    out_hw, pads, stride, _ = conv_geometry(x.shape[1:], (kh, kw), stride, padding)
    if out_hw != (oh, ow):
        raise ValueError(
            f"input {x.shape[1]}x{x.shape[2]} gives {out_hw[0]}x{out_hw[1]} output positions but the local "
            f"kernel was built for {oh}x{ow}"
        )
    y = jnp.einsum("nhwijc,hwijco->nhwo", patches(x, (kh, kw), stride, pads), w)
    return y if b is None else y + b
