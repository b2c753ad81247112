"""jaxcnn.first_block: a net's first block (Conv of one channel, BatchNorm, Scale, 2x2 max pooling, ReLU) trained by
the fused C++ kernels gives the layers' outputs, BatchNorm state and gradients (every parameter; the input's by the
ops), on maps with MNIST's blank rows and on shapes whose width leaves a remainder of the kernels' 4-column blocks;
the kernels ran (their custom calls are in the compiled step); nets that are not such a block run their layers;
the tuning offers the fused candidate and runs it where it won; the compiled library is cached. Skipped without
g++."""
import logging
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn import BatchNorm, Conv, Dense, Flatten, MaxPool, Net, ReLU, Scale, first_block, tuning, zoo
from jaxcnn.caffe import load_prototxt
from jaxcnn.ops.lowering import Tuned

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("g++") is None, reason="g++ compiles the kernels")]
FUSED = Tuned((), first_block=True)
REPO = Path(__file__).resolve().parents[1]


def block_net(shape, k, o, changes=()):
    """A net opening with the block (`changes`: {layer index: replacement}), then a small classifier."""
    layers = [Conv("conv1", o, k), BatchNorm("bn1", eps=1e-3), Scale("scale1"), MaxPool("pool1", 2), ReLU("relu1"),
              Flatten("flat"), Dense("ip", 3)]
    for i, layer in dict(changes).items():
        layers[i] = layer
    return Net(layers, shape, "block")


def inputs(shape, n, seed=0):
    x = np.random.default_rng(seed).standard_normal((n, *shape)).astype(np.float32)
    x[0, : shape[0] // 2] = 0.0  # blank rows as MNIST's: pooling windows of equal values
    return jnp.asarray(x)


def step(net, lowering):
    """(params, state, x) -> ((loss, new state), gradients of the params), jitted."""
    def loss(params, state, x):
        y, new_state = net.apply(params, state, x, train=True, lowering=lowering)
        return jnp.sum(y * jnp.arange(1.0, 1.0 + y.shape[-1])), new_state
    return jax.jit(jax.value_and_grad(loss, has_aux=True))


def assert_close(got, want, name, rtol=1e-4):
    """Each leaf equal at its own scale, but a convolution's bias gradient (every convolution here feeds a
    BatchNorm, which removes the bias: 0 up to rounding), compared at the scale of its weight gradient."""
    for path, g in jax.tree_util.tree_leaves_with_path(got):
        r = np.asarray(dict(jax.tree_util.tree_leaves_with_path(want))[path])
        scale = np.abs(r).max()
        layer = path[0].key
        if layer.startswith("conv") and path[-1].key == "b":
            scale = np.abs(np.asarray(want[layer]["w"])).max()
        np.testing.assert_allclose(np.asarray(g), r, rtol=rtol, atol=rtol * scale + 1e-7,
                                   err_msg=f"{name} {jax.tree_util.keystr(path)}")


def custom_calls(fn, *args) -> bool:
    text = fn.lower(*args).as_text()
    return "first_block_forward" in text and "first_block_backward" in text


@pytest.mark.parametrize("shape, k, o, n", [((28, 28, 1), 5, 20, 6), ((12, 14, 1), 5, 7, 3), ((9, 7, 1), 4, 32, 2),
                                            ((9, 9, 1), 2, 3, 5)])
def test_fused_block_trains_as_the_layers(shape, k, o, n):
    net = block_net(shape, k, o)
    assert first_block.layers_of(net) is not None and first_block.available()
    _, params, state = net.init(jax.random.key(0))
    params = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(jax.random.key(1), a.shape), params)  # b, beta != 0
    x = inputs(shape, n)
    fused, layers = step(net, FUSED), step(net, "cpu")
    assert custom_calls(fused, params, state, x) and not custom_calls(layers, params, state, x)
    (loss, new_state), grads = fused(params, state, x)
    (want_loss, want_state), want_grads = layers(params, state, x)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-5)
    assert_close(new_state, want_state, "state")
    assert_close(grads, want_grads, "gradient")
    evaluated = [net.apply(params, new_state, x, lowering=lowering)[0] for lowering in (FUSED, "cpu")]
    np.testing.assert_array_equal(*evaluated)  # evaluation runs the layers either way


def test_caffes_in_place_lenet_bn_is_fused():
    """experiments/caffe/lenet_bn_train_test.prototxt: BatchNorm, Scale and ReLU in place (one blob each block)."""
    net = load_prototxt(REPO / "experiments" / "caffe" / "lenet_bn_train_test.prototxt", phase="TRAIN",
                        input_shape=(28, 28, 1))
    assert [layer.name for layer in first_block.layers_of(net)] == [layer.name for layer in net.layers[:5]]
    _, params, state = net.init(jax.random.key(0))
    x = inputs((28, 28, 1), 4)
    fused, layers = step(net, FUSED), step(net, "cpu")
    assert custom_calls(fused, params, state, x)
    (loss, new_state), grads = fused(params, state, x)
    (want_loss, want_state), want_grads = layers(params, state, x)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-5)
    assert_close(new_state, want_state, "state")
    assert_close(grads, want_grads, "gradient")


def test_the_inputs_gradient_is_the_layers():
    net = zoo.lenet_caffe()
    _, params, state = net.init(jax.random.key(0))
    x = inputs((28, 28, 1), 4)
    grads = [jax.grad(lambda x, low=low: net.apply(params, state, x, train=True, lowering=low)[0].sum())(x)
             for low in (FUSED, "cpu")]
    np.testing.assert_allclose(*grads, rtol=1e-5, atol=1e-6 * np.abs(grads[1]).max())
    assert np.abs(grads[0]).max() > 0


@pytest.mark.parametrize("change, shape", [
    ({0: Conv("conv1", 4, 3, stride=2)}, None), ({0: Conv("conv1", 4, 3, padding=1)}, None),
    ({0: Conv("conv1", 33, 3)}, None), ({0: Conv("conv1", 4, 3, bias=False)}, None),
    ({0: Conv("conv1", 4, (3, 2))}, (10, 9, 1)), ({1: BatchNorm("bn1", use_global_stats=True)}, None),
    ({2: Scale("scale1", bias=False)}, None), ({3: MaxPool("pool1", 3, 2)}, None),
    ({4: ReLU("relu1", negative_slope=0.1)}, None), ({1: ReLU("bn1")}, None), ({}, (10, 10, 3)), ({}, (11, 11, 1))])
def test_other_nets_run_their_layers(change, shape):
    shape = shape or (10, 10, 1)
    net = block_net(shape, 3, 4, change)
    assert first_block.layers_of(net) is None
    _, params, state = net.init(jax.random.key(0))
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, *shape)), jnp.float32)
    fused = step(net, FUSED)
    assert not custom_calls(fused, params, state, x)
    (loss, _), _ = fused(params, state, x)
    np.testing.assert_array_equal(loss, step(net, "cpu")(params, state, x)[0][0])


def test_a_block_whose_output_another_layer_reads_is_not_fused():
    from jaxcnn import Concat, Graph, Node
    net = block_net((10, 10, 1), 3, 4)
    nodes = [Node(layer, ("data",) if i == 0 else ("c1",), ("c1",)) for i, layer in enumerate(net.layers[:2])]
    nodes += [Node(Scale("scale1"), ("c1",), ("s1",)), Node(MaxPool("pool1", 2), ("s1",), ("p1",)),
              Node(ReLU("relu1"), ("p1",), ("p1",)), Node(MaxPool("pool2", 2), ("s1",), ("p2",)),
              Node(Concat("cat"), ("p1", "p2"), ("cat",))]
    assert first_block.layers_of(Graph(nodes, {"data": (10, 10, 1)})) is None  # s1 is read twice


def test_the_tuning_offers_the_fused_block_and_runs_it_where_it_won(tmp_path, monkeypatch):
    monkeypatch.setenv(tuning.ENV_SWITCH, "1")
    monkeypatch.setattr(tuning, "measure", lambda *a, **k: 1.0)
    offered = []

    def measure_fusions(net, batch, input_shape, dtype, training, lowerings):
        offered.append(dict(lowerings))
        seconds = {f"{f}+default": 1.0 if f == "fused" else 2.0 for f in lowerings}
        return {"forms": "fused", "choice": "default", "seconds": seconds, "compile_seconds": dict.fromkeys(seconds, 0)}
    monkeypatch.setattr(tuning, "_measure_fusions", measure_fusions)
    net = zoo.lenet_caffe()
    tuned = tuning.tune(net, 8, cache_dir=tmp_path)
    assert offered[0]["fused"] == Tuned(offered[0]["measured"].forms, first_block=True)
    assert tuned.lowering == offered[0]["fused"]
    assert tuning.lookup(net, 8, cache_dir=tmp_path) == tuned
    tuning.tune(net, 8, dtype="bfloat16", cache_dir=tmp_path)  # the kernels are float32: not offered
    tuning.tune(zoo.lenet5(), 8, cache_dir=tmp_path)  # no such block
    assert len(offered) == 3 and not any("fused" in o for o in offered[1:])


def test_the_library_is_built_once_into_the_cache(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(tuning.ENV_CACHE, str(tmp_path))
    lib = first_block.library_path()
    assert lib.parent == tmp_path and not lib.exists()
    first_block._build(lib)
    assert lib.exists() and [p.name for p in tmp_path.iterdir()] == [lib.name]  # no temporary left
    import ctypes
    library = ctypes.cdll.LoadLibrary(str(lib))
    assert all(hasattr(library, name) for name in first_block.TARGETS)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with caplog.at_level(logging.WARNING, logger="jaxcnn"):
        assert first_block.available.__wrapped__() is False
    assert "fused kernels are not available (g++ is not installed): the layers run it" in caplog.text
