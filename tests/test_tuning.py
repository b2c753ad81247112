"""Autotuning: the fastest measured form is kept per direction, cached per processor, bounded in time, switched off
by one variable; a tuned lowering computes what the native ops compute, whatever forms it names."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcnn import Conv, Dense, Flatten, MaxPool, Net, ReLU, ops, tuning, zoo
from jaxcnn.ops import conv_cpu
from jaxcnn.ops.lowering import Tuned
from jaxcnn.train import Trainer

COST = {"native": 5.0, "wide": 3.0, "wide_input": 4.0, "im2col": 1.0, "im2col_chunked": 2.0, "per_group": 7.0,
        "shifted": 6.0}


def fake_measure(calls):
    """A measure that costs nothing: im2col is 'fastest' for the forward pass, wide for the gradients."""
    def measure(direction, name, x, w, stride, pads, dilation):
        calls.append((direction, name, x.shape))
        cost = COST[name] if direction == "forward" else (0.5 if name == "wide" else COST[name])
        return cost
    return measure


def small_net():
    return Net([Conv("conv1", 4, 3), ReLU("relu1"), MaxPool("pool1", 2), Conv("conv2", 6, 3, padding=1, groups=2),
                Flatten("flatten"), Dense("ip", 10)], (10, 10, 2), "small")


def test_the_fastest_form_of_each_direction_is_kept_and_cached(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(tuning, "measure", fake_measure(calls))
    lowering = tuning.tune(small_net(), 8, cache_dir=tmp_path)
    assert isinstance(lowering, Tuned) and len(lowering.forms) == 2
    conv1, conv2 = (lowering.conv_forms(conv_cpu.signature(*c[:5]))
                    for c in tuning.convolutions(small_net(), 8))
    # conv1 reads the data: no input gradient is measured, the fixed rule stays (the first candidate never wins)
    assert conv1[0] == "im2col" and conv1[2] == "wide"
    assert not any(d == "input" and shape == (8, 10, 10, 2) for d, _, shape in calls)
    # groups=2: the whole (8, 4, 4, 4) x (3, 3, 2, 6) convolution is measured, in the grouped forms: `wide` is no
    # candidate for groups (ops.conv_cpu.candidates), so the next fastest is
    assert conv2 == ("im2col", "im2col", "im2col")
    conv2_forms = {name for d, name, shape in calls if shape == (8, 4, 4, 4)}
    assert conv2_forms == {"native", "per_group", "shifted", "im2col", "im2col_chunked"}
    written = json.loads(tuning.cache_file(tmp_path).read_text())
    assert written["processor"] == tuning.processor() and len(written["forms"]) == 2
    assert written["version"] == tuning.CACHE_VERSION

    monkeypatch.setattr(tuning, "measure", lambda *a, **k: pytest.fail("measured again despite the cache"))
    assert tuning.tune(small_net(), 8, cache_dir=tmp_path) == lowering
    first = tuning.cache_file(tmp_path)
    version = tuning.CACHE_VERSION
    monkeypatch.setattr(tuning, "CACHE_VERSION", version + 1)
    assert tuning.cache_file(tmp_path) != first  # other forms or candidates: measured afresh
    monkeypatch.setattr(tuning, "CACHE_VERSION", version)
    monkeypatch.setattr(tuning, "processor", lambda: "another processor, 64 cores")
    assert tuning.cache_file(tmp_path) != first
    monkeypatch.setattr(tuning, "measure", fake_measure(calls := []))
    tuning.tune(small_net(), 8, cache_dir=tmp_path)
    assert calls  # another processor has its own cache file: measured afresh
    assert len(list(tmp_path.iterdir())) == 2


def test_the_time_budget_bounds_tuning(tmp_path, monkeypatch):
    clock = iter(range(0, 1000, 10))  # each look at the clock: 10 s later
    monkeypatch.setattr(tuning, "_now", lambda: next(clock))
    monkeypatch.setattr(tuning, "measure", fake_measure([]))
    lowering = tuning.tune(small_net(), 8, cache_dir=tmp_path, budget_s=15)
    assert len(lowering.forms) == 1  # the first convolution, then the budget was spent; conv2 keeps the fixed rules


def test_other_backends_need_no_tuning(tmp_path):
    assert tuning.tune(small_net(), 8, cache_dir=tmp_path, backend="gpu") == "native"
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_measure_times_a_real_computation():
    (x, w, stride, pads, dilation, _), = tuning.convolutions(Net([Conv("c", 3, 3)], (6, 6, 2)), 2)
    for direction in conv_cpu.DIRECTIONS:
        seconds = tuning.measure(direction, "im2col", x, w, stride, pads, dilation, repeats=2, min_seconds=0)
        assert 0 < seconds < float("inf")  # a time was measured; how long it took is the machine's business


@pytest.mark.parametrize("forms", [("wide", "wide", "wide"), ("im2col", "im2col_chunked", "native"),
                                   ("im2col_chunked", "wide", "im2col")])
@pytest.mark.slow
def test_a_tuned_lowering_computes_what_the_native_ops_compute(x64, rng, forms):
    tuned = _assert_tuned_equals_native(zoo.lenet_caffe(), rng.standard_normal((3, 28, 28, 1)), [1, 7, 3], forms)
    assert len(tuned.forms) == 2


def _assert_tuned_equals_native(net, x, labels, forms):
    """In float64, net's loss and gradients with every convolution in `forms` equal those of the native ops.
    Returns the Tuned lowering."""
    _, params, state = net.init(jax.random.key(0))
    params = jax.tree.map(lambda p: jnp.asarray(p, jnp.float64), params)
    x, labels = jnp.asarray(x), jnp.asarray(labels)
    convolutions = tuning.convolutions(net, len(labels), dtype="float64")
    tuned = Tuned(tuple((conv_cpu.signature(*c[:5]), forms) for c in convolutions))

    def loss(params, lowering):
        logits, _ = net.apply(params, state, x, train=True, lowering=lowering)
        return ops.softmax_cross_entropy(logits, labels)

    value_and_grad = jax.jit(jax.value_and_grad(loss), static_argnums=1)
    for a, b in zip(jax.tree.leaves(value_and_grad(params, tuned)), jax.tree.leaves(value_and_grad(params, "native"))):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-12)
    return tuned


@pytest.mark.parametrize("forms", [("shifted", "per_group", "im2col_chunked"), ("per_group", "shifted", "native"),
                                   ("im2col", "im2col_chunked", "shifted")])
@pytest.mark.slow
def test_a_tuned_lowering_of_grouped_convolutions_computes_what_the_native_ops_compute(x64, rng, forms):
    """A net with a depthwise convolution (channel multiplier 2, stride 2) and a grouped one (3 groups of 4
    channels), each direction in any of the forms, gives the native op's loss and gradients."""
    net = Net([Conv("conv1", 6, 3, padding=1), ReLU("relu1"), Conv("dw", 12, 3, stride=2, padding=1, groups=6),
               Conv("grouped", 6, 3, padding=((0, 1), (1, 0)), groups=3), Flatten("flatten"), Dense("ip", 10)],
              (9, 9, 3), "grouped")
    tuned = _assert_tuned_equals_native(net, rng.standard_normal((4, 9, 9, 3)), [1, 7, 3, 0], forms)
    assert len(tuned.forms) == 3


@pytest.mark.slow
def test_the_trainer_tunes_unless_switched_off(tmp_path, monkeypatch):
    monkeypatch.setenv(tuning.ENV_CACHE, str(tmp_path))
    net, cpu = small_net(), jax.sharding.Mesh(np.asarray(jax.devices("cpu")[:1]), ("data",))

    def trainer(**kw):
        return Trainer(net, optax.sgd(0.1), batch_size=8, preprocess=lambda x: x.astype(jnp.float32) / 255,
                       mesh=cpu, **kw)

    monkeypatch.setenv(tuning.ENV_SWITCH, "1")
    tuned = trainer()
    assert isinstance(tuned.lowering, Tuned) and len(tuned.lowering.forms) == 2
    assert trainer(lowering="cpu").lowering == "cpu"  # an explicit choice is not replaced
    assert trainer(autotune=False).lowering == "cpu"
    monkeypatch.setenv(tuning.ENV_SWITCH, "0")
    fixed = trainer()
    assert fixed.lowering == "cpu"
    images = np.random.default_rng(0).integers(0, 256, (16, 10, 10, 2), dtype=np.uint8)
    labels = np.arange(16, dtype=np.int32) % 10
    losses = []
    for t in (tuned, fixed):
        ts = t.init(0)
        data = t.put((images, labels))
        losses.append(np.asarray(t.train_steps(ts, *data, t.permutation(ts, 0, 16), 0, 2)[1]))
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)
