"""Compiled inference: a net's Net.apply(train=False), jit-compiled as this machine's tuning says it runs fastest,
with its BatchNorms folded into the layers before them (jaxcnn.fold).

    predict = jaxcnn.predictor(net, batch=8)        # python -m jaxcnn tune MODEL --inference --batch 8 measures
    y = predict(params, state, x)                   # x: (8, *net.input_shape)
"""
import functools

import jax

from . import ops, tuning
from .fold import folding


def predictor(net, batch: int = 1, *, input_shape=None, dtype="float32", lowering="auto",
              compiler_options: dict | None = None, fold_batchnorm: bool = True):
    """Net.apply(params, state, x, train=False)[0] as a jitted function f(params, state, x) -> y.

    f takes the net's own params and state. With fold_batchnorm (the default) it runs the net that
    jaxcnn.fold.fold_batchnorm makes, each BatchNorm (and Scale) after a Conv or Dense folded into its weights
    inside the compiled function (a product per weight: the folding costs less than the BatchNorm did), which
    changes the results by rounding only.

    With lowering 'auto' the lowering and XLA options are those jaxcnn.tuning.lookup finds for the net compiled
    (the folded one with fold_batchnorm) at `batch` examples of `input_shape` (default the net's) in `dtype` for
    inference: the forms and YNNPACK choice measured on this machine, else the fixed rules and
    ops.compiler_options(). An explicit lowering is used as given, with `compiler_options` (default
    ops.compiler_options()). Other batch sizes and shapes run too, each compiled on its first call, with the fixed
    rules for convolutions not measured at them; so does a net with no input shape of its own when none is given
    (nothing is looked up).
    """
    fold = folding(net) if fold_batchnorm else None
    compiled = fold.net if fold else net
    options = compiler_options
    if lowering == "auto" and (input_shape is not None or None not in net.inputs.values()):
        tuned = tuning.lookup(compiled, batch, input_shape=input_shape, dtype=dtype, training=False)
        lowering, options = tuned.lowering, tuned.compiler_options if options is None else options
    apply = functools.partial(_infer, compiled, fold, lowering=lowering)
    return jax.jit(apply, compiler_options=ops.compiler_options() if options is None else options)


def inference_net(net, fold_batchnorm: bool = True):
    """The net predictor(net, fold_batchnorm=...) compiles, as tuning keys it: `python -m jaxcnn tune --inference`
    and experiments.bench tune this one."""
    return folding(net).net if fold_batchnorm else net


def _infer(net, fold, params, state, x, *, lowering):
    if fold:
        params, state = fold(params, state)
    return net.apply(params, state, x, train=False, lowering=lowering)[0]
