"""Convolution on XLA:CPU: the 'cpu' lowering of conv2d (see ops.lowering), one group at a time.

XLA:CPU runs convolutions, and their gradients as convolutions over transposed operands, with kernels that are
often several times slower on the classic nets' layers than equivalent computations. Each of the three
directions -- the output, the input gradient and the weight gradient -- is computed in one of these forms, every
one exactly the convolution (tests/test_lowering.py):

  native           XLA's convolution.
  wide             the convolution with enough extra right padding that its output is wider than its input,
                   cropped after (XLA then picks different, Eigen, kernels).
  wide_input       x with one zero column appended and one column less of right padding (needs right padding).
  im2col           patches by strided slices times the kernel as one matrix; its transpose is a matmul and a
                   col2im of strided pads.
  im2col_chunked   im2col over batch chunks whose patches fit CHUNK_BYTES, in a lax.scan; its transpose sums
                   patches^T x output gradient over the chunks instead of contracting a convolution over the batch.

A gradient is the transpose of the form named for it. Which form is fastest depends on the shapes and on the
processor: jaxcnn.tuning measures them on the running machine (a Tuned lowering names them per shape); without
measurements these fixed rules apply (forward_form, input_form, weight_form):

  forward          `wide` for stride 1, >= 16 input channels and inputs up to WIDE_MAX_WIDTH wide; `im2col` where
                   `wide` would more than double the work (a kernel nearly as large as its input, such as an FC
                   layer turned convolution) and the patches fit IM2COL_BYTES; else `native`.
  input gradient   `im2col` while one image's patches fit CHUNK_BYTES and the batch's IM2COL_BYTES; else
                   `wide_input` where there is right padding; else `native`.
  weight gradient  `wide` for single-channel inputs (where its convolution's window is no larger than x);
                   `im2col_chunked` while one image's patches fit a chunk; else as the input gradient for large
                   patches.

`conv` ties them together with a custom JVP, so forward mode, reverse mode and vmap work as for the native op. In
reverse mode the output's cotangent passes a fusion boundary (ops.fusion) before the two gradients use it.
Measurements behind the rules: docs/performance.md.
"""
import functools
import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

from ..compat import linear_term
from .fusion import boundary
from .geometry import dilated, window_output
from .windows import patches

DIMS = ("NHWC", "HWIO", "NHWC")
CHUNK_BYTES = 2 << 20  # patches per im2col_chunked step: a cache-sized block
IM2COL_BYTES = 64 << 20  # largest patch matrix the input gradient builds whole
WIDE_MAX_WIDTH = 64  # the widest input `wide` is used for by the fixed rules


def native(x, w, stride, pads, dilation, layout="forward"):
    """XLA's convolution: x (N, H, W, C), w (KH, KW, C, O) -> (N, OH, OW, O).

    layout: how the operands are laid out for XLA, which does not change the result. 'forward' is XLA:CPU's
    canonical NHWC/HWIO. A gradient is the transpose of a tangent convolution, and JAX's transpose rules permute
    its layout; XLA:CPU makes such convolutions canonical again only outside while loops (inside one, such as a
    scan over training steps, it emits them as slow naive loops). So tangents are computed in the layouts whose
    transposes are canonical: 'input' (the tangent of x: the kernel as HWOI) and 'weight' (the tangent of w: x as
    CHWN, w as IHWO, the output as HWNC).
    """
    if layout == "forward":
        return lax.conv_general_dilated(x, w, stride, pads, rhs_dilation=dilation, dimension_numbers=DIMS)
    if layout == "input":
        return lax.conv_general_dilated(x, w.transpose(0, 1, 3, 2), stride, pads, rhs_dilation=dilation,
                                        dimension_numbers=("NHWC", "HWOI", "NHWC"))
    y = lax.conv_general_dilated(x.transpose(3, 1, 2, 0), w.transpose(2, 0, 1, 3), stride, pads,
                                 rhs_dilation=dilation, dimension_numbers=("CHWN", "IHWO", "HWNC"))
    return y.transpose(2, 0, 1, 3)


def _out_hw(x, w, stride, pads, dilation):
    return window_output(x.shape[1:3], dilated(w.shape[:2], dilation), stride, pads)[0]


def wide(x, w, stride, pads, dilation, layout="forward"):
    """The native convolution computed at least one column wider than its input, then cropped (see above)."""
    out_w = _out_hw(x, w, stride, pads, dilation)[1]
    (top, bottom), (left, right) = pads
    extra = max(x.shape[2] + 1 - out_w, 0) * stride[1]
    return native(x, w, stride, ((top, bottom), (left, right + extra)), dilation, layout)[:, :, :out_w]


def wide_input(x, w, stride, pads, dilation, layout="forward"):
    """The native convolution of x with one zero column appended and one column less of right padding (needs
    right padding >= 1): the same output; its transpose yields the input gradient one column wider, cropped."""
    (top, bottom), (left, right) = pads
    x = jnp.pad(x, ((0, 0), (0, 0), (0, 1), (0, 0)))
    return native(x, w, stride, ((top, bottom), (left, right - 1)), dilation, layout)


def im2col(x, w, stride, pads, dilation, layout="forward"):
    """Patches (N, OH, OW, KH*KW*C) times the kernel as a (KH*KW*C, O) matrix (a matmul, whose transposes are
    matmuls: `layout` changes nothing)."""
    p = patches(x, w.shape[:2], stride, pads, dilation)
    return p.reshape(*p.shape[:3], -1) @ w.reshape(-1, w.shape[-1])


def _patch_bytes(x, w, stride, pads, dilation, n):
    return n * math.prod(_out_hw(x, w, stride, pads, dilation)) * math.prod(w.shape[:3]) * x.dtype.itemsize


def im2col_chunked(x, w, stride, pads, dilation, layout="forward"):
    """im2col over batch chunks of at most CHUNK_BYTES of patches (the largest divisor of N that fits), each
    rematerialised in the backward pass rather than stored."""
    n = x.shape[0]
    per_image = _patch_bytes(x, w, stride, pads, dilation, 1)
    chunk = max((d for d in range(2, n + 1) if n % d == 0 and d * per_image <= CHUNK_BYTES), default=1)
    one = jax.checkpoint(lambda xc, w: im2col(xc, w, stride, pads, dilation))
    _, ys = lax.scan(lambda _, xc: (None, one(xc, w)), None, x.reshape(n // chunk, chunk, *x.shape[1:]))
    return ys.reshape(n, *ys.shape[2:])


def _native_operands(name, x, w, stride, pads, dilation):
    """The (x, pads) the native convolution inside form `name` (native, wide or wide_input) runs with."""
    (top, bottom), (left, right) = pads
    if name == "wide":
        extra = max(x.shape[2] + 1 - _out_hw(x, w, stride, pads, dilation)[1], 0) * stride[1]
        return x, ((top, bottom), (left, right + extra))
    if name == "wide_input":
        return jax.ShapeDtypeStruct((*x.shape[:2], x.shape[2] + 1, x.shape[3]), x.dtype), ((top, bottom),
                                                                                           (left, right - 1))
    return x, pads


def _weight_gradient_swaps(name, x, w, stride, pads, dilation) -> bool:
    """Whether XLA swaps the operands of the weight-gradient convolution of form `name`: it does where that
    convolution's window (the output's H x W) is larger than its input's (x's), and the swapped convolution is
    not canonical, which XLA:CPU runs as a slow loop inside while loops."""
    xn, native_pads = _native_operands(name, x, w, stride, pads, dilation)
    return math.prod(_out_hw(xn, w, stride, native_pads, dilation)) > math.prod(xn.shape[1:3])


def forward_form(x, w, stride, pads, dilation):
    """The form that computes the output: for stride 1, >= 16 input channels and an input at most WIDE_MAX_WIDTH
    wide, `wide`, or `im2col` where `wide` would more than double the output's width (a kernel nearly as large
    as its input, such as an FC layer turned convolution) and the patches are small; else `native`."""
    if stride != (1, 1) or w.shape[2] < 16 or x.shape[2] > WIDE_MAX_WIDTH:
        return native
    out_w = _out_hw(x, w, stride, pads, dilation)[1]
    if x.shape[2] + 1 - out_w > out_w and _patch_bytes(x, w, stride, pads, dilation, x.shape[0]) <= IM2COL_BYTES:
        return im2col
    return wide


def _large_patch_form(pads):
    return wide_input if pads[1][1] >= 1 else native


def input_form(x, w, stride, pads, dilation):
    """The form whose transpose gives the input gradient: `im2col` while one image's patches fit in a chunk
    and the whole batch's in IM2COL_BYTES, else `wide_input` where there is right padding, else `native`."""
    if (_patch_bytes(x, w, stride, pads, dilation, 1) <= CHUNK_BYTES
            and _patch_bytes(x, w, stride, pads, dilation, x.shape[0]) <= IM2COL_BYTES):
        return im2col
    return _large_patch_form(pads)


def weight_form(x, w, stride, pads, dilation):
    """The form whose transpose gives the weight gradient: `wide` for single-channel inputs, else
    `im2col_chunked` while one image's patches fit in a chunk, else as input_form for large patches."""
    if w.shape[2] == 1 and not _weight_gradient_swaps("wide", x, w, stride, pads, dilation):
        return wide
    if _patch_bytes(x, w, stride, pads, dilation, 1) <= CHUNK_BYTES:
        return im2col_chunked
    return _large_patch_form(pads)


FORMS = {f.__name__: f for f in (native, wide, wide_input, im2col, im2col_chunked)}


def signature(x, w, stride, pads, dilation) -> tuple:
    """What a form's speed depends on, as a hashable key: shapes, dtype, stride, pads, dilation."""
    return tuple(x.shape), tuple(w.shape), str(x.dtype), tuple(stride), tuple(map(tuple, pads)), tuple(dilation)
DIRECTIONS = ("forward", "input", "weight")  # the output, and the forms whose transposes give the two gradients
_HEURISTICS = {"forward": forward_form, "input": input_form, "weight": weight_form}


def candidates(direction, x, w, stride, pads, dilation) -> tuple[str, ...]:
    """Names of the forms that can compute `direction` ('forward', 'input' or 'weight') for these operands within
    the memory limits: native and wide (for the weight gradient: unless XLA would swap its convolution's operands),
    wide_input where there is right padding, im2col while the batch's patches fit IM2COL_BYTES, im2col_chunked
    while one image's do."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    names = ["native", "wide"]
    if pads[1][1] >= 1:
        names.append("wide_input")
    if direction == "weight":
        names = [n for n in names if not _weight_gradient_swaps(n, x, w, stride, pads, dilation)]
    if _patch_bytes(x, w, stride, pads, dilation, x.shape[0]) <= IM2COL_BYTES:
        names.append("im2col")
    if _patch_bytes(x, w, stride, pads, dilation, 1) <= IM2COL_BYTES:
        names.append("im2col_chunked")
    return tuple(names)


def form(direction, forms, x, w, stride, pads, dilation):
    """The form computing `direction`: forms[i] (a name per direction, e.g. measured by jaxcnn.tuning) when given,
    else the fixed rules of forward_form, input_form and weight_form."""
    if forms is None:
        return _HEURISTICS[direction](x, w, stride, pads, dilation)
    return FORMS[forms[DIRECTIONS.index(direction)]]


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4, 5))
def conv(x, w, stride, pads, dilation, forms=None):
    """One-group convolution: x (N, H, W, C), w (KH, KW, C, O) -> (N, OH, OW, O); explicit pads, pair stride
    and dilation. Equal to `native`, computed by the forms named in `forms` (forward, input, weight) or chosen by
    the fixed rules above."""
    return form("forward", forms, x, w, stride, pads, dilation)(x, w, stride, pads, dilation)


@functools.partial(conv.defjvp, symbolic_zeros=True)
def _conv_jvp(stride, pads, dilation, forms, primals, tangents):
    (x, w), (t_x, t_w) = primals, tangents
    y = conv(x, w, stride, pads, dilation, forms)
    terms = []
    if not isinstance(t_x, SymbolicZero):
        f = form("input", forms, x, w, stride, pads, dilation)
        terms.append(linear_term(lambda t: f(t, w, stride, pads, dilation, "input"), x, t_x))
    if not isinstance(t_w, SymbolicZero):
        f = form("weight", forms, x, w, stride, pads, dilation)
        terms.append(linear_term(lambda t: f(x, t, stride, pads, dilation, "weight"), w, t_w))
    return y, boundary(sum(terms[1:], terms[0]), x) if terms else jnp.zeros_like(y)
