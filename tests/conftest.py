"""Shared fixtures (a seeded NumPy generator, float64 mode for gradient checks, one lenet_caffe init, a README
reader's directory for examples) and the helpers every test file uses (`from conftest import assert_close,
rel_diff, random_params, without_timings`).

Tests run with the tuning cache ignored (JAXCNN_AUTOTUNE=0, inherited by the commands they start): a cache on the
machine that runs them would change the forms the Trainer and jaxcnn.predictor compile. tests/test_tuning.py reads
it where it is the subject.
"""
import math
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from dataset_writers import write_mnist

from jaxcnn import zoo
from jaxcnn.compat import enable_x64

os.environ["JAXCNN_AUTOTUNE"] = "0"
ROOT = Path(__file__).resolve().parents[1]
READER_MNIST = {"train": 128, "test": 64}  # images per split of reader_dir's random MNIST


@pytest.fixture
def rng():
    """A fresh, seeded NumPy generator per test."""
    return np.random.default_rng(0)


@pytest.fixture
def x64():
    """Run the test with jax float64 enabled (for numerical gradient checks)."""
    with enable_x64(True):
        yield


@pytest.fixture
def reader_dir(tmp_path, monkeypatch):
    """The current directory laid out as a README reader's clone, in tmp_path, for examples written as a user
    types them (docstrings, the README's Python blocks): <tmp>/jaxcnn, the current directory, links to the
    repository's experiments/ (its model files); <tmp>/shared/data/mnist holds a small random MNIST (IDX files of
    READER_MNIST images per split) where the README's real copy would be; caches ($JAXCNN_CACHE_DIR,
    $XDG_CACHE_HOME) are under tmp_path. -> the current directory."""
    rng = np.random.default_rng(0)
    for split, n in READER_MNIST.items():
        write_mnist(tmp_path / "shared" / "data" / "mnist", split, rng.integers(0, 256, (n, 28, 28), np.uint8),
                    rng.integers(0, 10, n))
    cwd = tmp_path / "jaxcnn"
    cwd.mkdir()
    (cwd / "experiments").symlink_to(ROOT / "experiments")
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("JAXCNN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return cwd


@pytest.fixture(scope="session")
def lenet_caffe_init():
    """(net, params, state) of zoo.lenet_caffe, initialised once for the session (arrays are immutable)."""
    net = zoo.lenet_caffe()
    _, params, state = net.init(jax.random.key(0))
    return net, params, state


def assert_close(actual, expected, rtol=1e-5, atol=None):
    """Two pytrees of the same structure whose leaves agree elementwise to rtol, with an absolute tolerance of
    atol, by default rtol times each expected leaf's largest magnitude (so values near zero compare at the scale
    of the rest)."""
    assert jax.tree_util.tree_structure(actual) == jax.tree_util.tree_structure(expected)
    for a, e in zip(jax.tree_util.tree_leaves(actual), jax.tree_util.tree_leaves(expected)):
        e = np.asarray(e)
        tol = rtol * max(float(np.abs(e).max(initial=0)), 1e-30) if atol is None else atol
        np.testing.assert_allclose(np.asarray(a), e, rtol=rtol, atol=tol)


def rel_diff(actual, expected) -> float:
    """max |actual - expected| / max |expected|."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


def random_params(net, seed=0, input_shape=None):
    """Random params and state for `net`, drawn with NumPy from its abstract shapes (net.init compiles its fillers
    once per shape) -> (params, state). Weights N(0, 2 / fan_in) (a Local's two leading position axes are not
    fan-in); Scale gammas and PReLU slopes +-U(0.5, 1.5); biases, betas and BatchNorm means N(0, 0.3); variances
    U(0.5, 2); BatchNorm counts U(1.5, 900): nothing trivially 0 or 1, so a misplaced value does not go unnoticed."""
    rng = np.random.default_rng(seed)

    def draw(name, shape):
        if name == "w":  # conv (KH, KW, C, O), dense (I, O), local (OH, OW, KH, KW, C, O)
            return rng.normal(0, math.sqrt(2 / math.prod(shape[2:-1] if len(shape) == 6 else shape[:-1])), shape)
        if name in ("gamma", "slope"):
            return rng.uniform(0.5, 1.5, shape) * rng.choice([-1, 1], shape)
        if name == "var":
            return rng.uniform(0.5, 2.0, shape)
        if name == "count":
            return rng.uniform(1.5, 900.0, shape)
        return rng.normal(0, 0.3, shape)

    params, state = {}, {}
    for row in net.shapes(input_shape):
        for tree, specs in ((params, row.params), (state, row.state)):
            if specs:
                tree[row.layer.name] = {k: jnp.asarray(draw(k, v.shape), jnp.float32) for k, v in specs.items()}
    return params, state


def without_timings(records):
    """Metric records (as jaxcnn.train.fit returns them) without their wall-clock fields, which differ run to run."""
    return [{k: v for k, v in r.items() if k not in ("seconds", "images_per_second")} for r in records]


def missing_package(error: ImportError) -> str | None:
    """The package not installed behind `error` (a ModuleNotFoundError, or an ImportError raised from one, as
    jaxcnn.export's modules name the extra to install), or None when it is jaxcnn's own module or no missing one."""
    missing = error if isinstance(error, ModuleNotFoundError) else error.__cause__
    if not isinstance(missing, ModuleNotFoundError) or (missing.name or "jaxcnn").split(".")[0] == "jaxcnn":
        return None
    return missing.name
