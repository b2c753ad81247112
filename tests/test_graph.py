"""Branched nets (Graph) and the layers they need: Concat, Eltwise, Slice, Split, Softmax, PReLU, leaky ReLU,
ELU, AbsVal, Bias and global pooling, each against a NumPy formula, with float64 gradient checks."""
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from synthetic import blobs

from jaxcnn import (
    ELU,
    AbsVal,
    Bias,
    Concat,
    Conv,
    Dense,
    Eltwise,
    Flatten,
    GlobalAvgPool,
    GlobalMaxPool,
    Graph,
    LayerError,
    MaxPool,
    Node,
    PReLU,
    ReLU,
    Scale,
    Slice,
    Softmax,
    Split,
    summary,
)
from jaxcnn.checkpoint import Checkpointer
from jaxcnn.convert import fc_to_conv, sliding_geometry, split
from jaxcnn.train import SolverConfig, Trainer, fit, optimizer

KEY = jax.random.key(0)
ROOT = Path(__file__).resolve().parents[1]


def _np_softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


# layer, per-example input shape(s), params, NumPy reference of (params, *inputs) -> output(s)
SLOPE = np.array([0.1, -0.3, 0.7])
CASES = [
    (ReLU("leaky", negative_slope=0.2), (4, 5, 3), None, lambda p, x: np.where(x > 0, x, 0.2 * x)),
    (ELU("elu", alpha=0.5), (4, 5, 3), None, lambda p, x: np.where(x > 0, x, 0.5 * (np.exp(x) - 1))),
    (PReLU("prelu"), (4, 5, 3), {"slope": SLOPE}, lambda p, x: np.where(x > 0, x, SLOPE * x)),
    (PReLU("prelu_shared", channel_shared=True), (6,), {"slope": np.array([0.3])},
     lambda p, x: np.where(x > 0, x, 0.3 * x)),
    (AbsVal("abs"), (4, 3), None, lambda p, x: np.abs(x)),
    (Bias("bias"), (4, 5, 3), {"b": SLOPE}, lambda p, x: x + SLOPE),
    (Softmax("prob"), (2, 3, 4), None, lambda p, x: _np_softmax(x, -1)),
    (Softmax("prob_h", axis=0), (2, 3, 4), None, lambda p, x: _np_softmax(x, 1)),
    (GlobalMaxPool("gmax"), (4, 5, 3), None, lambda p, x: x.max(axis=(1, 2), keepdims=True)),
    (GlobalAvgPool("gavg"), (4, 5, 3), None, lambda p, x: x.mean(axis=(1, 2), keepdims=True)),
    (Concat("cat"), ((4, 5, 3), (4, 5, 2), (4, 5, 1)), None, lambda p, *x: np.concatenate(x, axis=-1)),
    (Concat("cat_h", axis=0), ((2, 5, 3), (4, 5, 3)), None, lambda p, *x: np.concatenate(x, axis=1)),
    (Eltwise("sum"), ((4, 5, 3),) * 3, None, lambda p, a, b, c: a + b + c),
    (Eltwise("diff", coeffs=(1, -0.5)), ((4, 5, 3),) * 2, None, lambda p, a, b: a - 0.5 * b),
    (Eltwise("prod", "prod"), ((4, 5, 3),) * 3, None, lambda p, a, b, c: a * b * c),
    (Eltwise("max", "max"), ((4, 5, 3),) * 2, None, lambda p, a, b: np.maximum(a, b)),
    (Slice("slice", points=(1, 4)), (2, 3, 6), None, lambda p, x: (x[..., :1], x[..., 1:4], x[..., 4:])),
    (Slice("halves", axis=0, parts=2), (4, 3, 2), None, lambda p, x: (x[:, :2], x[:, 2:])),
    (Split("split", copies=3), (5,), None, lambda p, x: (x, x, x)),
]
IDS = [c[0].name for c in CASES]


def _inputs(layer, shapes, rng, dtype=np.float32):
    if layer.arity == 1:
        return rng.standard_normal((2, *shapes)).astype(dtype)
    return tuple(rng.standard_normal((2, *s)).astype(dtype) for s in shapes)


@pytest.mark.parametrize("layer, shapes, params, reference", CASES, ids=IDS)
def test_layer_matches_numpy(layer, shapes, params, reference, rng):
    out_shape, init_params, state = layer.init(KEY, shapes)
    if params is not None:
        assert jax.tree.map(np.shape, init_params) == jax.tree.map(np.shape, params)
    p = init_params if params is None else jax.tree.map(lambda a: np.asarray(a, np.float32), params)
    x = _inputs(layer, shapes, rng)
    y, _ = layer.apply(p, state, x)
    expected = reference(p, *(x if layer.arity is None else (x,)))
    if layer.multi_output:
        assert len(y) == len(expected) == layer.num_outputs
        assert out_shape == tuple(e.shape[1:] for e in expected)
    else:
        y, expected = (y,), (expected,)
        assert out_shape == expected[0].shape[1:]
    for a, b in zip(y, expected):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("layer, shapes, params, reference", CASES, ids=IDS)
def test_layer_gradients(layer, shapes, params, reference, rng, x64):
    """Reverse- and forward-mode derivatives against finite differences (random inputs: no ties in a max)."""
    p = {} if params is None else jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    x = _inputs(layer, shapes, rng, np.float64)
    x = jax.tree.map(lambda v: v + 0.1 * np.sign(v), x)  # keep away from the kinks at 0

    def f(p, x):
        y = layer.apply(p, {}, x)[0]
        return jnp.stack([jnp.sum(v * v) for v in y]) if layer.multi_output else y

    check_grads(f, (p, x), order=1, modes=("rev", "fwd"), eps=1e-6)


@pytest.mark.parametrize("make, shapes, message", [
    (lambda: Eltwise("e", "mean"), None, r"^e \(Eltwise\): operation must be one of sum, prod, max, got 'mean'$"),
    (lambda: Eltwise("e", "max", coeffs=(1, 2)), None, r"coeffs apply to the 'sum' operation only"),
    (lambda: Slice("s", points=(3, 2)), None, r"^s \(Slice\): points must be increasing positive ints"),
    (lambda: Slice("s"), None, r"^s \(Slice\): parts must be a positive int, got None$"),
    (lambda: Eltwise("e"), ((3, 3, 2), (3, 3, 1)), r"^e \(Eltwise\): inputs must have one shape"),
    (lambda: Eltwise("e", coeffs=(1, 2, 3)), ((2,), (2,)), r"3 coeffs for 2 inputs"),
    (lambda: Eltwise("e"), ((2,),), r"needs two or more inputs, got 1"),
    (lambda: Concat("c"), ((3, 3, 2), (3, 4, 1)), r"^c \(Concat\): inputs .* differ outside the concatenation"),
    (lambda: Slice("s", points=(6,)), (2, 2, 6), r"slice points \(6,\) must be smaller than the axis size 6"),
    (lambda: Slice("s", parts=4), (2, 2, 6), r"axis size 6 does not divide into 4 equal parts"),
    (lambda: Softmax("p", axis=3), (2, 2, 6), r"axis 3 is out of range for a per-example input of rank 3"),
    (lambda: Concat("c"), (3, 3, 2), r"^c \(Concat\): expected a tuple of per-example input shapes"),
])
def test_errors_name_the_layer(make, shapes, message):
    with pytest.raises(LayerError, match=message):
        make().init(KEY, shapes)


def test_multi_input_layer_wants_a_tuple():
    with pytest.raises(LayerError, match=r"^c \(Concat\): expected a tuple of one or more input arrays"):
        Concat("c").apply({}, {}, np.zeros((1, 2, 2, 1), np.float32))


# ---------------------------------------------------------------------------------------------- graphs

def inception(in_shape=(8, 8, 4)):
    """A GoogLeNet-style block: 1x1, 1x1 -> 3x3 and 3x3 max-pool -> 1x1 branches joined by Concat, in-place
    ReLUs, then a residual Eltwise sum with a 1x1 projection and a head."""
    w = dict(w_init="xavier")
    return Graph([
        Node(Conv("b1", 4, 1, **w), ("data",), ("b1",)),
        Node(ReLU("b1_relu"), ("b1",), ("b1",)),
        Node(Conv("b2_reduce", 3, 1, **w), ("data",), ("b2r",)),
        Node(Conv("b2", 5, 3, padding=1, **w), ("b2r",), ("b2",)),
        Node(MaxPool("b3_pool", 3, 1, padding=1), ("data",), ("b3p",)),
        Node(Conv("b3", 3, 1, **w), ("b3p",), ("b3",)),
        Node(Concat("cat"), ("b1", "b2", "b3"), ("cat",)),
        Node(Conv("proj", 12, 1, **w), ("data",), ("proj",)),
        Node(Eltwise("res", coeffs=(1, 0.5)), ("cat", "proj"), ("res",)),
        Node(MaxPool("pool", 2), ("res",), ("pool",)),
        Node(Flatten("flatten"), ("pool",), ("flat",)),
        Node(Dense("fc", 5, **w), ("flat",), ("fc",)),
    ], {"data": in_shape}, name="inception")


def _manual_inception(net, p, x):
    relu = lambda v: np.maximum(v, 0)  # noqa: E731
    def conv(name, v, **kw):
        return net[name].apply(p[name], {}, v)[0]
    b1 = relu(conv("b1", x))
    b2 = conv("b2", conv("b2_reduce", x))
    b3 = conv("b3", net["b3_pool"].apply({}, {}, x)[0])
    res = np.concatenate([b1, b2, b3], -1) + 0.5 * conv("proj", x)
    pooled = net["pool"].apply({}, {}, res)[0]
    return pooled.reshape(len(x), -1) @ p["fc"]["w"] + p["fc"]["b"]


@pytest.mark.slow
def test_branched_net_equals_its_layers_composed_by_hand(rng):
    net = inception()
    out_shape, params, state = net.init(KEY)
    assert out_shape == (5,) and state == {} and set(params) == {"b1", "b2_reduce", "b2", "b3", "proj", "fc"}
    x = rng.standard_normal((2, 8, 8, 4)).astype(np.float32)
    y, _ = net.apply(params, state, x)
    np.testing.assert_allclose(y, _manual_inception(net, params, x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(jax.jit(lambda p, x: net.apply(p, {}, x)[0])(params, x), y, rtol=1e-5, atol=1e-5)
    assert not net.is_chain and net.outputs == ("fc",) and net["cat"].name == "cat"
    assert {r.layer.name: r.in_shape for r in net.shapes()}["cat"] == ((8, 8, 4), (8, 8, 5), (8, 8, 3))


def test_several_inputs_and_outputs_are_dicts(rng):
    net = Graph([Node(Eltwise("sum"), ("a", "b"), ("s",)), Node(Slice("cut", points=(1,)), ("s",), ("s1", "s2")),
                 Node(Softmax("prob"), ("s2",), ("prob",))], {"a": (3, 3, 4), "b": (3, 3, 4)})
    assert net.outputs == ("s1", "prob") and net.input_shape == {"a": (3, 3, 4), "b": (3, 3, 4)}
    out, params, state = net.init(KEY)
    assert out == {"s1": (3, 3, 1), "prob": (3, 3, 3)}
    a, b = (rng.standard_normal((2, 3, 3, 4)).astype(np.float32) for _ in range(2))
    y, _ = net.apply(params, state, {"a": a, "b": b})
    np.testing.assert_allclose(y["s1"], (a + b)[..., :1], rtol=1e-6)
    np.testing.assert_allclose(y["prob"], _np_softmax((a + b)[..., 1:], -1), rtol=1e-5)
    with pytest.raises(ValueError, match=r"input blobs \['a', 'b'\]: give a dict of arrays"):
        net.apply(params, state, a)
    assert net.init(KEY, {"a": (2, 2, 4), "b": (2, 2, 4)})[0]["prob"] == (2, 2, 3)
    s = summary(net)
    assert s.input_shape == {"a": (3, 3, 4), "b": (3, 3, 4)} and s.to_dict()["input_shape"]["b"] == [3, 3, 4]
    assert s.forward_activations == 2 * 36 + 36 + 36 + 27  # two inputs, sum, the two slices, softmax
    assert "a (3, 3, 4), b (3, 3, 4)" in str(s).splitlines()[0]


def test_a_layer_may_read_one_blob_twice(rng):
    """As Caffe's `bottom: "x" bottom: "x"`: x + x, then [x, x] along channels (the blob is freed once, after)."""
    net = Graph([Node(Eltwise("twice"), ("x", "x"), ("t",)), Node(Concat("cat"), ("t", "t"), ("cat",))],
                {"x": (2, 2, 3)})
    x = rng.standard_normal((2, 2, 2, 3)).astype(np.float32)
    y, _ = net.apply({}, {}, x)
    np.testing.assert_allclose(y, np.concatenate([2 * x, 2 * x], -1), rtol=1e-6)


@pytest.mark.slow
def test_net_is_a_chain_graph_with_the_same_params_and_results(lenet_caffe_init, rng):
    net, params, state = lenet_caffe_init
    assert isinstance(net, Graph) and net.is_chain and net.inputs == {"data": (28, 28, 1)}
    graph = Graph(net.nodes, net.inputs, name="copy")
    x = rng.random((2, 28, 28, 1), np.float32)
    for train in (False, True):
        y1, s1 = net.apply(params, state, x, train=train, rng=KEY)
        y2, s2 = graph.apply(params, state, x, train=train, rng=KEY)
        np.testing.assert_array_equal(y1, y2)
        jax.tree.map(np.testing.assert_array_equal, s1, s2)
    _, p2, _ = graph.init(KEY)
    jax.tree.map(np.testing.assert_array_equal, p2, params)


@pytest.mark.parametrize("nodes, inputs, message", [
    ([Node(ReLU("r"), ("x",), ("r",))], {"data": None}, r"r \(ReLU\): input blob 'x' is neither a net input"),
    ([Node(ReLU("r"), ("data", "data"), ("r",))], {"data": None}, r"r \(ReLU\): takes one input blob"),
    ([Node(Slice("s", parts=2), ("data",), ("a",))], {"data": None}, r"s \(Slice\): writes 2 blob\(s\), got \['a'\]"),
    ([Node(ReLU("r"), ("data",), ("a",)), Node(ReLU("q"), ("data",), ("a",))], {"data": None},
     r"q \(ReLU\): blob 'a' is already written by an earlier layer"),
    ([Node(ReLU("r"), ("data",), ("a",)), Node(ReLU("r"), ("a",), ("b",))], {"data": None},
     r"layer name 'r' is used twice"),
    ([Node(ReLU("r"), ("data",), ("a",))], {"data": None, "label": None}, r"input blobs \['label'\] are read by no"),
])
def test_wiring_errors(nodes, inputs, message):
    with pytest.raises(LayerError, match=message) as err:
        Graph(nodes, inputs, name="g")
    named = {n.layer.name for n in nodes}
    assert err.value.net == "g" and (err.value.layer is None or err.value.layer.name in named)
    assert str(err.value).endswith(err.value.message)


@pytest.mark.slow
def test_summary_of_a_branched_net_shows_inputs_and_counts_shared_blobs():
    net = inception()
    s = summary(net)
    text = str(s)
    assert "inputs" in text.splitlines()[2]
    rows = {r.name: r for r in s.rows}
    assert rows["cat"].inputs == ("b1", "b2", "b3") and rows["cat"].output_shape == (8, 8, 12)
    assert rows["b1_relu"].inplace  # nothing else reads b1 before it is rewritten
    assert s.trainable == sum(int(np.prod(v.shape)) for v in jax.tree.leaves(net.init(KEY)[1]))
    # every conv's MACs: output positions x kernel taps x input channels
    assert rows["b2"].macs == 8 * 8 * 5 * 9 * 3 and rows["proj"].macs == 8 * 8 * 12 * 4
    relu_on_shared = Graph([Node(ReLU("r"), ("data",), ("data",)), Node(Eltwise("e"), ("data", "data"), ("e",))],
                           {"data": (2, 2, 1)})
    assert [r.inplace for r in summary(relu_on_shared).rows] == [True, False]
    fork = Graph([Node(ReLU("r"), ("data",), ("r",)), Node(Eltwise("e"), ("data", "r"), ("e",))], {"data": (2, 2, 1)})
    assert not summary(fork).rows[0].inplace  # the Eltwise still reads the ReLU's input
    assert summary(fork).forward_activations == 4 + 4 + 4


@pytest.mark.slow
def test_fc_to_conv_on_a_branched_trunk(rng):
    net = inception()
    _, params, state = net.init(KEY)
    trunk, head = split(net)
    assert trunk.outputs == ("pool",) and head.is_chain
    conv_net, conv_params = fc_to_conv(net, params)
    assert isinstance(conv_net, Graph) and conv_net["fc"].kernel == (4, 4)
    assert sliding_geometry(net).stride == (2, 2)
    x = rng.standard_normal((1, 12, 12, 4)).astype(np.float32)
    scores, _ = conv_net.apply(conv_params, state, x)
    assert scores.shape == (1, 3, 3, 5)
    # position (0, 0) of the map is the head on the trunk's top-left 4x4 window
    features, _ = trunk.apply(params, state, x)
    expected, _ = head.apply(params, state, features[:, :4, :4])
    np.testing.assert_allclose(scores[:, 0, 0], expected, rtol=1e-4, atol=1e-4)


def _branched_lenet():
    """LeNet with a second branch: pool1 feeds a 1x1 conv and a 5x5 conv whose outputs are concatenated."""
    return Graph([
        Node(Conv("conv1", 6, 5), ("data",), ("conv1",)),
        Node(MaxPool("pool1", 2), ("conv1",), ("pool1",)),
        Node(ReLU("relu1"), ("pool1",), ("pool1",)),
        Node(Conv("conv2a", 8, 5), ("pool1",), ("a",)),
        Node(Conv("conv2b", 4, 5), ("pool1",), ("b",)),
        Node(Concat("cat"), ("a", "b"), ("cat",)),
        Node(Scale("scale"), ("cat",), ("cat",)),
        Node(MaxPool("pool2", 2), ("cat",), ("pool2",)),
        Node(Flatten("flatten"), ("pool2",), ("flat",)),
        Node(Dense("fc", 10), ("flat",), ("fc",)),
    ], {"data": (28, 28, 1)}, name="branched_lenet")


@pytest.mark.slow
def test_trainer_and_checkpoint_on_a_branched_net(tmp_path):
    net = _branched_lenet()
    _, params, _ = net.init(KEY)
    tx = optimizer(SolverConfig(lr=0.05, schedule="fixed"), 64, *net.multipliers(params))
    trainer = Trainer(net, tx, batch_size=32, preprocess=lambda x: x.astype(jnp.float32) / 256, steps_per_dispatch=8)
    train, test = blobs(256, (28, 28, 1), seed=5), blobs(64, (28, 28, 1), seed=6)
    ts, history = fit(trainer, train, test, epochs=2, seed=0)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    ckpt = Checkpointer(tmp_path / "ckpt")
    ckpt.save(1, {"params": ts.params}, {"model": net.name})
    restored = ckpt.restore()
    ckpt.close()
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(ts.params), restored.tree["params"])
    assert (restored.step, restored.meta["model"]) == (1, "branched_lenet")


SHARDED = """
import jax, jax.numpy as jnp, numpy as np, sys
sys.path.insert(0, "tests")
from test_graph import _branched_lenet
from synthetic import blobs
from jaxcnn.train import SolverConfig, Trainer, data_mesh, fit, optimizer
net = _branched_lenet()
_, params, _ = net.init(jax.random.key(0))
train, test = blobs(128, (28, 28, 1), seed=5), blobs(64, (28, 28, 1), seed=6)
losses = []
for devices in (jax.devices()[:1], jax.devices()):
    tx = optimizer(SolverConfig(lr=0.05, schedule="fixed"), 16, *net.multipliers(params))
    tr = Trainer(net, tx, batch_size=32, preprocess=lambda x: x.astype(jnp.float32) / 256, mesh=data_mesh(devices))
    losses.append([r["train_loss"] for r in fit(tr, train, test, epochs=2, seed=0)[1]])
print(len(jax.devices()), losses)
np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)
"""


@pytest.mark.slow
def test_branched_net_trains_sharded_over_eight_devices():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, "-c", SHARDED], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("8 ")
