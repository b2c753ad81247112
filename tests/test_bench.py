"""The side-by-side benchmark and its PyTorch twins (skipped without the `bench` extra)."""
import json

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
from experiments import bench, torch_nets  # noqa: E402
from jaxcnn import zoo  # noqa: E402


@pytest.mark.parametrize("name", ["lenet_caffe", "cifar10_local", "alexnet"])
def test_torch_twin_computes_the_net(name):
    net = zoo.get(name)
    _, params, state = net.init(jax.random.key(0))
    x = np.random.default_rng(0).standard_normal((2, *net.input_shape)).astype(np.float32)
    ours, _ = net.apply(params, state, x)
    with torch.no_grad():
        theirs = torch_nets.twin(net, params).eval()(bench.nchw(x)).numpy()
    np.testing.assert_allclose(np.asarray(ours), theirs, rtol=1e-4, atol=1e-4 * np.abs(theirs).max())


def test_train_case_runs_every_variant_on_the_same_data():
    runners, work = bench.train_case(zoo.cifar10_local(), batch=8, steps=2)
    assert set(runners) == {"jaxcnn", "plain_xla", "torch"} and work == 16
    losses = {name: float(np.asarray(bench.block(run()))[-1] if name != "torch" else run().item())
              for name, run in runners.items()}
    assert all(np.isfinite(v) for v in losses.values())
    assert losses["jaxcnn"] == pytest.approx(losses["plain_xla"], rel=1e-4)


def test_bench_prints_a_table_and_writes_the_ratios(tmp_path, capsys):
    report = bench.main(["--quick", "--cases", "alexnet_conv2_grouped", "--out", str(tmp_path)])
    written = json.loads((tmp_path / "bench.json").read_text())
    assert written["ratios_vs_torch"] == report["ratios_vs_torch"]
    assert set(written["ratios_vs_torch"]) == set(written["ratios_vs_plain_xla"]) == {"alexnet_conv2_grouped"}
    assert written["ratios_vs_torch"]["alexnet_conv2_grouped"] > 0
    assert "alexnet_conv2_grouped" in capsys.readouterr().out
