"""jaxcnn.caffe: prototxt, caffemodel and solver files, checked against OpenCV's Caffe runtime (cv2.dnn), a second
implementation of Caffe's layers, and against Caffe's pooling written as a loop."""
import math
from dataclasses import replace
from pathlib import Path

import caffe_nets
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import random_params, rel_diff
from google.protobuf import text_format

from jaxcnn import AvgPool, BatchNorm, Bias, Conv, Dense, Local, MaxPool, PReLU, Scale, predictor, summary, zoo
from jaxcnn.caffe import (
    CaffeFormatError,
    load_caffemodel,
    load_prototxt,
    load_solver,
    parse_prototxt,
    parse_solver,
    save_caffemodel,
    schema,
    types,
)
from jaxcnn.caffe.weights import blob_array, read_caffemodel
from jaxcnn.train import SolverConfig, optimizer, schedule

cv2 = pytest.importorskip("cv2", reason="OpenCV (opencv-python-headless, the test extra) is the reference runtime")

ROOT = Path(__file__).resolve().parents[1]
CAFFE_DIR = ROOT / "experiments" / "caffe"
LENET = CAFFE_DIR / "lenet_bn_train_test.prototxt"


def opencv_forward(prototxt_path, caffemodel_path, x_nhwc, layers):
    """OpenCV's outputs (NCHW) of the named layers (OpenCV names an output by the layer that wrote it)."""
    net = cv2.dnn.readNetFromCaffe(str(prototxt_path), str(caffemodel_path))
    net.setInput(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2)))
    return dict(zip(layers, net.forward(list(layers))))


def last_writer(net, blob):
    """The name of the last layer of `net` that writes `blob` (an in-place ReLU after the layer that made it)."""
    return next(n.layer.name for n in reversed(net.nodes) if blob in n.outputs)


def to_nchw(y):
    y = np.asarray(y)
    return y.transpose(0, 3, 1, 2) if y.ndim == 4 else y


def _check_against_opencv(tmp_path, text, seed=0):
    """Load `text` in jaxcnn, save random weights, read both into OpenCV, compare every output; -> (net, params,
    state, paths)."""
    proto_path, model_path = tmp_path / "net.prototxt", tmp_path / "net.caffemodel"
    proto_path.write_text(text)
    net = load_prototxt(proto_path)
    params, state = random_params(net, seed)
    save_caffemodel(net, params, state, model_path)
    x = np.random.default_rng(seed + 1).standard_normal((2, *net.input_shape)).astype(np.float32)
    ours = predictor(net, len(x))(params, state, x)  # one compile, not one per op
    ours = ours if isinstance(ours, dict) else {net.outputs[0]: ours}
    writers = {blob: last_writer(net, blob) for blob in ours}
    theirs = opencv_forward(proto_path, model_path, x, writers.values())
    for blob, y in ours.items():
        assert to_nchw(y).shape == theirs[writers[blob]].shape, blob
        assert rel_diff(to_nchw(y), theirs[writers[blob]]) < 1e-4, blob
    return net, params, state, model_path


@pytest.mark.parametrize("name", list(caffe_nets.NETS))
def test_outputs_agree_with_opencv_and_weights_round_trip(name, tmp_path):
    net, params, state, model_path = _check_against_opencv(tmp_path, caffe_nets.NETS[name])
    loaded_params, loaded_state = load_caffemodel(net, model_path)
    jax.tree.map(np.testing.assert_array_equal, loaded_params, params)  # bit-exact
    for layer, s in state.items():  # Caffe stores sums: statistics come back to one float32 ulp
        assert loaded_state[layer]["count"] == s["count"]
        for k in ("mean", "var"):
            np.testing.assert_array_max_ulp(loaded_state[layer][k], s[k], maxulp=1)
    save_caffemodel(net, loaded_params, loaded_state, tmp_path / "again.caffemodel")
    again = load_caffemodel(net, tmp_path / "again.caffemodel")  # loaded statistics are Caffe's: exact
    jax.tree.map(np.testing.assert_array_equal, again, (loaded_params, loaded_state))
    if not state:
        assert (tmp_path / "again.caffemodel").read_bytes() == model_path.read_bytes()


def test_batch_norm_statistics_round_trip_exactly_with_a_power_of_two_count(tmp_path):
    net = parse_prototxt(caffe_nets.RESNET_BOTTLENECK)
    params, state = random_params(net)
    state = {k: dict(v, count=jnp.float32(2.0 ** (i - 2))) for i, (k, v) in enumerate(state.items())}
    save_caffemodel(net, params, state, tmp_path / "a.caffemodel")
    jax.tree.map(np.testing.assert_array_equal, load_caffemodel(net, tmp_path / "a.caffemodel"), (params, state))
    save_caffemodel(net, *load_caffemodel(net, tmp_path / "a.caffemodel"), tmp_path / "b.caffemodel")
    assert (tmp_path / "a.caffemodel").read_bytes() == (tmp_path / "b.caffemodel").read_bytes()


def lenet_deploy_text(batch=2):
    """Caffe's LeNet-BN train/test net as a deploy net: an input blob instead of the data layers, no loss and
    accuracy layers (OpenCV runs deploy nets)."""
    proto = schema.NetParameter()
    text_format.Parse(LENET.read_text(), proto)
    keep = [lp for lp in proto.layer if lp.type not in ("Data", "SoftmaxWithLoss", "Accuracy")]
    del proto.layer[:]
    proto.layer.extend(keep)
    proto.input.append("data")
    proto.input_shape.add().dim.extend([batch, 1, 28, 28])
    return text_format.MessageToString(proto)


@pytest.mark.slow
def test_lenet_bn_train_test_net(tmp_path):
    """Caffe's examples/mnist/lenet_train_test.prototxt with BatchNorm + Scale: the zoo's lenet_caffe layer for
    layer, its data layer's scale as preprocessing, its loss and accuracy layers as loss and metric."""
    test_net = load_prototxt(LENET, input_shape=(28, 28, 1))
    train_net = load_prototxt(LENET, phase="TRAIN", input_shape=(28, 28, 1))
    assert test_net.transform.scale == 0.00390625 and test_net.data.batch_size == 100
    assert train_net.data.batch_size == 64 and train_net.data.source == "examples/mnist/mnist-train-leveldb"
    assert [m.name for m in test_net.metrics] == ["accuracy"] and train_net.metrics == ()
    assert [(l.logits, l.label) for l in train_net.losses] == [("ip2", "label")]
    zoo_rows = summary(zoo.lenet_caffe()).rows
    rows = [r for r in summary(test_net).rows if r.name != "ip1_flatten"]
    assert [(r.name, r.output_shape, r.trainable, r.non_trainable) for r in rows] == [
        (r.name, r.output_shape, r.trainable, r.non_trainable) for r in zoo_rows if r.name != "flatten"]
    mults = train_net.multipliers()[0]
    assert mults["conv1"] == {"w": 1.0, "b": 2.0} and mults["ip2"] == {"w": 1.0, "b": 2.0}
    # against OpenCV, through the deploy form of the same net
    net, params, state, _ = _check_against_opencv(tmp_path, lenet_deploy_text())
    x = np.random.default_rng(3).random((2, 28, 28, 1), np.float32)
    np.testing.assert_allclose(test_net.apply(params, state, x)[0], net.apply(params, state, x)[0], rtol=1e-6)


@pytest.mark.slow
def test_shipped_lenet_deploy_net_is_the_train_test_net_with_softmax(tmp_path):
    """experiments/caffe/lenet_bn_deploy.prototxt (the README's Caffe examples): OpenCV runs it to the same
    probabilities, and on the same weights it is the train/test net's TEST phase followed by a softmax."""
    net, params, state, _ = _check_against_opencv(tmp_path, (CAFFE_DIR / "lenet_bn_deploy.prototxt").read_text())
    assert net.input_shape == (28, 28, 1) and net.outputs == ("prob",)
    test_net = load_prototxt(LENET, input_shape=(28, 28, 1))
    x = np.random.default_rng(3).random((2, 28, 28, 1), np.float32)
    probs = net.apply(params, state, x)[0]
    np.testing.assert_allclose(probs, jax.nn.softmax(test_net.apply(params, state, x)[0]), rtol=1e-6)
    np.testing.assert_allclose(probs.sum(-1), 1, rtol=1e-6)


def _caffe_blob(array):
    blob = schema.BlobProto()
    blob.shape.dim.extend(array.shape)
    blob.data.extend(array.ravel().tolist())
    return blob


@pytest.mark.slow
def test_independently_written_caffemodel(tmp_path):
    """A caffemodel built straight from the protobuf messages with NumPy blobs in Caffe's layout (not with
    save_caffemodel): jaxcnn's loaded net matches OpenCV, and save_caffemodel writes the same blobs back."""
    text = caffe_nets.ALEXNET_SMALL
    (tmp_path / "net.prototxt").write_text(text)
    net = parse_prototxt(text)
    rng = np.random.default_rng(7)
    model = schema.NetParameter(name="alexnet_small")
    caffe_blobs = {}
    for row in net.shapes():
        layer = row.layer
        if isinstance(layer, Conv):
            kh, kw, c, o = row.params["w"].shape
            blobs = [rng.normal(0, 0.2, (o, c, kh, kw)), rng.normal(0, 0.1, (o,))]
        elif isinstance(layer, Dense):
            i, o = row.params["w"].shape
            blobs = [rng.normal(0, 0.2, (o, i)), rng.normal(0, 0.1, (o,))]
        else:
            continue
        blobs = [b.astype(np.float32) for b in blobs]
        caffe_blobs[layer.name] = blobs
        kind = "Convolution" if isinstance(layer, Conv) else "InnerProduct"
        model.layer.add(name=layer.name, type=kind).blobs.extend(map(_caffe_blob, blobs))
    (tmp_path / "net.caffemodel").write_bytes(model.SerializeToString())
    params, state = load_caffemodel(net, tmp_path / "net.caffemodel")
    # jaxcnn's layouts, worked out by hand: HWIO kernels; fc6's rows from Caffe's (C, H, W) order to (H, W, C)
    np.testing.assert_array_equal(params["conv2"]["w"], caffe_blobs["conv2"][0].transpose(2, 3, 1, 0))
    c, h, w = 8, 1, 1
    fc6 = caffe_blobs["fc6"][0].reshape(16, c, h, w).transpose(2, 3, 1, 0).reshape(h * w * c, 16)
    np.testing.assert_array_equal(params["fc6"]["w"], fc6)
    x = rng.standard_normal((2, 67, 67, 3)).astype(np.float32)
    ours = net.apply(params, state, x)[0]
    theirs = opencv_forward(tmp_path / "net.prototxt", tmp_path / "net.caffemodel", x, ["prob"])["prob"]
    assert rel_diff(ours, theirs) < 1e-4
    save_caffemodel(net, params, state, tmp_path / "saved.caffemodel")
    saved = read_caffemodel(tmp_path / "saved.caffemodel")
    for name, blobs in caffe_blobs.items():
        for mine, theirs in zip(saved[name], blobs):
            np.testing.assert_array_equal(blob_array(mine), theirs)


def test_inner_product_on_a_map_permutes_caffes_flatten_order(tmp_path):
    """A 3x2x4 (C, H, W) map into an InnerProduct: Caffe's weight (O, C*H*W), with OpenCV as the reference, and
    the permuted rows against NumPy's own flatten of the NCHW input."""
    text = caffe_nets._input(3, 2, 4) + caffe_nets.ip("fc", "data", 5)
    net, params, _, _ = _check_against_opencv(tmp_path, text)
    x = np.random.default_rng(0).standard_normal((2, 2, 4, 3)).astype(np.float32)
    caffe_w = np.asarray(params["fc"]["w"]).reshape(2, 4, 3, 5).transpose(3, 2, 0, 1).reshape(5, 24)
    expected = x.transpose(0, 3, 1, 2).reshape(2, 24) @ caffe_w.T + np.asarray(params["fc"]["b"])
    np.testing.assert_allclose(net.apply(params, {}, x)[0], expected, rtol=1e-5, atol=1e-5)


def test_bvlc_alexnet_deploy_parameter_count():
    net = load_prototxt(CAFFE_DIR / "bvlc_alexnet_deploy.prototxt")
    s = summary(net)
    assert s.trainable == 60_965_224 and s.non_trainable == 0
    assert s.macs == summary(zoo.alexnet()).macs
    assert net.input_shape == (227, 227, 3) and net.outputs == ("prob",)
    assert {r.name: r.output_shape for r in s.rows}["pool5"] == (6, 6, 256)


# ---------------------------------------------------------------------------------------------- Caffe's pooling

def caffe_pool_loop(x, kind, k, s, p, ceil=True):
    """Caffe's PoolingLayer, from its definition, in NCHW: output size ceil((H + 2p - k) / s) + 1, less one if
    p > 0 and the last window starts at or past H + p; MAX starts from -FLT_MAX over the window clipped to the
    input; AVE divides by the window's extent within [-p, H + p) (before clipping to the input)."""
    n, c, h, w = x.shape
    rnd = math.ceil if ceil else math.floor

    def size(n_):
        out = int(rnd((n_ + 2 * p - k) / s)) + 1
        if p and (out - 1) * s >= n_ + p:
            out -= 1
        return out

    oh, ow = size(h), size(w)
    y = np.zeros((n, c, oh, ow), np.float32)
    for i in range(oh):
        for j in range(ow):
            hs, ws = i * s - p, j * s - p
            he, we = min(hs + k, h + p), min(ws + k, w + p)
            area = (he - hs) * (we - ws)
            hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, h), min(we, w)
            window = x[:, :, hs:he, ws:we].reshape(n, c, -1)
            if kind == "MAX":
                y[:, :, i, j] = np.max(window, axis=-1, initial=-np.finfo(np.float32).max)
            else:
                with np.errstate(invalid="ignore"):  # Caffe divides 0 by a zero window size: NaN
                    y[:, :, i, j] = window.sum(-1) / area
    return y


@pytest.mark.parametrize("h, w, k, s, p", [
    (9, 9, 2, 3, 0),  # stride > kernel, no padding: the last window lies wholly outside, and Caffe keeps it
    (6, 7, 2, 3, 0),
    (7, 7, 3, 2, 0),  # AlexNet's 3x3/2: ceil rounding overhangs
    (6, 5, 3, 2, 1),  # padded: the overhang of the bottom/right padding is not counted by AVE
    (3, 3, 2, 2, 1),  # Caffe's clip: the third window would start in the padding
    (8, 8, 3, 1, 1),  # GoogLeNet's 3x3/1 pad 1
])
@pytest.mark.parametrize("kind", ["MAX", "AVE"])
def test_pooling_is_caffes_loop(h, w, k, s, p, kind, rng):
    x = rng.standard_normal((2, h, w, 3)).astype(np.float32)
    layer = (MaxPool if kind == "MAX" else AvgPool)("pool", k, s, p, ceil_mode=True, clip="padded")
    expected = caffe_pool_loop(x.transpose(0, 3, 1, 2), kind, k, s, p)
    for lowering in ("native", "cpu"):
        y = layer.apply({}, {}, x, lowering=lowering)[0]
        np.testing.assert_allclose(to_nchw(y), expected, rtol=1e-6, atol=1e-6)
    assert layer.init(jax.random.key(0), (h, w, 3))[0] == expected.shape[2:] + (3,)


def test_pooling_from_prototxt_honours_ceil_mode_and_round_mode():
    def out(params):
        net = parse_prototxt(caffe_nets._input(1, 6, 6) + caffe_nets.layer("pool", "Pooling", "data", "pool", params))
        return net.output_shapes()

    base = "pool: MAX kernel_size: 3 stride: 2"
    assert out(f"pooling_param {{ {base} }}") == (3, 3, 1)  # Caffe's default: ceil
    assert out(f"pooling_param {{ {base} ceil_mode: false }}") == (2, 2, 1)
    assert out(f"pooling_param {{ {base} round_mode: FLOOR }}") == (2, 2, 1)
    assert out(f"pooling_param {{ {base} round_mode: CEIL }}") == (3, 3, 1)
    with pytest.raises(CaffeFormatError, match="give ceil_mode or round_mode, not both"):
        out(f"pooling_param {{ {base} ceil_mode: true round_mode: CEIL }}")


def test_lrn_normalisations_are_caffes(rng):
    """ACROSS_CHANNELS: x / (k + alpha/n sum over n channels)^beta; WITHIN_CHANNEL: x / (1 + alpha/n^2 sum over
    an n x n window)^beta (Caffe ignores k there)."""
    x = rng.standard_normal((1, 5, 5, 6)).astype(np.float32)
    body = "lrn_param {{ local_size: 3 alpha: 0.5 beta: 0.75 k: 2 norm_region: {} }}"
    for region in ("ACROSS_CHANNELS", "WITHIN_CHANNEL"):
        net = parse_prototxt(caffe_nets._input(6, 5, 5) + caffe_nets.layer("n", "LRN", "data", "n",
                                                                             body.format(region)))
        y = np.asarray(net.apply({}, {}, x)[0])
        sq = np.pad(x * x, ((0, 0), (1, 1), (1, 1), (1, 1)))
        if region == "ACROSS_CHANNELS":
            sums, expected = sum(sq[:, 1:-1, 1:-1, i:i + 6] for i in range(3)), None
            expected = x / (2 + 0.5 / 3 * sums) ** 0.75
        else:
            sums = sum(sq[:, i:i + 5, j:j + 5, 1:-1] for i in range(3) for j in range(3))
            expected = x / (1 + 0.5 / 9 * sums) ** 0.75
        np.testing.assert_allclose(y, expected, rtol=1e-5)


def test_batch_norm_blobs_are_divided_by_the_scale_factor(tmp_path):
    """Caffe's BatchNorm blobs: sums and a factor; 0 means 0. Loaded statistics are sum * (1 / factor)."""
    net = parse_prototxt(caffe_nets._input(2, 3, 3) + caffe_nets.layer("bn", "BatchNorm", "data", "data"))
    model = schema.NetParameter()
    for factor in (4.0, 0.0):
        del model.layer[:]
        model.layer.add(name="bn", type="BatchNorm").blobs.extend(
            _caffe_blob(np.array(v, np.float32)) for v in ([2.0, -6.0], [8.0, 1.0], [factor]))
        (tmp_path / "bn.caffemodel").write_bytes(model.SerializeToString())
        _, state = load_caffemodel(net, tmp_path / "bn.caffemodel")
        scale = 0.0 if factor == 0 else 1 / factor
        np.testing.assert_array_equal(state["bn"]["mean"], np.float32([2.0, -6.0]) * np.float32(scale))
        np.testing.assert_array_equal(state["bn"]["var"], np.float32([8.0, 1.0]) * np.float32(scale))
        assert float(state["bn"]["count"]) == factor


def test_bias_layer(tmp_path, rng):
    """Caffe's Bias layer (OpenCV has none): one blob, added per channel; saved and loaded back exactly."""
    net = parse_prototxt(caffe_nets._input(3, 2, 2) + caffe_nets.layer("bias", "Bias", "data", "data",
                                                                       'param { lr_mult: 3 }'))
    b = np.float32([0.5, -1.0, 2.0])
    save_caffemodel(net, {"bias": {"b": b}}, {}, tmp_path / "b.caffemodel")
    assert blob_array(read_caffemodel(tmp_path / "b.caffemodel")["bias"][0]).shape == (3,)
    params, _ = load_caffemodel(net, tmp_path / "b.caffemodel")
    x = rng.standard_normal((2, 2, 2, 3)).astype(np.float32)
    np.testing.assert_array_equal(net.apply(params, {}, x)[0], x + b)
    assert net.multipliers(params)[0] == {"bias": {"b": 3.0}}


# ---------------------------------------------------------------------------------------------- input forms, rules

@pytest.mark.parametrize("inputs", [
    'input: "data" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 6',
    'input: "data" input_shape { dim: 1 dim: 3 dim: 8 dim: 6 }',
    'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 6 } } }',
    'layer { name: "d" type: "MemoryData" top: "data" top: "label" memory_data_param { batch_size: 4 channels: 3 '
    'height: 8 width: 6 } transform_param { scale: 0.5 mean_value: 104 mean_value: 117 mean_value: 123 } }',
    'layer { name: "d" type: "ImageData" top: "data" top: "label" image_data_param { source: "list.txt" '
    'new_height: 10 new_width: 10 } transform_param { crop_size: 8 mirror: true } }',
])
def test_every_input_form(inputs):
    net = parse_prototxt(inputs + "\n" + caffe_nets.conv("conv", "data", 2, 3))
    assert list(net.inputs) == ["data"] and net.output_shapes()[-1] == 2
    assert net.input_shape in ((8, 6, 3), (8, 8, 3))
    if "MemoryData" in inputs:
        t = net.transform
        assert (t.scale, t.mean_value) == (0.5, (104.0, 117.0, 123.0))
        x = np.full((1, 8, 6, 3), 200, np.uint8)
        np.testing.assert_allclose(t(x)[0, 0, 0], 0.5 * (200 - np.array([104, 117, 123])))
    if "ImageData" in inputs:
        t = net.transform
        assert t.crop_size == 8 and t.mirror and net.data.source == "list.txt"
        assert t(np.zeros((1, 10, 10, 3), np.uint8)).shape == (1, 8, 8, 3)


def test_data_layer_without_a_size_takes_the_given_input_shape():
    net = load_prototxt(LENET)
    assert net.input_shape is None
    with pytest.raises(ValueError, match=r"give input_shape=\(H, W, C\)"):
        summary(net)
    assert load_prototxt(LENET, input_shape=(28, 28, 1)).output_shapes() == (10,)


def test_include_and_exclude_rules():
    text = (caffe_nets._input(1, 4, 4)
            + caffe_nets.layer("r", "ReLU", "data", "data", "include { phase: TRAIN }")
            + caffe_nets.layer("s", "Sigmoid", "data", "data", "exclude { phase: TRAIN }")
            + caffe_nets.layer("t", "TanH", "data", "data", 'include { phase: TEST stage: "deploy" }'))
    assert [l.name for l in parse_prototxt(text, "TRAIN").layers] == ["r"]
    assert [l.name for l in parse_prototxt(text, "TEST").layers] == ["s"]


@pytest.mark.parametrize("body, message", [
    ('layer { name: "c" type: "Deconvolution" bottom: "data" top: "c" }',
     r"layer 'c' \(Deconvolution\): layer type 'Deconvolution' is not supported"),
    ('layer { name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param { pool: STOCHASTIC kernel_size: 2 } }',
     r"layer 'p' \(Pooling\): field pooling_param.pool STOCHASTIC is not supported"),
    ('layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 2 axis: 2 } }',
     r"layer 'ip' \(InnerProduct\): field inner_product_param.axis other than 1 is not supported"),
    ('layer { name: "c" type: "Convolution" bottom: "data" top: "c" param { name: "shared" } '
     'convolution_param { num_output: 2 kernel_size: 1 } }',
     r"layer 'c' \(Convolution\): field param.name \(weight sharing\) is not supported"),
    ('layer { name: "r" type: "ReLU" bottom: "data" top: "r" loss_weight: 1 }',
     r"layer 'r' \(ReLU\): field 'loss_weight' is not supported for this layer type"),
    ('layer { name: "r" type: "ReLU" bottom: "data" top: "r" dropout_param { dropout_ratio: 0.1 } }',
     r"layer 'r' \(ReLU\): field 'dropout_param' is not supported for this layer type"),
    ('layer { name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param { num_output: 2 kernel_size: 1 '
     'weight_filler { type: "bilinear" } } }', r"layer 'c' \(Convolution\): filler type 'bilinear' is not supported"),
    ('layer { name: "r" type: "ReLU" bottom: "data" top: "r" relu_param { nonsense: 1 } }',
     r"layer 'r': .*has no field named \"nonsense\""),
    ('layer { name: "r" type: "ReLU" bottom: "nowhere" top: "r" }',
     r"layer 'r' \(ReLU\): bottom blob 'nowhere' is not produced by an earlier layer or input"),
    ('layer { name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param { num_output: 4 kernel_size: 1 '
     'group: 3 } }', r"c \(Conv\): groups=3 does not divide 4 output channels"),
])
def test_unsupported_types_and_fields_name_the_layer(body, message):
    with pytest.raises(CaffeFormatError, match=message):
        parse_prototxt(caffe_nets._input(2, 4, 4) + body)


def test_format_errors_carry_the_file_the_layer_and_the_message(tmp_path):
    path = tmp_path / "net.prototxt"
    path.write_text(caffe_nets._input(2, 4, 4) + 'layer { name: "c" type: "Deconvolution" bottom: "data" top: "c" }')
    with pytest.raises(CaffeFormatError) as err:
        load_prototxt(path)
    e = err.value
    assert (e.file, e.layer, e.kind) == (str(path), "c", "Deconvolution")
    assert e.message == "layer type 'Deconvolution' is not supported"
    assert str(e) == f"{path}: layer 'c' (Deconvolution): {e.message}"


def test_load_reads_a_file_and_parse_a_text_never_guessing(tmp_path):
    text = caffe_nets._input(2, 4, 4) + caffe_nets.layer("r", "ReLU", "data", "r")
    (tmp_path / "net.prototxt").write_text(text)
    assert parse_prototxt(text).output_shapes() == load_prototxt(tmp_path / "net.prototxt").output_shapes()
    assert load_prototxt(str(tmp_path / "net.prototxt")).name == "net"
    with pytest.raises(FileNotFoundError, match="no such prototxt file"):
        load_prototxt(text)
    solver = "base_lr: 0.1\nmax_iter: 100\n"
    path = tmp_path / "solver.prototxt"
    path.write_text(solver)
    assert load_solver(path) == replace(parse_solver(solver), path=str(path))
    with pytest.raises(FileNotFoundError, match="no such solver file"):
        load_solver(solver)
    with pytest.raises(CaffeFormatError, match=r"^solver: .*no field named \"solver_kind\""):
        parse_solver(solver + 'solver_kind: "SGD"')


def test_every_caffe_type_names_what_the_schema_has():
    """Each entry of jaxcnn.caffe.types: its *_param message and fields, extra fields and V1 name exist in Caffe's
    schema as jaxcnn declares it (its V1 message too), and each jaxcnn layer class with blobs is saved as one
    type, with as many blobs as the entry's mapping names."""
    layer_fields = schema.LayerParameter.DESCRIPTOR.fields_by_name
    v1_fields = schema.V1LayerParameter.DESCRIPTOR.fields_by_name
    for name, t in types.TYPES.items():
        assert t.extra <= set(layer_fields), name
        if t.param is None:
            assert not t.fields, name
        else:
            assert t.fields <= set(layer_fields[t.param].message_type.fields_by_name), name
        if t.v1 is not None:
            assert t.v1 in v1_fields["type"].enum_type.values_by_name, name
        if t.blobs is not None:
            assert t.layers and len(t.blobs.names) <= t.blobs.count, name
    saved = [c for t in types.TYPES.values() if t.blobs is not None for c in t.layers]
    assert len(saved) == len(set(saved))
    layers = [Conv("c", 4, 3), Dense("d", 4), BatchNorm("bn"), Scale("s"), Bias("b"), PReLU("p"), Local("l", 4, 3)]
    assert [(types.saved_as(layer) or ("none",))[0] for layer in layers] == [
        "Convolution", "InnerProduct", "BatchNorm", "Scale", "Bias", "PReLU", "none"]
    assert len(saved) == len(layers) - 1


def test_a_v1_layer_without_its_types_param_field_takes_the_defaults():
    """V1LayerParameter has no flatten_param: a V1 FLATTEN layer is read with FlattenParameter's defaults."""
    net = parse_prototxt(caffe_nets._input(2, 3, 3) + 'layers { name: "f" type: FLATTEN bottom: "data" top: "f" }')
    assert net.output_shapes() == (18,)


@pytest.mark.slow
def test_caffemodel_errors(tmp_path):
    net = parse_prototxt(caffe_nets._input(2, 4, 4) + caffe_nets.conv("c", "data", 3, 3))
    (tmp_path / "bad.caffemodel").write_bytes(b"\xff\xff\xff")
    with pytest.raises(CaffeFormatError, match="not a binary Caffe NetParameter"):
        load_caffemodel(net, tmp_path / "bad.caffemodel")
    model = schema.NetParameter()
    (tmp_path / "empty.caffemodel").write_bytes(model.SerializeToString())  # as a 0-byte file or a mean file parse
    with pytest.raises(CaffeFormatError, match=r"empty.caffemodel: holds no layers: not a caffemodel"):
        load_caffemodel(net, tmp_path / "empty.caffemodel")
    model.layer.add(name="other", type="ReLU")
    (tmp_path / "other.caffemodel").write_bytes(model.SerializeToString())
    with pytest.raises(CaffeFormatError, match=r"no blobs for layers \['c'\]"):
        load_caffemodel(net, tmp_path / "other.caffemodel")
    assert set(load_caffemodel(net, tmp_path / "other.caffemodel", strict=False)[0]) == {"c"}
    del model.layer[:]
    relu = parse_prototxt('name: "relu"\n' + caffe_nets._input(2, 4, 4) + caffe_nets.relu("r", "data"))
    save_caffemodel(relu, {}, {}, tmp_path / "relu.caffemodel")  # a net without blobs: its name, no layers
    assert load_caffemodel(relu, tmp_path / "relu.caffemodel") == ({}, {})
    model.layer.add(name="c", type="Convolution").blobs.extend(
        [_caffe_blob(np.zeros((3, 2, 3, 3), np.float32)), _caffe_blob(np.zeros(3, np.float32))])
    (tmp_path / "wrong.caffemodel").write_bytes(model.SerializeToString())
    with pytest.raises(CaffeFormatError, match=r"wrong.caffemodel: layer 'c' \(Convolution\): blob 0 has shape "
                                               r"\(3, 2, 3, 3\), the layer needs \(3, 4, 3, 3\)"):
        load_caffemodel(parse_prototxt(caffe_nets._input(4, 4, 4) + caffe_nets.conv("c", "data", 3, 3)),
                        tmp_path / "wrong.caffemodel")


def test_zoo_net_saves_as_a_caffemodel_opencv_reads(tmp_path):
    """jaxcnn's own LeNet-BN (a Net, not loaded from a file) saved as a caffemodel, run by OpenCV with the
    LeNet-BN deploy prototxt: the same outputs (the zoo's explicit flatten becomes Caffe's implicit one)."""
    net = zoo.lenet_caffe()
    params, state = random_params(net, 3)
    save_caffemodel(net, params, state, tmp_path / "zoo.caffemodel")
    (tmp_path / "deploy.prototxt").write_text(lenet_deploy_text())
    x = np.random.default_rng(4).random((2, 28, 28, 1), np.float32)
    theirs = opencv_forward(tmp_path / "deploy.prototxt", tmp_path / "zoo.caffemodel", x, ["ip2"])["ip2"]
    assert rel_diff(net.apply(params, state, x)[0], theirs) < 1e-4


# ---------------------------------------------------------------------------------------------- solver

def test_lenet_solver():
    solver = load_solver(CAFFE_DIR / "lenet_solver.prototxt")
    assert SolverConfig.from_caffe(solver) == SolverConfig(optimizer="sgd", lr=0.01, schedule="inv", momentum=0.9,
                                                           weight_decay=0.0005, gamma=0.0001, power=0.75)
    assert (solver.max_iter, solver.test_iter, solver.test_interval, solver.snapshot) == (10000, (100,), 500, 5000)
    assert solver.net_path() == CAFFE_DIR / "lenet_bn_train_test.prototxt"


@pytest.mark.parametrize("text, expected", [
    ('type: "RMSProp" rms_decay: 0.98 delta: 1e-6', dict(optimizer="rmsprop", rms_decay=0.98, delta=1e-6)),
    ("solver_type: ADAGRAD", dict(optimizer="adagrad")),
    ('type: "AdaDelta" momentum: 0.95', dict(optimizer="adadelta", momentum=0.95)),
    ('type: "Adam" momentum: 0.9 momentum2: 0.99', dict(optimizer="adam", momentum=0.9, momentum2=0.99)),
    ('type: "Nesterov" lr_policy: "multistep" gamma: 0.1 stepvalue: 10 stepvalue: 20',
     dict(optimizer="nesterov", schedule="multistep", gamma=0.1, stepvalues=(10, 20))),
    ('lr_policy: "sigmoid" gamma: -0.1 stepsize: 50 iter_size: 4 clip_gradients: 10',
     dict(schedule="sigmoid", gamma=-0.1, stepsize=50, iter_size=4, clip_gradients=10.0)),
])
def test_solver_types_and_policies(text, expected):
    solver = parse_solver(f"base_lr: 0.1\nmax_iter: 100\n{text}\n")
    for k, v in expected.items():
        assert getattr(SolverConfig.from_caffe(solver), k) == pytest.approx(v), k


@pytest.mark.parametrize("text, message", [
    ('regularization_type: "L1"', "regularization_type 'L1' is not supported"),
    ('type: "Adamax"', "solver type 'Adamax' is not supported"),
    ('lr_policy: "triangle"', "lr_policy 'triangle' is not supported"),
    ('train_net: "x.prototxt"', "field 'train_net' is not supported"),
    ('lr_policy: "step" gamma: 0.1', "lr_policy 'step' needs stepsize"),
])
def test_solver_errors(text, message):
    with pytest.raises(CaffeFormatError, match=message):
        parse_solver(f"base_lr: 0.1\nmax_iter: 100\n{text}\n")


@pytest.mark.parametrize("name, formula", [
    ("exp", lambda t: 0.1 * 0.9 ** t),
    ("sigmoid", lambda t: 0.1 / (1 + np.exp(0.2 * (t - 30)))),
])
def test_exp_and_sigmoid_policies(name, formula):
    f = schedule(SolverConfig(lr=0.1, schedule=name, gamma=0.9 if name == "exp" else -0.2, stepsize=30), 100)
    for t in (0, 1, 29, 30, 31, 99):
        np.testing.assert_allclose(float(f(t)), formula(t), rtol=1e-5)


def _run(cfg, grads, params, steps):
    ones = jax.tree.map(lambda _: 1.0, params)
    tx = optimizer(cfg, steps, ones, ones)
    state, p = tx.init(params), params
    for g in grads:
        u, state = tx.update(g, state, p)
        p = jax.tree.map(lambda a, b: a + b, p, u)
    return p


@pytest.mark.parametrize("kind", ["rmsprop", "adagrad", "adadelta"])
def test_adaptive_solvers_are_caffes_updates(kind):
    """Three steps against Caffe's update rules written out in NumPy (weight decay 0.01, lr 0.1)."""
    w0 = np.array([1.0, -2.0, 0.5])
    grads = [np.array([0.3, -0.1, 0.2]) * (i + 1) for i in range(3)]
    cfg = SolverConfig(optimizer=kind, lr=0.1, schedule="fixed", weight_decay=0.01, momentum=0.9, delta=1e-6,
                       rms_decay=0.95)
    got = _run(cfg, [{"w": jnp.asarray(g, jnp.float32)} for g in grads], {"w": jnp.asarray(w0, jnp.float32)}, 3)
    w, r, d = w0.copy(), np.zeros(3), np.zeros(3)
    for g in grads:
        g = g + 0.01 * w
        if kind == "rmsprop":
            r = 0.95 * r + 0.05 * g * g
            step = g / (np.sqrt(r) + 1e-6)
        elif kind == "adagrad":
            r = r + g * g
            step = g / (np.sqrt(r) + 1e-6)
        else:
            r = 0.9 * r + 0.1 * g * g
            step = g * np.sqrt(d + 1e-6) / np.sqrt(r + 1e-6)
            d = 0.9 * d + 0.1 * step * step
        w = w - 0.1 * step
    np.testing.assert_allclose(np.asarray(got["w"]), w, rtol=1e-5)


def test_iter_size_updates_with_the_mean_of_its_batches():
    cfg = SolverConfig(lr=0.1, schedule="fixed", weight_decay=0.0, momentum=0.0)
    grads = [{"w": jnp.float32(v)} for v in (1.0, 3.0, 5.0, 7.0)]
    accumulated = _run(SolverConfig(**{**cfg.__dict__, "iter_size": 2}), grads, {"w": jnp.float32(0.0)}, 2)
    plain = _run(cfg, [{"w": jnp.float32(2.0)}, {"w": jnp.float32(6.0)}], {"w": jnp.float32(0.0)}, 2)
    np.testing.assert_allclose(accumulated["w"], plain["w"], rtol=1e-6)
