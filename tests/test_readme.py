"""The README, run as a reader pastes it.

test_readme (slow) runs every command of its ```bash blocks, in the README's order, in one temporary copy of the
repository with `../shared` beside it (so a command finds what an earlier one wrote, as in the reader's clone). A
command fails it by a non-zero exit or a traceback. Commands build on each other: select one with -k only
together with those it needs.

test_readme_python (quick) runs each ```python block in this process, in the reader_dir fixture's directory
(tests/conftest.py: the repository's experiments/ linked there, a small random MNIST at ../shared/data/mnist); a
file that a block reads and README commands before it write is made for it first (WRITTEN_BEFORE). A block fails
it by an exception. (Docstring examples: test_doctests.py.)

What differs from the reader's run, and why (each command and block runs as written otherwise):
- `../shared/data/mnist` holds the first SMALL_TRAIN training and SMALL_TEST test images of the real one
  (`../shared/data/mnist` beside this repository; test_readme is skipped without it), and $JAXCNN_DATA_DIR the
  same cuts of MNIST and of Debian's Fashion-MNIST (when installed), so that no command downloads: minutes of
  training become seconds.
- CUTS (below) shortens what is inherently long, in commands and blocks: one epoch, smaller inputs, fewer timed
  runs.
- A command whose comment says `not run in tests` is not run: installs, CI itself. Every Python block runs.
- NEEDS skips a command whose optional part is missing here (as the README says it needs it).
"""
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import pytest
from conftest import missing_package
from dataset_writers import write_mnist

from jaxcnn import caffe, datasets

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SHARED_MNIST = ROOT.parent / "shared" / "data" / "mnist"
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
MARKER = "not run in tests"
SMALL_TRAIN, SMALL_TEST = 2048, 1000  # 32 steps of batch 64 per epoch; 1,000 test images
CAFFE_BATCH = 64  # the batch of lenet_bn_train_test.prototxt's TRAIN data layer, which names the caffemodel

# (pattern, replacement, why): applied in order to every command and Python block.
CUTS = [
    (r"--epochs \d+", "--epochs 1", "one epoch of every training run"),
    (r"^(python -m (experiments\.(mnist|cifar10)|jaxcnn train)\b(?!.*--epochs).*)$", r"\1 --epochs 1",
     "one epoch where the README trains for the default number"),
    (r"lenet_bn_iter_10125\b", f"lenet_bn_iter_{SMALL_TRAIN // CAFFE_BATCH}",
     "the caffemodel of `jaxcnn train`'s one epoch on the small copy, not of the full solver"),
    (r"lenet_bn_iter_3750\b", f"lenet_bn_iter_{SMALL_TRAIN // CAFFE_BATCH}",
     "the solverstate of `jaxcnn train --epochs 10` cut to one epoch on the small copy"),
    (r"^(python -m jaxcnn train\b.*--snapshot.*) --epochs 1$", r"\1 --epochs 2",
     "the run resumed from that solverstate goes on for an epoch"),
    (r"^(python -m experiments\.fc_as_conv --size) 384\b", r"\1 256", "VGG16 on 4 crops of 224, not 36"),
    (r"^(python -m experiments\.fc_as_conv\b.*)$", r"\1 --repeats 1", "one timed run of each path, not 5"),
    (r"^(python -m experiments\.bench\b.*)$", r"\1 --quick --cases alexnet_conv2_grouped",
     "the benchmark's shortest case"),
    (r"speed_check\(\)", "speed_check(chunks=2, steps=2, per_core=8)", "the TPU check on a few small batches"),
    (r"zoo\.vgg16\(\)", "zoo.lenet_caffe()", "fc_to_conv on LeNet-BN, not VGG16, whose 138M weights take 10 s to "
     "draw (`python -m experiments.fc_as_conv` converts VGG16 itself)"),
    (r"jnp\.zeros\(\(1, 384, 384, 3\)\)", "jnp.zeros((1, 44, 44, 1))", "and over 44x44 grey pixels (a 5x5 map)"),
]

# (pattern, what is missing, or None when it is here): a matching command is skipped when something is missing.
NEEDS = [
    (r"--dataset fashion_mnist", None if DEBIAN_FASHION.is_dir() else "apt-get install dataset-fashion-mnist"),
    (r"jaxcnn draw", None if shutil.which("dot") and importlib.util.find_spec("graphviz") else
     "Graphviz (apt-get install graphviz) and the draw extra"),
    (r"experiments\.bench", None if importlib.util.find_spec("torch") else "PyTorch (the bench extra)"),
]


def readme_blocks(text):
    """-> [(language, first line number, body)] of the ```bash and ```python blocks."""
    return [(m["lang"], text.count("\n", 0, m.start()) + 2, m["body"])
            for m in re.finditer(r"^```(?P<lang>bash|python)\n(?P<body>.*?)^```$", text, re.M | re.S)]


def shell_commands(body, first_line):
    """A bash block's commands -> [(line number, command, comment)], lines continued with a backslash joined."""
    commands, pending, start = [], "", None
    for n, line in enumerate(body.splitlines(), first_line):
        start = start if pending else n
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        line, pending = pending + line, ""
        command, _, comment = line.partition(" #")
        if command.strip() and not command.lstrip().startswith("#"):
            commands.append((start, " ".join(command.split()), comment.strip()))
    return commands


def cases():
    """Every README command as a pytest param named after it."""
    return [pytest.param(command, MARKER in comment, id=f"L{n}: {command[:70]}")
            for lang, line, body in readme_blocks(README.read_text()) if lang == "bash"
            for n, command, comment in shell_commands(body, line)]


def cut(text):
    for pattern, replacement, _ in CUTS:
        text = re.sub(pattern, replacement, text, flags=re.M)
    return text


def _write_cut(name, source_dir, target_dir):
    """The first SMALL_TRAIN training and SMALL_TEST test images of dataset `name` in source_dir -> IDX files in
    target_dir."""
    for split, n in (("train", SMALL_TRAIN), ("test", SMALL_TEST)):
        images, labels = datasets.load(name, split, str(source_dir))
        write_mnist(target_dir, split, images[:n], labels[:n])


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """-> (a copy of the repository's tracked files with ../shared/data/mnist beside it, the environment)."""
    if not SHARED_MNIST.is_dir():
        pytest.skip(f"the README's MNIST copy {SHARED_MNIST} is not beside the repository")
    tmp = tmp_path_factory.mktemp("readme")
    repo = tmp / "jaxcnn"
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, repo / name)
    _write_cut("mnist", SHARED_MNIST, tmp / "shared" / "data" / "mnist")
    data_root = tmp / "data"
    _write_cut("mnist", SHARED_MNIST, data_root / "mnist")
    if DEBIAN_FASHION.is_dir():
        _write_cut("fashion_mnist", DEBIAN_FASHION, data_root / "fashion_mnist")
    env = dict(os.environ, JAXCNN_DATA_DIR=str(data_root), MPLBACKEND="Agg",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    return repo, env


@pytest.mark.slow
@pytest.mark.parametrize("text, marked", cases())
def test_readme(workspace, text, marked):
    if marked:
        pytest.skip(f"marked '# {MARKER}' in the README")
    missing = [what for pattern, what in NEEDS if what and re.search(pattern, text)]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")
    repo, env = workspace
    run = cut(text)
    done = subprocess.run(["bash", "-c", run], cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0 and "Traceback" not in output, \
        f"{run}\nexit status {done.returncode}; the output's end:\n" + "\n".join(output.splitlines()[-40:])


def caffemodel_of_jaxcnn_train(directory):
    """runs/caffe/lenet_bn_iter_<N>.caffemodel in `directory`, as `python -m jaxcnn train` writes it (cut to one
    epoch of the small MNIST), here with the net's initial weights."""
    net = caffe.load_prototxt(ROOT / "experiments" / "caffe" / "lenet_bn_deploy.prototxt")
    _, params, state = net.init(jax.random.key(0))
    path = Path(directory) / "runs" / "caffe" / f"lenet_bn_iter_{SMALL_TRAIN // CAFFE_BATCH}.caffemodel"
    path.parent.mkdir(parents=True)
    caffe.save_caffemodel(net, params, state, path)


def exports_of_lenet(directory):
    """runs/lenet_bn.onnx and runs/mnist.stablehlo in `directory`, as the README's `jaxcnn export` commands write
    them, here from the LeNet-BN deploy net's initial weights."""
    from jaxcnn.export.onnx import save_onnx
    from jaxcnn.export.stablehlo import save_stablehlo
    net = caffe.load_prototxt(ROOT / "experiments" / "caffe" / "lenet_bn_deploy.prototxt")
    _, params, state = net.init(jax.random.key(0))
    (Path(directory) / "runs").mkdir(exist_ok=True)
    save_onnx(net, params, state, Path(directory) / "runs" / "lenet_bn.onnx")
    save_stablehlo(net, params, state, Path(directory) / "runs" / "mnist.stablehlo")


# (file a Python block reads, what makes it in the reader's directory): outputs of README commands before it.
WRITTEN_BEFORE = [("runs/caffe/lenet_bn_iter_", caffemodel_of_jaxcnn_train), ("runs/lenet_bn.onnx", exports_of_lenet)]


@pytest.mark.parametrize("line, body", [pytest.param(line, body, id=f"L{line}")
                                        for lang, line, body in readme_blocks(README.read_text())
                                        if lang == "python"])
def test_readme_python(reader_dir, line, body):
    """A ```python block of the README, cut, runs without an exception in the reader's directory."""
    assert MARKER not in body, f"README.md:{line}: the quick suite runs every Python block (cut with CUTS instead)"
    code = cut(body)
    try:
        for name, make in WRITTEN_BEFORE:
            if name in code:
                make(reader_dir)
        exec(compile("\n" * (line - 1) + code, "README.md", "exec"), {"__name__": "__main__"})  # README's line numbers
    except ImportError as e:  # a block of an extra this environment lacks (Colab's: no onnx)
        if missing_package(e) is None:
            raise
        pytest.skip(f"README.md:{line} needs {missing_package(e)}")


def test_readme_blocks_are_found_and_cut():
    """The parsing and the cuts the README test relies on, on the README itself."""
    commands = [c for lang, line, body in readme_blocks(README.read_text()) if lang == "bash"
                for c in shell_commands(body, line)]
    texts = [c for _, c, _ in commands]
    assert "python -m experiments.mnist --data-dir ../shared/data/mnist" in texts
    assert all(MARKER in comment for _, c, comment in commands if c.startswith(("pip ", "bash .ci/run")))
    assert not any(c.endswith("\\") or "#" in c for c in texts)  # continuations joined, comments dropped
    assert cut("python -m experiments.mnist --data-dir D") == "python -m experiments.mnist --data-dir D --epochs 1"
    assert cut("python -m experiments.mnist --epochs 50 --out X") == "python -m experiments.mnist --epochs 1 --out X"
    assert cut("python -m experiments.fc_as_conv --size 384 --out X") == \
        "python -m experiments.fc_as_conv --size 256 --out X --repeats 1"
    assert cut("python -m jaxcnn summary vgg16") == "python -m jaxcnn summary vgg16"
    assert any(lang == "python" for lang, _, _ in readme_blocks(README.read_text()))
    assert cut("net = zoo.vgg16()  # 224x224x3\nx = jnp.zeros((1, 384, 384, 3))") == \
        "net = zoo.lenet_caffe()  # 224x224x3\nx = jnp.zeros((1, 44, 44, 1))"
