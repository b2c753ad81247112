"""Fine-tuning from caffemodels and resuming from Caffe's .solverstate (jaxcnn.train.caffe_start,
jaxcnn.caffe.solverstate, `python -m jaxcnn train --weights / --snapshot`). References: files built from the protobuf
messages with NumPy blobs in Caffe's layout, Caffe's history layout written out by hand, and uninterrupted runs."""
import json
import logging
import shutil
from pathlib import Path

import caffe_nets
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from synthetic import write_mnist_like

from jaxcnn.__main__ import main
from jaxcnn.caffe import CaffeFormatError, parse_prototxt, save_caffemodel, schema
from jaxcnn.caffe.data_layers import mean_blob
from jaxcnn.train import ConfigError, SolverConfig, Trainer, optimizer
from jaxcnn.train.caffe_start import CAFFE_TYPES, fine_tune, from_solverstate, save_solverstate
from jaxcnn.train.solver import AccumulatorState

CAFFE_DIR = Path(__file__).resolve().parents[1] / "experiments" / "caffe"
TOTAL = 100  # the optimizer's total_steps
# Caffe's learnable blobs of _net(): c1 weights and bias, c1_bn's three, c1_scale's gamma and beta, fc's two.
CAFFE_SHAPES = [(4, 1, 3, 3), (4,), (4,), (4,), (1,), (4,), (4,), (3, 64), (3,)]
SETTINGS = {"sgd": 0.05, "nesterov": 0.05, "adagrad": 0.05, "rmsprop": 0.01, "adadelta": 1.0, "adam": 0.01}


def _net(head="fc", outputs=3):
    """6x6 grey input, conv 3x3 -> 4 channels (lr_mult 1 and 2), BatchNorm + Scale, ReLU, InnerProduct on the
    flattened (4, 4, 4) map."""
    return parse_prototxt('name: "tiny"\n' + caffe_nets._input(1, 6, 6) + caffe_nets.conv("c1", "data", 4, 3)
                          + caffe_nets.bn_scale("c1", "c1") + caffe_nets.relu("r1", "c1")
                          + caffe_nets.ip(head, "c1", outputs))


def _setup(opt, net=None, **settings):
    config = SolverConfig(optimizer=opt, lr=SETTINGS.get(opt, 0.01), schedule="step", stepsize=2, gamma=0.5,
                          **settings)
    net = net or _net()
    tx = optimizer(config, TOTAL, *net.multipliers())
    return config, Trainer(net, tx, batch_size=8, preprocess=lambda x: x.astype(jnp.float32) / 256)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (64, 6, 6, 1), np.uint8), rng.integers(0, 3, 64)


def _blob(array, legacy=False):
    blob = schema.BlobProto()
    if legacy:  # Caffe's old num/channels/height/width
        blob.num, blob.channels, blob.height, blob.width = array.shape
    else:
        blob.shape.dim.extend(array.shape)
    blob.data.extend(np.asarray(array, np.float32).ravel().tolist())
    return blob


def _caffemodel(path, layers):
    """Write {name: (type, [arrays in Caffe's layout])} as a caffemodel, straight from the protobuf messages."""
    proto = schema.NetParameter(name="tiny")
    for name, (kind, arrays) in layers.items():
        proto.layer.add(name=name, type=kind).blobs.extend(_blob(a) for a in arrays)
    Path(path).write_bytes(proto.SerializeToString())


def _random_blobs(rng, outputs=3):
    r = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    return {"c1": ("Convolution", [r(4, 1, 3, 3), r(4)]),
            "c1_bn": ("BatchNorm", [r(4), np.abs(r(4)) * 2, np.array([2.0], np.float32)]),
            "c1_scale": ("Scale", [r(4), r(4)]),
            "fc": ("InnerProduct", [r(outputs, 64), r(outputs)])}


def _hwio(w):  # Caffe's (O, I, KH, KW) -> jaxcnn's (KH, KW, I, O)
    return np.transpose(w, (2, 3, 1, 0))


def _dense(w):  # Caffe's (O, C*H*W) over a (C, H, W) = (4, 4, 4) map -> jaxcnn's (H*W*C, O)
    return w.reshape(-1, 4, 4, 4).transpose(2, 3, 1, 0).reshape(64, -1)


def _state_of(opt_state, kind):
    return next(s for s in jax.tree.leaves(opt_state, is_leaf=lambda s: isinstance(s, kind)) if isinstance(s, kind))


def _close(a, b, rtol=1e-5):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=1e-6), a, b)


# -- fine-tuning ---------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_fine_tune_copies_the_layers_of_matching_names_and_keeps_the_runs_init_for_the_rest(tmp_path, caplog):
    rng = np.random.default_rng(1)
    blobs = _random_blobs(rng)
    _caffemodel(tmp_path / "a.caffemodel", {**blobs, "gone": ("InnerProduct", [np.ones((2, 2), np.float32)])})
    _, trainer = _setup("sgd", _net("fc_new", 5))  # Caffe's flickr_style: fc8 renamed fc8_flickr, new outputs
    with caplog.at_level(logging.INFO, logger="jaxcnn"):
        start = fine_tune(trainer, [tmp_path / "a.caffemodel"])
    assert "['fc', 'gone'] that tiny does not have" in caplog.text
    assert "['fc_new'] start from their fillers" in caplog.text
    init = jax.device_get(trainer.init(7))
    ts = jax.device_get(start(trainer.init(7)))
    np.testing.assert_array_equal(ts.params["c1"]["w"], _hwio(blobs["c1"][1][0]))
    np.testing.assert_array_equal(ts.params["c1"]["b"], blobs["c1"][1][1])
    np.testing.assert_array_equal(ts.params["c1_scale"]["gamma"], blobs["c1_scale"][1][0])
    np.testing.assert_allclose(ts.state["c1_bn"]["mean"], blobs["c1_bn"][1][0] / 2)
    _close(ts.params["fc_new"], init.params["fc_new"], rtol=0)  # the seed's init, not key(0)'s
    _close((ts.opt_state, ts.rng, ts.step), (init.opt_state, init.rng, init.step), rtol=0)
    # several files, as Caffe's -weights a,b: the later one's blobs win
    _caffemodel(tmp_path / "b.caffemodel", {"c1": ("Convolution", [np.ones((4, 1, 3, 3), np.float32),
                                                                   np.zeros(4, np.float32)])})
    ts = jax.device_get(fine_tune(trainer, [tmp_path / "a.caffemodel", tmp_path / "b.caffemodel"])(trainer.init(7)))
    assert (ts.params["c1"]["w"] == 1).all()
    np.testing.assert_array_equal(ts.params["c1_scale"]["beta"], blobs["c1_scale"][1][1])


def test_fine_tune_shape_mismatch_names_the_file_the_layer_and_both_shapes(tmp_path):
    _caffemodel(tmp_path / "a.caffemodel", _random_blobs(np.random.default_rng(1)))
    _, trainer = _setup("sgd", _net("fc", 5))
    with pytest.raises(CaffeFormatError, match=rf"^{tmp_path / 'a.caffemodel'}: layer 'fc' \(InnerProduct\): blob 0 "
                                               r"has shape \(3, 64\), the layer needs \(5, 64\)"):
        fine_tune(trainer, [tmp_path / "a.caffemodel"])
    with pytest.raises(FileNotFoundError, match="missing.caffemodel: no such caffemodel file"):
        fine_tune(trainer, [tmp_path / "missing.caffemodel"])


# -- solverstate ---------------------------------------------------------------------------------------------------
def _caffe_history(opt_state, opt, lr):
    """What Caffe's solver of type `opt` holds for jaxcnn's opt_state, one params-like tree per set."""
    if opt in ("sgd", "nesterov"):  # Caffe's h is lr-scaled: h = momentum h + lr lr_mult g
        return [jax.tree.map(lambda v: lr * np.asarray(v), _state_of(opt_state, optax.TraceState).trace)]
    if opt == "adam":
        adam = _state_of(opt_state, optax.ScaleByAdamState)
        return [adam.mu, adam.nu]
    acc = _state_of(opt_state, AccumulatorState)
    return [acc.first, acc.second] if opt == "adadelta" else [acc.first]


@pytest.mark.slow
@pytest.mark.parametrize("opt,iter_size", [(opt, 1) for opt in CAFFE_TYPES] + [("sgd", 2)])
def test_resume_from_solverstate_continues_the_run(opt, iter_size, data, tmp_path):
    """N steps, the solverstate (Caffe's layout) and caffemodel, resume, M steps == N + M steps uninterrupted."""
    config, trainer = _setup(opt, iter_size=iter_size)
    images, labels = trainer.put(data)
    perm = trainer.permutation(trainer.init(0), 0, len(data[1]))
    n, m = 3 * iter_size, 2 * iter_size
    whole, _ = trainer.train_steps(trainer.init(0), images, labels, perm, 0, n + m)
    part, _ = trainer.train_steps(trainer.init(0), images, labels, perm, 0, n)
    part = jax.device_get(part)
    save_caffemodel(trainer.net, part.params, part.state, tmp_path / "tiny_iter_3.caffemodel")
    save_solverstate(trainer, config, TOTAL, part, tmp_path / "tiny_iter_3.solverstate",
                     tmp_path / "tiny_iter_3.caffemodel")

    proto = schema.SolverState()
    proto.ParseFromString((tmp_path / "tiny_iter_3.solverstate").read_bytes())
    sets = 2 if opt in ("adam", "adadelta") else 1
    assert (proto.iter, proto.learned_net) == (3, str(tmp_path / "tiny_iter_3.caffemodel"))
    assert [tuple(b.shape.dim) for b in proto.history] == CAFFE_SHAPES * sets
    history = [np.asarray(b.data, np.float32).reshape(b.shape.dim) for b in proto.history]
    lr = config.lr * config.gamma ** (3 // config.stepsize)  # Caffe's step policy at iter 3
    for k, tree in enumerate(_caffe_history(part.opt_state, opt, lr)):
        got = history[k * 9:(k + 1) * 9]
        _close(_hwio(got[0]), tree["c1"]["w"], rtol=1e-6)
        _close(_dense(got[7]), tree["fc"]["w"], rtol=1e-6)
        _close(got[5], tree["c1_scale"]["gamma"], rtol=1e-6)
        assert not any(h.any() for h in got[2:5])  # BatchNorm's blobs: Caffe keeps history, never updated

    resumed = from_solverstate(trainer, config, TOTAL, tmp_path / "tiny_iter_3.solverstate")(trainer.init(0))
    assert int(resumed.step) == n
    _close(jax.device_get(resumed.opt_state), part.opt_state)
    resumed, _ = trainer.train_steps(resumed, images, labels, perm, n, m)
    _close((resumed.params, resumed.state), (whole.params, whole.state))


@pytest.mark.slow
def test_a_solverstate_written_as_caffe_writes_it_is_read(tmp_path):
    """A .solverstate and caffemodel built from the protobuf messages (one history blob in the legacy 4-d form;
    learned_net naming a directory that is not there, found beside the solverstate by its name)."""
    rng = np.random.default_rng(2)
    blobs = _random_blobs(rng)
    _caffemodel(tmp_path / "hand.caffemodel", blobs)
    history = [rng.standard_normal(s).astype(np.float32) for s in CAFFE_SHAPES]
    proto = schema.SolverState(iter=7, learned_net="snapshots/hand.caffemodel", current_step=0)
    proto.history.extend(_blob(h, legacy=h.ndim == 4) for h in history)
    (tmp_path / "hand.solverstate").write_bytes(proto.SerializeToString())
    config = SolverConfig(optimizer="sgd", lr=0.1, schedule="fixed")
    net = _net()
    trainer = Trainer(net, optimizer(config, TOTAL, *net.multipliers()), batch_size=8, preprocess=lambda x: x)
    ts = jax.device_get(from_solverstate(trainer, config, TOTAL, tmp_path / "hand.solverstate")(trainer.init(0)))
    assert int(ts.step) == 7
    np.testing.assert_array_equal(ts.params["c1"]["w"], _hwio(blobs["c1"][1][0]))
    np.testing.assert_array_equal(ts.params["fc"]["w"], _dense(blobs["fc"][1][0]))
    trace = _state_of(ts.opt_state, optax.TraceState).trace
    np.testing.assert_allclose(trace["c1"]["w"], _hwio(history[0]) / np.float32(0.1), rtol=1e-6)
    np.testing.assert_allclose(trace["fc"]["w"], _dense(history[7]) / np.float32(0.1), rtol=1e-6)
    np.testing.assert_allclose(trace["c1_scale"]["beta"], history[6] / np.float32(0.1), rtol=1e-6)
    assert int(_state_of(ts.opt_state, optax.ScaleByScheduleState).count) == 7

    with pytest.raises(CaffeFormatError, match=r"hand.solverstate: 9 history blobs: Caffe's Adam keeps 2 per"):
        from_solverstate(*_setup("adam")[::-1], TOTAL, tmp_path / "hand.solverstate")
    proto.history.extend(_blob(h) for h in history)
    (tmp_path / "twice.solverstate").write_bytes(proto.SerializeToString())
    with pytest.raises(CaffeFormatError, match=r"twice.solverstate: history for Caffe's SGD \(1 per learnable "
                                               r"blob\): 18 blobs for the 9 learnable blobs of tiny"):
        from_solverstate(trainer, config, TOTAL, tmp_path / "twice.solverstate")
    with pytest.raises(ConfigError, match="optimizer adamw: has no Caffe solverstate"):
        from_solverstate(*_setup("adamw")[::-1], TOTAL, tmp_path / "hand.solverstate")
    (tmp_path / "hand.caffemodel").unlink()
    with pytest.raises(FileNotFoundError, match="learned_net 'snapshots/hand.caffemodel' not found"):
        from_solverstate(trainer, config, TOTAL, tmp_path / "hand.solverstate")


# -- the command line ----------------------------------------------------------------------------------------------
def _lenet_files(tmp_path, max_iter):
    for name in ("lenet_bn_train_test.prototxt", "lenet_solver.prototxt"):
        shutil.copy(CAFFE_DIR / name, tmp_path / name)
    solver = tmp_path / "lenet_solver.prototxt"
    solver.write_text(solver.read_text().replace("max_iter: 10000", f"max_iter: {max_iter}"))
    return solver


def test_train_weights_and_snapshot_errors_are_one_line_and_create_nothing(tmp_path, capsys):
    solver = _lenet_files(tmp_path, 32)
    data = write_mnist_like(tmp_path / "mnist", n_train=128, n_test=64)
    _caffemodel(tmp_path / "wide.caffemodel", {"ip2": ("InnerProduct", [np.zeros((5, 500), np.float32),
                                                                         np.zeros(5, np.float32)])})
    (tmp_path / "mean.binaryproto").write_bytes(mean_blob(np.zeros((28, 28, 1))))  # parses as an empty NetParameter
    out = tmp_path / "runs" / "caffe"
    for flags, line in [
        (["--weights", str(tmp_path / "missing.caffemodel")], f"{tmp_path / 'missing.caffemodel'}: no such caffemodel "
                                                              "file"),
        (["--weights", str(tmp_path / "wide.caffemodel")], f"{tmp_path / 'wide.caffemodel'}: layer 'ip2' "
         "(InnerProduct): blob 0 has shape (5, 500), the layer needs (10, 500) (Caffe's layout)"),
        (["--snapshot", str(tmp_path / "missing.solverstate")], f"{tmp_path / 'missing.solverstate'}: no such "
                                                                "solverstate file"),
        (["--weights", f"{tmp_path / 'wide.caffemodel'},"], f"--weights '{tmp_path / 'wide.caffemodel'},': expected "
                                                             "caffemodel paths separated by commas, with none empty"),
        (["--weights", str(tmp_path / "mean.binaryproto")], f"{tmp_path / 'mean.binaryproto'}: holds no layers: not a "
                                                            "caffemodel (Caffe's binary NetParameter)"),
        (["--weights", str(tmp_path)], f"{tmp_path}: a directory, not a caffemodel file"),  # e.g. a run directory
        (["--weights", "a.caffemodel", "--snapshot", "b.solverstate"], "argument --snapshot: not allowed with "
                                                                       "argument --weights"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            main(["train", "--solver", str(solver), "--data-dir", str(data), "--out", str(out), *flags])
        err = capsys.readouterr().err.splitlines()
        assert exit_info.value.code == 2 and err[-1].endswith(f"error: {line}")  # argparse's begins with the prog
        assert not any("Traceback" in e for e in err)
        assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_train_writes_a_solverstate_that_snapshot_resumes_and_weights_fine_tune(tmp_path, capsys):
    """Caffe's LeNet-BN solver, 32 iterations of 16 a epoch: one epoch, then --snapshot its solverstate goes on to
    iteration 32; --weights starts a new run from its caffemodel."""
    solver = _lenet_files(tmp_path, 32)
    data = write_mnist_like(tmp_path / "mnist", n_train=1024, n_test=128)
    first, second, tuned = tmp_path / "first", tmp_path / "second", tmp_path / "tuned"
    main(["train", "--solver", str(solver), "--data-dir", str(data), "--out", str(first), "--epochs", "1"])
    state = first / "lenet_bn_iter_16.solverstate"
    assert f"wrote {first}, {first / 'lenet_bn_iter_16'}.caffemodel and .solverstate" in capsys.readouterr().out
    main(["train", "--solver", str(solver), "--data-dir", str(data), "--out", str(second), "--snapshot", str(state)])
    metrics = [json.loads(line) for line in (second / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [32]
    proto = schema.SolverState()
    proto.ParseFromString((second / "lenet_bn_iter_32.solverstate").read_bytes())
    assert proto.iter == 32 and proto.learned_net == str(second / "lenet_bn_iter_32.caffemodel")
    assert json.loads((second / "manifest.json").read_text())["snapshot"] == str(state)
    with pytest.raises(SystemExit) as stop:  # a snapshot at the run's end: nothing to train, said before --out
        main(["train", "--solver", str(solver), "--data-dir", str(data), "--out", str(tmp_path / "none"), "--epochs",
              "1", "--snapshot", str(state)])
    assert stop.value.code == 2 and capsys.readouterr().err.splitlines()[-1] == \
        f"error: {state}: iteration 16 leaves nothing to train: the run ends at step 16"
    assert not (tmp_path / "none").exists()
    main(["train", "--solver", str(solver), "--data-dir", str(data), "--out", str(tuned), "--epochs", "1",
          "--weights", str(first / "lenet_bn_iter_16.caffemodel")])
    assert (tuned / "lenet_bn_iter_16.solverstate").is_file()
    assert json.loads((tuned / "manifest.json").read_text())["weights"] == [str(first / "lenet_bn_iter_16.caffemodel")]
    main(["train", "--solver", str(solver), "--data-dir", str(data), "--out", str(second), "--overwrite",
          "--epochs", "1"])  # the Caffe files are a run's own: overwrite removes them with the rest
    assert sorted(p.name for p in second.glob("*.caffemodel")) == ["lenet_bn_iter_16.caffemodel"]
