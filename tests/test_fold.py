"""jaxcnn.fold: BatchNorm (and the Scale or Bias after it) folded into the Conv or Dense before it, checked against
the unfolded net's Net.apply in evaluation, in float64 (the folded net computes the same function) and in float32
(rounding only); which layers fold and which stay; the blob names kept; the ONNX export with --fold-batchnorm run
by onnxruntime; jaxcnn.predictor compiling the folded net and looking it up in the tuning cache."""
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import random_params, rel_diff

import jaxcnn
from jaxcnn import (
    AvgPool,
    BatchNorm,
    Bias,
    Concat,
    Conv,
    Dense,
    Flatten,
    Graph,
    MaxPool,
    Net,
    Node,
    ReLU,
    Scale,
    fold_batchnorm,
    ops,
    predictor,
    tuning,
)
from jaxcnn.caffe import parse_prototxt
from jaxcnn.compat import enable_x64


def float64(tree):
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), tree)


# XLA:CPU compiles these small nets ~5x sooner unoptimised (0.3 s -> 0.06 s a net); the numbers are the same ops'
QUICK_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def run(net, params, state, x):
    """net.apply in evaluation, compiled with XLA's own ops -> its output (a dict for several)."""
    return jax.jit(lambda p, s, x: net.apply(p, s, x, lowering="native")[0], compiler_options=QUICK_COMPILE)(
        params, state, x)


def worst(actual, expected) -> float:
    """The largest rel_diff over the outputs (dicts for several)."""
    return max(map(rel_diff, jax.tree.leaves(actual), jax.tree.leaves(expected)))


def check_folded(net, input_shape=None, seed=0, batch=2):
    """Fold `net` with random params and state (BatchNorm statistics not 0 and 1): the folded net in float64
    equals the net in float64 to rounding, and in float32 (its params float32) to 1e-5 of it. -> the folded net."""
    params, state = random_params(net, seed, input_shape)
    shapes = net.input_shapes(input_shape)
    xs = {b: np.random.default_rng(seed + 1).standard_normal((batch, *s)) for b, s in shapes.items()}
    x = next(iter(xs.values())) if len(xs) == 1 else xs
    folded, p, s = fold_batchnorm(net, params, state)
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves((p, s)))
    with enable_x64(True):
        want = run(net, float64(params), float64(state), float64(x))
        exact = run(folded, *fold_batchnorm(net, float64(params), float64(state))[1:], float64(x))
        assert worst(exact, want) <= 1e-12
    assert worst(run(folded, p, s, jax.tree.map(jnp.float32, x)), want) <= 1e-5
    return folded


def names(net):
    return [layer.name for layer in net.layers]


def test_conv_bn_scale_relu_chain_folds_into_the_conv():
    net = Net([Conv("conv1", 6, 3, padding=1), BatchNorm("bn1"), Scale("scale1"), ReLU("relu1"),
               Conv("conv2", 4, 3, bias=False), BatchNorm("bn2"), Scale("scale2", bias=False)], (7, 7, 3))
    folded = check_folded(net)
    assert names(folded) == ["conv1", "relu1", "conv2"]
    assert folded["conv1"].bias and folded["conv2"].bias  # conv2's made
    assert folded.outputs == net.outputs == ("scale2",)


def test_grouped_strided_dilated_conv_without_bias_and_bn():
    net = Net([Conv("conv", 8, 3, stride=2, padding=((1, 0), (2, 1)), dilation=2, groups=4, bias=False),
               BatchNorm("bn", eps=1e-3)], (11, 10, 4))
    assert names(check_folded(net)) == ["conv"]


def test_dense_bn_bias():
    net = Net([Conv("conv", 3, 3), Flatten("flat"), Dense("ip", 5), BatchNorm("bn"), Bias("shift"), ReLU("relu")],
              (6, 6, 2))
    assert names(check_folded(net)) == ["conv", "flat", "ip", "relu"]


def test_only_a_bn_that_alone_reads_a_conv_or_dense_folds():
    """A BatchNorm after pooling, after a conv whose output a second layer reads, or on a net output stays; a
    Scale whose input another layer reads too stays while its BatchNorm folds."""
    net = Graph([Node(Conv("a", 4, 3, padding=1), ("data",), ("a",)),
                 Node(BatchNorm("a_bn"), ("a",), ("a_bn",)),
                 Node(ReLU("a_relu"), ("a",), ("a_relu",)),  # reads the conv's output too
                 Node(MaxPool("pool", 2), ("a_relu",), ("pool",)),
                 Node(BatchNorm("pool_bn"), ("pool",), ("pool",)),
                 Node(Conv("b", 4, 1), ("a_bn",), ("b",)),
                 Node(BatchNorm("b_bn"), ("b",), ("b_bn",)),
                 Node(Scale("b_scale"), ("b_bn",), ("b_scale",)),
                 Node(AvgPool("b_pool", 2), ("b_bn",), ("b_pool",)),  # reads the BatchNorm's output too
                 Node(Conv("c", 3, 1), ("b_pool",), ("c",)),
                 Node(BatchNorm("c_bn"), ("c",), ("c_bn",))], {"data": (6, 6, 2)}, ["pool", "b_scale", "c", "c_bn"])
    folded = check_folded(net)
    assert names(folded) == ["a", "a_bn", "a_relu", "pool", "pool_bn", "b", "b_scale", "b_pool", "c", "c_bn"]
    assert folded.node("b") == Node(folded["b"], ("a_bn",), ("b_bn",))
    assert folded.outputs == net.outputs


def test_nothing_to_fold_gives_the_same_net():
    net = Net([Conv("conv", 4, 3), MaxPool("pool", 2), BatchNorm("bn")], (6, 6, 1))
    params, state = random_params(net)
    folded, p, s = fold_batchnorm(net, params, state)
    assert folded is net and p == params and s == state


def test_folded_wiring_keeps_the_blob_names_later_layers_read():
    """Not in place: the conv writes the Scale's blob, which the layers after it read and the net gives."""
    net = Graph([Node(Conv("c1", 4, 3), ("data",), ("c1",)),
                 Node(BatchNorm("bn1"), ("c1",), ("n1",)),
                 Node(Conv("c2", 4, 3), ("data",), ("c2",)),  # between the conv and its BatchNorm's Scale
                 Node(Scale("sc1"), ("n1",), ("s1",)),
                 Node(Concat("cat"), ("s1", "c2"), ("cat",)),
                 Node(Scale("sc2"), ("c2",), ("s2",))], {"data": (5, 5, 3)})
    folded = check_folded(net)
    assert [(n.layer.name, n.inputs, n.outputs) for n in folded.nodes] == [
        ("c1", ("data",), ("s1",)), ("c2", ("data",), ("c2",)), ("cat", ("s1", "c2"), ("cat",)),
        ("sc2", ("c2",), ("s2",))]
    assert folded.outputs == net.outputs == ("cat", "s2")


def test_the_input_is_left_as_it_was():
    net = Net([Conv("conv", 4, 3, bias=False), BatchNorm("bn"), Scale("scale")], (5, 5, 1))
    params, state = random_params(net)
    before = jax.tree.map(np.array, (params, state))
    folded, p, s = fold_batchnorm(net, params, state)
    assert names(net) == ["conv", "bn", "scale"] and not net["conv"].bias
    assert jax.tree.all(jax.tree.map(np.array_equal, (params, state), before))
    assert set(p) == {"conv"} and s == {}


def test_missing_state_names_the_layer():
    net = Net([Conv("conv", 4, 3), BatchNorm("bn")], (5, 5, 1))
    params, _ = random_params(net)
    with pytest.raises(jaxcnn.LayerError, match=r"^bn \(BatchNorm\): missing parameter or state 'var'"):
        fold_batchnorm(net, params, {})


@pytest.mark.slow
def test_caffe_mobilenet_v1_folds_every_bn_and_scale():
    from experiments import caffe_models
    net = parse_prototxt(caffe_models.mobilenet_v1())  # at 224x224, run at 64x64: the global pooling takes any
    folded = check_folded(net, input_shape=(64, 64, 3), batch=1)
    convs = [layer.name for layer in net.layers if isinstance(layer, Conv)]
    assert len(net.layers) == 4 * 27 + 3 and len(folded.layers) == 2 * 27 + 3 and len(convs) == 28
    assert [layer.name for layer in folded.layers if isinstance(layer, Conv)] == convs
    assert not any(isinstance(layer, (BatchNorm, Scale)) for layer in folded.layers)


# -- use: the ONNX export, jaxcnn.predictor -------------------------------------------------------------------
def test_onnx_export_with_fold_batchnorm_has_no_batchnormalization(tmp_path, capsys):
    onnx = pytest.importorskip("onnx", reason="ONNX export needs the onnx package (the export and test extras)")
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime (the test extra) runs the exported graph")
    from jaxcnn.__main__ import main
    from jaxcnn.caffe import load_prototxt, save_caffemodel
    proto = str(Path(__file__).resolve().parents[1] / "experiments" / "caffe" / "lenet_bn_deploy.prototxt")
    net = load_prototxt(proto)
    params, state = random_params(net, 4)
    save_caffemodel(net, params, state, tmp_path / "lenet.caffemodel")
    for flags, out in (([], tmp_path / "plain.onnx"), (["--fold-batchnorm"], tmp_path / "folded.onnx")):
        main(["export", proto, "--weights", str(tmp_path / "lenet.caffemodel"), "--onnx", str(out), *flags])
    assert "wrote " in capsys.readouterr().out
    ops_of = {name: [n.op_type for n in onnx.load(tmp_path / f"{name}.onnx").graph.node]
              for name in ("plain", "folded")}
    assert ops_of["plain"].count("BatchNormalization") == 2
    assert "BatchNormalization" not in ops_of["folded"] and "Mul" not in ops_of["folded"]
    x = np.random.default_rng(5).random((3, 28, 28, 1), np.float32)
    session = ort.InferenceSession(str(tmp_path / "folded.onnx"), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"data": x.transpose(0, 3, 1, 2)})
    assert rel_diff(got, net.apply(params, state, x)[0]) <= 1e-5


def test_tune_inference_tunes_the_folded_net(monkeypatch, capsys):
    from jaxcnn.__main__ import main
    seen = []
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    monkeypatch.setattr(tuning, "tune", lambda net, batch, **kw: seen.append(names(net)) or tuning.Tuning(
        "cpu", ops.compiler_options("cpu")))
    main(["tune", "lenet_caffe", "--inference"])
    assert seen == [["conv1", "pool1", "relu_pool1", "conv2", "pool2", "relu_pool2", "flatten", "ip1", "relu1", "ip2"]]


def test_predictor_compiles_the_folded_net_and_looks_it_up(monkeypatch):
    net = Net([Conv("conv1", 4, 3, bias=False), BatchNorm("bn1"), Scale("scale1"), ReLU("relu1"), Flatten("flat"),
               Dense("ip", 3)], (6, 6, 2))
    params, state = random_params(net, 6)
    x = np.random.default_rng(7).standard_normal((2, 6, 6, 2)).astype(np.float32)
    seen = []
    monkeypatch.setattr(tuning, "lookup", lambda net, *args, **kw: seen.append(names(net)) or tuning.Tuning(
        "cpu", ops.compiler_options("cpu")))
    folded, p, s = fold_batchnorm(net, params, state)
    got = predictor(folded, 2)(p, s, x)
    assert seen == [["conv1", "relu1", "flat", "ip"]]
    assert rel_diff(got, net.apply(params, state, x)[0]) <= 1e-5
