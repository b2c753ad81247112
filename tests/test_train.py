"""Solver, schedules, the training loop, checkpoints and resume, several devices and processes."""
import json
import os
import signal
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from synthetic import blobs, write_mnist_like

from jaxcnn import Conv, Dense, Flatten, MaxPool, Net, ReLU, checkpoint, ops, zoo
from jaxcnn.augment import random_crop_flip
from jaxcnn.train import (
    ConfigError,
    SolverConfig,
    Trainer,
    fit,
    optimizer,
    rundir,
    schedule,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- schedules and solver ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, formula", [
    ("fixed", lambda t: 0.1),
    ("step", lambda t: 0.1 * 0.5 ** (t // 30)),
    ("multistep", lambda t: 0.1 * 0.5 ** sum(t >= s for s in (20, 70))),
    ("inv", lambda t: 0.1 * (1 + 0.5 * t) ** -0.75),
    ("poly", lambda t: 0.1 * (1 - t / 100) ** 0.75),
    ("cosine", lambda t: 0.1 * 0.5 * (1 + np.cos(np.pi * t / 100))),
])
def test_schedules_follow_caffe_formulas(name, formula):
    cfg = SolverConfig(lr=0.1, schedule=name, gamma=0.5, power=0.75, stepsize=30, stepvalues=(20, 70))
    f = schedule(cfg, total_steps=100)
    for t in (0, 1, 19, 20, 29, 30, 69, 70, 99):
        np.testing.assert_allclose(float(f(t)), formula(t), rtol=1e-5, atol=1e-8, err_msg=f"{name} at step {t}")


def test_warmup_ramps_then_follows_the_schedule():
    f = schedule(SolverConfig(lr=0.1, schedule="fixed", warmup_steps=10), total_steps=100)
    np.testing.assert_allclose([float(f(t)) for t in (0, 5, 10, 50)], [0.0, 0.05, 0.1, 0.1], rtol=1e-6)


@pytest.mark.parametrize("settings, field", [
    ({"lr": float("nan")}, "lr"), ({"lr": -1.0}, "lr"), ({"lr": 0.0}, "lr"), ({"lr": float("inf")}, "lr"),
    ({"momentum": 1.5}, "momentum"), ({"weight_decay": -1e-4}, "weight_decay"),
    ({"schedule": "step", "stepsize": 10, "gamma": 0.0}, "gamma"),
    ({"schedule": "step"}, "stepsize"), ({"stepvalues": (30, 10)}, "stepvalues"),
    ({"warmup_steps": -1}, "warmup_steps"),
    ({"schedule": "cyclic"}, "schedule"), ({"optimizer": "lamb"}, "optimizer"),
    ({"iter_size": 0}, "iter_size"), ({"optimizer": "adam", "momentum2": 1.0}, "momentum2"),
])
def test_solver_settings_that_cannot_work_name_the_setting(settings, field):
    with pytest.raises(ConfigError) as err:
        SolverConfig(**settings)
    assert err.value.field == field and str(err.value).startswith(f"{field} ") and "--" not in str(err.value)


def test_sgd_is_caffes_update_with_multipliers():
    """v <- m v + lr_mult (g + wd decay_mult w); w <- w - lr v, checked for three steps in NumPy."""
    params = {"a": {"w": jnp.array([1.0, -2.0]), "b": jnp.array([0.5])}}
    lr_mult, decay_mult = {"a": {"w": 1.0, "b": 2.0}}, {"a": {"w": 1.0, "b": 0.0}}
    grads = [{"a": {"w": jnp.array([0.3, 0.1]), "b": jnp.array([-0.2])}} for _ in range(3)]
    cfg = SolverConfig(lr=0.1, schedule="fixed", momentum=0.9, weight_decay=0.01)
    tx = optimizer(cfg, 3, lr_mult, decay_mult)
    opt_state, p = tx.init(params), params
    ref = {k: np.asarray(v, np.float64) for k, v in params["a"].items()}
    vel = {k: np.zeros_like(v) for k, v in ref.items()}
    for g in grads:
        updates, opt_state = tx.update(g, opt_state, p)
        p = optax.apply_updates(p, updates)
        for k in ref:
            vel[k] = 0.9 * vel[k] + lr_mult["a"][k] * (np.asarray(g["a"][k]) + 0.01 * decay_mult["a"][k] * ref[k])
            ref[k] = ref[k] - 0.1 * vel[k]
    for k in ref:
        np.testing.assert_allclose(np.asarray(p["a"][k]), ref[k], rtol=1e-6)


@pytest.mark.parametrize("ours, theirs", [
    (SolverConfig(optimizer="adamw", lr=1e-2, schedule="fixed", weight_decay=0.1),
     optax.adamw(1e-2, weight_decay=0.1)),
    (SolverConfig(optimizer="nesterov", lr=1e-2, schedule="fixed", weight_decay=0.0, momentum=0.8),
     optax.sgd(1e-2, momentum=0.8, nesterov=True)),
    (SolverConfig(optimizer="adam", lr=1e-2, schedule="fixed", weight_decay=0.0), optax.adam(1e-2)),
])
def test_optimizers_match_optax_with_unit_multipliers(ours, theirs):
    params = {"a": {"w": jnp.array([1.0, -2.0, 3.0])}}
    ones = {"a": {"w": 1.0}}
    tx = optimizer(ours, 5, ones, ones)
    s1, s2, p1, p2 = tx.init(params), theirs.init(params), params, params
    for i in range(5):
        g = {"a": {"w": jnp.array([0.3, -0.1, 0.2]) * (i + 1)}}
        u1, s1 = tx.update(g, s1, p1)
        u2, s2 = theirs.update(g, s2, p2)
        p1, p2 = optax.apply_updates(p1, u1), optax.apply_updates(p2, u2)
    np.testing.assert_allclose(np.asarray(p1["a"]["w"]), np.asarray(p2["a"]["w"]), rtol=1e-6)


# -- the loop ----------------------------------------------------------------------------------------------------
def _tiny_net():
    return Net([Conv("conv1", 4, 3, stride=2, lr_mult={"w": 0.0, "b": 0.0}), ReLU("relu1"), MaxPool("pool1", 2),
                Flatten("flatten"), Dense("fc", 10)], (28, 28, 1), "tiny")


def _trainer(net, compute_dtype=jnp.float32, batch_size=32, steps=64, **kwargs):
    _, params, _ = net.init(jax.random.key(0))
    tx = optimizer(SolverConfig(lr=0.05, schedule="cosine"), steps, *net.multipliers(params))
    return Trainer(net, tx, batch_size=batch_size, preprocess=lambda x: x.astype(jnp.float32) / 256,
                   compute_dtype=compute_dtype, steps_per_dispatch=8, **kwargs)


@pytest.fixture(scope="module")
def data():
    return blobs(512, (28, 28, 1), seed=5), blobs(128, (28, 28, 1), seed=6)


@pytest.mark.slow
def test_fit_learns_is_deterministic_and_respects_lr_mult_zero(data):
    train, test = data
    runs = [fit(_trainer(_tiny_net()), train, test, epochs=2, seed=3) for _ in range(2)]
    (ts, history), (ts2, history2) = runs
    assert history == [dict(r, seconds=h["seconds"], images_per_second=h["images_per_second"])
                       for r, h in zip(history2, history)]
    assert history[-1]["test_accuracy"] > 0.5 and history[-1]["train_loss"] < history[0]["train_loss"]
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(ts.params), jax.device_get(ts2.params))
    start = _trainer(_tiny_net()).init(3)
    np.testing.assert_array_equal(ts.params["conv1"]["w"], start.params["conv1"]["w"])  # lr_mult 0: frozen
    assert int(ts.step) == 2 * (512 // 32)


@pytest.mark.slow
def test_scan_and_per_step_dispatch_agree(data):
    train, test = data
    results = []
    for scan in (True, False):
        tr = _trainer(_tiny_net())
        tr.scan = scan
        results.append(fit(tr, train, test, epochs=1, seed=0)[0].params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), *results)


@pytest.mark.slow
def test_cpu_compiler_options_give_the_default_options_result(data):
    train, test = data
    assert ops.compiler_options("cpu") == {"xla_cpu_prefer_vector_width": 512} and ops.compiler_options("gpu") == {}
    results = [fit(_trainer(zoo.lenet_caffe(), compiler_options=options), train, test, epochs=1, seed=0,
                   )[0].params for options in (None, {})]
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), *results)


@pytest.mark.slow
def test_bfloat16_compute_trains_with_float32_master_weights(data):
    train, test = data
    ts, history = fit(_trainer(zoo.lenet_caffe(), jnp.bfloat16), train, test, epochs=2, seed=0)
    assert ts.params["conv2"]["w"].dtype == jnp.float32 and ts.state["bn_conv1"]["mean"].dtype == jnp.float32
    assert history[-1]["train_loss"] < history[0]["train_loss"] and history[-1]["test_accuracy"] > 0.5


def test_batch_larger_than_the_data_is_an_error(data):
    with pytest.raises(ConfigError, match="batch_size 1024: is larger than the 512 training examples"):
        fit(_trainer(_tiny_net(), batch_size=1024), *data, epochs=1)


@pytest.mark.parametrize("kwargs, field", [({"batch_size": 0}, "batch_size"), ({"batch_size": -3}, "batch_size"),
                                           ({"steps_per_dispatch": 0}, "steps_per_dispatch")])
def test_trainer_settings_that_cannot_work(kwargs, field):
    net = _tiny_net()
    with pytest.raises(ConfigError) as err:
        Trainer(net, optax.sgd(0.1), preprocess=lambda x: x, **{"batch_size": 8, **kwargs})
    assert err.value.field == field


@pytest.mark.parametrize("epochs", [0, -1])
def test_fit_needs_an_epoch(data, epochs):
    with pytest.raises(ConfigError, match=f"epochs {epochs}: must be an integer of at least 1"):
        fit(_trainer(_tiny_net()), *data, epochs=epochs)


def test_put_refuses_labels_outside_the_nets_classes(data):
    (images, labels), test = data
    trainer = _trainer(_tiny_net())
    for bad in (10, -1):
        with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\) for 10 classes"):
            trainer.put((images, np.where(labels == 3, bad, labels)))
    with pytest.raises(ValueError, match="training set: labels must lie in"):
        fit(trainer, (images, labels + 1), test, epochs=1)
    with pytest.raises(ValueError, match="one label per image"):
        trainer.put((images, labels[:-1]))


@pytest.mark.slow
def test_random_crop_flip_gives_flipped_crops_of_the_padded_image():
    x = jnp.arange(2 * 6 * 5 * 3, dtype=jnp.float32).reshape(2, 6, 5, 3) + 1
    out = np.asarray(random_crop_flip(jax.random.key(0), jnp.tile(x, (50, 1, 1, 1)), pad=2))
    padded = np.pad(np.tile(np.asarray(x), (50, 1, 1, 1)), ((0, 0), (2, 2), (2, 2), (0, 0)))
    flips = 0
    for img, src in zip(out, padded):
        crops = [src[i:i + 6, j:j + 5] for i in range(5) for j in range(5)]
        plain = any(np.array_equal(img, c) for c in crops)
        mirrored = any(np.array_equal(img, c[:, ::-1]) for c in crops)
        assert plain or mirrored
        flips += mirrored and not plain
    assert 25 < flips < 75


# -- processes: kill and resume, several devices, several processes ---------------------------------------------
@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    return write_mnist_like(tmp_path_factory.mktemp("mnist"), n_train=2048)


def _cmd(data_dir, out, *extra):
    return [sys.executable, "-m", "experiments.mnist", "--data-dir", str(data_dir), "--model", "lenet5",
            "--epochs", "3", "--batch-size", "16", "--steps-per-dispatch", "8", "--lr", "0.02", "--out", str(out),
            "--schedule", "inv", "--gamma", "1e-4",  # not a function of the run's length, unlike the default cosine
            *extra]


def _run(cmd, env=None, **kw):
    return subprocess.run(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=600, **kw)


def _final_params(out):
    return rundir.load(out).params


def _assert_same_params(a, b, rtol=0.0):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=rtol), a, b)


@pytest.fixture(scope="module")
def reference_run(mnist_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    result = _run(_cmd(mnist_dir, out))
    assert result.returncode == 0, result.stderr
    return out


# experiments.mnist signalling itself at one of the library's fault points (jaxcnn.train.rundir.fault_point): the
# tests stop a run at a known place, so nothing depends on timing. argv: label, signal name, the command's flags.
SIGNAL_AT = """
import os, signal, sys
from experiments import mnist
from jaxcnn.cli import entry
from jaxcnn.train import rundir
label, signum = sys.argv[1], getattr(signal, sys.argv[2])
rundir.fault_hook = lambda point: os.kill(os.getpid(), signum) if point == label else None
sys.exit(entry(lambda: mnist.main(sys.argv[3:])))
"""


def _signalled_at(label, signal_name, data_dir, out):
    return _run([sys.executable, "-c", SIGNAL_AT, label, signal_name, *_cmd(data_dir, out)[3:]])


@pytest.mark.slow
def test_sigkill_then_resume_gives_the_uninterrupted_result(mnist_dir, reference_run, tmp_path):
    killed = _signalled_at("metrics-1-replaced", "SIGKILL", mnist_dir, tmp_path)  # epoch 1 saved and logged
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert checkpoint.Checkpointer(tmp_path / "checkpoints").latest_step() == 2048 // 16
    resumed = _run(_cmd(mnist_dir, tmp_path, "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    _assert_same_params(_final_params(tmp_path), _final_params(reference_run))
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]


@pytest.mark.slow
def test_sigterm_saves_mid_epoch_and_resume_gives_the_same_result(mnist_dir, reference_run, tmp_path):
    step = 2048 // 16 + 8  # the first chunk of 8 steps of epoch 2
    stopped = _signalled_at(f"step-{step}", "SIGTERM", mnist_dir, tmp_path)
    assert stopped.returncode == 1 and f"stopped by SIGTERM at step {step};" in stopped.stderr, stopped.stderr
    assert "--resume to continue" in stopped.stderr
    assert checkpoint.Checkpointer(tmp_path / "checkpoints").latest_step() == step
    resumed = _run(_cmd(mnist_dir, tmp_path, "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    assert f"from checkpoint {tmp_path / 'checkpoints' / str(step)}" in resumed.stdout
    _assert_same_params(_final_params(tmp_path), _final_params(reference_run), rtol=1e-6)
    np.testing.assert_allclose(_losses(tmp_path), _losses(reference_run), rtol=1e-6)


EIGHT = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
SMALL = ("--epochs", "2", "--augment", "none")


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory):
    return write_mnist_like(tmp_path_factory.mktemp("small"), n_train=256, n_test=64)


@pytest.fixture(scope="module")
def small_reference(small_dir, tmp_path_factory):
    """One device, 2 epochs of 16 steps, without augmentation. Sharded runs sum in another order, so they agree with
    it only to float rounding (1e-7 in each step's loss), which SGD can amplify: a rounding that flips which of two
    equal pixels wins a max-pool window sends that gradient elsewhere (with the default random shifts, one such
    flip at step 12 moved the losses by 1e-5 and a conv bias by 7% of its range after 32 steps). Hence few steps
    and no shifts: the loss curve to 1e-5 and the parameters' distance from the one-device run to 1% of how far
    training moved them."""
    out = tmp_path_factory.mktemp("small_reference")
    result = _run(_cmd(small_dir, out, *SMALL))
    assert result.returncode == 0, result.stderr
    return out


def _losses(out):
    return [json.loads(line)["train_loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def _distance(a, b):
    return float(np.sqrt(sum(np.sum((np.asarray(x) - np.asarray(y)) ** 2)
                             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))))


def _assert_same_run(out, reference):
    np.testing.assert_allclose(_losses(out), _losses(reference), rtol=1e-5)
    initial = zoo.lenet5().init(jax.random.key(0))[1]  # what the runs start from (seed 0, as Trainer.init draws)
    params, expected = _final_params(out), _final_params(reference)
    assert _distance(params, expected) < 0.01 * _distance(expected, initial)


@pytest.mark.slow
def test_eight_devices_give_the_one_device_loss_curve(small_dir, small_reference, tmp_path):
    result = _run(_cmd(small_dir, tmp_path, *SMALL), env=EIGHT)
    assert result.returncode == 0, result.stderr
    assert "8 device(s)" in result.stdout
    _assert_same_run(tmp_path, small_reference)


@pytest.mark.slow
def test_batch_that_does_not_divide_over_the_devices_is_an_error(mnist_dir, tmp_path):
    result = _run(_cmd(mnist_dir, tmp_path, "--batch-size", "12"), env=EIGHT)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == ("error: --batch-size 12: does not divide over 8 devices; use a multiple "
                                              "of 8")
    assert not (tmp_path / "manifest.json").exists()  # refused before the run began


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_give_the_one_process_result(small_dir, small_reference, tmp_path):
    coordinator = f"127.0.0.1:{_free_port()}"
    procs = [subprocess.Popen(_cmd(small_dir, tmp_path, *SMALL, "--coordinator", coordinator,
                                   "--num-processes", "2", "--process-id", str(i)), cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err
    assert "2 device(s)" in outputs[0][0]
    _assert_same_run(tmp_path, small_reference)
