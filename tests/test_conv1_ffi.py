"""experiments.conv1_ffi: the C++ direct convolution (experiments/conv1_direct.cc, through jax.ffi) equals XLA's
convolution, on shapes whose output width leaves a remainder of the kernel's 4-column blocks; its weight gradient
equals JAX's; the fused first block (convolution, BatchNorm, Scale, max pooling, ReLU) and its gradients equal
jaxcnn's layers, with MNIST's blank rows (windows of equal values) among the inputs; the script's table and JSON
(its LeNet-BN steps with the kernels check their own losses). Skipped where g++ is missing."""
import json
import shutil

import jax
import numpy as np
import pytest

from experiments import conv1_ffi
from jaxcnn import ops

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("g++") is None, reason="g++ compiles the kernel")]


@pytest.fixture(scope="module")
def registered():
    conv1_ffi.register()


@pytest.mark.parametrize("x_shape, k, o, threads", [((3, 11, 13, 1), 3, 7, 2), ((1, 5, 6, 1), 5, 32, 1),
                                                    ((4, 28, 28, 1), 5, 20, 3)])
def test_kernel_equals_the_native_convolution(registered, x_shape, k, o, threads):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal((k, k, 1, o)).astype(np.float32)
    got = np.asarray(jax.jit(lambda x, w: conv1_ffi.direct(x, w, threads))(x, w))
    want = np.asarray(ops.conv2d(x, w, None, lowering="native"))
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("x_shape, k, o", [((3, 11, 13, 1), 3, 7), ((5, 28, 28, 1), 5, 20)])
def test_weight_gradient_equals_jaxs(registered, x_shape, k, o):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal((k, k, 1, o)).astype(np.float32)
    g = rng.standard_normal((x_shape[0], x_shape[1] - k + 1, x_shape[2] - k + 1, o)).astype(np.float32)
    _, vjp = jax.vjp(lambda w: ops.conv2d(x, w, None, lowering="native"), w)
    want = np.asarray(vjp(g)[0])
    got = np.asarray(jax.jit(conv1_ffi.weight_grad)(x, g))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    _, vjp = jax.vjp(conv1_ffi.conv1, x, w)  # the custom VJP: both cotangents
    dx, dw = vjp(g)
    np.testing.assert_allclose(np.asarray(dw), want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    _, vjp_x = jax.vjp(lambda x: ops.conv2d(x, w, None, lowering="native"), x)
    np.testing.assert_allclose(np.asarray(dx), np.asarray(vjp_x(g)[0]), rtol=1e-5, atol=1e-5)


def reference_block(x, w, b, gamma, beta, eps):
    """The block by jaxcnn's ops: relu(max_pool_2x2(gamma * standardize(conv(x, w) + b) + beta)), mean, var."""
    h, mean, var = ops.norm.standardize(ops.conv2d(x, w, b, lowering="native"), eps)
    return jax.nn.relu(ops.max_pool(ops.scale(h, gamma, beta), 2)), mean, var


@pytest.mark.parametrize("x_shape, k, o", [((3, 12, 14, 1), 5, 7), ((4, 28, 28, 1), 5, 20), ((2, 9, 7, 1), 4, 32),
                                           ((2, 9, 9, 1), 2, 3)])
def test_fused_block_and_its_gradients_equal_the_layers(registered, x_shape, k, o):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(x_shape).astype(np.float32)
    x[0, : x_shape[1] // 2] = 0.0  # blank rows as MNIST's: pooling windows of equal values (their taps' patches are
    # all zero and their normalised values equal, so which tap takes the gradient changes none of these gradients)
    w, b, gamma, beta = (rng.standard_normal(s).astype(np.float32) for s in ((k, k, 1, o), (o,), (o,), (o,)))
    eps = 1e-3
    got = jax.jit(conv1_ffi.conv1_block, static_argnums=5)(x, w, b, gamma, beta, eps)
    want = reference_block(x, w, b, gamma, beta, eps)
    for g, r in zip(got, want):
        np.testing.assert_allclose(np.asarray(g), np.asarray(r), rtol=1e-4, atol=1e-5 * np.abs(r).max())
    dz = rng.standard_normal(want[0].shape).astype(np.float32)
    grads = [jax.grad(lambda *p, f=f: (f(x, *p, eps)[0] * dz).sum(), argnums=(0, 1, 2, 3))(w, b, gamma, beta)
             for f in (conv1_ffi.conv1_block, reference_block)]
    for name, g, r in zip(("w", "b", "gamma", "beta"), *grads):
        # b's gradient is 0 up to rounding (BatchNorm removes the bias): compared at the largest gradient's scale
        scale = max(np.abs(v).max() for v in grads[1]) if name == "b" else np.abs(r).max()
        np.testing.assert_allclose(np.asarray(g), np.asarray(r), rtol=0, atol=2e-5 * scale, err_msg=name)


def test_fused_block_refuses_odd_maps(registered):
    x, w, v = np.zeros((1, 8, 8, 1), np.float32), np.zeros((2, 2, 1, 4), np.float32), np.zeros(4, np.float32)
    with pytest.raises(Exception, match="conv1_block_forward: .*even OH, OW"):
        jax.block_until_ready(conv1_ffi.conv1_block(x, w, v, v, v, 1e-5))


def test_kernel_refuses_more_than_32_outputs(registered):
    x, w = np.zeros((1, 6, 6, 1), np.float32), np.zeros((3, 3, 1, 33), np.float32)
    with pytest.raises(Exception, match="conv1_direct: x \\(N, H, W, 1\\), w \\(K, K, 1, O <= 32\\)"):
        jax.block_until_ready(conv1_ffi.direct(x, w))


def test_script_writes_its_table_and_json(tmp_path, capsys):
    pytest.importorskip("torch", reason="the step comparison builds experiments.bench's runners (the bench extra)")
    conv1_ffi.main(["--batches", "2", "--rounds", "1", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "conv1_ffi.json").read_text())
    (row,) = report["batches"]
    assert row["batch"] == 2 and set(row["median_ms"]) == {"ffi_direct", "native_ynnpack", "native_no_ynnpack",
                                                           "cpu_ynnpack", "cpu_no_ynnpack"}
    assert max(row["max_rel_diff"].values()) <= 1e-5
    assert set(row["step_median_ms"]) == {"tuned", "conv1_kernels", "block_kernels", "pytorch"}
    assert "batch 2, LeNet-BN step (speed relative to PyTorch's): tuned" in capsys.readouterr().out
