"""Run directories (jaxcnn.train.rundir) and fit's and run_training's use of them, in this process: the lock, the
manifest and what resume checks, checkpoints that do not load, files written whole, the divergence guard, a clean
stop mid-epoch."""
import dataclasses
import json
import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import without_timings
from synthetic import blobs, write_mnist_like

from experiments import mnist as mnist_command
from jaxcnn import Conv, Dense, Flatten, Net, ReLU
from jaxcnn.__main__ import main as jaxcnn_command
from jaxcnn.checkpoint import Checkpointer, CheckpointError
from jaxcnn.train import (
    ConfigError,
    Diverged,
    Interrupted,
    RunDir,
    RunDirError,
    RunExists,
    RunLocked,
    RunMismatch,
    SolverConfig,
    Trainer,
    caffe_run,
    fit,
    make_manifest,
    optimizer,
    rundir,
)
from jaxcnn.train.run import RunConfig, RunSpec, run_training

BATCH, STEPS_PER_EPOCH = 32, 4


def _net():
    return Net([Conv("conv1", 4, 3, stride=2), ReLU("relu1"), Flatten("flatten"), Dense("fc", 10)], (28, 28, 1), "tiny")


def _trainer(extra=None, lr=0.05):
    """A Trainer of the tiny net; `extra`: an Optax transformation applied after the solver's."""
    net = _net()
    tx = optimizer(SolverConfig(lr=lr, schedule="fixed"), 100, *net.multipliers())
    return Trainer(net, tx if extra is None else optax.chain(tx, extra), batch_size=BATCH,
                   preprocess=lambda x: x.astype(jnp.float32) / 256, steps_per_dispatch=2)


@pytest.fixture(scope="module")
def data():
    return blobs(BATCH * STEPS_PER_EPOCH, (28, 28, 1), seed=5), blobs(64, (28, 28, 1), seed=6)


@pytest.fixture(scope="module")
def trainer():
    """One Trainer for the runs below (a Trainer holds no run's state; sharing it compiles its steps once)."""
    return _trainer()


@pytest.fixture(scope="module")
def reference(trainer, data):
    """An uninterrupted 3-epoch run without a directory: (final TrainState, history)."""
    return fit(trainer, *data, epochs=3)


def _same(a, b):
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(a), jax.device_get(b))


def _metric_lines(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _steps(out):
    return sorted(int(p.name) for p in (out / "checkpoints").iterdir() if p.name.isdigit())


def _damage(out, step):
    """Delete the array data of checkpoint `step`: it still looks finished but no longer loads."""
    for f in (out / "checkpoints" / str(step) / "tree" / "d").iterdir():
        f.unlink()


def _nan_from(step):
    """An Optax transformation that turns the updates of optimizer step `step` (1-based) and later into NaN."""
    def update(updates, count, params=None):
        factor = jnp.where(count + 1 >= step, jnp.nan, 1.0)
        return jax.tree.map(lambda u: u * factor, updates), count + 1
    return optax.GradientTransformation(lambda params: jnp.zeros((), jnp.int32), update)


# -- a run's directory --------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_fit_writes_manifest_checkpoints_and_one_metrics_line_per_epoch(trainer, data, reference, tmp_path):
    seen = []
    ts, history = fit(trainer, *data, epochs=3, out_dir=tmp_path, meta={"model": "tiny"}, on_progress=seen.append)
    _same(ts.params, reference[0].params)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert {k: manifest[k] for k in ("model", "batch_size", "steps_per_epoch", "train_examples", "epochs", "seed",
                                     "dtype", "jax_version")} == {
        "model": "tiny", "batch_size": BATCH, "steps_per_epoch": STEPS_PER_EPOCH, "train_examples": 128, "epochs": 3,
        "seed": 0, "dtype": "float32", "jax_version": jax.__version__}
    assert _steps(tmp_path) == [4, 8, 12]
    assert _metric_lines(tmp_path) == history and [r["epoch"] for r in history] == [1, 2, 3]
    assert [(p.epoch, p.step) for p in seen] == [(e, s) for e in (1, 2, 3) for s in (2, 4)]
    assert all(p.epochs == 3 and p.steps_per_epoch == 4 and np.isfinite(p.loss) for p in seen)
    restored = Checkpointer(tmp_path / "checkpoints").restore()
    assert restored.step == 12 and restored.meta["history"] == history


def test_a_second_run_fails_at_once_naming_the_holder(tmp_path):
    with RunDir(tmp_path).acquire():
        with pytest.raises(RunLocked) as err:
            RunDir(tmp_path).acquire(resume=True)
        message = str(err.value)
        assert f"{tmp_path} is in use by process {os.getpid()} on {socket.gethostname()} (started 20" in message
        assert "\n" not in message
    RunDir(tmp_path).acquire(resume=True).release()  # free once the first lets go


@pytest.mark.slow
def test_a_new_run_needs_an_empty_directory(trainer, data, tmp_path):
    fit(trainer, *data, epochs=1, out_dir=tmp_path)
    with pytest.raises(RunExists, match=f"{tmp_path} is not empty \\(checkpoints, manifest.json, metrics.jsonl\\)"):
        fit(trainer, *data, epochs=1, out_dir=tmp_path)
    (tmp_path / "curves.png").write_bytes(b"a plot")
    RunDir(tmp_path).acquire(overwrite=True).release()
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RunExists, match="holds files no run writes \\(notes.txt\\): refusing to overwrite"):
        RunDir(tmp_path).acquire(overwrite=True)
    with pytest.raises(RunExists, match="holds notes.txt but no manifest.json: not a run that can be resumed"):
        RunDir(tmp_path).acquire(resume=True)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_an_unwritable_place_is_refused_before_any_work(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(RunDirError, match="file/run: cannot create a run directory there \\(Not a directory\\)"):
        RunDir(tmp_path / "file" / "run").acquire()


def _listing(root):
    return sorted((str(p.relative_to(root)), p.read_bytes() if p.is_file() else None) for p in root.rglob("*"))


def _ended_pid():
    """The pid of a process that has ended."""
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return child.pid


STARTED = "2026-01-01T00:00:00+00:00"
HOLD_LOCK = f"""
import fcntl, json, os, socket, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
record = {{"pid": int(sys.argv[2]) or os.getpid(), "host": socket.gethostname(), "started": "{STARTED}"}}
os.write(fd, json.dumps(record).encode())
print("locked", flush=True)
sys.stdin.read()
"""


def _record(pid):
    return json.dumps({"pid": pid, "host": socket.gethostname(), "started": STARTED})


@pytest.fixture
def lock_holder():
    """start(directory, recorded_pid) -> a process holding `directory`'s lock (flock) with a record naming
    `recorded_pid` (None: itself), as a process started by a run keeps its descriptor; it ends with the test."""
    started = []

    def start(directory, recorded_pid):
        argv = [sys.executable, "-c", HOLD_LOCK, str(directory / rundir.LOCK), str(recorded_pid or 0)]
        child = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        started.append(child)
        assert child.stdout.readline() == "locked\n"
        return child

    yield start
    for child in started:
        child.stdin.close()
        child.wait(timeout=60)


@pytest.mark.parametrize("how", ["new", "resume", "overwrite", "locked", "in a file", "is a file"])
def test_check_refuses_what_acquire_refuses_and_changes_nothing(tmp_path, how, lock_holder):
    run = tmp_path / "run"
    if how == "in a file":
        (tmp_path / "file").write_text("")
        run = tmp_path / "file" / "run"
    elif how == "is a file":
        run.write_text("")
    else:
        run.mkdir()
        (run / "notes.txt").write_text("mine")
    if how == "locked":
        holder = lock_holder(run, None)
    flags = {"resume": dict(resume=True), "overwrite": dict(overwrite=True)}.get(how, {})
    before = _listing(tmp_path)
    with pytest.raises(RunDirError) as checked:
        RunDir(run).check(**flags)
    assert _listing(tmp_path) == before
    with pytest.raises(RunDirError) as acquired:
        RunDir(run).acquire(**flags)
    assert (type(checked.value), str(checked.value)) == (type(acquired.value), str(acquired.value))
    assert _listing(tmp_path) == before  # acquire's failure leaves no lock behind either
    if how == "locked":
        assert isinstance(checked.value, RunLocked) and f"in use by process {holder.pid} on " in str(checked.value)


def test_a_failed_start_leaves_the_directory_as_it_was(tmp_path):
    """release() removes the lock, and the directories acquire() created while they are still empty."""
    RunDir(tmp_path / "runs" / "a").check()
    assert list(tmp_path.iterdir()) == []  # check creates nothing
    out = RunDir(tmp_path / "runs" / "a").acquire()
    assert [p.name for p in (tmp_path / "runs" / "a").iterdir()] == [rundir.LOCK]
    out.release()
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "runs").mkdir()
    with RunDir(tmp_path / "runs" / "b").acquire() as out:
        out.write_results({"a": 1})
    assert _listing(tmp_path) == [("runs", None), ("runs/b", None), ("runs/b/results.json", b'{\n "a": 1\n}\n')]


def test_a_lock_left_by_a_process_that_ended_is_taken_over_with_a_warning(tmp_path, caplog):
    pid = _ended_pid()
    (tmp_path / rundir.LOCK).write_text(_record(pid))  # as a process killed with SIGKILL leaves it
    RunDir(tmp_path).check()
    with caplog.at_level(logging.WARNING, logger="jaxcnn"), RunDir(tmp_path).acquire():
        assert json.loads((tmp_path / rundir.LOCK).read_text())["pid"] == os.getpid()
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path}: process {pid} on {socket.gethostname()} (started {STARTED}) left its lock "
        "behind; taking it over"]
    assert list(tmp_path.iterdir()) == []


def test_a_lock_still_held_for_a_process_that_ended_is_taken_over(tmp_path, caplog, lock_holder):
    """The recorded process has ended but another one (which it started) holds the lock: taken over too. A live
    recorded process is a refusal naming it."""
    holder_pid = _ended_pid()
    lock_holder(tmp_path, holder_pid)
    RunDir(tmp_path).check()
    with caplog.at_level(logging.WARNING, logger="jaxcnn"), RunDir(tmp_path).acquire():
        assert json.loads((tmp_path / rundir.LOCK).read_text())["pid"] == os.getpid()
        with pytest.raises(RunLocked, match=f"is in use by process {os.getpid()} on "):
            RunDir(tmp_path).acquire()
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path}: process {holder_pid} on {socket.gethostname()} (started {STARTED}) has ended, "
        "but a process it started still holds its lock; taking the lock over"]
    assert list(tmp_path.iterdir()) == []


def _manifest(**changes):
    settings = dict(batch_size=32, steps_per_epoch=4, train_examples=128, epochs=2, seed=0, dtype="float32",
                    model="tiny", dataset="mnist", solver={"lr": 0.05, "schedule": "cosine"}, schedule_steps=8)
    return make_manifest(**{**settings, **changes})


def test_resume_checks_the_manifest_and_keeps_the_schedule_length(tmp_path):
    with RunDir(tmp_path).acquire() as run:
        run.start(_manifest(), resume=False)
    with RunDir(tmp_path).acquire(resume=True) as run:
        with pytest.raises(RunMismatch) as err:
            run.start(_manifest(batch_size=64, steps_per_epoch=2, solver={"lr": 0.1, "schedule": "cosine"},
                                epochs=4), resume=True)
    message = str(err.value)
    assert message == (f"{tmp_path / 'manifest.json'}: the run was made with batch_size 32, solver.lr 0.05, "
                       "steps_per_epoch 4; asked for batch_size 64, solver.lr 0.1, steps_per_epoch 2: a resumed run "
                       "keeps them")
    assert err.value.differences == [("batch_size", 32, 64), ("solver.lr", 0.05, 0.1), ("steps_per_epoch", 4, 2)]
    for changes in ({"model": "lenet5"}, {"dataset": "fashion_mnist"}, {"dtype": "bfloat16"}, {"seed": 1}):
        with RunDir(tmp_path).acquire(resume=True) as run, pytest.raises(RunMismatch, match=list(changes)[0]):
            run.start(_manifest(**changes), resume=True)
    with RunDir(tmp_path).acquire(resume=True) as run:  # more epochs: the schedule keeps its 8 steps
        assert run.start(_manifest(epochs=5, schedule_steps=20), resume=True)["schedule_steps"] == 8
    assert json.loads((tmp_path / "manifest.json").read_text())["epochs"] == 5
    with RunDir(tmp_path).acquire(resume=True) as run:  # unless asked to stretch it
        assert run.start(_manifest(epochs=6, schedule_steps=24), resume=True, rescale_schedule=True)[
            "schedule_steps"] == 24


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")  # no stray 'Event loop is closed'
def test_resume_past_damaged_checkpoint_and_metrics_gives_the_uninterrupted_run(trainer, data, reference, tmp_path,
                                                                                 caplog):
    fit(trainer, *data, epochs=3, out_dir=tmp_path)
    _damage(tmp_path, 12)
    metrics = (tmp_path / "metrics.jsonl").read_text()
    (tmp_path / "metrics.jsonl").write_text(metrics[: len(metrics) // 2])  # cut mid-line
    with caplog.at_level(logging.INFO, logger="jaxcnn"):
        ts, history = fit(trainer, *data, epochs=3, out_dir=tmp_path, resume=True)
    log = caplog.text
    assert f"checkpoint {tmp_path / 'checkpoints' / '12'} does not load, skipped: ValueError" in log
    assert f"removed checkpoint {tmp_path / 'checkpoints' / '12'}" in log
    assert f"resuming {tmp_path} after epoch 2 (step 8), from checkpoint {tmp_path / 'checkpoints' / '8'}" in log
    _same(ts.params, reference[0].params)
    assert without_timings(history) == without_timings(reference[1]) == without_timings(_metric_lines(tmp_path))
    assert _steps(tmp_path) == [4, 8, 12] and Checkpointer(tmp_path / "checkpoints").restore().step == 12


def test_no_checkpoint_that_loads_is_an_error_naming_each(trainer, data, tmp_path):
    fit(trainer, *data, epochs=2, out_dir=tmp_path)
    for step in (4, 8):
        _damage(tmp_path, step)
    with pytest.raises(CheckpointError, match=r"no checkpoint loads: step 8: ValueError: .*; step 4: ValueError"):
        fit(trainer, *data, epochs=2, out_dir=tmp_path, resume=True)


def test_resume_asks_for_at_least_the_epochs_done(trainer, data, tmp_path):
    ts, history = fit(trainer, *data, epochs=2, out_dir=tmp_path)
    with pytest.raises(ConfigError, match=f"epochs 1: fewer than the 2 epochs the run in {tmp_path} has done"):
        fit(trainer, *data, epochs=1, out_dir=tmp_path, resume=True)
    again, same = fit(trainer, *data, epochs=2, out_dir=tmp_path, resume=True)  # done: nothing to train
    assert same == history and _steps(tmp_path) == [4, 8]
    _same(again.params, ts.params)


def test_run_dir_metrics_and_load(trainer, data, tmp_path):
    fit(trainer, *data, epochs=1, out_dir=tmp_path, meta={"model": "tiny"})
    run = rundir.load(tmp_path / "checkpoints")  # the checkpoints/ directory names the run too
    assert run.manifest["model"] == "tiny" and run.step == 4 and set(run.params) == {"conv1", "fc"}
    assert RunDir(tmp_path, primary=False).read_metrics()[0]["epoch"] == 1
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1}\n{"epoch": 2, "trai')
    with pytest.raises(RunDirError, match=r"metrics.jsonl, line 2: not a JSON record"):
        RunDir(tmp_path, primary=False).read_metrics()
    with pytest.raises(RunDirError, match="no manifest.json, not a training run's directory"):
        rundir.load(tmp_path / "checkpoints" / "4")


def test_a_write_cut_short_leaves_the_file_as_it_was(tmp_path, monkeypatch):
    with RunDir(tmp_path).acquire() as run:
        run.start(_manifest(), resume=False)
        run.write_metrics([{"epoch": 1}])

        def crash(label):
            if label == "metrics-2-temp":
                raise KeyboardInterrupt  # stands for the process dying between the temp file and the rename
        monkeypatch.setattr(rundir, "fault_hook", crash)
        with pytest.raises(KeyboardInterrupt):
            run.write_metrics([{"epoch": 1}, {"epoch": 2}])
        assert _metric_lines(tmp_path) == [{"epoch": 1}] and (tmp_path / ".metrics.jsonl.tmp").exists()
    monkeypatch.undo()
    RunDir(tmp_path).acquire(resume=True).release()
    assert not (tmp_path / ".metrics.jsonl.tmp").exists()


# -- the divergence guard and signals ----------------------------------------------------------------------------
@pytest.mark.slow
def test_a_non_finite_loss_stops_training_and_keeps_the_good_checkpoints(data, tmp_path):
    """NaN updates from step 17 on (epoch 5): the loss of step 18 is NaN. With max_to_keep 3 the good checkpoints
    of epochs 2-4 stay; no later one is written."""
    with pytest.raises(Diverged) as err:
        fit(_trainer(_nan_from(17)), *data, epochs=6, out_dir=tmp_path)
    assert err.value.step == 18 and err.value.what == "loss nan"
    assert str(err.value) == (f"training diverged: loss nan at step 18; nothing after it was saved (the last "
                              f"checkpoint, {tmp_path / 'checkpoints' / '16'}, is kept); a lower learning rate may "
                              "help")
    assert _steps(tmp_path) == [8, 12, 16] and [r["epoch"] for r in _metric_lines(tmp_path)] == [1, 2, 3, 4]
    restored = Checkpointer(tmp_path / "checkpoints").restore()
    assert all(np.isfinite(a).all() for a in jax.tree.leaves(restored.tree["params"]))


@pytest.mark.slow
def test_non_finite_parameters_are_never_checkpointed(data, tmp_path):
    """NaN from the last update of epoch 2 (step 8): every loss of that epoch is finite, its parameters are not."""
    with pytest.raises(Diverged, match="non-finite parameters or statistics at step 8"):
        fit(_trainer(_nan_from(8)), *data, epochs=3, out_dir=tmp_path)
    assert _steps(tmp_path) == [4] and len(_metric_lines(tmp_path)) == 1


def test_sigterm_mid_epoch_saves_and_resume_gives_the_same_run(trainer, data, reference, tmp_path):
    def stop_in_epoch_2(p):
        if (p.epoch, p.step) == (2, 2):
            signal.raise_signal(signal.SIGTERM)

    with pytest.raises(Interrupted) as err:
        fit(trainer, *data, epochs=3, out_dir=tmp_path, on_progress=stop_in_epoch_2)
    assert err.value.step == 6 and str(err.value) == (f"stopped by SIGTERM at step 6; checkpoint saved in "
                                                      f"{tmp_path / 'checkpoints' / '6'}")
    assert _steps(tmp_path) == [4, 6] and len(_metric_lines(tmp_path)) == 1
    ts, history = fit(trainer, *data, epochs=3, out_dir=tmp_path, resume=True)
    _same(ts.params, reference[0].params)
    # the losses of epoch 2's first steps were saved with checkpoint 6: the metrics are the uninterrupted run's
    assert without_timings(history) == without_timings(reference[1])


# -- run_training: the schedule on resume --------------------------------------------------------------------------
@pytest.mark.slow
def test_more_epochs_keep_the_schedule_unless_rescaled(data, tmp_path, caplog):
    """Cosine over 2 epochs reaches a learning rate of 0: a third epoch with the schedule kept changes nothing,
    one with the schedule rescaled over 3 epochs does."""
    config = RunConfig(model="tiny", dataset="blobs", batch_size=BATCH, epochs=2, steps_per_dispatch=2,
                       solver=SolverConfig(lr=0.05, schedule="cosine", weight_decay=0.0))
    spec = RunSpec(config, _net(), *data, preprocess=lambda x: x.astype(jnp.float32) / 256)
    for out in (tmp_path / "kept", tmp_path / "rescaled"):
        run_training(spec, out)
    two_epochs = rundir.load(tmp_path / "kept").params
    more = dataclasses.replace(spec, config=dataclasses.replace(config, epochs=3))
    with caplog.at_level(logging.INFO, logger="jaxcnn"):
        results = run_training(more, tmp_path / "kept", resume=True)
    assert "the learning-rate schedule keeps its length of 8 steps (2 epochs); the steps after it use its final " \
           "rate, 0" in caplog.text
    assert results["epochs"] == 3 and rundir.load(tmp_path / "kept").step == 12
    _same(rundir.load(tmp_path / "kept").params, two_epochs)
    run_training(more, tmp_path / "rescaled", resume=True, rescale_schedule=True)
    assert json.loads((tmp_path / "rescaled" / "manifest.json").read_text())["schedule_steps"] == 12
    assert not np.array_equal(rundir.load(tmp_path / "rescaled").params["fc"]["w"], two_epochs["fc"]["w"])
    written = json.loads((tmp_path / "kept" / "results.json").read_text())
    assert written == results and written["seconds"] == pytest.approx(
        sum(r["seconds"] for r in _metric_lines(tmp_path / "kept")))


# -- fit's start, and run_training as the one path of every command ------------------------------------------------
@pytest.mark.slow
def test_start_makes_a_new_runs_initial_state_but_not_a_resumed_ones(trainer, data, tmp_path):
    def zeroed(ts):
        return ts._replace(params=jax.tree.map(jnp.zeros_like, ts.params))

    ts, _ = fit(trainer, *data, epochs=1, out_dir=tmp_path, start=zeroed)
    plain, _ = fit(trainer, *data, epochs=1)
    assert not np.array_equal(ts.params["fc"]["w"], plain.params["fc"]["w"])
    resumed, _ = fit(trainer, *data, epochs=2, out_dir=tmp_path, resume=True, start=zeroed)
    _same(resumed.params, fit(trainer, *data, epochs=2, start=zeroed)[0].params)  # the checkpoint's, not zeroed


MNIST_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"  # ../shared/data/mnist
SOFTMAX_NET = """name: "softmax"
layer { name: "mnist" type: "Data" top: "data" top: "label" include { phase: TRAIN }
  data_param { source: "mnist_train_lmdb" batch_size: BATCH } transform_param { scale: 0.00390625 } }
layer { name: "mnist" type: "Data" top: "data" top: "label" include { phase: TEST }
  data_param { source: "mnist_test_lmdb" batch_size: 100 } transform_param { scale: 0.00390625 } }
layer { name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1" inner_product_param { num_output: 10 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip1" bottom: "label" top: "loss" }
"""
SOFTMAX_SOLVER = """net: "softmax.prototxt"
base_lr: 0.01
lr_policy: "fixed"
max_iter: 1
snapshot_prefix: "runs/softmax"
"""


def _softmax_solver(directory, batch):
    """A Caffe solver of softmax regression on MNIST's files (the Data layers name mnist): one epoch."""
    (directory / "softmax.prototxt").write_text(SOFTMAX_NET.replace("BATCH", str(batch)))
    (directory / "solver.prototxt").write_text(SOFTMAX_SOLVER)
    return directory / "solver.prototxt"


@pytest.mark.slow
@pytest.mark.skipif(not MNIST_DIR.exists(), reason=f"MNIST not at {MNIST_DIR}")
def test_a_caffe_run_resumed_with_an_edited_solver_names_the_solver_setting(tmp_path):
    solver, out = _softmax_solver(tmp_path, batch=1000), tmp_path / "run"
    results = run_training(caffe_run.load(solver, data_dir=MNIST_DIR), out)
    steps = results["steps"]  # one epoch of MNIST's training images
    assert results["caffemodel"] == f"softmax_iter_{steps}.caffemodel" and (out / results["caffemodel"]).exists()
    manifest = (out / "manifest.json").read_text()
    assert json.loads(manifest)["solver"]["lr"] == 0.01 and json.loads(manifest)["schedule_steps"] == 1
    solver.write_text(SOFTMAX_SOLVER.replace("base_lr: 0.01", "base_lr: 0.02"))
    edited = caffe_run.load(solver, data_dir=MNIST_DIR)
    with pytest.raises(RunMismatch, match=r"made with solver\.lr 0\.01; asked for solver\.lr 0\.02") as err:
        run_training(edited, out, resume=True)
    assert err.value.differences == [("solver.lr", 0.01, 0.02)]
    assert (out / "manifest.json").read_text() == manifest and not (out / rundir.LOCK).exists()


@pytest.mark.slow
def test_zoo_and_caffe_commands_make_run_directories_of_one_shape(tmp_path, capsys):
    """`python -m experiments.mnist` (a zoo model) and `python -m jaxcnn train` (a Caffe solver) both go through
    run_training: the same files, manifest and results, but what only a Caffe run has (its solver file, its
    caffemodel and solverstate)."""
    mnist_dir = write_mnist_like(tmp_path / "mnist", n_train=64, n_test=32)
    zoo_out, caffe_out = tmp_path / "zoo", tmp_path / "caffe"
    mnist_command.main(["--data-dir", str(mnist_dir), "--model", "lenet5", "--epochs", "1", "--batch-size", "32",
                        "--out", str(zoo_out)])
    jaxcnn_command(["train", "--solver", str(_softmax_solver(tmp_path, batch=32)), "--data-dir", str(mnist_dir),
                    "--out", str(caffe_out)])
    assert "test accuracy" in capsys.readouterr().out
    files = {p.name for p in zoo_out.iterdir()}
    assert files - {"conv1_filters.png"} == {p.name for p in caffe_out.iterdir()} - {"softmax_iter_2.caffemodel",
                                                                                   "softmax_iter_2.solverstate"}
    for name, only_caffe in (("manifest.json", {"solver_file"}), ("results.json", {"caffemodel", "solverstate"})):
        zoo, caffe = (json.loads((out / name).read_text()) for out in (zoo_out, caffe_out))
        assert zoo.keys() == caffe.keys() - only_caffe, name
    assert json.loads((caffe_out / "results.json").read_text())["steps"] == 2
