"""jaxcnn.ops against naive NumPy references (tests/reference.py), numerical gradients and jit."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref
from conftest import assert_close
from jax.test_util import check_grads

from jaxcnn import ops
from jaxcnn.ops.norm import standardize


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def normal(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


# ---------------------------------------------------------------------------------------------- conv2d

CONV_CASES = [  # x shape, (KH, KW, C/groups, O), stride, padding, dilation
    ((2, 7, 9, 3), (3, 2, 3, 4), 1, "VALID", 1),
    ((2, 8, 7, 3), (3, 3, 3, 5), 2, "SAME", 1),
    ((1, 9, 10, 2), (2, 3, 2, 3), 3, "SAME", 1),
    ((2, 6, 5, 2), (3, 3, 2, 4), (2, 1), 2, 1),
    ((3, 5, 8, 1), (3, 4, 1, 2), (1, 3), (1, 2), 1),
    ((2, 7, 6, 3), (3, 3, 3, 2), 2, ((0, 2), (1, 0)), 1),
    ((2, 9, 8, 2), (3, 2, 2, 3), 1, "SAME", (2, 1)),
    ((1, 11, 10, 2), (3, 3, 2, 2), 2, ((1, 2), (2, 1)), 2),
]


@pytest.mark.parametrize("x_shape, w_shape, stride, padding, dilation", CONV_CASES)
def test_conv2d_matches_naive_loop(rng, x_shape, w_shape, stride, padding, dilation):
    x, w, b = normal(rng, *x_shape), normal(rng, *w_shape), normal(rng, w_shape[-1])
    stride2, dil2 = pair(stride), pair(dilation)
    window = tuple((k - 1) * d + 1 for k, d in zip(w_shape[:2], dil2))
    pads = ref.explicit_pads(padding, x_shape[1:3], window, stride2)
    y = ops.conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation)
    expected = ref.conv2d(x, w, b, stride2, pads, dil2)
    assert y.shape == expected.shape
    assert_close(y, expected)


def test_conv2d_same_keeps_ceil_size(rng):
    """'SAME' gives ceil(n / s) outputs per axis, as XLA's own 'SAME' string does."""
    x, w = normal(rng, 2, 9, 10, 2), normal(rng, 3, 2, 2, 3)
    y = ops.conv2d(x, w, stride=(2, 3), padding="SAME")
    assert y.shape == (2, 5, 4, 3)
    xla = jax.lax.conv_general_dilated(x, w, (2, 3), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    assert_close(y, xla)


GROUP_CASES = [  # x shape, (KH, KW, C/groups, O), groups, stride, padding
    ((2, 7, 6, 6), (3, 3, 2, 9), 3, 2, 1),
    ((1, 9, 8, 8), (5, 5, 4, 6), 2, 1, 2),  # AlexNet conv2 in miniature: two groups, 5x5 pad 2
    ((2, 6, 7, 4), (2, 3, 1, 8), 4, (1, 2), ((1, 0), (0, 2))),
]


@pytest.mark.parametrize("x_shape, w_shape, groups, stride, padding", GROUP_CASES)
def test_grouped_conv2d(rng, x_shape, w_shape, groups, stride, padding):
    x, w, b = normal(rng, *x_shape), normal(rng, *w_shape), normal(rng, w_shape[-1])
    y = ops.conv2d(x, w, b, stride=stride, padding=padding, groups=groups)
    # against the naive loop
    pads = ref.explicit_pads(padding, x_shape[1:3], w_shape[:2], pair(stride))
    assert_close(y, ref.conv2d(x, w, b, pair(stride), pads, groups=groups))
    # against one ordinary convolution per group, concatenated
    cg, og = w_shape[2], w_shape[3] // groups
    per_group = [
        ops.conv2d(x[..., g * cg : (g + 1) * cg], w[..., g * og : (g + 1) * og], b[g * og : (g + 1) * og],
                   stride=stride, padding=padding)
        for g in range(groups)
    ]
    assert_close(y, jnp.concatenate(per_group, axis=-1))


def test_conv2d_rejects_mismatched_kernel(rng):
    x = normal(rng, 1, 5, 5, 6)
    with pytest.raises(ValueError, match="groups=4 does not divide 6 input channels"):
        ops.conv2d(x, normal(rng, 3, 3, 1, 4), groups=4)
    with pytest.raises(ValueError, match="input has 6 channels .* with groups=2 expects 4"):
        ops.conv2d(x, normal(rng, 3, 3, 2, 4), groups=2)
    with pytest.raises(ValueError, match=r"expected a 4-d input \(N, H, W, C\), got shape \(5, 5, 6\)"):
        ops.conv2d(x[0], normal(rng, 3, 3, 6, 4))
    with pytest.raises(ValueError, match=r"window 7x7 is larger than the padded input 6x6 \(input 5x5\)"):
        ops.conv2d(x, normal(rng, 4, 4, 6, 2), padding=((1, 0), (0, 1)), dilation=2)


# ---------------------------------------------------------------------------------------------- local2d

LOCAL_CASES = [  # x shape, kernel, C -> O, stride, padding
    ((2, 6, 7, 3), (3, 2), 4, (2, 1), ((1, 0), (0, 1))),
    ((1, 5, 5, 2), (3, 3), 3, 1, "SAME"),
    ((2, 8, 7, 2), (2, 3), 2, 3, 0),
]


@pytest.mark.parametrize("bias", ["position", "filter", None])
@pytest.mark.parametrize("x_shape, kernel, out, stride, padding", LOCAL_CASES)
def test_local2d_matches_naive_loop(rng, x_shape, kernel, out, stride, padding, bias):
    stride2 = pair(stride)
    pads = ref.explicit_pads(padding, x_shape[1:3], kernel, stride2)
    oh, ow = (ref.window_out_size(n, k, s, lo, hi) for n, k, s, (lo, hi) in zip(x_shape[1:3], kernel, stride2, pads))
    x, w = normal(rng, *x_shape), normal(rng, oh, ow, *kernel, x_shape[-1], out)
    b = {"position": normal(rng, oh, ow, out), "filter": normal(rng, out), None: None}[bias]
    y = ops.local2d(x, w, b, stride=stride, padding=padding)
    assert_close(y, ref.local2d(x, w, b, stride2, pads))


def test_local2d_with_one_kernel_everywhere_is_conv2d(rng):
    """With the same kernel at every position, local2d is exactly a convolution."""
    x, k = normal(rng, 2, 6, 5, 3), normal(rng, 3, 3, 3, 4)
    w = np.broadcast_to(k, (4, 3, *k.shape))
    assert_close(ops.local2d(x, w), ops.conv2d(x, k))


def test_local2d_rejects_other_input_size(rng):
    w = normal(rng, 4, 4, 3, 3, 2, 5)
    with pytest.raises(ValueError, match="input 7x6 gives 5x4 output positions but the local kernel was built for 4x4"):
        ops.local2d(normal(rng, 1, 7, 6, 2), w)
    with pytest.raises(ValueError, match="input has 3 channels but the local kernel .* expects 2"):
        ops.local2d(normal(rng, 1, 6, 6, 3), w)


# ---------------------------------------------------------------------------------------------- pooling

POOL_CASES = [  # x shape, kernel, stride, padding, ceil_mode
    ((2, 7, 9, 3), 3, 2, "VALID", False),
    ((2, 7, 9, 3), 3, 2, "VALID", True),
    ((1, 32, 32, 2), 3, 2, 0, True),  # cuda-convnet / Caffe: 32 -> 16
    ((2, 6, 5, 2), 3, 2, 1, True),  # last window overhangs the bottom padding
    ((1, 3, 3, 2), 2, 2, 1, True),  # Caffe's clip: the last window would start in the padding
    ((2, 8, 7, 2), (3, 2), (2, 3), ((1, 0), (0, 1)), True),
    ((2, 8, 7, 2), (3, 2), (2, 3), ((2, 1), (1, 0)), False),
    ((1, 10, 9, 3), 4, 3, (1, 2), True),
    ((2, 9, 7, 1), 3, 2, "SAME", False),
    ((1, 5, 5, 1), 2, None, "VALID", False),  # stride defaults to the kernel
]


def _pool_ref_args(x_shape, kernel, stride, padding):
    kernel2 = pair(kernel)
    stride2 = kernel2 if stride is None else pair(stride)
    return kernel2, stride2, ref.explicit_pads(padding, x_shape[1:3], kernel2, stride2)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["max", "avg_count_pad", "avg_real_pixels"])
@pytest.mark.parametrize("x_shape, kernel, stride, padding, ceil_mode", POOL_CASES)
def test_pooling_matches_caffe_loop(rng, x_shape, kernel, stride, padding, ceil_mode, kind):
    x = normal(rng, *x_shape)
    if kind == "max":
        y = ops.max_pool(x, kernel, stride, padding, ceil_mode=ceil_mode)
    else:
        y = ops.avg_pool(x, kernel, stride, padding, ceil_mode=ceil_mode, count_pad=kind == "avg_count_pad")
    kernel2, stride2, pads = _pool_ref_args(x_shape, kernel, stride, padding)
    expected = ref.pool(x, kind[:3], kernel2, stride2, pads, ceil_mode, count_pad=kind == "avg_count_pad")
    assert y.shape == expected.shape
    assert_close(y, expected)


@pytest.mark.parametrize("ceil_mode, size", [(True, 16), (False, 15)])
def test_pool_32_by_3x3_stride_2(ceil_mode, size):
    x = jnp.zeros((1, 32, 32, 1))
    assert ops.max_pool(x, 3, 2, ceil_mode=ceil_mode).shape == (1, size, size, 1)
    assert ops.avg_pool(x, 3, 2, ceil_mode=ceil_mode).shape == (1, size, size, 1)


def test_pool_caffe_clip_and_divisors():
    """3x3 input, 2x2/2 pool, pad 1, ceil: ceil((3+2-2)/2)+1 = 3 windows per axis, but the third would start
    at padded index 4 = 3 + 1, past the input, so Caffe keeps 2. Divisors spelled out by hand."""
    x = jnp.arange(1.0, 10.0).reshape(1, 3, 3, 1)
    assert ops.max_pool(x, 2, 2, 1, ceil_mode=True).shape == (1, 2, 2, 1)
    # window (0,0) covers the top-left pixel and three pad cells: Caffe divides by 4, count_pad=False by 1
    assert float(ops.avg_pool(x, 2, 2, 1, ceil_mode=True)[0, 0, 0, 0]) == 1.0 / 4
    assert float(ops.avg_pool(x, 2, 2, 1, ceil_mode=True, count_pad=False)[0, 0, 0, 0]) == 1.0
    # window (1,1) covers pixels (1..2, 1..2) = 5, 6, 8, 9 and no padding
    assert float(ops.avg_pool(x, 2, 2, 1, ceil_mode=True)[0, 1, 1, 0]) == (5 + 6 + 8 + 9) / 4


def test_pool_rejects_padding_not_smaller_than_kernel():
    with pytest.raises(ValueError, match=r"pooling padding \(\(2, 2\), \(2, 2\)\) must be smaller than the kernel 2x2"):
        ops.max_pool(jnp.zeros((1, 6, 6, 1)), 2, 2, 2)


# ---------------------------------------------------------------------------------------------- normalisation

@pytest.mark.parametrize("size, region", [(5, "across"), (3, "across"), (4, "across"), (3, "within"), (4, "within")])
def test_lrn_matches_formula(rng, size, region):
    x = 2 * normal(rng, 2, 4, 5, 7)
    y = ops.lrn(x, size, alpha=0.5, beta=0.75, k=2.0, region=region)
    assert_close(y, ref.lrn(x.astype(np.float64), size, 0.5, 0.75, 2.0, region))


@pytest.mark.parametrize("beta", [0.5, 0.75, 0.6, 1.0])
def test_lrns_inverse_power_is_the_power(rng, beta):
    t = np.concatenate([1 + 10 * rng.random(50), [1e-3, 1.0, 1e4]])
    assert_close(ops.norm.inverse_power(jnp.asarray(t, jnp.float32), beta), t ** -beta)


@pytest.mark.parametrize("size", [1, 3, 5])
def test_contrast_norm_matches_the_pixel_loop(rng, size):
    x = 2 * normal(rng, 2, 5, 6, 3) + 1
    y = ops.contrast_norm(x, size, alpha=0.5, beta=0.75, k=2.0)
    assert_close(y, ref.contrast_norm(x.astype(np.float64), size, 0.5, 0.75, 2.0))


def test_contrast_norm_rejects_an_even_window(rng):
    with pytest.raises(ValueError, match="contrast_norm size must be a positive odd int, got 4"):
        ops.contrast_norm(normal(rng, 1, 4, 4, 2), 4)


def test_lrn_rejects_bad_config(rng):
    x = normal(rng, 1, 3, 3, 2)
    with pytest.raises(ValueError, match="lrn region must be 'across' or 'within', got 'spatial'"):
        ops.lrn(x, region="spatial")
    with pytest.raises(ValueError, match="lrn size must be a positive int, got 0"):
        ops.lrn(x, 0)


def test_batch_norm_train_and_running_statistics(rng):
    x = 3 + 2 * normal(rng, 4, 3, 5, 6)
    mean, var = normal(rng, 6), 1 + rng.random(6).astype(np.float32)
    y, new_mean, new_var = ops.batch_norm(x, mean, var, train=True, momentum=0.8, eps=1e-3)
    x64 = x.astype(np.float64)
    mu, sigma2 = x64.mean(axis=(0, 1, 2)), x64.var(axis=(0, 1, 2))
    n = 4 * 3 * 5
    assert_close(y, (x64 - mu) / np.sqrt(sigma2 + 1e-3))
    assert_close(new_mean, 0.8 * mean + 0.2 * mu)
    assert_close(new_var, 0.8 * var + 0.2 * sigma2 * n / (n - 1))  # unbiased, as Caffe and PyTorch


def test_batch_norm_eval_uses_running_statistics(rng):
    x, mean, var = normal(rng, 3, 5), normal(rng, 5), 1 + rng.random(5).astype(np.float32)
    y, m2, v2 = ops.batch_norm(x, mean, var, train=False, eps=1e-5)
    assert_close(y, (x - mean) / np.sqrt(var.astype(np.float64) + 1e-5))
    np.testing.assert_array_equal(m2, mean)
    np.testing.assert_array_equal(v2, var)
    with pytest.raises(ValueError, match=r"batch_norm statistics \(4,\)/\(5,\) do not match 5 channels"):
        ops.batch_norm(x, mean[:4], var, train=False)


@pytest.mark.parametrize("platform, barriers", [("cpu", 0), ("cuda", 2), ("tpu", 2)])
def test_scale_gradients_go_through_images_off_the_cpu(rng, platform, barriers):
    """Off the CPU a per-channel vector reaches the image through (N, C) (reverse mode: per-image sums, then
    the batch's); the gradient is the same: d/dgamma sum(sin(x * gamma)) = sum over N, H, W of cos(x gamma) x."""
    x, gamma = normal(rng, 3, 4, 5, 6), normal(rng, 6)
    loss = lambda x, gamma: jnp.sum(jnp.sin(ops.scale(x, gamma)))  # noqa: E731
    lowered = jax.jit(jax.grad(loss, 1)).trace(x, gamma).lower(lowering_platforms=(platform,)).as_text()
    assert lowered.count("optimization_barrier") == barriers
    through = jax.grad(lambda g: jnp.sum(jnp.sin(x * ops.norm.through_images(g, (3, 1, 1, 6)))))(gamma)
    x64 = x.astype(np.float64)
    assert_close(through, (np.cos(x64 * gamma) * x64).sum(axis=(0, 1, 2)))
    assert_close(jax.grad(loss, 1)(x, gamma), (np.cos(x64 * gamma) * x64).sum(axis=(0, 1, 2)))


def test_scale_dense_flatten(rng):
    x, gamma, beta = normal(rng, 2, 3, 4, 5), normal(rng, 5), normal(rng, 5)
    assert_close(ops.scale(x, gamma, beta), x * gamma + beta)
    assert_close(ops.scale(x, gamma), x * gamma)
    flat = np.asarray(ops.flatten(x))
    assert flat.shape == (2, 60)
    for n, h, w, c in np.ndindex(x.shape):
        assert flat[n, (h * 4 + w) * 5 + c] == x[n, h, w, c]
    w_fc, b_fc = normal(rng, 60, 7), normal(rng, 7)
    expected = np.zeros((2, 7))
    for n, o in np.ndindex(expected.shape):
        expected[n, o] = sum(flat[n, i] * w_fc[i, o] for i in range(60)) + b_fc[o]
    assert_close(ops.dense(flat, w_fc, b_fc), expected)
    with pytest.raises(ValueError, match=r"expected an input \(N, 60\) for weights \(60, 7\), got \(2, 3, 4, 5\)"):
        ops.dense(x, w_fc, b_fc)


# ---------------------------------------------------------------------------------------------- dropout

def test_dropout():
    x = jnp.asarray(np.random.default_rng(1).uniform(1, 2, (200, 500)), jnp.float32)
    key = jax.random.key(3)
    assert ops.dropout(x, 0.3) is x and ops.dropout(x, 0.3, rng=key, train=False) is x
    y = np.asarray(ops.dropout(x, 0.3, rng=key, train=True))
    dropped = y == 0
    assert abs(dropped.mean() - 0.3) < 0.01  # 100,000 Bernoulli draws: std 0.0015
    assert_close(y[~dropped], np.asarray(x)[~dropped] / 0.7)
    np.testing.assert_array_equal(ops.dropout(x, 0.3, rng=key, train=True), y)
    assert not np.array_equal(ops.dropout(x, 0.3, rng=jax.random.key(4), train=True), y)
    with pytest.raises(ValueError, match="dropout in training needs an rng key"):
        ops.dropout(x, 0.3, train=True)
    for rate in (1.0, -0.1):
        with pytest.raises(ValueError, match=r"dropout rate must be in \[0, 1\)"):
            ops.dropout(x, rate)


# ---------------------------------------------------------------------------------------------- loss, accuracy

@pytest.mark.slow
def test_softmax_cross_entropy(rng):
    """Values per row and their mean against NumPy in float64 (also at scores of 1e3, where a plain exp
    overflows), and the gradient against its formula, (softmax - one_hot) / N."""
    logits, labels = 5 * normal(rng, 9, 6), rng.integers(0, 6, 9)
    logits[0] += 1e3
    log_p = ref.log_softmax(logits.astype(np.float64))[np.arange(9), labels]
    assert_close(ops.softmax_cross_entropy(logits, labels, reduction="none"), -log_p)
    assert_close(ops.softmax_cross_entropy(logits, labels), -log_p.mean())
    p = np.exp(ref.log_softmax(logits.astype(np.float64)))
    expected = (p - np.eye(6)[labels]) / 9
    assert_close(jax.grad(ops.softmax_cross_entropy)(jnp.asarray(logits), labels), expected)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_accuracy_and_top_k(rng, k):
    logits, labels = normal(rng, 50, 7), rng.integers(0, 7, 50)
    assert float(ops.top_k_accuracy(logits, labels, k)) == pytest.approx(ref.top_k_correct(logits, labels, k).mean())
    assert float(ops.accuracy(logits, labels)) == pytest.approx((logits.argmax(axis=1) == labels).mean())


def test_top_k_ties_count_for_the_label():
    logits = jnp.array([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0], [0.0, 5.0, 4.0, 4.0]])
    labels = jnp.array([2, 3, 3])
    # rows 0 and 1: the label ties for the top score; row 2: one score above the label's
    assert float(ops.top_k_accuracy(logits, labels, 1)) == pytest.approx(2 / 3)
    assert ref.top_k_correct(np.asarray(logits), np.asarray(labels), 1).tolist() == [True, True, False]
    assert float(ops.top_k_accuracy(logits, labels, 2)) == 1.0


# ---------------------------------------------------------------------------------------------- gradients

def _distinct(rng, *shape):
    """Values with no ties and gaps of 0.1, so max-pool windows never switch under finite differences."""
    return rng.permutation(np.prod(shape)).reshape(shape) * 0.1


def _grad_cases(rng):
    """(name, function of float64 arrays, args, order, modes): every differentiable op, small shapes."""
    both, rev = ("fwd", "rev"), ("rev",)
    x = rng.standard_normal((2, 5, 6, 4))
    return [
        ("conv2d", functools.partial(ops.conv2d, stride=(2, 1), padding=((1, 0), (0, 2)), dilation=(1, 2)),
         (x, rng.standard_normal((2, 2, 4, 3)), rng.standard_normal(3)), 2, both),
        ("conv2d_groups", functools.partial(ops.conv2d, padding="SAME", groups=2),
         (x, rng.standard_normal((3, 3, 2, 4)), rng.standard_normal(4)), 1, both),
        ("local2d", functools.partial(ops.local2d, stride=2, padding=1),
         (x, rng.standard_normal((3, 3, 3, 3, 4, 2)), rng.standard_normal((3, 3, 2))), 1, both),
        ("max_pool", functools.partial(ops.max_pool, kernel=3, stride=2, padding=1, ceil_mode=True),
         (_distinct(rng, 2, 5, 6, 3),), 1, both),
        ("avg_pool", functools.partial(ops.avg_pool, kernel=3, stride=2, padding=1, ceil_mode=True),
         (x,), 2, both),
        ("avg_pool_real", functools.partial(ops.avg_pool, kernel=2, stride=3, padding="SAME", count_pad=False),
         (x,), 1, both),
        ("lrn_across", functools.partial(ops.lrn, size=3, alpha=0.5, beta=0.75, k=2.0), (x,), 1, both),
        ("lrn_within", functools.partial(ops.lrn, size=3, alpha=0.5, beta=0.75, k=2.0, region="within"), (x,), 2, both),
        ("lrn_beta_half", functools.partial(ops.lrn, size=3, alpha=0.5, beta=0.5, k=2.0), (x,), 1, both),
        ("lrn_beta_other", functools.partial(ops.lrn, size=3, alpha=0.5, beta=0.6, k=2.0), (x,), 1, both),
        ("contrast_norm", functools.partial(ops.contrast_norm, size=3, alpha=0.5, beta=0.75, k=2.0), (x,), 2, both),
        ("batch_norm_train", lambda x: ops.batch_norm(x, jnp.zeros(4), jnp.ones(4), train=True)[0], (x,), 2, both),
        ("standardize", lambda x: (lambda y, m, v: y + 2 * m + 3 * v)(*standardize(x, 1e-3)), (x,), 2, both),
        ("batch_norm_eval", lambda x, m, v: ops.batch_norm(x, m, v, train=False)[0],
         (x, rng.standard_normal(4), 1 + rng.random(4)), 2, both),
        ("scale", ops.scale, (x, rng.standard_normal(4), rng.standard_normal(4)), 2, both),
        ("dense", ops.dense,
         (rng.standard_normal((3, 5)), rng.standard_normal((5, 4)), rng.standard_normal(4)), 2, both),
        ("flatten", ops.flatten, (x,), 1, both),
        ("dropout", lambda x: ops.dropout(x, 0.4, rng=jax.random.key(0), train=True), (x,), 1, both),
        ("softmax_cross_entropy", lambda z: ops.softmax_cross_entropy(z, jnp.array([0, 2, 1])),
         (rng.standard_normal((3, 4)),), 1, rev),
        ("relu", ops.relu, (rng.choice([-1.0, 1.0], (3, 4)) * (0.5 + rng.random((3, 4))),), 1, both),  # no kinks
        ("tanh_sigmoid", lambda z: ops.tanh(z) * ops.sigmoid(z), (rng.standard_normal((3, 4)),), 2, both),
    ]


GRAD_NAMES = [case[0] for case in _grad_cases(np.random.default_rng(0))]


@pytest.mark.slow
@pytest.mark.parametrize("name", GRAD_NAMES)
def test_gradients(x64, name):
    _, fn, args, order, modes = next(c for c in _grad_cases(np.random.default_rng(0)) if c[0] == name)
    args = tuple(jnp.asarray(a, jnp.float64) for a in args)
    check_grads(fn, args, order=order, modes=modes, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------- jit

@pytest.mark.slow
@pytest.mark.parametrize("name", GRAD_NAMES)
def test_jit_matches_eager(name):
    _, fn, args, _, _ = next(c for c in _grad_cases(np.random.default_rng(0)) if c[0] == name)
    args = tuple(jnp.asarray(a, jnp.float32) for a in args)
    assert_close(jax.jit(fn)(*args), fn(*args), rtol=1e-5)
