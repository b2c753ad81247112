"""The side-by-side benchmark, its PyTorch twins and its plain-JAX recipe (skipped without the `bench` extra)."""
import json
import math

import caffe_nets
import jax
import numpy as np
import pytest
from synthetic import write_mnist_like

torch = pytest.importorskip("torch")
from experiments import bench, plain_jax, torch_nets  # noqa: E402
from jaxcnn import zoo  # noqa: E402
from jaxcnn.caffe import parse_prototxt  # noqa: E402

CPU = bench.Target("cpu")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lenet_caffe", "cifar10_local", "alexnet"])
def test_torch_twin_computes_the_net(name):
    net = zoo.get(name)
    _, params, state = net.init(jax.random.key(0))
    x = np.random.default_rng(0).standard_normal((2, *net.input_shape)).astype(np.float32)
    ours, _ = net.apply(params, state, x)
    with torch.no_grad():
        theirs = torch_nets.twin(net, params).eval()(bench.nchw(x)).numpy()
    np.testing.assert_allclose(np.asarray(ours), theirs, rtol=1e-4, atol=1e-4 * np.abs(theirs).max())


@pytest.mark.slow
def test_train_case_runs_every_variant_on_the_same_data():
    runners, work, flops = bench.train_case(zoo.cifar10_local(), batch=8, steps=2, target=CPU)
    assert set(runners) == {"jaxcnn", "plain_xla", "torch"} and work == 16
    assert flops == 3 * bench.summary(zoo.cifar10_local()).flops
    losses = {name: float(np.asarray(bench.block(run(), CPU))[-1] if name != "torch" else run().item())
              for name, run in runners.items()}
    assert all(np.isfinite(v) for v in losses.values())
    assert losses["jaxcnn"] == pytest.approx(losses["plain_xla"], rel=1e-4)


def test_shifts_move_each_image_by_at_most_two_pixels():
    """Both recipes' augmentations against a direct crop of the padded image."""
    x = np.random.default_rng(0).integers(1, 255, (16, 6, 5, 1)).astype(np.float32)
    padded = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))
    crops = {(dy, dx): padded[:, dy:dy + 6, dx:dx + 5] for dy in range(5) for dx in range(5)}
    ours = np.asarray(plain_jax.shift(jax.random.key(0), x))
    theirs = torch_nets.shift(bench.nchw(x), torch.Generator().manual_seed(0)).permute(0, 2, 3, 1).numpy()
    for shifted in (ours, theirs):
        offsets = [next(k for k, c in crops.items() if np.array_equal(c[i], shifted[i])) for i in range(16)]
        assert len(set(offsets)) > 3  # random, not one fixed shift


@pytest.mark.slow
def test_epoch_case_trains_all_three_recipes(tmp_path):
    data = write_mnist_like(tmp_path, n_train=1280, n_test=1000)
    runners, work, flops = bench.epoch_case(str(data), 1280, CPU)
    assert work == 1280 and flops == 3 * bench.summary(zoo.lenet_caffe()).flops
    for name, run in runners.items():
        accuracy = float(bench.block(run(), CPU))
        assert 0.5 < accuracy <= 1.0, name  # one epoch of 20 steps learns where the blobs are (chance: 0.1)


@pytest.mark.slow
def test_bench_prints_a_table_and_writes_ratios_and_fractions_of_peak(tmp_path, capsys):
    report = bench.main(["--quick", "--cases", "alexnet_conv2_grouped", "--out", str(tmp_path)])
    written = json.loads((tmp_path / "bench.json").read_text())
    assert written["ratios_vs_torch"] == report["ratios_vs_torch"]
    case = written["cases"]["alexnet_conv2_grouped"]
    rates = case["images_per_second"]
    assert written["ratios_vs_torch"]["alexnet_conv2_grouped"] == pytest.approx(rates["jaxcnn"] / rates["torch"])
    assert rates["jaxcnn"] == pytest.approx(np.median(case["rounds"]["jaxcnn"]))
    # AlexNet conv2 per image: 27x27x256 outputs of 5x5x48 taps each, plus the bias; x3 for forward and backward
    assert case["flops_per_image"] == 3 * (2 * 27 * 27 * 256 * 5 * 5 * 48 + 27 * 27 * 256)
    peak = written["matmul_peak_gflops"]
    assert math.isfinite(peak) and peak > 1  # at least a GFLOP/s: any machine that runs the suite
    assert written["fraction_of_peak"]["alexnet_conv2_grouped"]["torch"] == pytest.approx(
        rates["torch"] * case["flops_per_image"] / (peak * 1e9))
    assert written["epoch"] is None and written["platform"] == "cpu"
    assert "alexnet_conv2_grouped" in capsys.readouterr().out


@pytest.mark.slow
def test_an_inference_case_runs_a_caffe_net_in_jaxcnn_opencv_and_onnxruntime(tmp_path, monkeypatch, capsys):
    """A case of experiments.bench's inference kind on a small depthwise Caffe net (tests/caffe_nets), at batch 1
    where its prototxt says 2: the same outputs, then the ratios to OpenCV and onnxruntime and the compile time in
    bench.json."""
    pytest.importorskip("cv2")
    pytest.importorskip("onnxruntime")
    monkeypatch.setattr(bench, "INFERENCE_NETS", {"block": lambda: caffe_nets.MOBILENET_DEPTHWISE})
    monkeypatch.setattr(bench, "RUN_SECONDS", 0.01)
    monkeypatch.setattr(bench, "matmul_peak", lambda target: 100.0)  # not the subject here
    report = bench.main(["--quick", "--no-tune", "--cases", "block_infer_b1", "--out", str(tmp_path)])
    case = report["cases"]["block_infer_b1"]
    rates = case["images_per_second"]
    assert set(rates) == {"jaxcnn", "plain_xla", "opencv", "onnxruntime"}
    for runtime in ("opencv", "onnxruntime"):
        assert report[f"ratios_vs_{runtime}"] == {"block_infer_b1": pytest.approx(rates["jaxcnn"] / rates[runtime])}
        assert max(case[f"max_rel_diff_vs_{runtime}"].values()) < bench.tolerance(CPU)  # checked before timing
    assert report["ratios_vs_torch"] == {} and set(report["compile_seconds"]["block_infer_b1"]) == {"jaxcnn",
                                                                                                 "plain_xla"}
    assert report["threads"]["onnxruntime"] == bench.threads() and report["versions"]["onnxruntime"]
    (tmp_path / "block.prototxt").write_text(caffe_nets.MOBILENET_DEPTHWISE)
    assert case["flops_per_image"] == bench.summary(bench.load_prototxt(tmp_path / "block.prototxt")).flops
    written = json.loads((tmp_path / "bench.json").read_text())
    assert (written["ratios_vs_opencv"], written["ratios_vs_onnxruntime"]) == (report["ratios_vs_opencv"],
                                                                               report["ratios_vs_onnxruntime"])
    assert "block_infer_b1" in capsys.readouterr().out


def test_the_onnxruntime_runner_agrees_with_jaxcnn_on_a_caffe_net(monkeypatch):
    """The inference cases' onnxruntime runner (jaxcnn's ONNX export of the same weights) on a small depthwise
    Caffe net at batch 3: the case checks its outputs against jaxcnn's first and records the agreement
    (max_rel_diff_vs_onnxruntime, a field of the case in bench.json)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    net = parse_prototxt(caffe_nets.MOBILENET_DEPTHWISE)
    rng = np.random.default_rng(0)  # every weight and statistic in [0.5, 1.5]: quicker than CaffeFiles' weights
    _, params, state = jax.tree.map(lambda s: rng.uniform(0.5, 1.5, s.shape).astype(np.float32),
                                    jax.eval_shape(net.init, jax.random.key(0)))
    monkeypatch.setattr(bench, "RUNTIMES", {"onnxruntime": bench.onnxruntime_runtime})
    monkeypatch.setattr(bench, "VARIANTS", {"jaxcnn": "auto"})
    monkeypatch.setattr(bench, "RUN_SECONDS", 0.0)  # one call a run
    files = lambda name: (net, params, state, None, None)  # noqa: E731 - no Caffe files: onnxruntime reads none
    runners, work, _, info = bench.inference_case(files, "block", 3, bench.Target("cpu", tune=False))
    assert set(runners) == {"jaxcnn", "onnxruntime"} and work == 3 and info["calls_per_run"] == 1
    assert set(info["max_rel_diff_vs_onnxruntime"]) == {"jaxcnn"}
    assert info["max_rel_diff_vs_onnxruntime"]["jaxcnn"] < 1e-5
    ours = np.asarray(runners["jaxcnn"]()).transpose(0, 3, 1, 2)
    theirs = runners["onnxruntime"]()
    np.testing.assert_allclose(theirs, ours, rtol=1e-5, atol=1e-5 * np.abs(ours).max())


def test_without_onnxruntime_its_columns_are_left_out_with_a_note(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "RUNTIMES", {"opencv": bench.opencv_runtime})  # as bench sets it without onnxruntime
    monkeypatch.setattr(bench, "matmul_peak", lambda target: 100.0)
    monkeypatch.setattr(bench, "cases", lambda quick, target, data_dir: {  # a stand-in case: no net is run
        "block_infer_b1": (lambda: ({"jaxcnn": lambda: 2.0, "plain_xla": lambda: 1.0, "opencv": lambda: 1.0}, 1, 1),
                           1)})
    report = bench.main(["--cases", "block_infer_b1", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "onnxruntime not installed: the inference cases run without it (pip install -e .[bench])" in out
    header = next(line for line in out.splitlines() if line.startswith("case"))
    assert "opencv" in header and "onnxruntime" not in header
    assert "ratios_vs_opencv" in report and "ratios_vs_onnxruntime" not in report


def test_gpu_platform_is_refused_without_a_gpu(capsys):
    if jax.default_backend() == "gpu":
        pytest.skip("this machine has a GPU")
    with pytest.raises(SystemExit) as e:
        bench.main(["--platform", "gpu"])
    assert e.value.code == 2 and "--platform gpu: JAX's default backend is cpu" in capsys.readouterr().err


@pytest.mark.slow
def test_torch_compile_variant_computes_what_eager_does():
    runners, _, _ = bench.grouped_conv_case(2, bench.Target("cpu", torch_compile=True))
    assert set(runners) == {"jaxcnn", "plain_xla", "torch", "torch_compile"}
    eager, compiled = (runners[v]().detach().numpy() for v in ("torch", "torch_compile"))
    np.testing.assert_allclose(compiled, eager, rtol=1e-5, atol=1e-5 * np.abs(eager).max())


@pytest.mark.slow
def test_an_epoch_on_random_images_says_its_accuracy_is_chance(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bench, "cases", lambda quick, target, data_dir: {
        "mnist_epoch": (lambda: bench.epoch_case(data_dir, 128, target), 1)})  # 2 steps, not 60,000 images
    random_data = bench.mnist_data
    monkeypatch.setattr(bench, "mnist_data", lambda *args: (  # and 1,000 of its 10,000 random test images
        lambda train, test: (train, (test[0][:1000], test[1][:1000])))(*random_data(*args)))
    report = bench.main(["--cases", "mnist_epoch", "--out", str(tmp_path)])
    assert report["data"] == "random images" and report["epoch"]["images"] == 128
    assert "epoch of 128 random images (random labels: the accuracy is chance, meaningless): jaxcnn " in \
        capsys.readouterr().out
