"""Compiled inference: a net's Net.apply(train=False), jit-compiled as this machine's tuning says it runs fastest.

    >>> import jax, jax.numpy as jnp
    >>> import jaxcnn
    >>> net = jaxcnn.zoo.lenet_caffe()                                  # conv -> BatchNorm -> Scale, twice
    >>> _, params, state = net.init(jax.random.key(0))
    >>> net, params, state = jaxcnn.fold_batchnorm(net, params, state)  # once: BatchNorm + Scale into the convs
    >>> predict = jaxcnn.predictor(net, batch=8)   # python -m jaxcnn tune MODEL --inference --batch 8 measures
    >>> predict(params, state, jnp.ones((8, 28, 28, 1))).shape
    (8, 10)

Fold once, as onnxruntime fuses its graph when its session starts: the predictor compiles the net it is given,
and folding inside the compiled function would cost a pass over the weights on every call, 5-8% slower than not
folding, where folding once gained 0-7% (MobileNet v1, ResNet-50, 2-core AMD EPYC: docs/performance.md).
"""
import functools

import jax

from . import ops, tuning


def predictor(net, batch: int = 1, *, input_shape=None, dtype="float32", lowering="auto",
              compiler_options: dict | None = None):
    """Net.apply(params, state, x, train=False)[0] as a jitted function f(params, state, x) -> y.

    With lowering 'auto' the lowering and XLA options are those jaxcnn.tuning.lookup finds for `net` at `batch`
    examples of `input_shape` (default the net's) in `dtype` for inference: the forms and YNNPACK choice measured
    on this machine, else the fixed rules and ops.compiler_options(). An explicit lowering is used as given, with
    `compiler_options` (default ops.compiler_options()). Other batch sizes and shapes run too, each compiled on
    its first call, with the fixed rules for convolutions not measured at them; so does a net with no input
    shape of its own when none is given (nothing is looked up).
    """
    options = compiler_options
    if lowering == "auto" and (input_shape is not None or None not in net.inputs.values()):
        tuned = tuning.lookup(net, batch, input_shape=input_shape, dtype=dtype, training=False)
        lowering, options = tuned.lowering, tuned.compiler_options if options is None else options
    apply = functools.partial(_infer, net, lowering=lowering)
    return jax.jit(apply, compiler_options=ops.compiler_options() if options is None else options)


def _infer(net, params, state, x, *, lowering):
    return net.apply(params, state, x, train=False, lowering=lowering)[0]
