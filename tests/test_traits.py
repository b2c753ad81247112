"""Every layer class's traits (jaxcnn.layers.base) checked against what its forward does.

The classes are found by walking the Layer class tree over every module of jaxcnn.layers, so a new layer class
without examples here fails test_every_layer_class_has_examples. Each trait is checked on the examples:
window (output size, which input pixels each output reads, a shift by the stride shifting the output by one),
elementwise (commutes with reshaping and permuting the elements), stochastic and batch_statistics (what
train=True changes), affine and absorbing (the per-channel map in evaluation, and a layer taking one of its
output into its params), as_sliding (its converted form equals it on every window of a larger map), probe_input
(the params it makes), inplace and multi_output.
"""
import functools
import importlib
import math
import pkgutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcnn
from jaxcnn import layers as L
from jaxcnn.layers import POINTWISE, Layer, LayerError

TOL = 1e-5  # relative to the largest output magnitude: rounding, and batch elements computed in different lanes

EXAMPLES = [  # (layer, per-example input shape)
    (L.Conv("conv", 4, 3), (9, 9, 2)),
    (L.Conv("conv_strided", 4, (3, 2), stride=2, padding=1), (9, 10, 2)),
    (L.Conv("conv_same", 4, 3, padding="SAME", dilation=2, groups=2), (10, 9, 2)),
    (L.Local("local", 3, 3, stride=2, padding=1), (7, 7, 2)),
    (L.Local("local_filter_bias", 2, 2, bias="filter"), (4, 5, 2)),
    (L.Dense("dense", 5), (12,)),
    (L.MaxPool("pool", 2), (8, 8, 2)),
    (L.MaxPool("pool_ceil", 3, 2, ceil_mode=True), (10, 10, 2)),  # the last window overhangs
    (L.MaxPool("pool_clip", 2, 3, ceil_mode=True, clip="padded"), (10, 11, 2)),
    (L.AvgPool("avg", 3, 2, padding=1, ceil_mode=True, count_pad=False), (9, 9, 2)),
    (L.AvgPool("avg_count_pad", 3, 1, padding=1), (6, 6, 2)),
    (L.GlobalMaxPool("gmax"), (5, 4, 3)),
    (L.GlobalAvgPool("gavg"), (5, 4, 3)),
    (L.LRN("lrn", 3, alpha=1.0), (5, 5, 6)),
    (L.LRN("lrn_within", 3, alpha=1.0, region="within"), (8, 8, 2)),
    (L.ContrastNorm("cnorm", 3, alpha=1.0), (11, 11, 2)),
    (L.BatchNorm("bn"), (5, 5, 3)),
    (L.BatchNorm("bn_frozen", use_global_stats=True), (5, 5, 3)),
    (L.Scale("scale"), (5, 5, 3)),
    (L.Bias("bias"), (5, 5, 3)),
    (L.ReLU("relu"), (5, 5, 3)),
    (L.ReLU("leaky", 0.1), (5, 5, 3)),
    (L.Tanh("tanh"), (5, 5, 3)),
    (L.Sigmoid("sigmoid"), (5, 5, 3)),
    (L.AbsVal("abs"), (5, 5, 3)),
    (L.ELU("elu", 0.7), (5, 5, 3)),
    (L.Dropout("dropout", 0.3), (5, 5, 3)),
    (L.PReLU("prelu"), (5, 5, 3)),
    (L.PReLU("prelu_shared", channel_shared=True), (5, 5, 3)),
    (L.Softmax("softmax"), (5, 5, 3)),
    (L.Softmax("softmax_h", axis=0), (5, 5, 3)),
    (L.Flatten("flatten"), (3, 2, 4)),
    (L.Concat("concat"), ((5, 5, 2), (5, 5, 3))),
    (L.Concat("concat_w", axis=1), ((5, 3, 2), (5, 4, 2))),
    (L.Eltwise("sum", coeffs=(1, -0.5)), ((5, 5, 2), (5, 5, 2))),
    (L.Eltwise("max", "max"), ((5, 5, 2), (5, 5, 2), (5, 5, 2))),
    (L.Slice("slice", points=(1,)), (5, 5, 3)),
    (L.Slice("slice_h", axis=0, parts=5), (5, 5, 3)),
    (L.Split("split", 3), (5, 5, 3)),
]


def _several(shape) -> bool:
    return isinstance(shape[0], tuple)


def _first(shape):
    return shape[0] if _several(shape) else shape


def _examples(keep):
    """pytest parameters: the examples `keep(layer, shape)` selects, with the layers' names as ids."""
    return [pytest.param(layer, shape, id=layer.name) for layer, shape in EXAMPLES if keep(layer, shape)]


ALL = _examples(lambda layer, shape: True)
SLIDING = _examples(lambda layer, shape: len(_first(shape)) == 3 and layer.window(shape) is not None)
ELEMENTWISE = _examples(lambda layer, shape: layer.elementwise)
ONE_INPUT = _examples(lambda layer, shape: not _several(shape))
AFFINE = _examples(lambda layer, shape: layer.affine)
ABSORBING = _examples(lambda layer, shape: not _several(shape) and layer.absorbing() is not None)
WITH_PARAMS = _examples(lambda layer, shape: not _several(shape) and layer.abstract_init(shape)[1])


def layer_classes() -> set:
    """Every public Layer subclass defined in a module of jaxcnn.layers."""
    for module in pkgutil.iter_modules(L.__path__):
        importlib.import_module(f"jaxcnn.layers.{module.name}")
    found, todo = set(), [Layer]
    while todo:
        for cls in todo.pop().__subclasses__():
            todo.append(cls)
            if cls.__module__.startswith("jaxcnn.layers.") and not cls.__name__.startswith("_"):
                found.add(cls)
    return found


def test_every_layer_class_has_examples():
    classes = layer_classes()
    assert len(classes) >= 25  # the walk finds them (25 when this test was written)
    assert classes == {type(layer) for layer, _ in EXAMPLES}, "give each layer class an example in EXAMPLES"
    for cls in classes:  # importable as the README shows, from jaxcnn.layers and from jaxcnn
        assert getattr(L, cls.__name__) is cls and getattr(jaxcnn, cls.__name__) is cls


# -- helpers ----------------------------------------------------------------------------------------------------
def made(layer, shape, seed=0):
    """(params, state) of init's shapes, random: params N(0, 0.3^2), each channel different (no fillers run);
    state |N(0, 1)| + 0.5, as statistics (a positive variance) may be."""
    _, params, state = layer.abstract_init(shape)
    rng = np.random.default_rng(seed)
    params = jax.tree.map(lambda a: jnp.asarray(0.3 * rng.standard_normal(a.shape), a.dtype), params)
    state = jax.tree.map(lambda a: jnp.asarray(np.abs(rng.standard_normal(a.shape)) + 0.5, a.dtype), state)
    return params, state


def batch(shape, n, seed=1):
    """n random examples of a per-example shape (a tuple of arrays for several inputs)."""
    rng = np.random.default_rng(seed)
    if _several(shape):
        return tuple(jnp.asarray(rng.standard_normal((n, *s)), jnp.float32) for s in shape)
    return jnp.asarray(rng.standard_normal((n, *shape)), jnp.float32)


@functools.cache
def _compiled(layer, train):
    return jax.jit(functools.partial(layer.apply, train=train))


def run(layer, params, state, x, train=False, rng=None):
    """layer.apply compiled as one program -> (outputs as a tuple of arrays, new state)."""
    y, new_state = _compiled(layer, train)(params, state, x, rng=rng)
    return (tuple(y) if layer.multi_output else (y,)), new_state


def outputs(layer, params, state, x) -> tuple:
    """The layer's outputs in evaluation, as a tuple of arrays (one for a single-output layer)."""
    return run(layer, params, state, x)[0]


def each(x, fn):
    return tuple(map(fn, x)) if isinstance(x, tuple) else fn(x)


# -- window -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("layer, shape", SLIDING)
def test_window_gives_the_output_size(layer, shape):
    (kh, kw), (sh, sw), ((top, bottom), (left, right)) = layer.window(shape)
    (h, w, _), out = _first(shape), layer.abstract_init(shape)[0]
    for o in out if layer.multi_output else (out,):
        assert o[:2] == ((h + top + bottom - kh) // sh + 1, (w + left + right - kw) // sw + 1)


@pytest.mark.parametrize("layer, shape", SLIDING)
def test_window_bounds_what_each_output_reads(layer, shape):
    """Changing one input pixel changes only the outputs whose declared window covers it."""
    (kh, kw), (sh, sw), ((top, _), (left, _)) = layer.window(shape)
    h, w, _ = _first(shape)
    params, state = made(layer, shape)
    x = batch(shape, 1)
    bump = np.zeros((h * w, h, w, 1), np.float32)
    bump[np.arange(h * w), np.arange(h * w) // w, np.arange(h * w) % w] = 1.0
    # example 0 as it is, then one per pixel changed (by a different amount per channel: Softmax ignores a shift)
    xs = each(x, lambda v: jnp.concatenate([v, v + bump * (3.0 + np.arange(v.shape[-1], dtype=np.float32))]))
    seen = False
    for y in outputs(layer, params, state, xs):
        y = np.asarray(y)
        changed = (np.abs(y[1:] - y[:1]) > TOL * np.abs(y).max()).any(-1)  # (pixels, OH, OW)
        i, j = np.arange(y.shape[1])[:, None], np.arange(y.shape[2])[None, :]
        for p in range(h * w):
            r, c = divmod(p, w)
            inside = (i * sh - top <= r) & (r < i * sh - top + kh) & (j * sw - left <= c) & (c < j * sw - left + kw)
            assert not (changed[p] & ~inside).any(), f"pixel {(r, c)} changes outputs outside its windows"
        seen |= changed.any()
    assert seen, "no output depends on the input"


@pytest.mark.parametrize("layer, shape", SLIDING)
def test_window_slides_by_its_stride(layer, shape):
    """The input shifted by the stride shifts the output by one position, away from the borders."""
    (kh, kw), (sh, sw), ((top, _), (left, _)) = layer.window(shape)
    params, state = made(layer, shape)
    x = batch(shape, 2)
    ys = outputs(layer, params, state, x)
    shifted = outputs(layer, params, state, each(x, lambda v: v[:, sh:, sw:]))
    h, w, _ = _first(shape)

    def inside(i, j, h, w):  # whether output (i, j)'s window lies within an h x w input
        return (i * sh - top >= 0) & (i * sh - top + kh <= h) & (j * sw - left >= 0) & (j * sw - left + kw <= w)

    for y, z in zip(ys, shifted):
        i, j = np.meshgrid(np.arange(z.shape[1]), np.arange(z.shape[2]), indexing="ij")
        keep = inside(i, j, h - sh, w - sw) & inside(i + 1, j + 1, h, w) & (i + 1 < y.shape[1]) & (j + 1 < y.shape[2])
        assert keep.any(), "the example has no position away from the borders"
        got, want = np.asarray(z)[:, i[keep], j[keep]], np.asarray(y)[:, i[keep] + 1, j[keep] + 1]
        np.testing.assert_allclose(got, want, atol=TOL * np.abs(want).max())


# -- elementwise, train -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("layer, shape", ELEMENTWISE)
def test_elementwise_commutes_with_any_layout(layer, shape):
    params, state = made(layer, shape)
    x = batch(shape, 2)
    y = outputs(layer, params, state, x)[0]
    order = np.random.default_rng(2).permutation(math.prod(shape))
    for other in ((math.prod(shape),), shape[::-1]):
        moved = x.reshape(2, -1)[:, order].reshape(2, *other)
        got = outputs(layer, params, state, moved)[0]
        np.testing.assert_allclose(got, y.reshape(2, -1)[:, order].reshape(got.shape), atol=TOL * np.abs(y).max())
    assert layer.window(shape) == POINTWISE


@pytest.mark.parametrize("layer, shape", ALL)
def test_train_changes_only_what_the_traits_say(layer, shape):
    params, state = made(layer, shape)
    x = batch(shape, 8)
    y = outputs(layer, params, state, x)
    (y1, s1), (y2, _) = (run(layer, params, state, x, train=True, rng=jax.random.key(k)) for k in (1, 2))
    same = [all(np.array_equal(a, b) for a, b in zip(u, v)) for u, v in ((y1, y), (y2, y1))]
    state_same = jax.tree.all(jax.tree.map(np.array_equal, s1, state))
    if layer.stochastic:
        assert not same[0] and not same[1], "random in training: differs from evaluation and between keys"
    elif layer.batch_statistics and not getattr(layer, "use_global_stats", False):  # (a frozen BatchNorm has none)
        assert not same[0] and not state_same, "batch statistics in training, and the state updated"
    else:
        assert same[0] and state_same
        run(layer, params, state, x, train=True)  # needs no rng


# -- affine, absorbing ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("layer, shape", AFFINE)
def test_affine_terms_are_the_evaluation(layer, shape):
    params, state = made(layer, shape)
    x = batch(shape, 2)
    factor, shift = layer.affine_terms(params, state)
    assert factor.shape == shift.shape == shape[-1:]
    want = outputs(layer, params, state, x)[0]
    np.testing.assert_allclose(x * factor + shift, want, atol=TOL * np.abs(want).max())


@pytest.mark.parametrize("layer, shape", ABSORBING)
def test_absorbing_takes_an_affine_map_of_the_output(layer, shape):
    params, state = made(layer, shape)
    x = batch(shape, 2)
    y = outputs(layer, params, state, x)[0]
    rng = np.random.default_rng(3)
    factor, shift = (jnp.asarray(rng.standard_normal(y.shape[-1:]), jnp.float32) for _ in range(2))
    other = layer.absorbing()
    assert other.name == layer.name and type(other) is type(layer)
    got = outputs(other, layer.absorb(params, factor, shift), state, x)[0]
    np.testing.assert_allclose(got, y * factor + shift, atol=TOL * np.abs(y).max())


def test_layers_without_the_traits_refuse_them():
    relu = L.ReLU("relu")
    assert not relu.affine and relu.absorbing() is None
    with pytest.raises(LayerError, match=r"^relu \(ReLU\): not a per-channel affine map"):
        relu.affine_terms({}, {})
    with pytest.raises(LayerError, match=r"^relu \(ReLU\): cannot take a per-channel affine map"):
        relu.absorb({}, jnp.ones(3), jnp.zeros(3))


# -- as_sliding -------------------------------------------------------------------------------------------------
def _head_windows(shape):
    """Maps fc_to_conv can hold the input in: its own (H, W), or for a flat (F,) input 1x1 and 2x2 positions."""
    if len(shape) == 3:
        return [shape[:2]]
    return [(1, 1)] + ([(2, 2)] if shape[0] % 4 == 0 else [])


@pytest.mark.parametrize("layer, shape", ONE_INPUT)
def test_as_sliding_equals_the_layer_on_every_window(layer, shape):
    """On a map larger than the window, each window's outputs (flattened) are the layer's on that window;
    layers that keep a map (pointwise, not elementwise) on a map of other channels, and layers that slide with
    a larger window, are refused."""
    params, state = made(layer, shape)
    own = type(layer).as_sliding is not Layer.as_sliding
    for window in _head_windows(shape):
        channels = math.prod(shape) // math.prod(window)
        kept = layer.window(shape) == POINTWISE and (layer.elementwise or channels == shape[-1])
        if layer.multi_output or not (own or kept):
            with pytest.raises(LayerError, match=rf"^{layer.name} \({type(layer).__name__}\): "):
                layer.as_sliding(params, shape, window)
            continue
        converted, p = layer.as_sliding(params, shape, window)
        big = batch((window[0] + 2, window[1] + 3, channels), 2)
        z = big if converted is None else run(converted, p, state, big)[0][0]
        a, b = z.shape[1] - 2, z.shape[2] - 3  # the map one window becomes
        at = [(i, j) for i in range(3) for j in range(4)]
        crops = jnp.stack([big[:, i:i + window[0], j:j + window[1]].reshape(2, *shape) for i, j in at])
        want = outputs(layer, params, state, crops.reshape(-1, *shape))[0].reshape(len(at), 2, -1)
        got = jnp.stack([z[:, i:i + a, j:j + b].reshape(2, -1) for i, j in at])
        np.testing.assert_allclose(got, want, atol=TOL * np.abs(want).max())


# -- probe_input, inplace, multi_output -------------------------------------------------------------------------
@pytest.mark.parametrize("layer, shape", WITH_PARAMS)
def test_probe_input_makes_the_params_of_every_input(layer, shape):
    probe = layer.probe_input(shape[-1])

    def param_shapes(s):
        return jax.tree.map(jnp.shape, layer.abstract_init(s)[1])

    larger = (shape[0] + 2, shape[1] + 3, shape[2]) if len(shape) == 3 else shape
    if probe is None:
        assert param_shapes(larger) != param_shapes(shape)
    else:
        assert probe[-1] == shape[-1] and math.prod(probe) <= math.prod(shape)
        assert param_shapes(probe) == param_shapes(shape) == param_shapes(larger)


@pytest.mark.parametrize("layer, shape", ALL)
def test_inplace_and_outputs(layer, shape):
    y, _ = jax.eval_shape(layer.apply, *made(layer, shape), batch(shape, 2))
    assert isinstance(y, tuple) == layer.multi_output
    assert len(y) == layer.num_outputs if layer.multi_output else layer.num_outputs == 1
    if layer.inplace:  # overwrites its input: as many outputs as inputs
        assert layer.arity == 1 and not layer.multi_output and math.prod(y.shape) == math.prod((2, *shape))
