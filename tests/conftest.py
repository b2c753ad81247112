"""Shared fixtures: a seeded NumPy generator, float64 mode for gradient checks, one lenet_caffe init; and
without_timings, to compare the metric records of two training runs."""
import jax
import numpy as np
import pytest

from jaxcnn import zoo


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


def without_timings(records):
    """Metric records (as jaxcnn.train.fit returns them) without their wall-clock fields, which differ run to run."""
    return [{k: v for k, v in r.items() if k not in ("seconds", "images_per_second")} for r in records]
