"""Weight fillers, named as in Caffe and Keras, built on jax.nn.initializers.

Each filler is a jax initializer `(key, shape, dtype) -> array`. Fan-in is the receptive field times the
input channels the kernel sees: KH*KW*C/groups for a conv kernel (KH, KW, C/groups, O) and I for a dense (I, O);
a Local layer fills each output position's (KH, KW, C, O) kernel on its own, so its fan-in is KH*KW*C.
"""
from jax.nn import initializers as init


def xavier():
    """Caffe's xavier: uniform in +-sqrt(3 / fan_in)."""
    return init.variance_scaling(1.0, "fan_in", "uniform")


def msra():
    """Caffe's msra / He: normal with std sqrt(2 / fan_in)."""
    return init.variance_scaling(2.0, "fan_in", "normal")


def glorot():
    """Keras' glorot_uniform: uniform in +-sqrt(6 / (fan_in + fan_out))."""
    return init.variance_scaling(1.0, "fan_avg", "uniform")


def gaussian(std: float):
    """Caffe's gaussian filler: normal with the given std."""
    return init.normal(std)


def constant(value: float = 0.0):
    """Caffe's constant filler."""
    return init.constant(value)


_BY_NAME = {"xavier": xavier, "msra": msra, "he": msra, "glorot": glorot}


def resolve(filler):
    """A filler name ('xavier', 'msra', 'he', 'glorot'), a number (constant) or an initializer -> initializer."""
    if callable(filler):
        return filler
    if isinstance(filler, (int, float)) and not isinstance(filler, bool):
        return constant(filler)
    if isinstance(filler, str) and filler in _BY_NAME:
        return _BY_NAME[filler]()
    raise ValueError(f"unknown filler {filler!r}: use one of {sorted(_BY_NAME)}, a number or an initializer")


__all__ = ["constant", "gaussian", "glorot", "msra", "resolve", "xavier"]
