"""Convolution on XLA:CPU: the 'cpu' lowering of conv2d (see ops.lowering), grouped or not.

XLA:CPU runs convolutions, and their gradients as convolutions over transposed operands, with kernels that are
often several times slower on the classic nets' layers than equivalent computations; its grouped convolution
(feature_group_count) is slower still, tens of times on depthwise layers. Each of the three directions -- the
output, the input gradient and the weight gradient -- is computed in one of these forms, every one exactly the
convolution, for any number of groups (the groups are x's channels over the kernel's input channels;
tests/test_lowering.py, tests/test_grouped_conv.py):

  native           XLA's convolution (feature_group_count for groups).
  wide             the convolution with enough extra right padding that its output is wider than its input,
                   cropped after (XLA then picks different, Eigen, kernels).
  wide_input       x with one zero column appended and one column less of right padding (needs right padding).
  im2col           patches by strided slices times the kernel as one matrix per group (a batched matmul over the
                   groups); its transpose is a matmul and a col2im of strided pads.
  im2col_chunked   im2col over batch chunks whose patches fit CHUNK_BYTES, in a lax.scan; its transpose sums
                   patches^T x output gradient over the chunks instead of contracting a convolution over the batch.
  per_group        each group as a convolution of its own, in the form the one-group rules below pick (compile
                   time grows with the groups: a candidate for at most PER_GROUP_MAX).
  shifted          few input channels per group (depthwise: one): the sum over the KH*KW taps and the group's
                   input channels of a strided view of x (each group's channel repeated for its outputs) times
                   the matching weights, elementwise over NHWC: KH*KW*C/G terms to compile. Its weight gradient
                   sums each term's products over batch blocks in one fused loop before reducing the rest.
  shifted_rows     `shifted` over output rows flattened to (N, OH, OW*O), each tap's weights tiled along them: a
                   candidate for the output only (MobileNet v1 per layer: docs/performance.md).

A gradient is the transpose of the form named for it. Which form is fastest depends on the shapes and on the
processor: jaxcnn.tuning measures them on the running machine (a Tuned lowering names them per shape); without
measurements these fixed rules apply (grouped_form, forward_form, input_form, weight_form):

  depthwise        `shifted` in all three directions (up to SHIFTED_MAX_TERMS taps).
  2..PER_GROUP_MAX groups
                   `per_group`.
  more groups      `im2col_chunked` (the output `shifted` while groups have at most SHIFTED_MAX_CHANNELS input
                   channels); `native` only where one image's patches exceed IM2COL_BYTES (XLA:CPU's grouped
                   weight gradient is a hundred times slower).
  one group:
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
Measurements behind the rules: docs/performance.md, experiments/conv_forms.py.
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
from .windows import patches, window_views

DIMS = ("NHWC", "HWIO", "NHWC")
CHUNK_BYTES = 2 << 20  # patches per im2col_chunked step: a cache-sized block
IM2COL_BYTES = 64 << 20  # largest patch matrix the input gradient builds whole
WIDE_MAX_WIDTH = 64  # the widest input `wide` is used for by the fixed rules
PER_GROUP_MAX = 4  # the most groups `per_group` is a candidate for: each is a convolution to compile
WEIGHT_BLOCKS = 8  # the most batch blocks the weight gradient of `shifted` sums in one fused loop
SHIFTED_MAX_TERMS = 64  # the most terms (KH*KW*C/G) `shifted` is a candidate for: each is an op to compile
SHIFTED_MAX_CHANNELS = 4  # the most input channels per group the fixed rules compute a grouped output `shifted`


def groups_of(x, w) -> int:
    """The number of groups of a convolution of x (N, H, W, C) with w (KH, KW, C // groups, O)."""
    return x.shape[-1] // w.shape[2]


def native(x, w, stride, pads, dilation, layout="forward"):
    """XLA's convolution: x (N, H, W, C), w (KH, KW, C // groups, O) -> (N, OH, OW, O).

    layout: how the operands are laid out for XLA, which does not change the result. 'forward' is XLA:CPU's
    canonical NHWC/HWIO. A gradient is the transpose of a tangent convolution, and JAX's transpose rules permute
    its layout; XLA:CPU makes such convolutions canonical again only outside while loops (inside one, such as a
    scan over training steps, it emits them as slow naive loops). So tangents are computed in the layouts whose
    transposes are canonical: 'input' (the tangent of x: the kernel as HWOI) and 'weight' (the tangent of w: x as
    CHWN, w as IHWO, the output as HWNC).
    """
    conv = functools.partial(lax.conv_general_dilated, window_strides=stride, padding=pads, rhs_dilation=dilation,
                             feature_group_count=groups_of(x, w))
    if layout == "forward":
        return conv(x, w, dimension_numbers=DIMS)
    if layout == "input":
        return conv(x, w.transpose(0, 1, 3, 2), dimension_numbers=("NHWC", "HWOI", "NHWC"))
    y = conv(x.transpose(3, 1, 2, 0), w.transpose(2, 0, 1, 3), dimension_numbers=("CHWN", "IHWO", "HWNC"))
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
    """Patches times the kernel as a matrix, per group: the groups' patches (G, N*OH*OW, KH*KW*C/G) times their
    kernels (G, KH*KW*C/G, O/G), a batched matmul (matmuls, whose transposes are matmuls: `layout` changes
    nothing)."""
    n, (kh, kw, cin, cout), groups = x.shape[0], w.shape, groups_of(x, w)
    by_group = x.reshape(*x.shape[:3], groups, cin).transpose(3, 0, 1, 2, 4).reshape(groups * n, *x.shape[1:3], cin)
    p = patches(by_group, (kh, kw), stride, pads, dilation)
    oh, ow = p.shape[1:3]
    kernels = w.reshape(-1, groups, cout // groups).transpose(1, 0, 2)  # (G, KH*KW*C/G, O/G)
    y = lax.dot_general(p.reshape(groups, n * oh * ow, -1), kernels, (((2,), (1,)), ((0,), (0,))))
    return y.reshape(groups, n, oh, ow, -1).transpose(1, 2, 3, 0, 4).reshape(n, oh, ow, cout)


def _patch_bytes(x, w, stride, pads, dilation, n):
    """Bytes of the patches of n images: KH*KW*C values per output position."""
    positions = n * math.prod(_out_hw(x, w, stride, pads, dilation))
    return positions * math.prod(w.shape[:2]) * x.shape[-1] * x.dtype.itemsize


def im2col_chunked(x, w, stride, pads, dilation, layout="forward"):
    """im2col over batch chunks of at most CHUNK_BYTES of patches (the largest divisor of N that fits), each
    rematerialised in the backward pass rather than stored."""
    n = x.shape[0]
    per_image = _patch_bytes(x, w, stride, pads, dilation, 1)
    chunk = max((d for d in range(2, n + 1) if n % d == 0 and d * per_image <= CHUNK_BYTES), default=1)
    one = jax.checkpoint(lambda xc, w: im2col(xc, w, stride, pads, dilation))
    _, ys = lax.scan(lambda _, xc: (None, one(xc, w)), None, x.reshape(n // chunk, chunk, *x.shape[1:]))
    return ys.reshape(n, *ys.shape[2:])


def per_group(x, w, stride, pads, dilation, layout="forward"):
    """Each group as a convolution of its own, in the form the one-group rules pick for the direction `layout`
    names, concatenated."""
    groups = groups_of(x, w)
    parts = zip(jnp.split(x, groups, axis=-1), jnp.split(w, groups, axis=-1))
    return jnp.concatenate([form(layout, None, xg, wg, stride, pads, dilation)(xg, wg, stride, pads, dilation, layout)
                            for xg, wg in parts], axis=-1)


def shifted(x, w, stride, pads, dilation, layout="forward"):
    """Grouped convolution as multiply-adds over channels, for few input channels per group (depthwise: one).
    x (N, H, W, C), w (KH, KW, C/G, O): the sum over the taps t and the group's input channels c of
    view_tc * w[t, c], where view_tc (N, OH, OW, O) is the strided view tap t reads of channel c of every group,
    repeated for the group's O/G outputs. KH*KW*C/G terms, each elementwise over NHWC.

    layout 'weight' computes the same sum per batch block b < B (B <= WEIGHT_BLOCKS, dividing N), each block's
    products using one broadcast of w[t, c] behind a fusion boundary (ops.fusion), so that its transpose -- the
    weight gradient -- adds the blocks' products view_tc[b] * g[b] in one fused elementwise loop per term and
    reduces only that (N/B, OH, OW, O) sum. Autodiff of the plain sum reduces every term's whole product, which
    XLA:CPU (and YNNPACK, which would take the adds into its reduction without the boundary) stores first: 2-5x
    slower (experiments/conv_forms.py).
    """
    views, taps = _shifted_terms(x, w, stride, pads, dilation)
    if layout != "weight":
        return _tap_sum(views, taps)
    n = x.shape[0]
    blocks = max(d for d in range(1, min(n, WEIGHT_BLOCKS) + 1) if n % d == 0)
    shape = (n // blocks, *views[0].shape[1:])
    taps = [boundary(jnp.broadcast_to(t, shape), x) for t in taps]
    return jnp.concatenate([_tap_sum([v[b * shape[0]:(b + 1) * shape[0]] for v in views], taps)
                            for b in range(blocks)])


def shifted_rows(x, w, stride, pads, dilation, layout="forward"):
    """`shifted` with each output row (OW, O) flattened to one axis of OW*O and each tap's weights tiled along it
    (a vector computed once): the same products and sums, over a contiguous last axis without a broadcast's
    per-element channel index (on MobileNet v1's depthwise layers 0.8-1.0x the time of `shifted`'s forward,
    docs/performance.md). A candidate for the output only; its transposes are those of `shifted` without its
    weight-gradient blocks."""
    views, taps = _shifted_terms(x, w, stride, pads, dilation)
    n, oh, ow, cout = views[0].shape
    y = _tap_sum([v.reshape(n, oh, ow * cout) for v in views], [jnp.tile(t, ow) for t in taps])
    return y.reshape(n, oh, ow, cout)


def _shifted_terms(x, w, stride, pads, dilation):
    """The views and taps `shifted` sums: for each input channel c of a group and tap t, view_tc (N, OH, OW, O)
    and w[t, c] (O,)."""
    kh, kw, cin, cout = w.shape
    outputs = cout // groups_of(x, w)
    views, taps = [], []
    for c in range(cin):
        xc = jnp.pad(jnp.repeat(x[..., c::cin], outputs, axis=-1), ((0, 0), *pads, (0, 0)))
        views += window_views(xc, (kh, kw), stride, dilation)
        taps += list(w[:, :, c].reshape(kh * kw, cout))
    return views, taps


def _tap_sum(views, taps):
    return functools.reduce(jnp.add, (v * t for v, t in zip(views, taps)))


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


def grouped_form(direction, x, w, stride, pads, dilation):
    """The fixed rule for `direction` of a convolution with groups > 1: `shifted` for depthwise ones (up to
    SHIFTED_MAX_TERMS taps), `per_group` for at most PER_GROUP_MAX groups; for more, the output `shifted` while
    the groups have at most SHIFTED_MAX_CHANNELS input channels, else (and the gradients) `im2col_chunked` while
    one image's patches fit IM2COL_BYTES, else `native` (whose weight gradient XLA:CPU computes very slowly)."""
    terms = math.prod(w.shape[:3])
    if w.shape[2] == 1 and terms <= SHIFTED_MAX_TERMS:
        return shifted
    if groups_of(x, w) <= PER_GROUP_MAX:
        return per_group
    if direction == "forward" and w.shape[2] <= SHIFTED_MAX_CHANNELS and terms <= SHIFTED_MAX_TERMS:
        return shifted
    return im2col_chunked if _patch_bytes(x, w, stride, pads, dilation, 1) <= IM2COL_BYTES else native


def forward_form(x, w, stride, pads, dilation):
    """The form that computes the output of a one-group convolution: for stride 1, >= 16 input channels and an
    input at most WIDE_MAX_WIDTH wide, `wide`, or `im2col` where `wide` would more than double the output's width
    (a kernel nearly as large as its input, such as an FC layer turned convolution) and the patches are small;
    else `native`."""
    if stride != (1, 1) or w.shape[2] < 16 or x.shape[2] > WIDE_MAX_WIDTH:
        return native
    out_w = _out_hw(x, w, stride, pads, dilation)[1]
    if x.shape[2] + 1 - out_w > out_w and _patch_bytes(x, w, stride, pads, dilation, x.shape[0]) <= IM2COL_BYTES:
        return im2col
    return wide


def _large_patch_form(pads):
    return wide_input if pads[1][1] >= 1 else native


def input_form(x, w, stride, pads, dilation):
    """The form whose transpose gives the input gradient of a one-group convolution: `im2col` while one image's
    patches fit in a chunk and the whole batch's in IM2COL_BYTES, else `wide_input` where there is right padding,
    else `native`."""
    if (_patch_bytes(x, w, stride, pads, dilation, 1) <= CHUNK_BYTES
            and _patch_bytes(x, w, stride, pads, dilation, x.shape[0]) <= IM2COL_BYTES):
        return im2col
    return _large_patch_form(pads)


def weight_form(x, w, stride, pads, dilation):
    """The form whose transpose gives the weight gradient of a one-group convolution: `wide` for single-channel
    inputs, else `im2col_chunked` while one image's patches fit in a chunk, else as input_form for large
    patches."""
    if w.shape[2] == 1 and not _weight_gradient_swaps("wide", x, w, stride, pads, dilation):
        return wide
    if _patch_bytes(x, w, stride, pads, dilation, 1) <= CHUNK_BYTES:
        return im2col_chunked
    return _large_patch_form(pads)


FORMS = {f.__name__: f for f in (native, wide, wide_input, im2col, im2col_chunked, per_group, shifted, shifted_rows)}


def signature(x, w, stride, pads, dilation) -> tuple:
    """What a form's speed depends on, as a hashable key: shapes (the groups are x's channels over w's input
    channels), dtype, stride, pads, dilation."""
    return tuple(x.shape), tuple(w.shape), str(x.dtype), tuple(stride), tuple(map(tuple, pads)), tuple(dilation)


DIRECTIONS = ("forward", "input", "weight")  # the output, and the forms whose transposes give the two gradients
_HEURISTICS = {"forward": forward_form, "input": input_form, "weight": weight_form}


def candidates(direction, x, w, stride, pads, dilation) -> tuple[str, ...]:
    """Names of the forms that can compute `direction` ('forward', 'input' or 'weight') for these operands within
    the memory and compile-time limits: native; for one group wide and, where there is right padding,
    wide_input; for the weight gradient none whose convolution XLA would swap; for groups per_group (at most
    PER_GROUP_MAX of them) and shifted (up to SHIFTED_MAX_TERMS terms; not for one group: LeNet's conv1 so made
    the training step 2x slower, docs/performance.md); im2col while the batch's patches fit IM2COL_BYTES,
    im2col_chunked while one image's do."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    groups = groups_of(x, w)
    names = ["native"]
    if groups == 1:
        names += ["wide", "wide_input"] if pads[1][1] >= 1 else ["wide"]
    if direction == "weight":
        names = [n for n in names if not _weight_gradient_swaps(n, x, w, stride, pads, dilation)]
    if 1 < groups <= PER_GROUP_MAX:
        names.append("per_group")
    if groups > 1 and math.prod(w.shape[:3]) <= SHIFTED_MAX_TERMS:
        names += ["shifted", "shifted_rows"] if direction == "forward" else ["shifted"]
    if _patch_bytes(x, w, stride, pads, dilation, x.shape[0]) <= IM2COL_BYTES:
        names.append("im2col")
    if _patch_bytes(x, w, stride, pads, dilation, 1) <= IM2COL_BYTES:
        names.append("im2col_chunked")
    return tuple(names)


def form(direction, forms, x, w, stride, pads, dilation):
    """The form computing `direction`: forms[i] (a name per direction, e.g. measured by jaxcnn.tuning) when given,
    else the fixed rules: grouped_form for groups, forward_form, input_form and weight_form for one."""
    if forms is None:
        if groups_of(x, w) > 1:
            return grouped_form(direction, x, w, stride, pads, dilation)
        return _HEURISTICS[direction](x, w, stride, pads, dilation)
    return FORMS[forms[DIRECTIONS.index(direction)]]


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4, 5))
def conv(x, w, stride, pads, dilation, forms=None):
    """Convolution: x (N, H, W, C), w (KH, KW, C // groups, O) -> (N, OH, OW, O); explicit pads, pair stride
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
