"""fc_to_conv: the converted net equals the original at the training size; on a larger input each score-map
position equals the original net on the matching crop (trunks that read no padding) or the original head on
the matching window of the trunk's map (padded trunks, where isolated crops differ)."""
import dataclasses
import json
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from caffe_nets import NIN_GLOBAL_POOL
from conftest import random_params, rel_diff
from dataset_writers import write_mnist

from experiments import fc_as_conv
from jaxcnn import caffe, cudaconvnet, datasets, summary, zoo
from jaxcnn.convert import crops, fc_to_conv, sliding_geometry, split
from jaxcnn.layers import (
    AvgPool,
    BatchNorm,
    Concat,
    ContrastNorm,
    Conv,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool,
    GlobalMaxPool,
    Layer,
    LayerError,
    Local,
    MaxPool,
    ReLU,
    Scale,
    Tanh,
)
from jaxcnn.net import Graph, Net, Node
from jaxcnn.train import RunDir, make_manifest

TOL = 1e-5  # max |converted - original| / max |original|
EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
LENET_DEPLOY = EXPERIMENTS / "caffe" / "lenet_bn_deploy.prototxt"


def forward(net, params, state, x):
    return jax.jit(lambda p, s, x: net.apply(p, s, x)[0])(params, state, x)


def windows(x, window, stride, positions):
    """Reference crops by plain slicing: (N, H, W, C) -> (N * P * Q, wh, ww, C), position-major per example."""
    (wh, ww), (sh, sw), (p, q) = window, stride, positions
    return jnp.stack([x[:, i * sh:i * sh + wh, j * sw:j * sw + ww] for i in range(p) for j in range(q)], 1
                     ).reshape(-1, wh, ww, x.shape[-1])


def vgg_valid():
    """A small VGG-style net whose convolutions do not pad: 28 -> 24 -> 12 -> 8 -> 4, stride 4."""
    conv = dict(kernel=3, w_init="msra")
    return Net([Conv("conv1_1", 8, **conv), ReLU("relu1_1"), Conv("conv1_2", 8, **conv), ReLU("relu1_2"),
                MaxPool("pool1", 2), Conv("conv2_1", 16, **conv), ReLU("relu2_1"), Conv("conv2_2", 16, **conv),
                ReLU("relu2_2"), MaxPool("pool2", 2), Flatten("flatten"), Dense("fc6", 32), ReLU("relu6"),
                Dropout("drop6"), Dense("fc7", 32), ReLU("relu7"), Dropout("drop7"), Dense("fc8", 10)],
               (28, 28, 3), "vgg_valid")


def convnet_local_valid():
    """cuda-convnet's CIFAR-10 net (LRN, ceil pooling, local layers) with unpadded convolutions, at 35x35, where
    no pooling window overhangs: 35 -> 31 -> 15 -> 11 -> 5, stride 4."""
    net = zoo.cifar10_local(input_shape=(35, 35, 3))
    layers = [dataclasses.replace(l, padding=0) if isinstance(l, Conv) else l for l in net.layers]
    return Net(layers, net.input_shape, "cifar10_local_valid")


def local_head():
    """A head of every convertible kind: Local with stride, padding and per-filter bias, Local without bias,
    Dense, BatchNorm and Scale on a Dense output, Tanh, Dense without bias. 11 -> 9 -> 5 -> 4, stride 1."""
    return Net([Conv("conv1", 4, 3), Local("local2", 6, 3, stride=2, padding=1, bias="filter"), ReLU("relu2"),
                Local("local3", 5, 2, bias=None), Flatten("flatten"), Dense("ip1", 7), BatchNorm("bn1"),
                Scale("scale1"), Tanh("tanh1"), Dense("ip2", 3, bias=False)], (11, 11, 2), "local_head")


def mlp():
    """Flatten first: the whole image is the window and the net slides pixel by pixel."""
    return Net([Flatten("flatten"), Dense("ip1", 16), ReLU("relu1"), Dense("ip2", 4)], (6, 6, 1), "mlp")


def cifar10_cnorm(tmp_path):
    """cuda-convnet's layers-conv-local-11pct net with contrast normalisation (cnorm) in place of its cross-map
    rnorm1 and rnorm2 (same size and parameters)."""
    cfg = (EXPERIMENTS / "cudaconvnet" / "layers-conv-local-11pct.cfg").read_text()
    (tmp_path / "layers.cfg").write_text(cfg.replace("type=cmrnorm", "type=cnorm"))
    return cudaconvnet.load(tmp_path / "layers.cfg", EXPERIMENTS / "cudaconvnet" / "layer-params-conv-local-11pct.cfg",
                            (32, 32, 3))


def nin(pool="AVE"):
    """NIN's classifier (tests/caffe_nets.py): mlpconv layers, then global pooling and Softmax, no Dense layer.
    12 -> 4 with a 5x5 stride-2 conv, stride 2."""
    return caffe.parse_prototxt(NIN_GLOBAL_POOL.replace("pool: AVE", f"pool: {pool}"))


TRAINING_SIZE = {
    "lenet_caffe": zoo.lenet_caffe,
    "lenet5": zoo.lenet5,
    "lenet5_32": lambda: zoo.lenet5(input_shape=(32, 32, 1)),
    "cifar10_local": zoo.cifar10_local,
    # AlexNet and VGG16 at smaller inputs (2x2 maps into fc6) and 10 classes, to keep the test fast; the
    # experiment runs VGG16 at 224.
    "alexnet": lambda: zoo.alexnet(10, (99, 99, 3)),
    "vgg16": lambda: zoo.vgg16(10, (64, 64, 3)),
    "local_head": local_head,
    "mlp": mlp,
}


@pytest.mark.slow
@pytest.mark.parametrize("name", TRAINING_SIZE)
def test_training_size_output_equals_original(name):
    net = TRAINING_SIZE[name]()
    params, state = random_params(net)
    conv_net, conv_params = fc_to_conv(net, params)
    assert not any(isinstance(l, (Dense, Flatten, Local)) for l in conv_net.layers)
    x = jax.random.normal(jax.random.key(1), (3, *net.input_shape))
    want = forward(net, params, state, x)
    got = forward(conv_net, conv_params, state, x)
    assert got.shape == (3, 1, 1, want.shape[-1])
    assert rel_diff(got[:, 0, 0], want) <= TOL


def test_geometry_of_the_zoo():
    """Stride = product of the trunk's strides; the layers that pad at the training size are named."""
    expect = {
        "lenet_caffe": ((28, 28), (4, 4), ()),
        "lenet5": ((28, 28), (4, 4), ()),
        "cifar10_local": ((32, 32), (4, 4), ("conv1", "pool1", "conv2", "pool2")),
        "alexnet": ((227, 227), (32, 32), ("conv2", "conv3", "conv4", "conv5")),
        "vgg16": ((224, 224), (32, 32), tuple(l.name for l in zoo.vgg16().layers if isinstance(l, Conv))),
    }
    for name, want in expect.items():
        assert tuple(sliding_geometry(zoo.get(name))) == want, name
    assert sliding_geometry(zoo.vgg16()).positions((384, 384)) == (6, 6)  # the cs231n notes: 36 crops of 224


def test_nets_with_contrast_norm_slide(tmp_path):
    """cnorm reads a (2 size - 1)-pixel window around each pixel, zero beyond the map: stride 1, padded."""
    geometry = sliding_geometry(cifar10_cnorm(tmp_path))
    assert geometry == ((32, 32), (4, 4), ("conv1", "pool1", "rnorm1", "conv2", "rnorm2", "pool2"))
    net = Net([Conv("conv1", 4, 3), ContrastNorm("cnorm1", 1), MaxPool("pool1", 2), Flatten("flatten"),
               Dense("fc", 3)], (10, 10, 2))
    assert sliding_geometry(net) == ((10, 10), (2, 2), ())  # a 1-pixel cnorm reads no padding
    assert isinstance(fc_to_conv(net, random_params(net)[0])[0]["cnorm1"], ContrastNorm)


@pytest.mark.parametrize("pool, kind", [("AVE", AvgPool), ("MAX", MaxPool)])
def test_global_pooling_starts_the_head_and_becomes_a_pooling_of_the_training_map(pool, kind):
    """At the training size a global pooling pools the trunk's 4x4 map; converted, it pools each 4x4 window of a
    larger map, stride 1, so that a position is the net on its crop and not the pooling of the whole image."""
    net = nin(pool)
    assert sliding_geometry(net) == ((12, 12), (2, 2), ())
    conv_net, _ = fc_to_conv(net, random_params(net)[0])
    pooling = conv_net["pool4"]
    assert type(pooling) is kind and (pooling.kernel, pooling.stride, pooling.padding) == ((4, 4), (1, 1), "VALID")
    assert conv_net.output_shapes((20, 20, 3)) == (5, 5, 5)


@pytest.mark.parametrize("global_pool", [GlobalAvgPool, GlobalMaxPool])
def test_global_pooling_on_a_converted_local_map_is_an_error(global_pool):
    with pytest.raises(LayerError, match=r"^gpool \(Global(Avg|Max)Pool\): its \(6, 6, 2\) input is a map of 1x1 "
                                         r"positions in the converted head; a global pooling converts only on its "
                                         r"input's own \(H, W\)$"):
        _convert([Local("local1", 2, 3), global_pool("gpool"), Flatten("flatten"), Dense("ip", 2)], (8, 8, 1))


@pytest.mark.parametrize("make, big", [
    (zoo.lenet5, 44), (zoo.lenet_caffe, 40), (vgg_valid, 44), (convnet_local_valid, 47), (local_head, 14),
    (mlp, 9), (nin, 20), (lambda: nin("MAX"), 18),
])
@pytest.mark.slow
def test_positions_equal_isolated_crops(make, big):
    """Trunks that read no padding at the training size: every position is the net on its crop, at offsets
    multiple of the stride. Sizes are the training size plus a multiple of the stride."""
    net = make()
    geometry = sliding_geometry(net)
    assert geometry.padded == ()
    params, state = random_params(net)
    conv_net, conv_params = fc_to_conv(net, params)
    positions = geometry.positions((big, big))
    x = jax.random.normal(jax.random.key(2), (2, big, big, net.input_shape[-1]))
    got = forward(conv_net, conv_params, state, x)
    want = forward(net, params, state, windows(x, geometry.window, geometry.stride, positions))
    assert got.shape[1:3] == positions and positions[0] > 1
    assert rel_diff(got.reshape(want.shape), want) <= TOL


@pytest.mark.slow
@pytest.mark.parametrize("make, big", [(zoo.cifar10_local, 48), (lambda: zoo.alexnet(10, (99, 99, 3)), 163),
                                       (cifar10_cnorm, 40)])
def test_padded_trunk_positions_equal_head_on_trunk_windows(make, big, tmp_path):
    """Where the trunk pads, a position is the original head on the trunk's window of the whole image; the
    isolated crop, which sees zero padding instead of its surroundings, differs."""
    net = make(tmp_path) if make is cifar10_cnorm else make()
    params, state = random_params(net)
    conv_net, conv_params = fc_to_conv(net, params)
    geometry, (trunk, head) = sliding_geometry(net), split(net)
    positions = geometry.positions((big, big))
    x = jax.random.normal(jax.random.key(3), (2, big, big, 3))
    got = forward(conv_net, conv_params, state, x)
    trunk_map = forward(trunk, params, state, x)
    want = forward(head, params, state, windows(trunk_map, head.input_shape[:2], (1, 1), positions))
    assert rel_diff(got.reshape(want.shape), want) <= TOL
    isolated = forward(net, params, state, windows(x, geometry.window, geometry.stride, positions))
    assert rel_diff(got.reshape(want.shape), isolated) > 1e-3


@pytest.mark.slow
def test_crops_are_the_strided_windows():
    x = jax.random.normal(jax.random.key(4), (2, 10, 9, 3))
    got = crops(x, (4, 3), (2, 3))
    assert got.shape == (2, 4, 3, 4, 3, 3)
    np.testing.assert_array_equal(got.reshape(-1, 4, 3, 3), windows(x, (4, 3), (2, 3), (4, 3)))


def test_positions_reject_inexact_sizes():
    geometry = sliding_geometry(zoo.vgg16())
    with pytest.raises(ValueError, match=r"400x400 is not the training size 224x224 plus a multiple of the stride"):
        geometry.positions((400, 400))
    with pytest.raises(ValueError, match="not the training size"):
        geometry.positions((192, 224))


def _convert(layers, input_shape):
    net = Net(layers, input_shape)
    return fc_to_conv(net, random_params(net)[0])


def test_dense_on_a_flat_input_is_an_error():
    with pytest.raises(LayerError, match=r"ip1 \(Dense\): its input \(784,\) has no \(H, W, C\) map"):
        _convert([Dense("ip1", 10)], (784,))


def test_pooling_after_a_local_layer_is_an_error():
    with pytest.raises(LayerError, match=r"pool2 \(MaxPool\): cannot be converted"):
        _convert([Local("local1", 4, 3), MaxPool("pool2", 2), Flatten("flatten"), Dense("ip", 2)], (8, 8, 1))


@pytest.mark.parametrize("layers", [
    [Conv("conv1", 4, 3), Flatten("flatten"), BatchNorm("bn"), Dense("ip", 2)],  # statistics per map pixel
    [Local("local1", 4, 3), Scale("bn"), Flatten("flatten"), Dense("ip", 2)],  # per channel of a local map
])
def test_per_channel_layer_on_a_map_in_the_head_is_an_error(layers):
    with pytest.raises(LayerError, match=r"bn \((BatchNorm|Scale)\): a per-channel layer on a \(.*\) input"):
        _convert(layers, (8, 8, 3))


def test_params_that_do_not_fit_are_errors():
    net = zoo.lenet5()
    params = random_params(net)[0]
    with pytest.raises(LayerError, match=r"fc1 \(Dense\): params have no entry 'fc1'"):
        fc_to_conv(net, {k: v for k, v in params.items() if k != "fc1"})
    with pytest.raises(LayerError, match=r"fc1 \(Dense\): params .* do not fit the net at input \(32, 32, 1\)"):
        fc_to_conv(net, params, (32, 32, 1))  # built for 28x28: fc1 has 256 inputs, not 400


def test_trunk_layer_of_unknown_stride_is_an_error():
    @dataclasses.dataclass(frozen=True)
    class Shift(Layer):
        def forward(self, params, state, x, *, train, rng, lowering):
            return x + 1.0, state

    with pytest.raises(LayerError, match=r"shift \(Shift\): not a layer whose sliding stride is known"):
        sliding_geometry(Net([Shift("shift"), Flatten("flatten"), Dense("ip", 2)], (4, 4, 1)))


def _mnist_dir(tmp_path, n=12):
    """A small MNIST test set in IDX format: bright random strokes on black, labels 0..9."""
    rng = np.random.default_rng(0)
    images = (rng.random((n, 28, 28)) > 0.8).astype(np.uint8) * 255
    write_mnist(tmp_path / "mnist", "test", images, np.arange(n) % 10)
    return str(tmp_path / "mnist")


@pytest.mark.slow
def test_experiment_canvas_results_and_heatmap(tmp_path):
    out = tmp_path / "out"
    args = ["--model", "lenet5", "--size", "100", "--digits", "3", "--repeats", "1",
            "--data-dir", _mnist_dir(tmp_path), "--out", str(out)]
    results = fc_as_conv.main(args)
    assert json.loads((out / "results.json").read_text()) == results
    assert results["score_map_shape"] == [19, 19, 10]  # (100 - 28) / 4 + 1
    assert results["positions"] == 361 and results["padded_layers"] == []
    assert results["rel_max_abs_diff"] <= TOL and results["rel_max_abs_diff_in_context"] <= TOL
    assert results["crops_flops"] == 361 * summary(zoo.lenet5()).flops
    assert results["flop_ratio"] == pytest.approx(results["crops_flops"] / results["one_pass_flops"])
    assert results["flop_ratio"] > 1
    assert results["speedup"] == pytest.approx(results["crops_seconds"] / results["one_pass_seconds"])
    assert len(results["mean_class_scores"]) == 10
    assert len(results["digits"]) == 3
    assert all(d["row"] % 4 == 0 and d["col"] % 4 == 0 and d["row"] + 28 <= 100 for d in results["digits"])
    assert (out / "heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_experiment_restores_a_checkpoint(tmp_path, capsys):
    net = zoo.lenet5()
    params, state = random_params(net, seed=5)
    with RunDir(tmp_path / "run").acquire() as run:  # a run's directory as jaxcnn.train writes it
        run.start(make_manifest(batch_size=1, steps_per_epoch=1, train_examples=1, epochs=1, seed=5,
                                dtype="float32", model="lenet5"), resume=False)
        run.save(1, {"params": params, "state": state}, history=[])
    data_dir = _mnist_dir(tmp_path)
    args = ["--size", "64", "--digits", "1", "--repeats", "1", "--data-dir", data_dir,
            "--checkpoint", str(tmp_path / "run")]
    results = fc_as_conv.main(args)
    assert results["model"] == "lenet5" and results["weights"] == f"checkpoint {tmp_path / 'run'} (step 1)"
    # the saved weights on every crop of the same canvas (same seed), averaged over positions
    canvas, _ = fc_as_conv.mnist_canvas(64, 1, data_dir, np.random.default_rng(0), (4, 4))
    x = jnp.asarray(canvas[None] * datasets.CAFFE_PIXEL_SCALE, jnp.float32)
    want = forward(net, params, state, windows(x, (28, 28), (4, 4), (10, 10))).mean(0)
    assert rel_diff(jnp.asarray(results["mean_class_scores"]), want) <= TOL
    with pytest.raises(SystemExit):
        fc_as_conv.main([*args, "--model", "lenet_caffe"])
    assert "holds a 'lenet5' net, not --model 'lenet_caffe'" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("argv, message", [
    (["--model", "lenet5", "--size", "30"], "--size 30: input 30x30 is not the training size 28x28"),
    (["--repeats", "0"], "--repeats must be at least 1"),
    (["--model", "lenet5", "--size", "40", "--data-dir", "{mnist}"], "--digits 8: must be at least 1, and a 40x40 "
     "canvas has room for 0"),
    (["--model", "lenet5", "--size", "40", "--data-dir", "{missing}"], "--data-dir {missing}:"),
    (["--checkpoint", "{missing}"], "--checkpoint {missing}: not the directory of a training run (no manifest.json"),
    (["--size", "0"], "--size must be at least 1, got 0"),
])
def test_experiment_flag_errors(argv, message, capsys, tmp_path):
    paths = {"mnist": _mnist_dir(tmp_path), "missing": str(tmp_path / "missing")}
    with pytest.raises(SystemExit):
        fc_as_conv.main([a.format(**paths) for a in argv])
    assert message.format(**paths) in capsys.readouterr().err


def test_experiment_checks_the_size_before_making_weights(capsys, monkeypatch):
    def no_init(*args, **kwargs):
        raise AssertionError("weights were made before --size was checked")

    monkeypatch.setattr(Net, "init", no_init)
    with pytest.raises(SystemExit) as err:
        fc_as_conv.main(["--size", "300"])  # VGG16: 138M parameters not drawn in vain
    assert err.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        "error: --size 300: input 300x300 is not the training size 224x224 plus a multiple of the stride 32x32")


@pytest.mark.slow
def test_experiment_gives_probabilities_once_for_a_caffe_net_that_ends_in_softmax(tmp_path):
    """The shipped LeNet deploy net ends in Softmax "prob"; the same net without it ends in the scores ip2. With
    the same caffemodel both give each digit the probability the original net gives its 28x28 box, computed
    here independently (a second softmax would cap it at e / (e + 9) = 0.232)."""
    deploy = LENET_DEPLOY.read_text()
    (tmp_path / "scores.prototxt").write_text(deploy.rsplit("layer {", 1)[0])  # without the final Softmax
    net = caffe.load_prototxt(LENET_DEPLOY)
    params, state = random_params(net, 6)
    params["ip2"]["w"] = params["ip2"]["w"] * 10  # a confident net
    caffe.save_caffemodel(net, params, state, tmp_path / "w.caffemodel")
    data_dir, size, args = _mnist_dir(tmp_path), 88, ["--size", "88", "--digits", "3", "--repeats", "1"]
    runs = {name: fc_as_conv.main([*args, "--prototxt", str(path), "--caffemodel", str(tmp_path / "w.caffemodel"),
                                   "--data-dir", data_dir])
            for name, path in (("prob", LENET_DEPLOY), ("scores", tmp_path / "scores.prototxt"))}
    assert runs["prob"]["scores_are_probabilities"] and not runs["scores"]["scores_are_probabilities"]
    canvas, placed = fc_as_conv.mnist_canvas(size, 3, data_dir, np.random.default_rng(0), (4, 4))
    boxes = np.stack([canvas[d["row"]:d["row"] + 28, d["col"]:d["col"] + 28] for d in placed])
    want = forward(net, params, state, jnp.asarray(boxes * datasets.CAFFE_PIXEL_SCALE, jnp.float32))
    assert float(want.max(-1).min()) > 0.5  # well above what a second softmax allows
    for results in runs.values():
        got = results["digits"]
        assert [(d["row"], d["col"]) for d in got] == [(d["row"], d["col"]) for d in placed]
        assert [d["predicted"] for d in got] == [int(k) for k in want.argmax(-1)]
        np.testing.assert_allclose([d["probability"] for d in got], want.max(-1), rtol=1e-5)


@pytest.mark.slow
def test_experiment_names_untrained_weights_and_warns_when_they_are_all_zero(tmp_path, capsys):
    """A deploy net without fillers has Caffe's default, constant 0: the output cannot depend on the input."""
    no_fillers = re.sub(r"\s*(weight|bias)_filler \{[^}]*\}", "", LENET_DEPLOY.read_text())
    assert "filler" not in no_fillers
    (tmp_path / "zeros.prototxt").write_text(no_fillers)
    args = ["--size", "44", "--digits", "1", "--repeats", "1", "--data-dir", _mnist_dir(tmp_path)]
    results = fc_as_conv.main([*args, "--prototxt", str(tmp_path / "zeros.prototxt")])
    assert results["weights"] == "untrained: the prototxt's fillers (seed 0), zeros where it has none"
    assert results["zero_weight_layers"] == ["conv1", "conv2", "ip1", "ip2"]
    assert "warning: the weights of conv1, conv2, ip1, ip2 are all zero, so the net's output cannot depend on " \
           "its input" in capsys.readouterr().err
    assert results["digits"][0]["probability"] == pytest.approx(0.1)  # every class alike
    results = fc_as_conv.main([*args, "--prototxt", str(LENET_DEPLOY)])  # Xavier fillers
    assert results["zero_weight_layers"] == [] and "warning" not in capsys.readouterr().err


def test_constant_output_follows_every_path_from_the_input():
    net = Graph([Node(Conv("a", 2, 1), ("data",), ("a",)), Node(Conv("b", 2, 1), ("data",), ("b",)),
                 Node(Concat("cat"), ("a", "b"), ("cat",)), Node(Scale("scale"), ("cat",), ("cat",)),
                 Node(Flatten("flatten"), ("cat",), ("flatten",)), Node(Dense("ip", 3), ("flatten",), ("ip",))],
                {"data": (4, 4, 1)})
    _, params, _ = net.init(jax.random.key(0))

    def zeroed(*names, key="w"):
        return {k: {**p, key: jnp.zeros_like(p[key])} if k in names else p for k, p in params.items()}

    assert fc_as_conv.constant_output(net, params) == []
    assert fc_as_conv.constant_output(net, zeroed("a")) == []  # b still reads the input
    assert fc_as_conv.constant_output(net, zeroed("a", "b")) == ["a", "b"]
    assert fc_as_conv.constant_output(net, zeroed("ip")) == ["ip"]
    assert fc_as_conv.constant_output(net, zeroed("scale", key="gamma")) == ["scale"]
