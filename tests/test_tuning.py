"""Tuning: the fastest measured form is kept per direction and the fastest YNNPACK choice per net, cached per
processor, bounded in time, measured only when asked (`python -m jaxcnn tune`, tuning.tune) and read by the Trainer
and jaxcnn.predictor, ignored with one variable; a tuned lowering computes what the native ops compute, whatever
forms it names; an option the installed jaxlib rejects is left out, never fatal."""
import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcnn import Conv, Dense, Flatten, MaxPool, Net, ReLU, ops, predictor, tuning, zoo
from jaxcnn.__main__ import main
from jaxcnn.ops import conv_cpu
from jaxcnn.ops.lowering import Tuned
from jaxcnn.train import Trainer

COST = {"native": 5.0, "wide": 3.0, "wide_input": 4.0, "im2col": 1.0, "im2col_chunked": 2.0, "per_group": 7.0,
        "shifted": 6.0, "shifted_rows": 6.5}


def fake_measure(calls):
    """A measure that costs nothing: im2col is 'fastest' for the forward pass, wide for the gradients."""
    def measure(direction, name, x, w, stride, pads, dilation):
        calls.append((direction, name, x.shape))
        cost = COST[name] if direction == "forward" else (0.5 if name == "wide" else COST[name])
        return cost
    return measure


def fake_choice():
    """The YNNPACK choice fake_fusions finds fastest: 'off' where the installed jaxlib accepts it."""
    return list(tuning.ynn_choices())[-1]


def fake_fusions(calls, forms="measured"):
    """A _measure_fusions that costs nothing and finds `forms` with fake_choice() fastest."""
    def measure_fusions(net, batch, input_shape, dtype, training, lowerings):
        calls.append((batch, training))
        choice = fake_choice()
        seconds = {f"{f}+{label}": 1.0 if (f, label) == (forms, choice) else 2.0
                   for f in lowerings for label in tuning.ynn_choices()}
        return {"forms": forms, "choice": choice, "seconds": seconds, "compile_seconds": dict.fromkeys(seconds, 0.5)}
    return measure_fusions


@pytest.fixture
def fake(monkeypatch):
    """Measurements that cost nothing, recorded: {'forms': [...], 'fusions': [...]}; the cache read (conftest
    switches it off for the other tests)."""
    monkeypatch.setenv(tuning.ENV_SWITCH, "1")
    calls = {"forms": [], "fusions": []}
    monkeypatch.setattr(tuning, "measure", fake_measure(calls["forms"]))
    monkeypatch.setattr(tuning, "_measure_fusions", fake_fusions(calls["fusions"]))
    return calls


def no_measuring(*args, **kwargs):
    pytest.fail("measured where only the cache may be read")


def small_net():
    return Net([Conv("conv1", 4, 3), ReLU("relu1"), MaxPool("pool1", 2), Conv("conv2", 6, 3, padding=1, groups=2),
                Flatten("flatten"), Dense("ip", 10)], (10, 10, 2), "small")


def test_the_fastest_form_of_each_direction_is_kept_and_cached(tmp_path, monkeypatch, fake):
    calls = fake["forms"]
    tuned = tuning.tune(small_net(), 8, cache_dir=tmp_path)
    lowering = tuned.lowering
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
    assert conv2_forms == {"native", "per_group", "shifted", "shifted_rows", "im2col", "im2col_chunked"}
    written = json.loads(tuning.cache_file(tmp_path).read_text())
    assert written["processor"] == tuning.processor() and len(written["forms"]) == 2
    assert written["version"] == tuning.CACHE_VERSION

    monkeypatch.setattr(tuning, "measure", no_measuring)
    monkeypatch.setattr(tuning, "_measure_fusions", no_measuring)
    assert tuning.tune(small_net(), 8, cache_dir=tmp_path) == tuned
    first = tuning.cache_file(tmp_path)
    version = tuning.CACHE_VERSION
    monkeypatch.setattr(tuning, "CACHE_VERSION", version + 1)
    assert tuning.cache_file(tmp_path) != first  # other forms or candidates: measured afresh
    monkeypatch.setattr(tuning, "CACHE_VERSION", version)
    monkeypatch.setattr(tuning, "processor", lambda: "another processor, 64 cores")
    assert tuning.cache_file(tmp_path) != first
    monkeypatch.setattr(tuning, "measure", fake_measure(calls := []))
    monkeypatch.setattr(tuning, "_measure_fusions", fake_fusions([]))
    tuning.tune(small_net(), 8, cache_dir=tmp_path)
    assert calls  # another processor has its own cache file: measured afresh
    assert len(list(tmp_path.iterdir())) == 2


def test_the_time_budget_bounds_tuning(tmp_path, monkeypatch, fake):
    clock = iter(range(0, 1000, 10))  # each look at the clock: 10 s later
    monkeypatch.setattr(tuning, "_now", lambda: next(clock))
    tuned = tuning.tune(small_net(), 8, cache_dir=tmp_path, budget_s=15)
    assert len(tuned.lowering.forms) == 1  # the first convolution, then the budget was spent: conv2 keeps the
    assert tuned.fusion is None and not fake["fusions"]  # fixed rules, the net XLA's default YNNPACK fusions


def test_other_backends_need_no_tuning(tmp_path):
    tuned = tuning.tune(small_net(), 8, cache_dir=tmp_path, backend="gpu")
    assert tuned.lowering == "native" and tuned.compiler_options == ops.compiler_options("gpu")
    assert not any(tmp_path.iterdir())


def test_the_ynnpack_choice_is_per_net_batch_and_mode_and_read_without_measuring(tmp_path, monkeypatch, fake):
    net = small_net()
    tuned = tuning.tune(net, 8, cache_dir=tmp_path)
    assert fake["fusions"] == [(8, True)]  # the training gradient of the whole net, at batch 8
    assert tuned.fusion["choice"] == fake_choice()
    assert tuned.compiler_options == {**ops.compiler_options("cpu"), **tuning.YNN_CHOICES[fake_choice()]}
    monkeypatch.setattr(tuning, "measure", no_measuring)
    monkeypatch.setattr(tuning, "_measure_fusions", no_measuring)
    assert tuning.lookup(net, 8, cache_dir=tmp_path) == tuned
    inference = tuning.lookup(net, 8, training=False, cache_dir=tmp_path)
    assert inference.lowering == tuned.lowering and inference.fusion is None  # the same convolutions, another net
    others = [tuning.lookup(net, 16, cache_dir=tmp_path), tuning.lookup(net, 8, input_shape=(12, 12, 2),
                                                                         cache_dir=tmp_path)]
    assert [o.lowering for o in others] == ["cpu", "cpu"]  # other shapes: nothing measured
    for other in (inference, *others):
        assert other.compiler_options == ops.compiler_options("cpu")
    # the key is the computation: multipliers and initialisers are not in it, a layer's width is
    twin = Net([Conv("conv1", 4, 3, lr_mult={"b": 2.0}, w_init="msra"), *net.layers[1:]], (10, 10, 2), "twin")
    wider = Net([Conv("conv1", 8, 3), *net.layers[1:]], (10, 10, 2), "small")
    assert tuning.fingerprint(twin, 8) == tuning.fingerprint(net, 8) != tuning.fingerprint(wider, 8)
    monkeypatch.setenv(tuning.ENV_SWITCH, "0")
    assert tuning.lookup(net, 8, cache_dir=tmp_path) == tuning.Tuning("cpu", ops.compiler_options("cpu"))


def test_the_table_says_what_was_chosen_and_why(tmp_path, fake):
    table = tuning.tune(small_net(), 8, cache_dir=tmp_path).table()
    assert re.search(r"^conv1\s+8x10x10x2\s+3x3x2x4\s+1x1 forward\s+im2col\s+im2col 1e\+03, "
                     r"im2col_chunked 2e\+03, ", table, re.M)
    assert re.search(r"^\s+input\s+\w+\s+- \(fixed rule\)$", table, re.M)  # conv1 reads the data
    assert "\nforms+YNNPACK fusions (training gradient, whole net): measured+default " in table
    assert f"fixed+{fake_choice()} 2e+03 ms (compile 0.5 s)" in table  # conv1's measured im2col is not the rule
    assert table.endswith(f"-> measured+{fake_choice()}")


def test_an_option_jaxlib_rejects_is_left_out(monkeypatch):
    monkeypatch.setitem(tuning.YNN_CHOICES, "bogus", {"xla_cpu_no_such_option": "1"})
    choices = tuning.ynn_choices.__wrapped__()  # not the process's cached answer
    assert "bogus" not in choices and choices["default"] == {}


def test_measure_compiles_with_jaxcnns_compiler_options(monkeypatch):
    (x, w, stride, pads, dilation, *_), = tuning.convolutions(Net([Conv("c", 3, 3)], (6, 6, 2)), 2)
    seconds = tuning.measure("weight", "im2col", x, w, stride, pads, dilation, repeats=2, min_seconds=0)
    assert 0 < seconds < float("inf")  # a time was measured; how long it took is the machine's business
    monkeypatch.setattr(tuning, "compiler_options", lambda backend: {"xla_cpu_no_such_option": backend})
    with pytest.raises(jax.errors.JaxRuntimeError, match="xla_cpu_no_such_option"):
        tuning.measure("forward", "im2col", x, w, stride, pads, dilation)  # compiled with what the Trainer uses


def test_the_fixed_rules_run_the_net_where_they_won_the_whole_net_timing(tmp_path, monkeypatch):
    monkeypatch.setenv(tuning.ENV_SWITCH, "1")
    monkeypatch.setattr(tuning, "measure", fake_measure([]))
    monkeypatch.setattr(tuning, "_measure_fusions", fake_fusions([], forms="fixed"))
    net = small_net()
    tuned = tuning.tune(net, 8, cache_dir=tmp_path)
    assert tuned.lowering == "cpu" and len(tuned.convolutions) == 2  # measured, then beaten in the whole net
    assert tuned.compiler_options == {**ops.compiler_options("cpu"), **tuning.YNN_CHOICES[fake_choice()]}
    monkeypatch.setattr(tuning, "_measure_fusions", no_measuring)
    assert tuning.lookup(net, 8, cache_dir=tmp_path) == tuned


@pytest.mark.slow
def test_measure_fusions_times_every_pair_of_forms_and_accepted_choice(monkeypatch):
    monkeypatch.setattr(tuning, "NET_ROUNDS", 1)
    net = Net([Conv("conv", 2, 3), Flatten("flatten"), Dense("ip", 3)], (5, 5, 1))
    fn, args = tuning._net_computation(net, 2, None, "float32", True, "cpu")
    assert jax.tree.structure(jax.eval_shape(fn, *args)) == jax.tree.structure(args[0])  # the params' gradient
    im2col = Tuned(tuple((conv_cpu.signature(*c[:5]), ("im2col",) * 3) for c in tuning.convolutions(net, 2)))
    result = tuning._measure_fusions(net, 2, None, "float32", True, {"measured": im2col, "fixed": "cpu"})
    pairs = {f"{forms}+{label}" for forms in ("measured", "fixed") for label in tuning.ynn_choices()}
    assert set(result["seconds"]) == set(result["compile_seconds"]) == pairs
    assert f"{result['forms']}+{result['choice']}" == min(result["seconds"], key=result["seconds"].get)


def test_predictor_compiles_with_the_cached_lowering(tmp_path, monkeypatch):
    net = small_net()
    _, params, state = jax.eval_shape(net.init, jax.random.key(0))  # traced only: shapes are enough
    x = jax.ShapeDtypeStruct((8, 10, 10, 2), jnp.float32)
    im2col = Tuned(tuple((conv_cpu.signature(*c[:5]), ("im2col",) * 3) for c in tuning.convolutions(net, 8)))
    seen = []
    monkeypatch.setattr(tuning, "lookup", lambda *args, **kw: seen.append((args, kw)) or tuning.Tuning(
        im2col, ops.compiler_options("cpu")))
    predict = predictor(net, 8)
    assert seen == [((net, 8), {"input_shape": None, "dtype": "float32", "training": False})]
    assert "convolution" not in predict.lower(params, state, x).as_text()  # the convolutions as patch matmuls
    assert jax.eval_shape(predict, params, state, x).shape == (8, 10)  # the net's output
    native = predictor(net, 8, lowering="native")
    assert "convolution" in native.lower(params, state, x).as_text() and len(seen) == 1


def test_the_tune_command_prints_its_choices_and_writes_the_cache(tmp_path, monkeypatch, capsys, fake):
    monkeypatch.setenv(tuning.ENV_CACHE, str(tmp_path))
    main(["tune", "lenet_caffe", "--batch", "8", "16", "--inference"])
    out = capsys.readouterr().out
    assert out.count("lenet_caffe, batch ") == 2 and "batch 16, inference, float32" in out
    assert re.search(r"^conv2\s+16x12x12x20\s+5x5x20x50\s+1x1 forward\s+im2col\s+im2col 1e\+03,", out, re.M)
    assert f"cache: {tuning.cache_file()}" in out and tuning.cache_file().exists()
    assert fake["fusions"] == [(8, False), (16, False)]
    assert {d for d, _, _ in fake["forms"]} == {"forward"}  # inference: the forward pass only


@pytest.mark.parametrize("argv, message", [
    (["tune", "nonexistent.prototxt"], "nonexistent.prototxt"),
    (["tune", "lenet_caffe", "--batch", "0"], "--batch must be positive ints"),
])
def test_the_tune_command_refuses_bad_input_in_one_line(argv, message, capsys, monkeypatch):
    monkeypatch.setattr(tuning, "measure", no_measuring)
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err.splitlines()[-1] and "Traceback" not in err


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
def test_the_trainer_reads_the_cache_and_measures_only_when_asked(tmp_path, monkeypatch, fake):
    monkeypatch.setenv(tuning.ENV_CACHE, str(tmp_path))
    net, cpu = small_net(), jax.sharding.Mesh(np.asarray(jax.devices("cpu")[:1]), ("data",))

    def trainer(**kw):
        return Trainer(net, optax.sgd(0.1), batch_size=8, preprocess=lambda x: x.astype(jnp.float32) / 255,
                       mesh=cpu, **kw)

    monkeypatch.setenv(tuning.ENV_SWITCH, "1")
    assert trainer().lowering == "cpu" and not any(fake.values())  # no cache: the fixed rules, nothing measured
    asked = trainer(autotune=True)  # measures what the cache lacks
    assert isinstance(asked.lowering, Tuned) and fake["fusions"]
    monkeypatch.setattr(tuning, "measure", no_measuring)
    monkeypatch.setattr(tuning, "_measure_fusions", no_measuring)
    tuned = trainer()  # reads it
    assert tuned.lowering == asked.lowering and len(tuned.lowering.forms) == 2
    assert tuned.compiler_options == {**ops.compiler_options("cpu"), **tuning.YNN_CHOICES[fake_choice()]}
    assert trainer(lowering="cpu").lowering == "cpu"  # an explicit choice is not replaced
    assert trainer(autotune=False).lowering == "cpu"
    monkeypatch.setenv(tuning.ENV_SWITCH, "0")
    fixed = trainer()  # the cache ignored
    assert fixed.lowering == "cpu"
    images = np.random.default_rng(0).integers(0, 256, (16, 10, 10, 2), dtype=np.uint8)
    labels = np.arange(16, dtype=np.int32) % 10
    losses = []
    for t in (tuned, fixed):
        ts = t.init(0)
        data = t.put((images, labels))
        losses.append(np.asarray(t.train_steps(ts, *data, t.permutation(ts, 0, 16), 0, 2)[1]))
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)
