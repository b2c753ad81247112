"""jaxcnn.cudaconvnet: cuda-convnet's layer files, its output-size rules, normalisations and learning rule."""
import math
from pathlib import Path

import jax
import numpy as np
import optax
import pytest
import reference as ref

from jaxcnn import LRN, ContrastNorm, Flatten, ops, summary, zoo
from jaxcnn.cudaconvnet import ConvNetFormatError, load
from jaxcnn.train import SolverConfig, optimizer

DIR = Path(__file__).resolve().parents[1] / "experiments" / "cudaconvnet"
LAYERS, PARAMS = DIR / "layers-conv-local-11pct.cfg", DIR / "layer-params-conv-local-11pct.cfg"


def _config(layer):
    """A layer's type and configuration, without its fillers and multipliers."""
    fields = {k: v for k, v in vars(layer).items() if k not in ("name", "lr_mult", "decay_mult", "w_init", "b_init")}
    return type(layer).__name__, fields


@pytest.mark.slow
def test_the_cifar10_local_net_loads_as_the_zoos():
    """cuda-convnet's layers-conv-local-11pct net (as the CIFAR-10 log of its start-up names it) loads layer for
    layer as zoo.cifar10_local: names, configurations, shapes, parameter counts, and outputs with its weights."""
    net, mine = load(LAYERS, PARAMS, (32, 32, 3)), zoo.cifar10_local()
    ours = [l for l in net.layers if not isinstance(l, Flatten)]
    theirs = [l for l in mine.layers if not isinstance(l, Flatten)]
    assert [l.name for l in ours] == [l.name for l in theirs]
    assert [_config(l) for l in ours] == [_config(l) for l in theirs]
    rows, zoo_rows = summary(net).rows, summary(mine).rows
    assert [(r.output_shape, r.trainable) for r in rows] == [(r.output_shape, r.trainable) for r in zoo_rows]
    assert summary(net).trainable == summary(mine).trainable
    rng = np.random.default_rng(0)  # NumPy weights: the zoo's fillers would compile once per shape
    params = {r.layer.name: {k: 0.05 * rng.standard_normal(v.shape, np.float32) for k, v in r.params.items()}
              for r in mine.shapes() if r.params}
    x = np.random.default_rng(0).random((2, 32, 32, 3), np.float32)
    np.testing.assert_allclose(net.apply(params, {}, x)[0], mine.apply(params, {}, x)[0], rtol=1e-6, atol=1e-6)
    assert [(l.logits, l.label) for l in net.losses] == [("fc10", "labels")]


def test_learning_parameters_become_caffe_multipliers():
    net = load(LAYERS, PARAMS, (32, 32, 3))
    cfg = SolverConfig.from_cudaconvnet(net)
    assert (cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay, cfg.schedule) == ("sgd", 0.001, 0.9, 0.004, "fixed")
    assert net["conv1"].lr_mult == {"w": 1.0, "b": 2.0} and net["conv1"].decay_mult == {"w": 0.0, "b": 0.0}
    assert net["local3"].decay_mult == {"w": 1.0, "b": 0.0}


def _write(tmp_path, layers, params=None):
    (tmp_path / "layers.cfg").write_text(layers)
    if params is not None:
        (tmp_path / "params.cfg").write_text(params)
    return tmp_path / "layers.cfg", None if params is None else tmp_path / "params.cfg"


TINY = """[data]
type=data
dataIdx=0
[labels]
type=data
dataIdx=1
[fc]
type=fc
inputs=data
outputs=3
initW=0.1
neuron=ident
[probs]
type=softmax
inputs=fc
[cost]
type=cost.logreg
inputs=labels,probs
"""


@pytest.mark.slow
def test_sgd_with_the_multipliers_is_cuda_convnets_update(tmp_path):
    """inc <- momW inc - wc epsW w + epsW (-dL/dw); w <- w + inc (biases: momB, epsB, no decay), two steps."""
    params_cfg = "[fc]\nepsW=0.05\nepsB=0.2\nmomW=0.8\nmomB=0.8\nwc=0.01\n[cost]\ncoeff=1\n"
    net = load(*_write(tmp_path, TINY, params_cfg), input_shape=(4,))
    _, params, _ = net.init(jax.random.key(0))
    x, y = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32), np.array([0, 1, 2, 1, 0])

    def loss(p):
        return ops.softmax_cross_entropy(net.apply(p, {}, x)[0], y)

    tx = optimizer(SolverConfig.from_cudaconvnet(net), 2, *net.multipliers(params))
    state, p = tx.init(params), params
    w, b = (np.asarray(params["fc"][k], np.float64) for k in ("w", "b"))
    inc_w, inc_b = np.zeros_like(w), np.zeros_like(b)
    for _ in range(2):
        g = jax.grad(loss)(p)
        inc_w = 0.8 * inc_w - 0.01 * 0.05 * w - 0.05 * np.asarray(g["fc"]["w"])
        inc_b = 0.8 * inc_b - 0.2 * np.asarray(g["fc"]["b"])
        w, b = w + inc_w, b + inc_b
        updates, state = tx.update(g, state, p)
        p = optax.apply_updates(p, updates)
    np.testing.assert_allclose(p["fc"]["w"], w, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(p["fc"]["b"], b, rtol=1e-5, atol=1e-7)


def test_different_momenta_do_not_map_onto_one_sgd_momentum(tmp_path):
    net = load(*_write(tmp_path, TINY, "[fc]\nepsW=0.05\nepsB=0.2\nmomW=0.9\nmomB=0.5\nwc=0\n"), input_shape=(4,))
    with pytest.raises(ValueError, match=r"momenta \[0\.5, 0\.9\]; Caffe's SGD \(and jaxcnn's\) has one momentum"):
        SolverConfig.from_cudaconvnet(net)


def _one_layer(tmp_path, body, shape):
    text = f"[data]\ntype=data\ndataIdx=0\n[l]\ninputs=data\n{body}"
    return load(_write(tmp_path, text)[0], input_shape=shape)


def test_conv_output_size_rounds_up_with_zeros_past_the_edge(tmp_path, rng):
    """8x8, filterSize 3, stride 2, padding 1: 1 + ceil((2 + 8 - 3) / 2) = 5 positions (floor would give 4); the
    last window reads one column of zeros past the right padding."""
    net = _one_layer(tmp_path, "type=conv\nchannels=2\nfilters=16\npadding=1\nstride=2\nfilterSize=3\ninitW=0.1\n",
                     (8, 8, 2))
    out, params, _ = net.init(jax.random.key(0))
    assert out == (5, 5, 16) == (1 + math.ceil((2 + 8 - 3) / 2),) * 2 + (16,)
    x = rng.standard_normal((1, 8, 8, 2)).astype(np.float32)
    expected = ref.conv2d(x, np.asarray(params["l"]["w"]), np.asarray(params["l"]["b"]), (2, 2), ((1, 2), (1, 2)))
    np.testing.assert_allclose(net.apply(params, {}, x)[0], expected, rtol=1e-5, atol=1e-5)


def test_pool_size_and_average_over_the_pixels_inside(tmp_path, rng):
    """7x7, sizeX 3, stride 2: ceil((7 - 0 - 3) / 2) + 1 = 3; start=-1 shifts the windows up and left by one,
    ceil((7 + 1 - 3) / 2) + 1 = 4, and avg divides each window by the pixels inside the input."""
    x = rng.standard_normal((1, 7, 7, 16)).astype(np.float32)
    net = _one_layer(tmp_path, "type=pool\npool=avg\nsizeX=3\nstride=2\nchannels=16\nstart=-1\n", (7, 7, 16))
    y = np.asarray(net.apply({}, {}, x)[0])
    assert y.shape == (1, 4, 4, 16)
    for i in range(4):
        for j in range(4):
            window = x[0, max(2 * i - 1, 0):2 * i + 2, max(2 * j - 1, 0):2 * j + 2]
            np.testing.assert_allclose(y[0, i, j], window.mean(axis=(0, 1)), rtol=1e-5)
    net = _one_layer(tmp_path, "type=pool\npool=max\nsizeX=3\nstride=2\nchannels=16\n", (7, 7, 16))
    assert net.output_shapes() == (3, 3, 16)


@pytest.mark.parametrize("kind, region", [("cmrnorm", "across"), ("rnorm", "within")])
def test_normalisations_divide_scale_their_own_way(tmp_path, rng, kind, region):
    """cmrnorm: x / (1 + scale/size * sum over size maps)^pow; rnorm: x / (1 + scale/size^2 * sum over a size x
    size window)^pow (cuda-convnet's own normalisations of scale)."""
    net = _one_layer(tmp_path, f"type={kind}\nchannels=16\nsize=3\nscale=0.5\npow=0.75\n", (5, 5, 16))
    assert net["l"] == LRN("l", 3, 0.5, 0.75, 1.0, region=region)
    x = rng.standard_normal((1, 5, 5, 16)).astype(np.float32)
    sq = np.pad(x * x, ((0, 0), (1, 1), (1, 1), (1, 1)))
    if region == "across":
        expected = x / (1 + 0.5 / 3 * sum(sq[:, 1:-1, 1:-1, i:i + 16] for i in range(3))) ** 0.75
    else:
        expected = x / (1 + 0.5 / 9 * sum(sq[:, i:i + 5, j:j + 5, 1:-1] for i in range(3) for j in range(3))) ** 0.75
    np.testing.assert_allclose(net.apply({}, {}, x)[0], expected, rtol=1e-5)


def test_cnorm_is_rnorm_less_the_local_mean(tmp_path, rng):
    """cnorm: x / (1 + scale/size^2 * sum over a size x size window of (x - its window's mean)^2)^pow, the mean over
    the window's pixels inside the map."""
    net = _one_layer(tmp_path, "type=cnorm\nchannels=4\nsize=3\nscale=0.5\npow=0.75\n", (5, 6, 4))
    assert net["l"] == ContrastNorm("l", 3, 0.5, 0.75, 1.0)
    x = rng.standard_normal((2, 5, 6, 4)).astype(np.float32) + 1
    ones = np.pad(np.ones((5, 6)), 1)
    counts = sum(ones[i:i + 5, j:j + 6] for i in range(3) for j in range(3))[None, :, :, None]
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    d = np.pad(x - sum(padded[:, i:i + 5, j:j + 6] for i in range(3) for j in range(3)) / counts,
               ((0, 0), (1, 1), (1, 1), (0, 0)))
    expected = x / (1 + 0.5 / 9 * sum(d[:, i:i + 5, j:j + 6] ** 2 for i in range(3) for j in range(3))) ** 0.75
    np.testing.assert_allclose(net.apply({}, {}, x)[0], expected, rtol=1e-5)


def test_groups_count_filters_per_group(tmp_path):
    net = _one_layer(tmp_path, "type=conv\nchannels=8\nfilters=16\ngroups=2\nfilterSize=1\ninitW=0.1\n", (4, 4, 8))
    assert net["l"].features == 32 and net["l"].groups == 2


@pytest.mark.parametrize("body, message", [
    ("type=cnorm2\nchannels=16\nsize=3\nscale=1\npow=1\n", r"layer 'l': layer type 'cnorm2' is not supported"),
    ("type=cnorm\nchannels=3\nsize=4\nscale=1\npow=1\n", r"layer 'l': size=4: an even window is not supported"),
    ("type=conv\nchannels=3\nfilters=16\nfilterSize=3\ninitW=0.1\nfoo=1\n",
     r"layer 'l': key 'foo' is not supported for type conv"),
    ("type=cmrnorm\nchannels=3\nsize=4\nscale=1\npow=1\n", r"layer 'l': size=4: an even window is not supported"),
    ("type=conv\nchannels=3\nfilters=16\nfilterSize=3\ninitW=0.1\nneuron=softrelu\n",
     r"layer 'l': neuron 'softrelu' is not supported"),
    ("type=conv\nchannels=3\nfilters=16\nfilterSize=3\n", r"layer 'l': needs 'initW'"),
    ("type=conv\nchannels=3\nfilters=16\nfilterSize=3\ninitW=0.1\nsharedBiases=0\n",
     r"layer 'l': sharedBiases=0 .* is not supported"),
    ("type=conv\nchannels=4\nfilters=16\nfilterSize=3\ninitW=0.1\n",
     r"layer 'l': channels=4, but its input has 3 channels"),
    ("type=pool\npool=max\nsizeX=3\nstride=2\nchannels=3\nstart=1\n", r"layer 'l': start=1 > 0 is not supported"),
])
def test_errors_name_the_layer_and_key(tmp_path, body, message):
    with pytest.raises(ConvNetFormatError, match=message):
        _one_layer(tmp_path, body, (6, 6, 3))


def test_parameter_file_errors(tmp_path):
    with pytest.raises(ConvNetFormatError, match=r"params.cfg: no section for weight layer 'fc'"):
        load(*_write(tmp_path, TINY, "[cost]\ncoeff=1\n"), input_shape=(4,))
    with pytest.raises(ConvNetFormatError, match=r"params.cfg: layer 'fc': key 'epsX' is not supported"):
        load(*_write(tmp_path, TINY, "[fc]\nepsW=1\nepsB=1\nmomW=0\nmomB=0\nwc=0\nepsX=1\n"), input_shape=(4,))
