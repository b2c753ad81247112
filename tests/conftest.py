"""Shared fixtures (a seeded NumPy generator, float64 mode for gradient checks, one lenet_caffe init) and the
comparison helpers every test file uses (`from conftest import assert_close, rel_diff`).

Tests run with autotuning off (JAXCNN_AUTOTUNE=0, inherited by the commands they start): measuring forms would
cost every Trainer many compilations. tests/test_tuning.py turns it on where it is the subject.
"""
import os

import jax
import numpy as np
import pytest

from jaxcnn import zoo

os.environ["JAXCNN_AUTOTUNE"] = "0"


@pytest.fixture
def rng():
    """A fresh, seeded NumPy generator per test."""
    return np.random.default_rng(0)


@pytest.fixture
def x64():
    """Run the test with jax float64 enabled (for numerical gradient checks)."""
    with jax.enable_x64(True):
        yield


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
