"""Named layers and nets: init/apply shape agreement, LayerError messages, multipliers and fillers."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn import (
    LRN,
    AvgPool,
    BatchNorm,
    ContrastNorm,
    Conv,
    Dense,
    Dropout,
    Flatten,
    LayerError,
    Local,
    MaxPool,
    Net,
    ReLU,
    Scale,
    Sigmoid,
    Tanh,
    fillers,
    ops,
)

KEY = jax.random.key(0)

W = 0.5  # a constant filler: these tests are about shapes, and random fillers cost a compile per shape
LAYERS = [  # layer, per-example input shape, expected output shape
    (Conv("conv", 5, (3, 2), stride=(2, 1), padding=((1, 0), (2, 1)), dilation=(1, 2), w_init=W), (9, 8, 3), (4, 9, 5)),
    (Conv("gconv", 6, 3, padding="SAME", groups=3, bias=False, w_init=W), (7, 5, 6), (7, 5, 6)),
    (Local("local", 4, 3, stride=2, padding=1, w_init=W), (7, 6, 3), (4, 3, 4)),
    (Local("local_f", 2, (2, 3), bias="filter", w_init=W), (5, 6, 2), (4, 4, 2)),
    (Local("local_n", 2, 2, bias=None, w_init=W), (3, 4, 2), (2, 3, 2)),
    (Dense("fc", 7, w_init=W), (11,), (7,)),
    (MaxPool("maxpool", 3, 2, ceil_mode=True), (32, 31, 2), (16, 15, 2)),
    (AvgPool("avgpool", (3, 2), (2, 3), padding=1, ceil_mode=True, count_pad=False), (8, 7, 2), (5, 3, 2)),
    (LRN("lrn", 3, region="within"), (5, 4, 3), (5, 4, 3)),
    (ContrastNorm("cnorm", 3), (5, 4, 3), (5, 4, 3)),
    (BatchNorm("bn"), (5, 4, 3), (5, 4, 3)),
    (Scale("scale"), (5, 4, 3), (5, 4, 3)),
    (ReLU("relu"), (5, 4, 3), (5, 4, 3)),
    (Tanh("tanh"), (6,), (6,)),
    (Sigmoid("sigmoid"), (2, 3, 1), (2, 3, 1)),
    (Dropout("drop", 0.5), (6,), (6,)),
    (Flatten("flatten"), (3, 4, 5), (60,)),
]


def _shapes(tree):
    return jax.tree_util.tree_map(lambda a: a.shape, tree)


@pytest.mark.parametrize("layer, in_shape, out_shape", LAYERS, ids=[l[0].name for l in LAYERS])
def test_init_shape_equals_apply_shape(layer, in_shape, out_shape):
    shape, params, state = layer.init(KEY, in_shape)
    assert shape == out_shape
    x = np.random.default_rng(0).standard_normal((2, *in_shape)).astype(np.float32)
    for train in (False, True):
        y, new_state = layer.apply(params, state, x, train=train, rng=jax.random.key(2))
        assert y.shape == (2, *out_shape)
        assert _shapes(new_state) == _shapes(state)


def abstract_init(layer, in_shape):
    """(params, state) of layer.init as ShapeDtypeStructs, without running the fillers."""
    return jax.eval_shape(lambda key: layer.init(key, in_shape)[1:], KEY)


def trace_apply(layer, in_shape, x_shape):
    """Trace layer.apply on an x of x_shape with abstract params: the shape checks run, no arrays are made."""
    params, state = abstract_init(layer, in_shape)
    x = jax.ShapeDtypeStruct(x_shape, jnp.float32)
    return jax.eval_shape(lambda p, s, x: layer.apply(p, s, x), params, state, x)


def test_parameter_shapes():
    def shapes(layer, in_shape):
        return _shapes(abstract_init(layer, in_shape)[0])

    assert shapes(Conv("c", 8, (5, 3), groups=2), (9, 9, 6)) == {"w": (5, 3, 3, 8), "b": (8,)}
    assert shapes(Local("l", 4, 3, stride=2, padding=1), (7, 6, 3)) == {"w": (4, 3, 3, 3, 3, 4), "b": (4, 3, 4)}
    assert shapes(Local("l", 4, 3, bias="filter"), (5, 5, 2)) == {"w": (3, 3, 3, 3, 2, 4), "b": (4,)}
    assert shapes(Local("l", 4, 3, bias=None), (5, 5, 2)) == {"w": (3, 3, 3, 3, 2, 4)}
    assert shapes(Dense("d", 3, bias=False), (10,)) == {"w": (10, 3)}
    assert shapes(Scale("s", bias=False), (2, 2, 5)) == {"gamma": (5,)}
    assert _shapes(abstract_init(BatchNorm("bn"), (2, 2, 5))[1]) == {"mean": (5,), "var": (5,), "count": ()}


@pytest.mark.slow
def test_layers_apply_their_ops():
    """A layer's apply is its op on its own parameters (the ops themselves are tested against references)."""
    x = np.random.default_rng(0).standard_normal((2, 7, 6, 4)).astype(np.float32)
    conv = Conv("c", 6, 3, stride=2, padding=1, groups=2, b_init=0.5)
    _, p, s = conv.init(KEY, (7, 6, 4))
    np.testing.assert_array_equal(p["b"], 0.5)
    np.testing.assert_allclose(conv.apply(p, s, x)[0], ops.conv2d(x, p["w"], p["b"], stride=2, padding=1, groups=2))


def test_batch_norm_keeps_caffes_normalised_running_average():
    """After batches b1, b2, b3 with momentum m the statistics are (m^2 b1 + m b2 + b3) / (m^2 + m + 1)."""
    rng = np.random.default_rng(1)
    bn, m = BatchNorm("bn", momentum=0.5), 0.5
    _, p, s = bn.init(KEY, (3, 2, 4))
    batches = [rng.normal(k, 1 + k, (5, 3, 2, 4)).astype(np.float32) for k in range(3)]
    for k, x in enumerate(batches):
        y, s = bn.apply(p, s, x, train=True)
        np.testing.assert_allclose(y, ops.batch_norm(x, s["mean"], s["var"], train=True)[0], rtol=1e-6)
        weights = m ** np.arange(k, -1, -1.0)
        means = [b.mean(axis=(0, 1, 2)) for b in batches[:k + 1]]
        variances = [b.var(axis=(0, 1, 2), ddof=1) for b in batches[:k + 1]]  # unbiased, as Caffe
        np.testing.assert_allclose(s["mean"], np.average(means, axis=0, weights=weights), rtol=1e-5)
        np.testing.assert_allclose(s["var"], np.average(variances, axis=0, weights=weights), rtol=1e-5)
        np.testing.assert_allclose(s["count"], weights.sum())
    y, s_eval = bn.apply(p, s, batches[0], train=False)  # evaluation: the running statistics, unchanged
    np.testing.assert_allclose(y, (batches[0] - s["mean"]) / np.sqrt(s["var"] + bn.eps), rtol=1e-5, atol=1e-5)
    jax.tree.map(np.testing.assert_array_equal, s_eval, s)


# ---------------------------------------------------------------------------------------------- errors: config, init

CONFIG_ERRORS = [  # a layer made from its config alone, expected message (regex)
    (lambda: Conv("conv2", 10, 3, groups=3), r"^conv2 \(Conv\): groups=3 does not divide 10 output channels$"),
    (lambda: Conv("conv2", 4, 3, groups=0), r"^conv2 \(Conv\): groups must be a positive int, got 0$"),
    (lambda: Conv("conv1", 0, 3), r"^conv1 \(Conv\): features must be a positive int, got 0$"),
    (lambda: Dense("ip1", -3), r"^ip1 \(Dense\): features must be a positive int, got -3$"),
    (lambda: Local("local3", 0, 3), r"^local3 \(Local\): features must be a positive int, got 0$"),
    (lambda: Conv("conv1", 4, 3, padding="FULL"),
     r"^conv1 \(Conv\): padding must be 'VALID', 'SAME', an int.*got 'FULL'$"),
    (lambda: Conv("conv1", 4, 3, padding=(1, 2, 3)), r"^conv1 \(Conv\): padding must be .* got \(1, 2, 3\)$"),
    (lambda: Conv("conv1", 4, 3, padding=-1), r"^conv1 \(Conv\): padding must be .* got -1$"),
    (lambda: AvgPool("pool", 2, padding=((1, 0), (0, 1.5))),
     r"^pool \(AvgPool\): padding must be .*got \(\(1, 0\), \(0, 1\.5\)\)$"),
    (lambda: Conv("conv1", 4, (3, 0)), r"^conv1 \(Conv\): kernel must be positive ints, got \(3, 0\)$"),
    (lambda: Conv("conv1", 4, 3, stride=(1, 2, 3)),
     r"^conv1 \(Conv\): stride must be an int or a pair \(h, w\), got \(1, 2, 3\)$"),
    (lambda: Local("local3", 64, 3, bias="shared"),
     r"^local3 \(Local\): bias must be 'position', 'filter' or None, got 'shared'$"),
    (lambda: Conv("conv1", 4, 3, w_init="xavir"),
     r"^conv1 \(Conv\): unknown filler 'xavir': use one of \['glorot', 'he', 'msra', 'xavier'\]"),
    (lambda: Dense("fc", 4, b_init="zeros"), r"^fc \(Dense\): unknown filler 'zeros'"),
    (lambda: Dropout("drop6", 1.5), r"^drop6 \(Dropout\): rate must be in \[0, 1\), got 1\.5$"),
    (lambda: Dropout("drop6", -0.1), r"^drop6 \(Dropout\): rate must be in \[0, 1\), got -0\.1$"),
    (lambda: LRN("norm1", region="spatial"),
     r"^norm1 \(LRN\): lrn region must be 'across' or 'within', got 'spatial'$"),
    (lambda: LRN("norm1", size=4), r"^norm1 \(LRN\): size must be odd .*got 4$"),
    (lambda: ContrastNorm("cnorm1", size=2), r"^cnorm1 \(ContrastNorm\): size must be odd .*got 2$"),
    (lambda: BatchNorm("bn", momentum=1.0), r"^bn \(BatchNorm\): momentum must be in \[0, 1\), got 1\.0$"),
    (lambda: ReLU(""), r"^a layer name must be a non-empty string, got ''$"),
]


@pytest.mark.parametrize("make, message", CONFIG_ERRORS)
def test_config_errors_name_the_layer_when_it_is_made(make, message):
    with pytest.raises(LayerError, match=message):
        make()


def test_config_is_normalised_once():
    conv = Conv("c", 4, [3, 2], stride=[2, 1], padding=[1, 0], dilation=2)
    assert (conv.kernel, conv.stride, conv.padding, conv.dilation) == ((3, 2), (2, 1), ((1, 1), (0, 0)), (2, 2))
    assert hash(conv) == hash(Conv("c", 4, (3, 2), stride=(2, 1), padding=((1, 1), (0, 0)), dilation=(2, 2)))
    assert MaxPool("p", [3, 3]).stride == (3, 3) and MaxPool("p", 2, padding="same").padding == "SAME"


INIT_ERRORS = [  # layer, per-example input shape, expected message (regex)
    (Conv("conv2", 12, 3, groups=3), (8, 8, 20), r"^conv2 \(Conv\): groups=3 does not divide 20 input channels$"),
    (Conv("conv1", 4, 7), (5, 6, 1),
     r"^conv1 \(Conv\): window 7x7 is larger than the padded input 5x6 \(input 5x6\)$"),
    (Conv("conv1", 4, 3, dilation=3, padding=((1, 0), (0, 0))), (5, 9, 1),
     r"^conv1 \(Conv\): window 7x7 is larger than the padded input 6x9 \(input 5x9\)$"),
    (Local("local3", 4, 5, padding=1), (2, 8, 3),
     r"^local3 \(Local\): window 5x5 is larger than the padded input 4x10"),
    (MaxPool("pool1", 3, 2), (2, 5, 1), r"^pool1 \(MaxPool\): window 3x3 is larger than the padded input 2x5"),
    (Conv("conv1", 20, 5), (1, 28, 28, 1),
     r"^conv1 \(Conv\): expected a per-example input shape \(H, W, C\), got \(1, 28, 28, 1\)$"),
    (Conv("conv1", 20, 5), (28, 28),
     r"^conv1 \(Conv\): expected a per-example input shape \(H, W, C\), got \(28, 28\)$"),
    (MaxPool("pool1", 2), (28, 28), r"^pool1 \(MaxPool\): expected a per-example input shape \(H, W, C\)"),
    (MaxPool("pool", 2, padding=2), (8, 8, 1),
     r"^pool \(MaxPool\): pooling padding .* must be smaller than the kernel 2x2$"),
    (Dense("ip1", 500), (4, 4, 50),
     r"^ip1 \(Dense\): expected a per-example input shape \(features,\); add a Flatten layer before it, "
     r"got \(4, 4, 50\)$"),
]


@pytest.mark.parametrize("layer, in_shape, message", INIT_ERRORS)
def test_init_errors_name_the_layer(layer, in_shape, message):
    with pytest.raises(LayerError, match=message):
        layer.init(KEY, in_shape)


def test_duplicate_layer_names():
    with pytest.raises(LayerError, match=r"^mynet: layer name 'conv1' is used twice$"):
        Net([Conv("conv1", 4, 3), ReLU("relu"), Conv("conv1", 4, 3)], (8, 8, 1), "mynet")


def test_net_lookup_and_missing_input_shape():
    net = Net([Conv("conv1", 4, 3), ReLU("relu")], name="tiny")
    assert net["relu"] is net.layers[1]
    with pytest.raises(KeyError, match=r"tiny has no layer 'fc'; layers: \['conv1', 'relu'\]"):
        net["fc"]
    with pytest.raises(ValueError, match=r"^tiny: the net has no default input shape: give input_shape=\(H, W, C\)$"):
        net.init(KEY)


# ---------------------------------------------------------------------------------------------- errors at apply

APPLY_ERRORS = [  # layer, per-example shape it is built for, batched input shape, expected message (regex)
    (Conv("conv1", 8, 3), (6, 6, 3), (2, 6, 6, 4),
     r"^conv1 \(Conv\): parameter 'w' has shape \(3, 3, 3, 8\), but on a per-example input \(6, 6, 4\) the "
     r"layer needs \(3, 3, 4, 8\)"),
    (Conv("conv1", 8, 3), (8, 8, 3), (2, 6, 6, 4), r"^conv1 \(Conv\): parameter 'w' has shape \(3, 3, 3, 8\)"),
    (Local("local3", 8, 3), (6, 6, 3), (2, 6, 6, 2),
     r"^local3 \(Local\): parameter 'w' has shape \(4, 4, 3, 3, 3, 8\), but on a per-example input "
     r"\(6, 6, 2\) the layer needs \(4, 4, 3, 3, 2, 8\)"),
    (Local("local3", 2, 3), (6, 6, 1), (1, 7, 7, 1),
     r"^local3 \(Local\): parameter 'b' has shape \(4, 4, 2\), but on a per-example input \(7, 7, 1\) the "
     r"layer needs \(5, 5, 2\)"),
    (Scale("scale_conv1"), (6, 6, 3), (2, 6, 6, 5), r"^scale_conv1 \(Scale\): input has 5 channels, gamma has 3"),
    (Conv("conv1", 8, 3), (6, 6, 3), (6, 6, 3),
     r"^conv1 \(Conv\): expected a 4-d batched input, got shape \(6, 6, 3\)"),
    (Dense("ip1", 8), (12,), (2, 3, 4), r"^ip1 \(Dense\): expected a 2-d batched input, got shape \(2, 3, 4\)"),
    (Dense("ip1", 8), (12,), (2, 10), r"^ip1 \(Dense\): input has 10 features but the layer was built for 12 "),
]


@pytest.mark.parametrize("layer, in_shape, x_shape, message", APPLY_ERRORS)
def test_apply_errors_name_the_layer(layer, in_shape, x_shape, message):
    # no "$": jax.eval_shape appends a note about filtered traceback frames to the message
    with pytest.raises(LayerError, match=message):
        trace_apply(layer, in_shape, x_shape)


def test_missing_or_misshapen_params_at_apply():
    with pytest.raises(LayerError, match=r"^conv1 \(Conv\): params have none, the layer needs \['b', 'w'\]$"):
        Conv("conv1", 8, 3).apply({}, {}, jnp.zeros((1, 6, 6, 3)))
    with pytest.raises(LayerError, match=r"^ip1 \(Dense\): params have \['w'\], the layer needs \['b', 'w'\]$"):
        Dense("ip1", 8).apply({"w": jnp.zeros((4, 8))}, {}, jnp.zeros((1, 4)))
    w = jnp.zeros((5, 5, 3, 8))  # a 5x5 kernel given to a 3x3 layer: refused, not run as a 5x5 convolution
    with pytest.raises(LayerError, match=r"^conv1 \(Conv\): parameter 'w' has shape \(5, 5, 3, 8\), but on a "
                                         r"per-example input \(6, 6, 3\) the layer needs \(3, 3, 3, 8\)$"):
        Conv("conv1", 8, 3).apply({"w": w, "b": jnp.zeros(8)}, {}, jnp.zeros((1, 6, 6, 3)))


@pytest.mark.parametrize("x, message", [
    (jnp.zeros((0, 6, 6, 3)), r"empty batch: input shape \(0, 6, 6, 3\)"),
    (jnp.zeros((2, 6, 6, 3), jnp.int32), r"expected a floating-point input, got int32"),
    (jnp.zeros((2, 6, 6, 3), bool), r"expected a floating-point input, got bool"),
])
def test_bad_inputs_are_layer_errors(x, message):
    layer = Conv("conv1", 4, 3)
    _, params, state = layer.init(KEY, (6, 6, 3))
    with pytest.raises(LayerError, match=r"^conv1 \(Conv\): " + message):
        layer.apply(params, state, x)


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_other_float_inputs_are_cast_to_the_parameters_dtype(dtype):
    layer = Conv("conv1", 4, 3)
    _, params, state = layer.init(KEY, (6, 6, 3))
    x = np.random.default_rng(0).standard_normal((2, 6, 6, 3)).astype(np.float32)
    y, _ = layer.apply(params, state, jnp.asarray(x, dtype))
    assert y.dtype == jnp.float32
    expected, _ = layer.apply(params, state, np.asarray(jnp.asarray(x, dtype).astype(jnp.float32)))
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)  # the input rounded to 16 bits, then float32


def test_a_non_finite_batch_leaves_batch_norm_statistics_alone():
    bn = BatchNorm("bn")
    _, p, s = bn.init(KEY, (3, 3, 2))
    x = np.random.default_rng(0).standard_normal((4, 3, 3, 2)).astype(np.float32)
    _, s1 = bn.apply(p, s, x, train=True)
    x[1, 2, 0, 1] = np.nan
    _, s2 = bn.apply(p, s1, x, train=True)
    jax.tree.map(np.testing.assert_array_equal, s2, s1)
    x[1, 2, 0, 1] = np.inf
    _, s3 = jax.jit(lambda s, x: bn.apply(p, s, x, train=True))(s1, x)
    jax.tree.map(np.testing.assert_array_equal, s3, s1)


@pytest.mark.slow
def test_net_on_other_spatial_size_names_the_dense_layer(lenet_caffe_init):
    net, params, state = lenet_caffe_init
    with pytest.raises(LayerError, match=r"^ip1 \(Dense\): input has 1250 features but the layer was built for 800 "
                                         r"\(is the net's input the size it was built for\?\)$"):
        net.apply(params, state, jnp.zeros((2, 32, 32, 1)))


@pytest.mark.slow
def test_dropout_needs_rng_in_training():
    net = Net([Flatten("flatten"), Dense("fc6", 8), Dropout("drop6", 0.5)], (2, 2, 1), "drop")
    _, params, state = net.init(KEY)
    x = jnp.ones((3, 2, 2, 1))
    with pytest.raises(LayerError, match=r"^drop6 \(Dropout\): dropout in training needs an rng key$"):
        net.apply(params, state, x, train=True)
    y_eval, _ = net.apply(params, state, x)
    y_train, _ = net.apply(params, state, x, train=True, rng=jax.random.key(5))
    kept = np.asarray(y_train) != 0
    np.testing.assert_allclose(np.asarray(y_train)[kept], 2 * np.asarray(y_eval)[kept], rtol=1e-6)


# ---------------------------------------------------------------------------------------------- nets

def test_net_init_shapes_match_apply_and_eval_shape(lenet_caffe_init):
    net, params, state = lenet_caffe_init
    rows = net.shapes()
    assert rows[-1].out_shape == (10,)
    for row in rows:
        assert _shapes(row.params) == _shapes(params.get(row.layer.name, {}))
        assert _shapes(row.state) == _shapes(state.get(row.layer.name, {}))
    x = jnp.ones((2, 28, 28, 1))
    y = x
    for row in rows:  # every layer's apply output is the shape its init (and eval_shape) reported
        y, _ = row.layer.apply(params.get(row.layer.name, {}), state.get(row.layer.name, {}), y, train=True)
        assert y.shape == (2, *row.out_shape)


def test_compiled_ops_name_their_layer(lenet_caffe_init):
    net, params, state = lenet_caffe_init
    x = jnp.zeros((2, 28, 28, 1))
    hlo = jax.jit(lambda p: net.apply(p, state, x, train=True)[0]).lower(params).compile().as_text()
    for layer in net.layers:
        if layer.name != "flatten":  # a reshape, which compiles to no op
            assert f"/{layer.name}/" in hlo, layer.name


def test_lenet_caffe_multipliers(lenet_caffe_init):
    net, params, _ = lenet_caffe_init
    lr, decay = net.multipliers(params)
    assert jax.tree_util.tree_structure(lr) == jax.tree_util.tree_structure(params)
    for name in ("conv1", "conv2", "ip1", "ip2"):
        assert lr[name] == {"w": 1.0, "b": 2.0}, name
        assert decay[name] == {"w": 1.0, "b": 1.0}, name
    assert lr["scale_conv1"] == {"gamma": 1.0, "beta": 1.0}
    assert "bn_conv1" not in lr  # BatchNorm statistics are state, not trained parameters


@pytest.mark.slow
def test_net_train_updates_batchnorm_state_only_in_training(lenet_caffe_init):
    net, params, state = lenet_caffe_init
    x = np.random.default_rng(0).random((4, 28, 28, 1), np.float32)
    _, eval_state = net.apply(params, state, x)
    _, train_state = net.apply(params, state, x, train=True)
    for name in ("bn_conv1", "bn_conv2"):
        np.testing.assert_array_equal(eval_state[name]["mean"], state[name]["mean"])
        assert not np.allclose(train_state[name]["mean"], state[name]["mean"])


# ---------------------------------------------------------------------------------------------- fillers

def _init_w(layer, in_shape):
    return np.asarray(layer.init(KEY, in_shape)[1]["w"], np.float64)


def _check_uniform(w, bound):
    assert np.abs(w).max() <= bound
    assert np.abs(w).max() > 0.99 * bound  # the bound is the one used, not a smaller one
    assert np.std(w) == pytest.approx(bound / math.sqrt(3), rel=0.02)


def test_xavier_conv_fan_in_counts_groups():
    w = _init_w(Conv("conv2", 256, 5, groups=2, w_init="xavier"), (5, 5, 96))  # AlexNet conv2: (5, 5, 48, 256)
    assert w.shape == (5, 5, 48, 256)
    _check_uniform(w, math.sqrt(3 / (5 * 5 * 96 / 2)))


def test_xavier_dense():
    _check_uniform(_init_w(Dense("ip1", 500, w_init="xavier"), (800,)), math.sqrt(3 / 800))


@pytest.mark.slow
def test_xavier_local_fan_in_excludes_positions():
    w = _init_w(Local("local3", 32, 3, padding=1, w_init="xavier"), (8, 8, 16))
    assert w.shape == (8, 8, 3, 3, 16, 32)
    _check_uniform(w, math.sqrt(3 / (3 * 3 * 16)))


def test_msra_std():
    w = _init_w(Conv("conv1_1", 256, 3, w_init="msra"), (3, 3, 64))
    assert np.std(w) == pytest.approx(math.sqrt(2 / (3 * 3 * 64)), rel=0.02)
    assert abs(np.mean(w)) < 0.01 * np.std(w)
    assert np.abs(w).max() > 3.5 * np.std(w)  # a normal, not a uniform or truncated one


@pytest.mark.slow
def test_glorot_bound():
    _check_uniform(_init_w(Dense("fc1", 120, w_init="glorot"), (400,)), math.sqrt(6 / (400 + 120)))
    # conv: Keras' fans are KH*KW*C in, KH*KW*O out
    _check_uniform(_init_w(Conv("conv2", 64, 5, w_init="glorot"), (5, 5, 32)), math.sqrt(6 / (25 * 32 + 25 * 64)))


@pytest.mark.slow
def test_gaussian_and_constant_fillers():
    w = _init_w(Dense("fc10", 300, w_init=fillers.gaussian(0.04), b_init=0.1), (500,))
    assert np.std(w) == pytest.approx(0.04, rel=0.02)
    _, p, _ = Dense("fc10", 3, b_init=0.1).init(KEY, (4,))
    np.testing.assert_array_equal(p["b"], np.float32(0.1))
    np.testing.assert_array_equal(Conv("c", 3, 1).init(KEY, (2, 2, 1))[1]["b"], 0.0)
