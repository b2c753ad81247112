"""experiments.conv1_ffi: the C++ direct convolution (experiments/conv1_direct.cc, through jax.ffi) equals XLA's
convolution, on shapes whose output width leaves a remainder of the kernel's 4-column blocks, and the script's
table and JSON. Skipped where g++ is missing."""
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


def test_kernel_refuses_more_than_32_outputs(registered):
    x, w = np.zeros((1, 6, 6, 1), np.float32), np.zeros((3, 3, 1, 33), np.float32)
    with pytest.raises(Exception, match="conv1_direct: x \\(N, H, W, 1\\), w \\(K, K, 1, O <= 32\\)"):
        jax.block_until_ready(conv1_ffi.direct(x, w))


def test_script_writes_its_table_and_json(tmp_path, capsys):
    conv1_ffi.main(["--batches", "2", "--rounds", "1", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "conv1_ffi.json").read_text())
    (row,) = report["batches"]
    assert row["batch"] == 2 and set(row["median_ms"]) == {"ffi_direct", "native_ynnpack", "native_no_ynnpack",
                                                           "cpu_ynnpack", "cpu_no_ynnpack"}
    assert max(row["max_rel_diff"].values()) <= 1e-5
    assert "batch 2: ffi_direct" in capsys.readouterr().out
