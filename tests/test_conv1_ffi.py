"""experiments.conv1_ffi: the C++ direct convolution (experiments/conv1_direct.cc, through jax.ffi) equals XLA's
convolution, on shapes whose output width leaves a remainder of the kernel's 4-column blocks; its weight gradient
equals JAX's; the script's table and JSON (its LeNet-BN step with conv1 by the kernels checks its own losses).
Skipped where g++ is missing."""
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
    assert max(row["max_rel_diff"].values()) <= 1e-5 and set(row["step_median_ms"]) == {"tuned", "conv1_kernels"}
    assert "batch 2, LeNet-BN step: tuned" in capsys.readouterr().out
