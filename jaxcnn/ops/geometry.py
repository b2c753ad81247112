"""Window geometry shared by convolution, local and pooling ops.

Padding specs accepted everywhere:
  'VALID' | 'SAME' | int p | (p_h, p_w) | ((top, bottom), (left, right)).
"""
import math

Pair = tuple[int, int]
IntOrPair = int | Pair  # a kernel, stride or dilation: one value for both axes, or (h, w)
PaddingSpec = str | int | Pair | tuple[Pair, Pair]  # see above


def pair(value, what: str) -> Pair:
    """An int or a 2-sequence of positive ints -> (h, w)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    try:
        h, w = value
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be an int or a pair (h, w), got {value!r}") from None
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (h, w)):
        raise ValueError(f"{what} must be positive ints, got {value!r}")
    return h, w


def _same_pads(size: int, window: int, stride: int) -> Pair:
    out = -(-size // stride)
    total = max((out - 1) * stride + window - size, 0)
    return total // 2, total - total // 2


def normalize_padding(padding):
    """Any padding spec -> 'VALID', 'SAME' or explicit ((top, bottom), (left, right)); ValueError if malformed."""
    if isinstance(padding, str) and padding.upper() in ("VALID", "SAME"):
        return padding.upper()
    return resolve_padding(padding, (1, 1), (1, 1), (1, 1))


def resolve_padding(padding, in_hw: Pair, window: Pair, stride: Pair) -> tuple[Pair, Pair]:
    """Any padding spec -> explicit ((top, bottom), (left, right)); window is the dilated kernel."""
    if isinstance(padding, str):
        mode = padding.upper()
        if mode == "VALID":
            return (0, 0), (0, 0)
        if mode == "SAME":
            return tuple(_same_pads(n, k, s) for n, k, s in zip(in_hw, window, stride))
    elif isinstance(padding, int) and not isinstance(padding, bool) and padding >= 0:
        return (padding, padding), (padding, padding)
    elif isinstance(padding, (tuple, list)) and len(padding) == 2:
        if all(isinstance(p, int) and not isinstance(p, bool) and p >= 0 for p in padding):
            return (padding[0], padding[0]), (padding[1], padding[1])
        if all(isinstance(p, (tuple, list)) and len(p) == 2 for p in padding):
            flat = [v for p in padding for v in p]
            if all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in flat):
                return (flat[0], flat[1]), (flat[2], flat[3])
    raise ValueError(
        "padding must be 'VALID', 'SAME', an int, (pad_h, pad_w) or ((top, bottom), (left, right)) "
        f"of non-negative ints; got {padding!r}"
    )


def window_output(in_hw: Pair, window: Pair, stride: Pair, pads: tuple[Pair, Pair], ceil_mode=False, clip=True):
    """Output (H, W) of a sliding window, and the extra bottom/right padding ceil rounding needs.

    Floor: out = (n + lo + hi - k) // s + 1. Ceil (Caffe, cuda-convnet): out = ceil((n + lo + hi - k) / s) + 1,
    minus one, if `clip`, when the last window would start past the input and its top/left padding (PyTorch
    always clips, so no window lies wholly outside the input; Caffe only when the pooling pads: see
    ops.pool.pool_geometry). Raises ValueError if the window is larger than the padded input.
    """
    out, extra = [], []
    for axis, n, k, s, (lo, hi) in zip("HW", in_hw, window, stride, pads):
        span = n + lo + hi
        if k > span:
            raise ValueError(
                f"window {window[0]}x{window[1]} is larger than the padded input "
                f"{in_hw[0] + sum(pads[0])}x{in_hw[1] + sum(pads[1])} (input {in_hw[0]}x{in_hw[1]})"
            )
        o = (math.ceil if ceil_mode else math.floor)((span - k) / s) + 1
        if ceil_mode and clip and (o - 1) * s >= n + lo:
            o -= 1
        out.append(o)
        extra.append(max((o - 1) * s + k - span, 0))
    return tuple(out), tuple(extra)


def dilated(kernel: Pair, dilation: Pair) -> Pair:
    """Extent of a dilated kernel: (k - 1) * d + 1 per axis."""
    return tuple((k - 1) * d + 1 for k, d in zip(kernel, dilation))


def check_nhwc(x_shape, what="input") -> None:
    if len(x_shape) != 4:
        raise ValueError(f"expected a 4-d {what} (N, H, W, C), got shape {tuple(x_shape)}")
