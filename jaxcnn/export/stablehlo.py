"""A net with its weights as a StableHLO artefact (jax.export): the inference function, weights baked in as
constants, serialized; any JAX (of the same or a later version) runs it without jaxcnn:

    >>> import jax, jax.numpy as jnp
    >>> from jaxcnn import zoo
    >>> from jaxcnn.export.stablehlo import save_stablehlo
    >>> net = zoo.lenet_caffe()
    >>> _, params, state = net.init(jax.random.key(0))
    >>> exported = save_stablehlo(net, params, state, "lenet.stablehlo")  # Net.apply's input and output, weights inside
    >>> exported.call(jnp.zeros((2, 28, 28, 1))).shape                   # the batch is symbolic
    (2, 10)

and jax.export.deserialize(open("lenet.stablehlo", "rb").read()).call(x) gives net.apply(params, state, x)[0].

The function is Net.apply in evaluation (running statistics, no dropout) with XLA's native lowering (the forms
every backend compiles well; jaxcnn.ops.lowering), lowered for each of `platforms`: it takes what apply takes
(x (N, H, W, C) float32 in jaxcnn's NHWC, or a dict {blob: x} for several input blobs) and gives what apply
gives (an array, or a dict {blob: y} for several outputs), N symbolic unless `batch` fixes it. jax.export
serializes with the flatbuffers package, which JAX does not install: the `export` extra does.
"""
try:
    import flatbuffers  # noqa: F401
except ImportError as e:  # pragma: no cover - the export extra
    raise ImportError("StableHLO export needs the flatbuffers package: pip install 'jaxcnn[export]'") from e

import jax
import jax.numpy as jnp
from jax import export

from ..models import check_weights
from . import write_atomic

PLATFORMS = ("cpu", "cuda", "rocm", "tpu")


def to_stablehlo(net, params: dict, state: dict, *, input_shape=None, batch: int | None = None,
                 platforms=PLATFORMS) -> export.Exported:
    """-> a jax.export.Exported of net.apply(params, state, x)[0] (see the module docstring). input_shape:
    per-example (H, W, C) (a dict {blob: shape} for several inputs), default the net's own; batch: a fixed
    batch size or None (symbolic, 'N')."""
    if batch is not None and (not isinstance(batch, int) or batch < 1):
        raise ValueError(f"batch must be a positive int or None, got {batch!r}")
    check_weights(net, params, state, net.name, input_shape)
    shapes = net.input_shapes(input_shape)
    n = export.symbolic_shape("N")[0] if batch is None else batch
    specs = {blob: jax.ShapeDtypeStruct((n, *shape), jnp.float32) for blob, shape in shapes.items()}
    x = next(iter(specs.values())) if len(specs) == 1 else specs

    def infer(x):
        return net.apply(params, state, x, train=False, lowering="native")[0]

    return export.export(jax.jit(infer), platforms=tuple(platforms))(x)


def save_stablehlo(net, params: dict, state: dict, path, *, input_shape=None, batch: int | None = None,
                   platforms=PLATFORMS) -> export.Exported:
    """to_stablehlo(...) serialized to `path`, whole or not at all -> the Exported."""
    exported = to_stablehlo(net, params, state, input_shape=input_shape, batch=batch, platforms=platforms)
    write_atomic(path, bytes(exported.serialize()))
    return exported
