"""jaxcnn.nnx: Flax NNX modules for jaxcnn's layers and nets, checked against the pure layers and nets."""
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from conftest import assert_close
from flax import linen, nnx

import jaxcnn.nnx as cnnx
from jaxcnn import layers, ops
from jaxcnn.compat import get_value
from jaxcnn.net import Net
from jaxcnn.train import SolverConfig, Trainer, optimizer


def param_grads(grads) -> dict:
    """The net-shaped gradient pytree inside the State nnx.grad returns for a NetModule."""
    return nnx.to_pure_dict(grads).get("net_params", {})


def check_against_pure(module, x, *, key=None):
    """module(x) in training, then in evaluation (if the module has modes), gives net.apply's outputs, new state
    and gradients (with respect to the params and to x) for the params and state the module held before."""
    for train in (True, False) if module.modes else (False,):
        module.train() if train else module.eval()
        net, params, state = cnnx.to_net(module)

        def pure(params, x):
            y, new_state = net.apply(params, state, x, train=train, rng=key, lowering=module.lowering)
            return jnp.sum(jnp.sin(y)), (y, new_state)

        def nnx_loss(module, x):
            y = module(x, rngs=key)
            return jnp.sum(jnp.sin(y)), y

        @nnx.jit  # one program for both: one compilation instead of two
        def both(module, params, x):
            return (jax.value_and_grad(pure, argnums=(0, 1), has_aux=True)(params, x),
                    nnx.value_and_grad(nnx_loss, argnums=(0, 1), has_aux=True)(module, x))

        ((_, (y_ref, state_ref)), (gp_ref, gx_ref)), ((_, y), (gp, gx)) = both(module, params, x)
        assert_close(y, y_ref)
        assert_close(gx, gx_ref)
        assert_close(param_grads(gp), gp_ref)
        assert_close(cnnx.to_net(module)[2], state_ref)
        if not train:
            assert_close(cnnx.to_net(module)[2], state)


# -- one module per layer -----------------------------------------------------------------------------------------
LAYER_CASES = {
    # id: (the NNX module, the jaxcnn layer it must hold, per-example input shape)
    "conv_groups": (lambda: cnnx.Conv(4, 6, 3, stride=2, padding=1, groups=2, lr_mult={"b": 2.0}, rngs=nnx.Rngs(0)),
                    layers.Conv("conv", 6, 3, stride=2, padding=1, groups=2, lr_mult={"b": 2.0}), (7, 7, 4)),
    "conv_dilated": (lambda: cnnx.Conv(3, 5, (3, 2), dilation=2, padding="SAME", bias=False, name="c",
                                       lowering="native", rngs=nnx.Rngs(0)),
                     layers.Conv("c", 5, (3, 2), dilation=2, padding="SAME", bias=False), (8, 6, 3)),
    "local": (lambda: cnnx.Local(3, 4, 3, input_size=(6, 5), padding=1, rngs=nnx.Rngs(0)),
              layers.Local("local", 4, 3, padding=1), (6, 5, 3)),
    "local_filter_bias": (lambda: cnnx.Local(2, 3, 2, input_size=(5, 5), stride=2, bias="filter", rngs=nnx.Rngs(0)),
                          layers.Local("local", 3, 2, stride=2, bias="filter"), (5, 5, 2)),
    "dense": (lambda: cnnx.Dense(12, 5, decay_mult={"b": 0.0}, rngs=nnx.Rngs(0)),
              layers.Dense("dense", 5, decay_mult={"b": 0.0}), (12,)),
    "max_pool_ceil": (lambda: cnnx.MaxPool(3, 2, ceil_mode=True),
                      layers.MaxPool("pool", 3, 2, ceil_mode=True), (8, 8, 3)),
    "avg_pool": (lambda: cnnx.AvgPool(3, 2, padding=1, ceil_mode=True, count_pad=False),
                 layers.AvgPool("pool", 3, 2, padding=1, ceil_mode=True, count_pad=False), (7, 7, 2)),
    "lrn_across": (lambda: cnnx.LRN(3, alpha=0.1), layers.LRN("lrn", 3, alpha=0.1), (4, 4, 6)),
    "lrn_within": (lambda: cnnx.LRN(3, alpha=0.1, region="within"),
                   layers.LRN("lrn", 3, alpha=0.1, region="within"), (4, 4, 2)),
    "contrast_norm": (lambda: cnnx.ContrastNorm(3, alpha=0.1), layers.ContrastNorm("cnorm", 3, alpha=0.1), (5, 4, 2)),
    "batch_norm": (lambda: cnnx.BatchNorm(3, momentum=0.9), layers.BatchNorm("bn", 0.9), (5, 5, 3)),
    "scale": (lambda: cnnx.Scale(3), layers.Scale("scale"), (5, 5, 3)),
    "dropout": (lambda: cnnx.Dropout(0.3), layers.Dropout("dropout", 0.3), (4, 4, 3)),
    "flatten": (lambda: cnnx.Flatten(), layers.Flatten("flatten"), (3, 2, 4)),
    "relu": (lambda: cnnx.ReLU(), layers.ReLU("relu"), (3, 3, 2)),
    "tanh": (lambda: cnnx.Tanh(name="t"), layers.Tanh("t"), (6,)),
    "sigmoid": (lambda: cnnx.Sigmoid(), layers.Sigmoid("sigmoid"), (6,)),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", LAYER_CASES)
def test_layer_module_matches_the_jaxcnn_layer(case, rng):
    make, layer, shape = LAYER_CASES[case]
    module = make()
    assert module.net == layer  # the NNX-style arguments reach the layer as meant
    _, params, state = layer.init(jax.random.key(1), shape)
    got = cnnx.to_net(module)
    assert jax.tree.map(jnp.shape, got[1]) == jax.tree.map(jnp.shape, params)
    assert_close(got[2], state)
    if isinstance(layer, layers.Scale):  # constant fillers: the values too
        assert_close(got[1], params)
    if got[1]:  # perturb them so that a mix-up of params shows
        module.net_params = nnx.data(jax.tree.map(
            lambda v: nnx.Param(get_value(v) + 0.1 * jnp.asarray(rng.standard_normal(v.shape), jnp.float32)),
            module.net_params, is_leaf=lambda v: isinstance(v, nnx.Param)))
    x = jnp.asarray(rng.standard_normal((4, *shape)), jnp.float32)
    check_against_pure(module, x, key=jax.random.key(7))


def test_batch_norm_module_updates_its_statistics_as_the_layer(rng):
    """Three training batches: the module's statistics follow BatchNorm.apply's, then evaluation uses them."""
    layer, module = layers.BatchNorm("bn", 0.9), cnnx.BatchNorm(3, momentum=0.9)
    _, _, state = layer.init(jax.random.key(0), (3,))
    for _ in range(3):
        x = jnp.asarray(rng.standard_normal((6, 2, 2, 3)) * 3 + 1, jnp.float32)
        module(x)
        _, state = layer.apply({}, state, x, train=True)
        assert_close(cnnx.to_net(module)[2], state)
    assert float(state["count"]) > 2
    module.eval()
    assert_close(module(x), layer.apply({}, state, x)[0])


@pytest.mark.slow
def test_fillers_use_the_kernel_fan_in():
    """Caffe's xavier bound sqrt(3 / fan_in), fan_in = KH*KW*C/groups (conv) and KH*KW*C (each Local position):
    the probe input a Conv module is made with does not change it."""
    conv = cnnx.Conv(8, 64, 3, groups=2, rngs=nnx.Rngs(0))
    w = get_value(conv.net_params["w"])
    assert w.shape == (3, 3, 4, 64)
    assert np.sqrt(3 / 36) * 0.9 < np.abs(w).max() <= np.sqrt(3 / 36)
    local = cnnx.Local(4, 16, 3, input_size=(8, 8), rngs=nnx.Rngs(0))
    w = get_value(local.net_params["w"])
    assert w.shape == (6, 6, 3, 3, 4, 16)
    assert np.sqrt(3 / 36) * 0.9 < np.abs(w).max() <= np.sqrt(3 / 36)
    assert not np.allclose(get_value(conv.net_params["w"]),
                           get_value(cnnx.Conv(8, 64, 3, groups=2, rngs=nnx.Rngs(1)).net_params["w"]))


# -- whole nets ---------------------------------------------------------------------------------------------------
def every_layer_net():
    """A small net with every layer type, dropout included."""
    return Net([
        layers.Conv("conv1", 8, 3, padding=1, groups=2, lr_mult={"b": 2.0}), layers.BatchNorm("bn1", 0.9),
        layers.Scale("scale1"), layers.ReLU("relu1"), layers.MaxPool("pool1", 3, 2, ceil_mode=True),
        layers.LRN("norm1", 3, alpha=0.1), layers.Local("local2", 6, 3, padding=1), layers.Tanh("tanh2"),
        layers.AvgPool("pool2", 2), layers.Sigmoid("sig2"), layers.Flatten("flatten"),
        layers.Dense("fc3", 10, decay_mult={"b": 0.0}), layers.Dropout("drop3", 0.5), layers.Dense("fc4", 3),
    ], (12, 12, 4), "every_layer")


def tiny_net():
    """Caffe's LeNet block in miniature, for the tests of Flax's tools (quick to compile)."""
    return Net([layers.Conv("conv1", 4, 3, lr_mult={"b": 2.0}), layers.BatchNorm("bn1", 0.9), layers.Scale("scale1"),
                layers.MaxPool("pool1", 2), layers.ReLU("relu1"), layers.Flatten("flatten"),
                layers.Dense("ip1", 3, lr_mult={"b": 2.0}, decay_mult={"b": 0.0})], (8, 8, 1), "tiny")


@pytest.fixture(scope="module")
def tiny_init():
    net = tiny_net()
    _, params, state = net.init(jax.random.key(0))
    return net, params, state


@pytest.mark.slow
def test_lenet_caffe_module_matches_the_net(lenet_caffe_init, rng):
    net, params, state = lenet_caffe_init
    module = cnnx.from_net(net, params, state)
    x = jnp.asarray(rng.random((8, 28, 28, 1)), jnp.float32)
    check_against_pure(module, x)
    back_net, back_params, _ = cnnx.to_net(module)
    assert back_net is net
    assert_close(back_params, params)


@pytest.mark.slow
def test_net_with_every_layer_matches_in_both_modes(rng):
    net = every_layer_net()
    _, params, state = net.init(jax.random.key(0))
    module = cnnx.from_net(net, params, state)
    x = jnp.asarray(rng.standard_normal((4, 12, 12, 4)), jnp.float32)
    check_against_pure(module, x, key=jax.random.key(3))


@dataclass(frozen=True)
class TwoBranches:
    """A branched net with jaxcnn's net contract, written here as any user could: conv 'a' and conv 'b' + BatchNorm
    'bn_b' read the input side by side, their channels are concatenated, then flattened into dense 'fc'."""

    name: str = "two_branches"

    def _layers(self):
        return {"a": layers.Conv("a", 3, 3, padding=1), "b": layers.Conv("b", 2, 1),
                "bn_b": layers.BatchNorm("bn_b", 0.5), "fc": layers.Dense("fc", 4, lr_mult={"w": 3.0})}

    def init(self, rng, input_shape=(5, 5, 2)):
        ls, keys = self._layers(), jax.random.split(rng, 3)
        _, pa, _ = ls["a"].init(keys[0], input_shape)
        _, pb, _ = ls["b"].init(keys[1], input_shape)
        _, _, sb = ls["bn_b"].init(keys[1], (*input_shape[:2], 2))
        _, pf, _ = ls["fc"].init(keys[2], (input_shape[0] * input_shape[1] * 5,))
        return (4,), {"a": pa, "b": pb, "fc": pf}, {"bn_b": sb}

    def apply(self, params, state, x, *, train=False, rng=None, lowering="auto"):
        ls = self._layers()
        a, _ = ls["a"].apply(params["a"], {}, x, lowering=lowering)
        b, _ = ls["b"].apply(params["b"], {}, x, lowering=lowering)
        b, bn = ls["bn_b"].apply({}, state["bn_b"], b, train=train)
        y, _ = ls["fc"].apply(params["fc"], {}, ops.flatten(jnp.concatenate([a, b], axis=-1)))
        return y, {"bn_b": bn}

    def multipliers(self, params):
        ls = self._layers()
        return tuple({n: {k: ls[n].mults(k)[i] for k in p} for n, p in params.items()} for i in (0, 1))


@pytest.mark.slow
def test_from_net_needs_only_the_net_contract(rng):
    """A branched net that is no jaxcnn Net: from_net runs, differentiates and trains it all the same."""
    net = TwoBranches()
    module = cnnx.NetModule(net, rngs=nnx.Rngs(2))
    assert module.net_params["fc"]["w"].get_metadata()["lr_mult"] == 3.0
    x = jnp.asarray(rng.standard_normal((6, 5, 5, 2)), jnp.float32)
    check_against_pure(module, x)


# -- modes and errors ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_train_eval_and_view_set_the_mode(rng):
    net = every_layer_net()
    _, params, state = net.init(jax.random.key(0))
    module = cnnx.from_net(net, params, state, rngs=nnx.Rngs(dropout=5))
    x = jnp.asarray(rng.standard_normal((4, 12, 12, 4)), jnp.float32)
    assert (module.use_running_average, module.deterministic) == (False, False)
    a, b = module(x), module(x)
    assert not np.allclose(a, b)  # new dropout masks (and statistics) on every training call
    module.eval()
    assert (module.use_running_average, module.deterministic) == (True, True)
    _, state = cnnx.to_net(module)[1:]
    assert_close(module(x), net.apply(params, state, x)[0])
    module.set_attributes(deterministic=False)
    with pytest.raises(ValueError, match="every_layer: a jaxcnn net runs all its layers in one mode"):
        module(x)
    assert_close(module(x, deterministic=True), net.apply(params, state, x)[0])


@pytest.mark.skipif(not hasattr(nnx, "view"), reason="nnx.view is new in flax 0.12")
def test_view_sets_the_mode_of_a_copy():
    module = cnnx.NetModule(every_layer_net(), rngs=nnx.Rngs(0))
    module.eval()
    training = nnx.view(module, use_running_average=False, deterministic=False)
    assert training.use_running_average is False and module.use_running_average is True
    assert training.deterministic is False and module.deterministic is True


def test_dropout_module_draws_keys_from_its_stream(rng):
    x = jnp.ones((2, 50))
    drop = cnnx.Dropout(0.5, rngs=nnx.Rngs(dropout=0))
    a, b = drop(x), drop(x)
    assert set(np.unique(a)) == {0.0, 2.0} and not np.array_equal(a, b)
    drop.eval()
    assert np.array_equal(drop(x), x)
    with pytest.raises(ValueError, match="needs an rng key"):
        cnnx.Dropout(0.5)(x)
    assert cnnx.Dropout(0.5)(x, rngs=nnx.Rngs(1)).shape == x.shape


@pytest.mark.slow
def test_the_lowering_reaches_every_layer(tiny_init):
    """A module's lowering is what its layers trace to: XLA's reduce_window for max pooling natively, strided views
    with the CPU lowering."""
    net, params, state = tiny_init
    x = jnp.ones((2, 8, 8, 1))

    def hlo(module):
        return nnx.jit(lambda m, x: m(x)).lower(module, x).as_text()

    assert "reduce_window" in hlo(cnnx.from_net(net, params, state, lowering="native"))
    assert "reduce_window" not in hlo(cnnx.from_net(net, params, state, lowering="cpu"))
    auto = ops.lowering.for_platform("auto", jax.default_backend())
    assert ("reduce_window" in hlo(cnnx.from_net(net, params, state))) == (auto == "native")
    assert "reduce_window" in hlo(cnnx.MaxPool(2, lowering="native"))
    assert "reduce_window" not in hlo(cnnx.MaxPool(2, lowering="cpu"))


@pytest.mark.slow
def test_errors_name_what_is_wrong(tiny_init):
    net, params, state = tiny_init
    with pytest.raises(ValueError, match="tiny: give params and state, or rngs"):
        cnnx.NetModule(net)
    with pytest.raises(ValueError, match="tiny: give both params and state"):
        cnnx.NetModule(net, params)
    with pytest.raises(ValueError, match="lowering must be one of"):
        cnnx.from_net(net, params, state, lowering="gpu")
    with pytest.raises(TypeError, match="expected a jaxcnn.nnx.NetModule, got Linear"):
        cnnx.to_net(nnx.Linear(2, 3, rngs=nnx.Rngs(0)))
    with pytest.raises(layers.LayerError, match="conv .Conv.: groups=4 does not divide 6 output channels"):
        cnnx.Conv(8, 6, 3, groups=4, rngs=nnx.Rngs(0))
    with pytest.raises(layers.LayerError, match="ip1 .Dense.: input has 64 features but the layer was built for 36"):
        cnnx.from_net(net, params, state)(jnp.zeros((2, 10, 10, 1)))


# -- training -----------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_nnx_optimizer_steps_equal_the_trainer(lenet_caffe_init, rng):
    """Four SGD steps of Caffe's LeNet solver (inv policy, momentum, weight decay, lr_mult 2 on biases) with
    nnx.Optimizer on the module give the Trainer's params, statistics and losses on the same batches."""
    net, params, state = lenet_caffe_init
    cfg = SolverConfig(optimizer="sgd", lr=0.01, schedule="inv", gamma=1e-4, power=0.75, momentum=0.9,
                       weight_decay=5e-4)
    images = jnp.asarray(rng.integers(0, 256, (64, 28, 28, 1)), jnp.uint8)
    labels = jnp.asarray(rng.integers(0, 10, 64), jnp.int32)
    preprocess = lambda x: x.astype(jnp.float32) * 0.00390625  # noqa: E731  Caffe's scale

    # The same computation on both sides: nnx.jit compiles with XLA's default options and the NetModule runs the
    # fixed 'cpu' forms, so the Trainer gets no jaxcnn compiler options (512-bit vectors) and no tuned forms.
    trainer = Trainer(net, optimizer(cfg, 4, *net.multipliers(params)), batch_size=16, preprocess=preprocess,
                      compiler_options={}, autotune=False)
    ts = trainer.init(0, params=params, state=state)
    perm = trainer.permutation(ts, 0, 64)
    ts, losses = trainer.train_steps(ts, images, labels, perm, 0, 4)

    model = cnnx.from_net(net, params, state)
    lr_mult, decay_mult = cnnx.multipliers(model)
    assert nnx.to_pure_dict(lr_mult)["net_params"] == net.multipliers(params)[0]
    opt = nnx.Optimizer(model, optimizer(cfg, 4, lr_mult, decay_mult), wrt=nnx.Param)

    @nnx.jit
    def step(model, opt, x, y):
        loss, grads = nnx.value_and_grad(lambda m: ops.softmax_cross_entropy(m(x), y))(model)
        opt.update(model, grads)
        return loss

    nnx_losses = [step(model, opt, preprocess(images[idx]), labels[idx]) for idx in np.asarray(perm).reshape(4, 16)]
    assert_close(jnp.stack(nnx_losses), losses)
    _, got_params, got_state = cnnx.to_net(model)
    want_params = jax.device_get(ts.params)
    # A convolution bias that feeds BatchNorm has gradient 0 in exact arithmetic (BN subtracts the batch mean):
    # its value after the steps is float32 rounding noise of the gradient sums, which varies with summation order
    # (vector width, fusion), so it is not compared between the two; on both sides it must stay negligible, under
    # 1e-6 of its layer's weights (the noise is about 1e-7 of them).
    for conv in ("conv1", "conv2"):
        for p in (got_params, want_params):
            assert np.abs(p[conv].pop("b")).max() <= 1e-6 * np.abs(p[conv]["w"]).max(), conv
    assert_close(got_params, want_params)
    assert_close(got_state, jax.device_get(ts.state))
    assert not np.allclose(got_params["conv1"]["w"], params["conv1"]["w"])


@pytest.mark.slow
def test_module_inside_a_flax_model_trains_with_caffes_solver(tiny_init, rng):
    """A NetModule as the body of a bigger NNX model: multipliers are Caffe's for its params and 1.0 for the
    Flax head's, and an SGD step is Caffe's update w - lr * lr_mult * (g + wd * decay_mult * w)."""
    net, params, state = tiny_init

    class Classifier(nnx.Module):
        def __init__(self, rngs):
            self.body = cnnx.from_net(net, params, state)
            self.head = nnx.Linear(3, 2, rngs=rngs)

        def __call__(self, x):
            return self.head(nnx.relu(self.body(x)))

    model = Classifier(nnx.Rngs(0))
    lr_mult, decay_mult = (nnx.to_pure_dict(t) for t in cnnx.multipliers(model))
    assert lr_mult["head"] == {"kernel": 1.0, "bias": 1.0} and lr_mult["body"]["net_params"]["ip1"]["b"] == 2.0
    cfg = SolverConfig(lr=0.1, schedule="fixed", momentum=0.0, weight_decay=0.01)
    opt = nnx.Optimizer(model, optimizer(cfg, 1, *cnnx.multipliers(model)), wrt=nnx.Param)
    x, y = jnp.asarray(rng.random((4, 8, 8, 1)), jnp.float32), jnp.array([0, 1, 1, 0])
    before = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    grads = nnx.jit(nnx.grad(lambda m: ops.softmax_cross_entropy(m(x), y)))(model)
    nnx.jit(lambda opt, model, grads: opt.update(model, grads))(opt, model, grads)
    g, after = nnx.to_pure_dict(grads), nnx.to_pure_dict(nnx.state(model, nnx.Param))
    want = jax.tree.map(lambda w, g, lr, d: w - 0.1 * lr * (g + 0.01 * d * w), before, g, lr_mult, decay_mult)
    assert_close(after, want)


# -- Flax's tools -------------------------------------------------------------------------------------------------
def test_to_linen_gives_a_working_linen_module(tiny_init, rng):
    net = tiny_init[0]
    x = jnp.asarray(rng.random((4, 8, 8, 1)), jnp.float32)
    model = nnx.bridge.to_linen(cnnx.NetModule, net)
    variables = linen.unbox(model.init(jax.random.key(0), x))
    params, state = variables["params"]["net_params"], variables["batch_stats"]["net_state"]
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, net.init(jax.random.key(0))[1])

    y, updates = model.apply(variables, x, mutable=["batch_stats"])
    y_ref, state_ref = net.apply(params, state, x, train=True)
    assert_close(y, y_ref)
    assert_close(updates["batch_stats"]["net_state"], state_ref)
    assert_close(model.apply(variables, x, use_running_average=True, deterministic=True),
                 net.apply(params, state, x)[0])


@pytest.mark.slow
def test_jit_grad_and_vmap(tiny_init, rng):
    """nnx.jit, jax.jit over split/merge, nnx.grad and nnx.vmap (over inputs, and over an ensemble of modules)
    give what the pure net gives. (Everything runs under a jit: outside one, JAX compiles each operation.)"""
    net, params, state = tiny_init
    evaluate = jax.jit(lambda p, s, x: net.apply(p, s, x)[0])
    x = jnp.asarray(rng.random((4, 8, 8, 1)), jnp.float32)
    module = cnnx.from_net(net, params, state)
    module.eval()
    y_ref = evaluate(params, state, x)

    assert_close(nnx.jit(lambda m, x: m(x))(module, x), y_ref)
    graphdef, variables = nnx.split(module)
    assert_close(jax.jit(lambda v, x: nnx.merge(graphdef, v)(x))(variables, x), y_ref)

    grads = nnx.jit(nnx.grad(lambda m: jnp.sum(m(x) ** 2)))(module)
    assert_close(param_grads(grads), jax.jit(jax.grad(lambda p: jnp.sum(evaluate(p, state, x) ** 2)))(params))

    xs = jnp.stack([x, 2 * x, 3 * x])
    ys = nnx.jit(nnx.vmap(lambda m, x: m(x), in_axes=(None, 0)))(module, xs)
    assert_close(ys, jnp.stack([evaluate(params, state, xi) for xi in xs]))

    @nnx.jit
    @nnx.split_rngs(splits=3)
    @nnx.vmap(in_axes=0, out_axes=0)
    def ensemble(rngs):
        return cnnx.NetModule(net, rngs=rngs, use_running_average=True, deterministic=True)

    models = ensemble(nnx.Rngs(0))
    ys = nnx.jit(nnx.vmap(lambda m, x: m(x), in_axes=(0, None)))(models, x)
    _, stacked, stacked_state = cnnx.to_net(models)
    for i in range(3):
        assert_close(ys[i], evaluate(*jax.tree.map(lambda a: a[i], (stacked, stacked_state)), x))
    assert not np.allclose(ys[0], ys[1])


def test_orbax_round_trip(tiny_init, rng, tmp_path):
    """nnx.state saved with orbax restores into a freshly made module: identical arrays and outputs."""
    net, params, state = tiny_init
    x = jnp.asarray(rng.random((4, 8, 8, 1)), jnp.float32)
    module = cnnx.from_net(net, params, state, rngs=nnx.Rngs(3))
    module(x)  # statistics and the dropout stream move on
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(tmp_path / "model", nnx.state(module))
    checkpointer.wait_until_finished()

    abstract = nnx.eval_shape(lambda: cnnx.NetModule(net, rngs=nnx.Rngs(9)))
    graphdef, template = nnx.split(abstract)
    restored = nnx.merge(graphdef, checkpointer.restore(tmp_path / "model", template))
    checkpointer.close()

    def raw(a):  # a key's bits, or the array
        return jax.random.key_data(a) if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key) else a

    jax.tree.map(lambda a, b: np.testing.assert_array_equal(raw(a), raw(b)),
                 nnx.to_pure_dict(nnx.state(module)), nnx.to_pure_dict(nnx.state(restored)))
    module.eval()
    restored.eval()
    np.testing.assert_array_equal(restored(x), module(x))


@pytest.mark.slow
def test_from_net_runs_branched_and_imported_nets(rng):
    """A Graph (Caffe's GoogLeNet inception block, read from prototxt) becomes a module like any net."""
    from caffe_nets import GOOGLENET_BLOCK
    from conftest import random_params

    from jaxcnn import caffe

    net = caffe.parse_prototxt(GOOGLENET_BLOCK)
    params, state = random_params(net, 1)
    module = cnnx.from_net(net, params, state)
    check_against_pure(module, jnp.asarray(rng.standard_normal((2, 9, 9, 6)), jnp.float32))
