"""The training experiments end to end, on small synthetic files in MNIST's and CIFAR-10's own formats."""
import json

import pytest
from synthetic import write_cifar_like, write_mnist_like

from experiments import cifar10, mnist

OUTPUTS = {"results.json", "metrics.jsonl", "curves.png", "misclassified.png", "checkpoints"}


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
    with pytest.raises(SystemExit, match="--model vgg16 does not fit mnist's"):
        mnist.main(["--data-dir", str(data), "--model", "vgg16", "--out", str(tmp_path / "run")])


def test_missing_data_says_where_it_looked(tmp_path, monkeypatch):
    from jaxcnn.datasets import loading
    monkeypatch.setattr(loading, "DEBIAN_ROOT", tmp_path / "debian")
    monkeypatch.delenv("JAXCNN_DATA_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match="--data-dir"):
        mnist.main(["--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run")])


def test_colab_notebook_runs_the_mnist_experiment_with_valid_flags():
    import os
    import shlex

    path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "experiments", "colab_tpu.ipynb")
    cells = json.load(open(path))["cells"]
    commands = [line for c in cells if c["cell_type"] == "code" for line in "".join(c["source"]).splitlines()
                if "-m experiments.mnist" in line]
    assert commands, "the notebook no longer runs experiments.mnist"
    argv = shlex.split(commands[0].split("-m experiments.mnist", 1)[1])
    args = mnist.arguments(argv)
    assert args.epochs == 12 and args.dataset == "mnist"
