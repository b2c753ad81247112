"""jaxcnn.export.stablehlo and what every export shares: the StableHLO artefact against Net.apply (in this process,
and reloaded in a fresh one without jaxcnn), `python -m jaxcnn export RUN_DIR --stablehlo`, and files written
whole or not at all. Needs JAX and flatbuffers (tests/test_export.py, the ONNX side, uses the helpers here)."""
import subprocess
import sys
from pathlib import Path

import caffe_nets
import jax
import numpy as np
import pytest
from conftest import random_params

from jaxcnn import zoo
from jaxcnn.__main__ import main
from jaxcnn.caffe import load_prototxt, parse_prototxt
from jaxcnn.export import write_atomic
from jaxcnn.train import RunDir
from jaxcnn.train.rundir import make_manifest

stablehlo = pytest.importorskip("jaxcnn.export.stablehlo", reason="StableHLO export needs the export extra",
                                exc_type=ImportError)
save_stablehlo, to_stablehlo = stablehlo.save_stablehlo, stablehlo.to_stablehlo
CAFFE_DIR = Path(__file__).resolve().parents[1] / "experiments" / "caffe"
LENET, SOLVER = CAFFE_DIR / "lenet_bn_train_test.prototxt", CAFFE_DIR / "lenet_solver.prototxt"


def nchw(y):
    y = np.asarray(y)
    return y.transpose(0, 3, 1, 2) if y.ndim == 4 else y


def reference(net, params, state, xs):
    """Net.apply in evaluation, compiled once, -> {output blob: NCHW array}."""
    x = next(iter(xs.values())) if len(xs) == 1 else xs
    y = jax.jit(lambda p, s, x: net.apply(p, s, x, lowering="native")[0])(params, state, x)
    return {b: nchw(v) for b, v in (y.items() if isinstance(y, dict) else [(net.outputs[0], y)])}


def inputs(net, batch=2, seed=1):
    """{input blob: standard normal (batch, *shape) float32}."""
    rng = np.random.default_rng(seed)
    return {b: rng.standard_normal((batch, *s)).astype(np.float32) for b, s in net.input_shapes().items()}


def rel_err(actual, expected):
    """max |actual - expected| / max |expected|."""
    return float(np.abs(np.asarray(actual) - expected).max() / np.abs(expected).max())


def write_run(path, seed, net=None, **manifest):
    """A run directory as jaxcnn.train writes it: a manifest (by default naming lenet5 on MNIST) and one checkpoint
    (step 4) of random weights for `net` (lenet5) -> (path, params, state)."""
    params, state = random_params(net or zoo.lenet5(), seed)
    manifest = {"model": "lenet5", "dataset": "mnist", **manifest}
    with RunDir(path).acquire() as run:
        run.start(make_manifest(batch_size=1, steps_per_epoch=1, train_examples=1, epochs=1, seed=seed,
                                dtype="float32", **manifest), resume=False)
        run.save(4, {"params": params, "state": state}, history=[])
    return path, params, state


def test_stablehlo_is_jaxcnns_inference():
    net = parse_prototxt(caffe_nets.GOOGLENET_BLOCK)
    params, state = random_params(net)
    exported = jax.export.deserialize(to_stablehlo(net, params, state).serialize())
    assert exported.platforms == ("cpu", "cuda", "rocm", "tpu")
    for batch in (1, 3):  # a symbolic batch
        xs = inputs(net, batch)
        [want] = reference(net, params, state, xs).values()
        assert rel_err(nchw(exported.call(xs["data"])), want) <= 1e-6


@pytest.mark.slow
def test_stablehlo_artefact_runs_in_a_fresh_process(tmp_path):
    net = zoo.lenet_caffe()
    params, state = random_params(net)
    save_stablehlo(net, params, state, tmp_path / "lenet.stablehlo")
    save_stablehlo(net, params, state, tmp_path / "lenet_b2.stablehlo", batch=2, platforms=("cpu",))
    x = inputs(net, 3)["data"]
    np.save(tmp_path / "x.npy", x)
    script = """import sys, numpy as np
from jax import export
d = sys.argv[1]
x = np.load(d + '/x.npy')
exported = export.deserialize(open(d + '/lenet.stablehlo', 'rb').read())
np.save(d + '/y.npy', np.asarray(exported.call(x)))
fixed = export.deserialize(open(d + '/lenet_b2.stablehlo', 'rb').read())
np.save(d + '/y2.npy', np.asarray(fixed.call(x[:2])))
print(sorted(name for name in sys.modules if name.startswith('jaxcnn')))"""
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"  # JAX alone ran it
    want = reference(net, params, state, {"data": x})["ip2"]
    assert rel_err(np.load(tmp_path / "y.npy"), want) <= 1e-6
    assert rel_err(np.load(tmp_path / "y2.npy"), want[:2]) <= 1e-6


def test_export_of_a_run_directory(tmp_path, capsys):
    run, params, state = write_run(tmp_path / "run", 7)
    main(["export", str(run), "--stablehlo", str(tmp_path / "run.stablehlo"), "--batch", "2"])
    assert capsys.readouterr().out == f"wrote {tmp_path / 'run.stablehlo'}: lenet5 (data (28, 28, 1); batch 2), " \
                                      f"weights checkpoint {run} (step 4)\n"
    exported = jax.export.deserialize((tmp_path / "run.stablehlo").read_bytes())
    assert exported.in_avals[0].shape == (2, 28, 28, 1)
    xs = inputs(zoo.lenet5(), 2)
    assert rel_err(exported.call(xs["data"]), reference(zoo.lenet5(), params, state, xs)["fc3"]) <= 1e-6


def test_export_of_a_caffe_solvers_run(tmp_path):
    """A `jaxcnn train --solver` run: its net is the solver's, in the TEST phase, at the dataset's image size."""
    net = load_prototxt(LENET, "TEST", (28, 28, 1))
    run, params, state = write_run(tmp_path / "run", 3, net, model="LeNet", solver_file=str(SOLVER))
    main(["export", str(run), "--stablehlo", str(tmp_path / "run.stablehlo")])
    exported = jax.export.deserialize((tmp_path / "run.stablehlo").read_bytes())
    xs = inputs(net, 3)
    assert rel_err(exported.call(xs["data"]), reference(net, params, state, xs)["ip2"]) <= 1e-6


def test_a_failed_write_leaves_what_was_there(tmp_path, monkeypatch):
    path = tmp_path / "net.onnx"
    path.write_bytes(b"before")

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, b"after")
    assert path.read_bytes() == b"before" and [p.name for p in tmp_path.iterdir()] == ["net.onnx"]
