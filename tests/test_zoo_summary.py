"""The model zoo reproduces its sources' numbers (Caffe's LeNet with BatchNorm, LeNet-5, the cs231n notes' VGG16
table, cuda-convnet's layers-conv-local-11pct start-up log, Caffe's bvlc_alexnet); the summary's counts agree with
XLA; the command line."""
import json
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref
from conftest import assert_close

from jaxcnn import Conv, Dense, Flatten, Net, summary, zoo
from jaxcnn.__main__ import main
from jaxcnn.ops.geometry import pair


def rows_by_name(net, input_shape=None):
    return {r.name: r for r in summary(net, input_shape).rows}


# ---------------------------------------------------------------------------------------------- LeNet

def test_lenet_caffe_as_caffes_lenet_train_test_with_batchnorm():
    rows = rows_by_name(zoo.lenet_caffe())
    # conv1 5*5*1*20 + 20; conv2 20*50*5*5 + 50; ip1 (4*4*50)*500 + 500; ip2 500*10 + 10
    expected = {"conv1": 520, "conv2": 25_050, "ip1": 400_500, "ip2": 5_010, "scale_conv1": 40, "scale_conv2": 100}
    for name, params in expected.items():
        assert (rows[name].trainable, rows[name].non_trainable) == (params, 0), name
    # BatchNorm: running mean and variance, not trained (Caffe's lr_mult 0)
    # Caffe's three BatchNorm blobs: mean, variance and the count (scale factor) of their running average
    assert (rows["bn_conv1"].trainable, rows["bn_conv1"].non_trainable) == (0, 20 + 20 + 1)
    assert (rows["bn_conv2"].trainable, rows["bn_conv2"].non_trainable) == (0, 50 + 50 + 1)
    assert rows["pool2"].output_shape == (4, 4, 50) and rows["flatten"].output_shape == (800,)
    assert rows["ip2"].output_shape == (10,)


LENET5_32 = {  # LeNet-5 on 32x32x1, as its usual Keras listing counts it
    "conv1": ((28, 28, 6), 156), "pool1": ((14, 14, 6), 0), "conv2": ((10, 10, 16), 2_416), "pool2": ((5, 5, 16), 0),
    "flatten": ((400,), 0), "fc1": ((120,), 48_120), "fc2": ((84,), 10_164), "fc3": ((10,), 850),
}


def test_lenet5_parameter_counts():
    rows = rows_by_name(zoo.lenet5(), (32, 32, 1))
    for name, (shape, params) in LENET5_32.items():
        assert (rows[name].output_shape, rows[name].trainable) == (shape, params), name
    assert summary(zoo.lenet5(), (32, 32, 1)).trainable == 61_706
    rows28 = rows_by_name(zoo.lenet5())  # the Keras code runs on MNIST's 28x28: 24 -> 12 -> 8 -> 4
    assert rows28["conv1"].output_shape == (24, 24, 6) and rows28["pool2"].output_shape == (4, 4, 16)
    assert rows28["fc1"].trainable == 4 * 4 * 16 * 120 + 120 == 30_840


# ---------------------------------------------------------------------------------------------- VGG16 (cs231n notes)

VGG_TABLE = [  # the cs231n notes' VGG16 table: (kind, output, activations ("memory"), weights without biases)
    ("INPUT", (224, 224, 3), 224 * 224 * 3, 0),
    ("CONV3-64", (224, 224, 64), 224 * 224 * 64, 1_728),
    ("CONV3-64", (224, 224, 64), 224 * 224 * 64, 36_864),
    ("POOL2", (112, 112, 64), 112 * 112 * 64, 0),
    ("CONV3-128", (112, 112, 128), 112 * 112 * 128, 73_728),
    ("CONV3-128", (112, 112, 128), 112 * 112 * 128, 147_456),
    ("POOL2", (56, 56, 128), 56 * 56 * 128, 0),
    ("CONV3-256", (56, 56, 256), 56 * 56 * 256, 294_912),
    ("CONV3-256", (56, 56, 256), 56 * 56 * 256, 589_824),
    ("CONV3-256", (56, 56, 256), 56 * 56 * 256, 589_824),
    ("POOL2", (28, 28, 256), 28 * 28 * 256, 0),
    ("CONV3-512", (28, 28, 512), 28 * 28 * 512, 1_179_648),
    ("CONV3-512", (28, 28, 512), 28 * 28 * 512, 2_359_296),
    ("CONV3-512", (28, 28, 512), 28 * 28 * 512, 2_359_296),
    ("POOL2", (14, 14, 512), 14 * 14 * 512, 0),
    ("CONV3-512", (14, 14, 512), 14 * 14 * 512, 2_359_296),
    ("CONV3-512", (14, 14, 512), 14 * 14 * 512, 2_359_296),
    ("CONV3-512", (14, 14, 512), 14 * 14 * 512, 2_359_296),
    ("POOL2", (7, 7, 512), 7 * 7 * 512, 0),
    ("FC", (1, 1, 4096), 4096, 102_760_448),
    ("FC", (1, 1, 4096), 4096, 16_777_216),
    ("FC", (1, 1, 1000), 1000, 4_096_000),
]


def test_vgg16_matches_the_cs231n_table():
    net = zoo.vgg16()
    s = summary(net)
    assert s.trainable + s.non_trainable == s.trainable == 138_357_544  # "138M parameters"
    by_name = {r.layer.name: r for r in net.shapes()}
    table_rows = [r for r in s.rows if r.type in ("Conv", "MaxPool", "Dense")]
    assert len(table_rows) == len(VGG_TABLE) - 1
    assert s.input_shape == VGG_TABLE[0][1]
    for row, (kind, shape, activations, weights) in zip(table_rows, VGG_TABLE[1:]):
        assert row.type == {"CONV3": "Conv", "POOL2": "MaxPool", "FC": "Dense"}[kind.split("-")[0]], row.name
        assert row.output_shape == (shape if kind != "FC" else shape[-1:]), row.name
        assert row.activations == activations, row.name
        w = by_name[row.name].params.get("w")
        assert (math.prod(w.shape) if w is not None else 0) == weights, row.name
        assert row.trainable == weights + (shape[-1] if weights else 0), row.name  # plus one bias per output
    # The notes' "TOTAL memory: 24M" is not the sum of their own column: the input plus every listed layer
    # output is 15,237,608 values. The summary counts exactly those (ReLUs work in place).
    assert s.forward_activations == sum(t[2] for t in VGG_TABLE) == 15_237_608
    assert s.forward_activation_bytes == 4 * 15_237_608


def test_vgg16_macs():
    assert summary(zoo.vgg16()).macs == 15_470_264_320  # the commonly quoted 15.47 G multiply-adds at 224x224


def test_summary_traces_fillers_abstractly():
    calls = []

    def filler(key, shape, dtype):
        calls.append(isinstance(key, jax.core.Tracer))
        return jnp.zeros(shape, dtype)

    net = Net([Conv("conv", 4, 3, w_init=filler), Flatten("flatten"), Dense("fc", 2, w_init=filler)], (6, 6, 1))
    assert summary(net).trainable == 3 * 3 * 4 + 4 + 64 * 2 + 2
    assert calls and all(calls)


# ---------------------------------------------------------------------------------------------- cuda-convnet

CONVNET_LOG = {  # cuda-convnet's start-up log for layers-conv-local-11pct ("producing HxW C-channel output")
    "conv1": (32, 32, 64), "pool1": (16, 16, 64), "rnorm1": (16, 16, 64), "conv2": (16, 16, 64),
    "rnorm2": (16, 16, 64), "pool2": (8, 8, 64), "local3": (8, 8, 64), "local4": (8, 8, 32), "fc10": 10,
    "conv1_neuron": 65_536, "conv2_neuron": 16_384, "local3_neuron": 4_096, "local4_neuron": 2_048,
}


def test_cifar10_local_matches_cuda_convnets_log():
    net = zoo.cifar10_local()
    rows = rows_by_name(net)
    for name, expected in CONVNET_LOG.items():
        if isinstance(expected, int):
            assert rows[name].activations == expected, name
        else:
            assert rows[name].output_shape == expected, name
    w = {r.layer.name: r.params for r in net.shapes()}
    assert w["local3"]["w"].shape == (8, 8, 3, 3, 64, 64)
    assert math.prod(w["local3"]["w"].shape) == 8 * 8 * (3 * 3 * 64) * 64
    assert rows["local3"].trainable == 8 * 8 * (3 * 3 * 64) * 64 + 8 * 8 * 64  # per-position biases


# ---------------------------------------------------------------------------------------------- AlexNet (bvlc_alexnet)

def test_alexnet_as_caffes_bvlc_alexnet():
    net = zoo.alexnet()
    rows = rows_by_name(net)
    params = {r.layer.name: r.params for r in net.shapes()}
    assert rows["conv1"].output_shape == (55, 55, 96)
    assert params["conv1"]["w"].shape == (11, 11, 3, 96)  # Caffe's (96, 3, 11, 11), HWIO
    assert rows["pool1"].output_shape == (27, 27, 96)
    assert rows["conv2"].output_shape == (27, 27, 256)
    assert params["conv2"]["w"].shape == (5, 5, 48, 256)  # Caffe's (256, 48, 5, 5): two groups of 48 channels
    assert rows["conv2"].macs == 27 * 27 * 256 * 5 * 5 * 48
    assert rows["pool5"].output_shape == (6, 6, 256)
    assert summary(net).trainable == 60_965_224


# ---------------------------------------------------------------------------------------------- summary vs XLA

def in_bounds_taps(n, k, s, lo, hi, d):
    """Kernel taps that land inside the input, summed over the output positions of one axis."""
    out = ref.window_out_size(n, (k - 1) * d + 1, s, lo, hi)
    return sum(0 <= o * s - lo + a * d < n for o in range(out) for a in range(k))


def padding_macs(shapes):
    """MACs the summary counts on zero padding: it counts every tap (as Caffe and torchinfo do); XLA's cost
    analysis counts only the taps inside the input."""
    total = 0
    for row in shapes:
        layer = row.layer
        if isinstance(layer, Conv):
            kernel, stride, dilation = pair(layer.kernel, "k"), pair(layer.stride, "s"), pair(layer.dilation, "d")
            window = [(k - 1) * d + 1 for k, d in zip(kernel, dilation)]
            pads = ref.explicit_pads(layer.padding, row.in_shape[:2], window, stride)
            axes = zip(row.in_shape[:2], kernel, stride, *zip(*pads), dilation)
            taps = math.prod(in_bounds_taps(*axis) for axis in axes)
            dense = math.prod(row.out_shape[:2]) * math.prod(kernel)
            total += (dense - taps) * row.in_shape[-1] // layer.groups * layer.features
    return total


@pytest.mark.parametrize("name", ["lenet_caffe", "lenet5", "cifar10_local", "alexnet", "vgg16"])
def test_summary_flops_match_xla(name):
    net, batch = zoo.get(name), 2
    shapes = net.shapes()
    params = {r.layer.name: r.params for r in shapes if r.params}
    state = {r.layer.name: r.state for r in shapes if r.state}
    x = jax.ShapeDtypeStruct((batch, *net.input_shape), jnp.float32)
    # XLA counts the plain ops; the CPU lowerings compute extra columns
    compiled = jax.jit(lambda p, s, x: net.apply(p, s, x, lowering="native")[0]).lower(params, state, x).compile()
    cost = compiled.cost_analysis()
    xla = (cost[0] if isinstance(cost, (list, tuple)) else cost)["flops"] / batch
    s = summary(net)
    if name in ("lenet_caffe", "lenet5"):  # no padding: the counts agree directly
        assert xla == pytest.approx(s.flops, rel=0.01)
    # pooling and LRN counts differ slightly (XLA counts k*k - 1 comparisons); convolutions agree exactly
    assert xla == pytest.approx(s.flops - 2 * padding_macs(shapes), rel=0.01)


def test_summary_memory_totals():
    s = summary(zoo.lenet5(), (32, 32, 1), batch=8)
    buffers = 32 * 32 + 28 * 28 * 6 + 14 * 14 * 6 + 10 * 10 * 16 + 5 * 5 * 16 + 120 + 84 + 10  # ReLU, flatten in place
    assert s.forward_activations == buffers
    assert s.train_step_bytes == 2 * 8 * 4 * buffers + 3 * 4 * 61_706
    totals = s.to_dict()["totals"]
    assert totals["params"] == 61_706 and totals["flops_per_batch"] == 8 * s.flops


# -------------------------------------------------------------------------------------- whole nets: jit vs eager

def _jit_matches_eager(net, params, state, train):
    x = np.random.default_rng(1).random((2, *net.input_shape), np.float32)
    eager = net.apply(params, state, x, train=train)
    jitted = jax.jit(lambda p, s, x: net.apply(p, s, x, train=train))(params, state, x)
    assert_close(jitted, eager, 1e-4)
    return eager


def test_lenet_caffe_train_jit_matches_eager(lenet_caffe_init):
    net, params, state = lenet_caffe_init
    _, new_state = _jit_matches_eager(net, params, state, train=True)
    assert not np.allclose(new_state["bn_conv1"]["mean"], state["bn_conv1"]["mean"])  # the statistics moved


def test_cifar10_local_eval_jit_matches_eager():
    net, rng = zoo.cifar10_local(), np.random.default_rng(0)
    # NumPy Gaussian weights of std 0.05 (the zoo's fillers would cost an XLA compile per shape here)
    params = {r.layer.name: {k: 0.05 * rng.standard_normal(v.shape, np.float32) for k, v in r.params.items()}
              for r in net.shapes() if r.params}
    _jit_matches_eager(net, params, {}, train=False)


# ---------------------------------------------------------------------------------------------- CLI

def test_cli_table(capsys):
    main(["summary", "vgg16"])
    out = capsys.readouterr().out
    assert "Total params: 138,357,544" in out
    assert re.search(r"^conv1_1\s+Conv\s+\(224, 224, 64\)\s+1,792 ", out, re.M)
    assert re.search(r"^fc6\s+Dense\s+\(4096,\)\s+102,764,544 ", out, re.M)


def test_cli_input_shape_and_json(capsys):
    main(["summary", "lenet5", "--input-shape", "32,32,1"])
    assert "Total params: 61,706" in capsys.readouterr().out
    main(["summary", "cifar10_local", "--json", "--batch", "4"])
    data = json.loads(capsys.readouterr().out)
    assert data["input_shape"] == [32, 32, 3] and data["batch"] == 4
    assert data["totals"]["trainable"] == sum(layer["trainable"] for layer in data["layers"])
    assert data["totals"]["params"] == summary(zoo.cifar10_local()).trainable
    assert data["layers"][0]["output_shape"] == [32, 32, 64]


@pytest.mark.parametrize("argv, message", [
    (["--input-shape", "32,32"],
     r"argument --input-shape: expected H,W,C as three positive ints, e\.g\. 32,32,1; got '32,32'"),
    (["--input-shape", "a,b,c"], r"argument --input-shape: expected H,W,C"),
    (["--input-shape", "0,32,1"], r"argument --input-shape: expected H,W,C"),
    (["--input-shape", "8,8,1"],
     r"lenet5 with --input-shape 8,8,1: conv2 \(Conv\): window 5x5 is larger than the padded input 2x2"),
    (["--batch", "0"], r"--batch must be a positive int, got 0"),
])
def test_cli_bad_flags(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["summary", "lenet5", *argv])
    assert exit_info.value.code != 0
    assert re.search(message, capsys.readouterr().err)
