"""Naive NumPy references for the op tests.

Written from the definitions (Caffe's and TensorFlow's documented conventions), not from jaxcnn's code:
plain Python loops over output positions and kernel taps, vectorised only over batch and channels.
Activations are NHWC, conv kernels HWIO, local kernels (OH, OW, KH, KW, C, O); pads are explicit
((top, bottom), (left, right)).
"""
import numpy as np


def explicit_pads(padding, in_hw, window, stride):
    """A padding spec ('VALID', 'SAME', p, (ph, pw), ((t, b), (l, r))) -> ((t, b), (l, r)).

    'SAME' follows TensorFlow: output ceil(n / s), total padding (out - 1) * s + window - n, the odd
    cell at the bottom/right. window is the dilated kernel extent.
    """
    if padding == "VALID":
        return (0, 0), (0, 0)
    if padding == "SAME":
        pads = []
        for n, k, s in zip(in_hw, window, stride):
            total = max((-(-n // s) - 1) * s + k - n, 0)
            pads.append((total // 2, total - total // 2))
        return tuple(pads)
    if isinstance(padding, int):
        return (padding, padding), (padding, padding)
    if isinstance(padding[0], int):
        return (padding[0], padding[0]), (padding[1], padding[1])
    return tuple(tuple(p) for p in padding)


def _pad(x, pads):
    return np.pad(x, ((0, 0), *pads, (0, 0)))


def conv2d(x, w, b=None, stride=(1, 1), pads=((0, 0), (0, 0)), dilation=(1, 1), groups=1):
    """Cross-correlation. x: (N, H, W, C); w: (KH, KW, C // groups, O); b: (O,) -> (N, OH, OW, O).

    Output channel o of group g = o // (O / groups) sees input channels [g * C/groups, (g + 1) * C/groups).
    """
    n, kh, kw, cg, o = x.shape[0], *w.shape
    og = o // groups
    xp = _pad(x, pads)
    (sh, sw), (dh, dw) = stride, dilation
    oh = (xp.shape[1] - (kh - 1) * dh - 1) // sh + 1
    ow = (xp.shape[2] - (kw - 1) * dw - 1) // sw + 1
    y = np.zeros((n, oh, ow, o))
    for i in range(oh):
        for j in range(ow):
            for g in range(groups):
                ins, outs = slice(g * cg, (g + 1) * cg), slice(g * og, (g + 1) * og)
                for a in range(kh):
                    for c in range(kw):
                        y[:, i, j, outs] += xp[:, i * sh + a * dh, j * sw + c * dw, ins] @ w[a, c, :, outs]
    return y if b is None else y + b


def local2d(x, w, b=None, stride=(1, 1), pads=((0, 0), (0, 0))):
    """Unshared-weight convolution. w: (OH, OW, KH, KW, C, O); b: (O,) or (OH, OW, O) -> (N, OH, OW, O)."""
    oh, ow, kh, kw, _, o = w.shape
    xp = _pad(x, pads)
    y = np.zeros((x.shape[0], oh, ow, o))
    for i in range(oh):
        for j in range(ow):
            for a in range(kh):
                for c in range(kw):
                    y[:, i, j] += xp[:, i * stride[0] + a, j * stride[1] + c] @ w[i, j, a, c]
    return y if b is None else y + b


def window_out_size(n, k, s, lo, hi, ceil_mode=False):
    """Number of window positions: floor (convolution, default pooling) or ceil (Caffe's pooling) of
    (n + lo + hi - k) / s, plus one; with ceil, drop the last window if it would start at or past the end
    of the input and its top/left padding. Caffe applies that rule only when padding is non-zero (unpadded,
    stride > kernel, its last window can fall wholly outside the input); PyTorch, and this reference, always."""
    span = n + lo + hi - k
    out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= n + lo:
        out -= 1
    return out


def pool(x, kind, kernel, stride, pads=((0, 0), (0, 0)), ceil_mode=False, count_pad=True):
    """Caffe's pooling loop. kind 'max' or 'avg'. Each window starts at i * s - top and is clipped to
    [-top, H + bottom) (the padded input; the ceil overhang past it is dropped). Max and sums see only
    real pixels; the average divides by the clipped window's area (count_pad=True, Caffe) or by its real
    pixels (count_pad=False)."""
    (kh, kw), (sh, sw), ((t, b), (l, r)) = kernel, stride, pads
    h, w = x.shape[1:3]
    oh = window_out_size(h, kh, sh, t, b, ceil_mode)
    ow = window_out_size(w, kw, sw, l, r, ceil_mode)
    y = np.zeros((x.shape[0], oh, ow, x.shape[3]))
    for i in range(oh):
        for j in range(ow):
            h0, w0 = i * sh - t, j * sw - l
            h1, w1 = min(h0 + kh, h + b), min(w0 + kw, w + r)
            area = (h1 - h0) * (w1 - w0)
            h0, w0, h1, w1 = max(h0, 0), max(w0, 0), min(h1, h), min(w1, w)
            window = x[:, h0:h1, w0:w1, :]
            if kind == "max":
                y[:, i, j] = window.max(axis=(1, 2))
            else:
                y[:, i, j] = window.sum(axis=(1, 2)) / (area if count_pad else (h1 - h0) * (w1 - w0))
    return y


def lrn(x, size, alpha, beta, k, region):
    """Caffe's LRN. across: channels [c - (size-1)//2, c - (size-1)//2 + size), alpha / size;
    within: a size x size spatial window starting (size-1)//2 before the pixel, alpha / size**2."""
    pre = (size - 1) // 2
    sums = np.zeros_like(x)
    n, h, w, c = x.shape
    if region == "across":
        for ch in range(c):
            lo, hi = max(ch - pre, 0), min(ch - pre + size, c)
            sums[..., ch] = (x[..., lo:hi] ** 2).sum(axis=-1)
        scale = alpha / size
    else:
        for i in range(h):
            for j in range(w):
                window = x[:, max(i - pre, 0) : i - pre + size, max(j - pre, 0) : j - pre + size, :]
                sums[:, i, j] = (window**2).sum(axis=(1, 2))
        scale = alpha / size**2
    return x / (k + scale * sums) ** beta


def contrast_norm(x, size, alpha, beta, k):
    """cuda-convnet's cnorm, pixel by pixel: d = x less the mean of its size x size window's pixels inside the map;
    y = x / (k + alpha / size**2 * (sum of d**2 over the window)) ** beta."""
    half = (size - 1) // 2
    n, h, w, c = x.shape
    rows = [slice(max(i - half, 0), i + half + 1) for i in range(h)]
    cols = [slice(max(j - half, 0), j + half + 1) for j in range(w)]
    d = np.zeros_like(x)
    for i in range(h):
        for j in range(w):
            d[:, i, j] = x[:, i, j] - x[:, rows[i], cols[j]].mean(axis=(1, 2))
    y = np.zeros_like(x)
    for i in range(h):
        for j in range(w):
            sums = (d[:, rows[i], cols[j]] ** 2).sum(axis=(1, 2))
            y[:, i, j] = x[:, i, j] / (k + alpha / size**2 * sums) ** beta
    return y


def log_softmax(logits):
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def top_k_correct(logits, labels, k):
    """Per row: is the label's score at least the k-th highest score (ties in the label's favour)?"""
    kth = np.sort(logits, axis=1)[:, -k]
    return logits[np.arange(len(labels)), labels] >= kth
