"""The training experiments end to end, on small synthetic files in MNIST's and CIFAR-10's own formats, and
their command lines: every failure one line naming the flag, file or layer, exit status 2 or 1, no traceback."""
import argparse
import json
import logging
import os
import socket
import subprocess
import sys

import pytest
from synthetic import write_cifar_like, write_mnist_like

from experiments import cifar10, fc_as_conv, mnist
from jaxcnn import LayerError, cli
from jaxcnn import __main__ as jaxcnn_main
from jaxcnn.train import ConfigError, Progress, RunDir, make_manifest, rundir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

OUTPUTS = {"results.json", "metrics.jsonl", "curves.png", "misclassified.png", "checkpoints"}


@pytest.mark.slow
def test_mnist_experiment_writes_everything(tmp_path):
    data = write_mnist_like(tmp_path / "data")
    out = tmp_path / "run"
    # The blobs' label is their position, which the default 2-pixel shift augmentation blurs: train without it.
    results = mnist.main(["--data-dir", str(data), "--epochs", "2", "--out", str(out), "--batch-size", "32",
                          "--augment", "none"])
    assert OUTPUTS | {"conv1_filters.png"} <= {p.name for p in out.iterdir()}
    written = json.loads((out / "results.json").read_text())
    assert written == results
    assert 0.9 < written["test_accuracy"] <= 1.0 and written["epochs"] == 2
    assert written["train_images_per_second"] > 0 and written["seconds"] > 0
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2


@pytest.mark.slow
def test_cifar10_experiment_trains_the_local_net_on_binary_batches(tmp_path):
    data = write_cifar_like(tmp_path / "data")
    out = tmp_path / "run"
    results = cifar10.main(["--data-dir", str(data), "--epochs", "2", "--batch-size", "32", "--lr", "0.01",
                            "--optimizer", "adam", "--out", str(out)])
    assert OUTPUTS | {"conv1_filters.png"} <= {p.name for p in out.iterdir()}
    assert results["model"] == "cifar10_local" and 0.0 <= results["test_accuracy"] <= 1.0
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert history[1]["train_loss"] < history[0]["train_loss"]


def test_model_that_does_not_fit_the_images_names_the_flag(tmp_path):
    data = write_mnist_like(tmp_path / "data", n_train=64, n_test=16)
    with pytest.raises(ConfigError, match=r"model vgg16: does not fit mnist's \(28, 28, 1\) images"):
        mnist.main(["--data-dir", str(data), "--model", "vgg16", "--out", str(tmp_path / "run")])
    assert not (tmp_path / "run").exists()


def test_missing_data_says_where_it_looked(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"data_dir={tmp_path / 'nowhere'}: no such directory"):
        mnist.main(["--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run")])


# -- the command lines ---------------------------------------------------------------------------------------------
@pytest.fixture
def command(capsys):
    """Run a main(argv) as its command line does (jaxcnn.cli.entry) -> (exit status, stdout, stderr lines)."""
    logger = logging.getLogger("jaxcnn")
    saved = logger.handlers[:], logger.propagate, logger.level

    def run(main, argv):
        try:
            code = cli.entry(lambda: main(argv))
        except SystemExit as e:
            code = e.code
        out, err = capsys.readouterr()
        return code, out, err.splitlines()

    yield run
    logger.handlers[:], logger.propagate = saved[:2]
    logger.setLevel(saved[2])


@pytest.mark.parametrize("argv, code, line", [
    (["--lr", "nan"], 2, "--lr nan: must be finite and greater than 0"),
    (["--lr", "-1"], 2, "--lr -1.0: must be finite and greater than 0"),
    (["--batch-size", "0"], 2, "--batch-size 0: must be an integer of at least 1"),
    (["--batch-size", "-3"], 2, "--batch-size -3: must be an integer of at least 1"),
    (["--epochs", "0"], 2, "--epochs 0: must be an integer of at least 1"),
    (["--epochs", "-1"], 2, "--epochs -1: must be an integer of at least 1"),
    (["--steps-per-dispatch", "0"], 2, "--steps-per-dispatch 0: must be an integer of at least 1"),
    (["--momentum", "1.5"], 2, "--momentum 1.5: must lie in [0, 1)"),
    (["--schedule", "step"], 2, "--stepsize 0: the step schedule needs a stepsize of at least 1"),
    (["--coordinator", "127.0.0.1:1", "--num-processes", "2", "--process-id", "2"], 2,
     "--process-id 2: must lie in [0, 2) for 2 processes"),
    (["--out", "{file}/run"], 1, "{file}/run: cannot create a run directory there (Not a directory)"),
    (["--out", "{full}"], 2, "{full} is not empty (notes.txt): a new run needs an empty directory; --resume continues "
     "the run there, --overwrite replaces it"),
    (["--resume", "--out", "{full}"], 2, "{full} holds notes.txt but no manifest.json: not a run that can be resumed"),
])
def test_flags_are_checked_before_the_data_is_loaded(command, tmp_path, argv, code, line):
    """--data-dir names a directory that does not exist: each error comes before any data is looked for."""
    paths = {"file": tmp_path / "file", "full": tmp_path / "full"}
    paths["file"].write_text("")
    paths["full"].mkdir()
    (paths["full"] / "notes.txt").write_text("")
    argv = [a.format(**paths) for a in argv]
    status, _, err = command(mnist.main, ["--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run"),
                                          *argv])
    assert (status, err[-1]) == (code, "error: " + line.format(**paths))
    assert not any("Traceback" in e for e in err)
    assert not (tmp_path / "run").exists() and [p.name for p in paths["full"].iterdir()] == ["notes.txt"]


def test_batch_larger_than_the_training_set_and_a_locked_run(command, tmp_path):
    data = write_mnist_like(tmp_path / "data", n_train=64, n_test=16)
    status, _, err = command(mnist.main, ["--data-dir", str(data), "--batch-size", "30000", "--out",
                                          str(tmp_path / "a")])
    assert (status, err[-1]) == (2, "error: --batch-size 30000: is larger than the 64 training examples")
    assert not (tmp_path / "a").exists()
    with RunDir(tmp_path / "b").acquire():
        status, _, err = command(mnist.main, ["--data-dir", str(data), "--out", str(tmp_path / "b")])
        assert [p.name for p in (tmp_path / "b").iterdir()] == [".lock"]
    assert status == 1 and err[-1].startswith(f"error: {tmp_path / 'b'} is in use by process {os.getpid()} on ")


def test_missing_data_ends_with_one_line_after_the_places_looked(command, tmp_path):
    """The places and the fixes name the flag (the library's message names data_dir=); --out is not touched."""
    (tmp_path / "empty").mkdir()
    status, _, err = command(mnist.main, ["--data-dir", str(tmp_path / "empty"), "--out", str(tmp_path / "run")])
    assert status == 2 and err[-1] == f"error: no local copy of mnist 'train' found: nothing usable in --data-dir " \
                                      f"{tmp_path / 'empty'}."
    assert f"  - --data-dir {tmp_path / 'empty'}: {tmp_path / 'empty'}, {tmp_path / 'empty'}/mnist" in err
    assert "  - give --data-dir DIR, a directory with those files in DIR or DIR/mnist" in err
    assert not any("data_dir" in line for line in err)
    assert not (tmp_path / "run").exists()


def test_a_damaged_data_file_is_one_line_naming_it(command, tmp_path):
    data = write_mnist_like(tmp_path / "data", n_train=64, n_test=16)
    images = data / "train-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:100])
    status, _, err = command(mnist.main, ["--data-dir", str(data), "--out", str(tmp_path / "run")])
    assert (status, err) == (1, [f"error: {images}: corrupt or truncated gzip data (Compressed file ended before the "
                                 "end-of-stream marker was reached)"])
    assert not (tmp_path / "run").exists()


def test_a_stale_lock_is_taken_over_with_a_warning_and_none_is_left_after_an_error(command, tmp_path):
    """A lock whose process has ended: one warning line, no refusal; the run then ends by an error (its settings
    differ from the run there) and leaves the directory as it was, without a lock."""
    data = write_mnist_like(tmp_path / "data", n_train=64, n_test=16)
    out = tmp_path / "run"
    out.mkdir()
    manifest = make_manifest(batch_size=32, steps_per_epoch=2, train_examples=64, epochs=1, seed=0, dtype="float32",
                             model="lenet_caffe", dataset="mnist")
    (out / rundir.MANIFEST).write_text(json.dumps(manifest))
    ended = subprocess.Popen([sys.executable, "-c", ""])
    ended.wait()
    (out / rundir.LOCK).write_text(json.dumps({"pid": ended.pid, "host": socket.gethostname(), "started": "then"}))
    status, _, err = command(mnist.main, ["--data-dir", str(data), "--resume", "--batch-size", "16", "--out",
                                          str(out)])
    assert err[0] == f"warning: {out}: process {ended.pid} on {socket.gethostname()} (started then) left its lock " \
                     "behind; taking it over"
    assert (status, err[1:]) == (2, [f"error: {out / rundir.MANIFEST}: the run there was made with --batch-size 32, "
                                     "steps per epoch 2, not --batch-size 16, steps per epoch 4; --resume keeps them "
                                     "(start a new run with another --out, or --overwrite)"])
    assert sorted(p.name for p in out.iterdir()) == [rundir.MANIFEST]


@pytest.mark.slow
def test_divergence_exits_with_one_line_and_keeps_no_checkpoint(command, tmp_path):
    data = write_mnist_like(tmp_path / "data", n_train=256, n_test=16)
    status, _, err = command(mnist.main, ["--data-dir", str(data), "--model", "lenet5", "--lr", "1000", "--epochs",
                                          "2", "--batch-size", "32", "--augment", "none", "--out",
                                          str(tmp_path / "run")])
    assert status == 1 and err[-1].startswith("error: training diverged: loss nan at step ")
    assert not (tmp_path / "run" / "checkpoints").exists() or not list((tmp_path / "run" / "checkpoints").iterdir())
    assert not (tmp_path / "run" / rundir.LOCK).exists()


def _progress(steps, steps_per_epoch, epochs=2):
    return [Progress(epoch, epochs, step, steps_per_epoch, 0.5, 1000.0) for epoch in range(1, epochs + 1)
            for step in steps]


@pytest.mark.parametrize("steps_per_epoch, chunk, lines", [
    (20, 1, [2, 4, 6, 8, 10, 12, 14, 16, 18]),  # one line per tenth of the epoch, none at its end
    (20, 7, [7, 14]),  # chunks longer than a tenth: a line after each
    (1000, 50, [100, 200, 300, 400, 500, 600, 700, 800, 900]),
    (3, 1, [1, 2]),
])
def test_progress_off_a_terminal_is_a_line_per_tenth_of_an_epoch(capsys, steps_per_epoch, chunk, lines):
    bar = cli.ProgressBar(terminal=False)
    for p in _progress([*range(chunk, steps_per_epoch, chunk), steps_per_epoch], steps_per_epoch):
        bar(p)
    out = capsys.readouterr()
    assert out.out.splitlines() == [f"epoch {e}/2  {s}/{steps_per_epoch} steps  loss 0.5000  1,000 img/s"
                                    for e in (1, 2) for s in lines]
    assert out.err == ""
    cli.ProgressBar(terminal=False, enabled=False)(Progress(1, 1, 2, 20, 0.5, 1000.0))
    assert capsys.readouterr().out == ""


@pytest.mark.slow
def test_a_run_logged_to_a_file_shows_its_progress_in_lines(tmp_path):
    """stdout and stderr not terminals (CI, nohup): progress lines inside each epoch, the epoch's line, no bar."""
    data = write_mnist_like(tmp_path / "data", n_train=160, n_test=16)
    out = tmp_path / "run"
    result = subprocess.run([sys.executable, "-m", "experiments.mnist", "--data-dir", str(data), "--model", "lenet5",
                             "--epochs", "2", "--batch-size", "8", "--steps-per-dispatch", "2", "--augment", "none",
                             "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    progress = [line.split("  loss")[0] for line in lines if " steps  loss " in line]
    assert progress == [f"epoch {e}/2  {s}/20 steps" for e in (1, 2) for s in range(2, 20, 2)]
    epochs = [i for i, line in enumerate(lines) if line.startswith("epoch   ")]
    assert [lines[i].split("  train")[0] for i in epochs] == ["epoch   1  step     20", "epoch   2  step     40"]
    assert [lines[i - 1].split("  loss")[0] for i in epochs] == ["epoch 1/2  18/20 steps", "epoch 2/2  18/20 steps"]
    assert "\r" not in result.stderr and "\r" not in result.stdout
    assert (out / "results.json").exists() and not (out / rundir.LOCK).exists()


def test_summary_error_without_an_input_shape(command, monkeypatch):
    def refuse(net, input_shape=None, batch=1):
        raise LayerError("fc1 (Dense): a made-up failure")

    monkeypatch.setattr(jaxcnn_main, "summary", refuse)
    status, _, err = command(jaxcnn_main.main, ["summary", "lenet5"])
    assert (status, err[-1]) == (2, "error: lenet5 with --input-shape 28,28,1: fc1 (Dense): a made-up failure")


def _parsers():
    """Each command's argparse parser, captured as it parses --help."""
    found = []
    real = argparse.ArgumentParser.parse_args

    def capture(self, args=None, namespace=None):
        found.append(self)
        return real(self, ["--help"] if self.prog != "python -m jaxcnn" else ["summary", "--help"], namespace)

    return found, capture


@pytest.mark.parametrize("main, prog", [(mnist.main, "python -m experiments.mnist"),
                                        (cifar10.main, "python -m experiments.cifar10"),
                                        (fc_as_conv.main, "python -m experiments.fc_as_conv"),
                                        (jaxcnn_main.main, "python -m jaxcnn summary")])
def test_every_flag_has_a_sentence_and_a_default(monkeypatch, capsys, main, prog):
    found, capture = _parsers()
    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    with pytest.raises(SystemExit):
        main([])
    text = capsys.readouterr().out
    assert text.startswith(f"usage: {prog} ")
    parser = found[0] if prog != "python -m jaxcnn summary" else found[0]._subparsers._group_actions[0].choices[
        "summary"]
    assert issubclass(parser.formatter_class, argparse.ArgumentDefaultsHelpFormatter)  # "(default: ...)" on each
    for action in parser._actions:
        if action.dest != "help":
            assert action.help and len(action.help.split()) >= 3, action.option_strings
    options = sum(bool(a.option_strings) for a in parser._actions) - 1  # all but --help
    assert " ".join(text.split()).count("(default: ") >= options


@pytest.mark.parametrize("main, heading", [(mnist.main, "solver (Caffe's lenet_solver.prototxt: --lr 0.01 "
                                                        "--schedule inv --gamma 1e-4 --power 0.75):"),
                                           (cifar10.main, "solver:")])
def test_each_experiments_solver_heading_is_its_own(capsys, main, heading):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert heading in capsys.readouterr().out.splitlines()


@pytest.mark.slow
def test_command_line_failures_as_a_user_sees_them(tmp_path):
    """In a process of its own: exit status 2 and one line for a bad flag; JAXCNN_DEBUG=1 shows the traceback."""
    cmd = [sys.executable, "-m", "experiments.mnist", "--lr", "nan", "--out", str(tmp_path / "run")]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert (result.returncode, result.stderr) == (2, "error: --lr nan: must be finite and greater than 0\n")
    debug = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                           env={**os.environ, cli.DEBUG_VAR: "1"})
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.splitlines()[-1] == "jaxcnn.train.errors.ConfigError: lr nan: must be finite and greater than 0"
    summary = subprocess.run([sys.executable, "-m", "jaxcnn", "summary", "lenet5", "--batch", "0"], cwd=ROOT,
                             capture_output=True, text=True, timeout=300)
    assert summary.returncode == 2 and summary.stderr.splitlines()[-1].endswith("--batch must be a positive int, got 0")
