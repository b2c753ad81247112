"""Shared fixtures: a seeded NumPy generator, float64 mode for gradient checks, one lenet_caffe init.

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
