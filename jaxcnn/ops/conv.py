"""Convolution (shared weights, optional groups) and the unshared-weight local layer."""
import jax
import jax.numpy as jnp
from jax import lax

from . import conv_cpu
from .geometry import IntOrPair, PaddingSpec, check_nhwc, dilated, pair, resolve_padding, window_output
from .lowering import Tuned, resolve
from .windows import patches


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


def conv2d(x: jax.Array, w: jax.Array, b: jax.Array | None = None, *, stride: IntOrPair = 1,
           padding: PaddingSpec = "VALID", dilation: IntOrPair = 1, groups: int = 1,
           lowering: str | Tuned = "auto") -> jax.Array:
    """2-d convolution (cross-correlation, as in Caffe and XLA).

    x: (N, H, W, C); w: (KH, KW, C // groups, O); b: (O,) or None -> (N, OH, OW, O).
    groups splits C and O into that many independent convolutions (XLA's feature_group_count):
    output channels [g*O/groups, (g+1)*O/groups) see input channels [g*C/groups, (g+1)*C/groups).
    lowering (see ops.lowering): 'native' is lax.conv_general_dilated with feature_group_count; 'cpu' is
    ops.conv_cpu.conv, whose forms (depthwise as shifted multiply-adds, a few groups one by one, ...) XLA:CPU runs
    faster, with the forms a Tuned lowering names for these shapes.
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
    if resolve(lowering, x) == "native":
        y = conv_cpu.native(x, w, stride, pads, dilation)
    else:
        forms = None
        if isinstance(lowering, Tuned):
            forms = lowering.conv_forms(conv_cpu.signature(x, w, stride, pads, dilation))
        y = conv_cpu.conv(x, w, stride, pads, dilation, forms)
    return y if b is None else y + b


def local2d(x: jax.Array, w: jax.Array, b: jax.Array | None = None, *, stride: IntOrPair = 1,
            padding: PaddingSpec = "VALID", lowering: str | Tuned = "auto") -> jax.Array:
    """Locally-connected layer: a convolution whose weights differ at every output position.

    x: (N, H, W, C); w: (OH, OW, KH, KW, C, O) -> (N, OH, OW, O).
    b: (O,) (one bias per filter, shared over positions), (OH, OW, O) (one per output position), or None.
    Both lowerings contract patches (by strided slicing) with the weights: 'native' as one einsum, 'cpu' (see
    ops.lowering) as a batched matmul over output positions laid out first, which XLA:CPU runs faster.
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
    p = patches(x, (kh, kw), stride, pads)
    if resolve(lowering, x) == "native":
        y = jnp.einsum("nhwijc,hwijco->nhwo", p, w)
    else:
        by_position = p.reshape(x.shape[0], oh * ow, -1).transpose(1, 0, 2)  # (OH*OW, N, KH*KW*C)
        y = lax.dot_general(by_position, w.reshape(oh * ow, -1, cout), (((2,), (1,)), ((0,), (0,))))
        y = y.transpose(1, 0, 2).reshape(x.shape[0], oh, ow, cout)
    return y if b is None else y + b
