"""Which lowering the ops with alternatives (conv2d, local2d, max_pool) trace to: an explicit, static argument.

    'native'  XLA's own ops (lax.conv_general_dilated with feature_group_count, lax.reduce_window): the right
              choice on GPU and TPU, where they map to cuDNN and the MXU.
    'cpu'     lowerings that XLA:CPU runs faster: conv2d in forms chosen per direction such as patch matmuls
              and, for depthwise layers, shifted multiply-adds (ops.conv_cpu), max_pool as a max over strided
              views, local2d as a batched matmul over output positions; each op's docstring says more. Every
              one gives the native op's values and gradients (tests/test_lowering.py).
    'auto'    (the default) 'cpu' for the CPU backend, else 'native': the backend is the platform of the input's
              device for a concrete array, and JAX's default backend for a traced one (inside jax.jit).
    Tuned(…)  'cpu' with the convolution forms measured on this machine for given shapes (jaxcnn.tuning.tune);
              shapes it does not name get the fixed rules of ops.conv_cpu. With first_block=True, Net.apply
              trains a net's first block by fused C++ kernels (jaxcnn.first_block) where it has one.

Every op, layer, `Net.apply` and the Trainer takes `lowering=`; nothing global is read while tracing. The Trainer
resolves 'auto' from the devices of its mesh (`for_platform`), so its steps are right for the devices they run
on whatever JAX's default backend is. In your own jitted code pass it as a static value, with compiler_options():

    >>> import functools, jax, jax.numpy as jnp
    >>> from jaxcnn import zoo
    >>> from jaxcnn.ops import compiler_options
    >>> net = zoo.lenet_caffe()
    >>> _, params, state = net.init(jax.random.key(0))
    >>> step = jax.jit(functools.partial(net.apply, lowering="native"), compiler_options=compiler_options())
    >>> logits, _ = step(params, state, jnp.zeros((2, 28, 28, 1)))
    >>> logits.shape
    (2, 10)

compiler_options() gives the XLA options jaxcnn's own jitted functions (the Trainer's steps, jaxcnn.predictor, the
experiments) compile with on each backend, to which jaxcnn.tuning adds the YNNPACK choice measured for a net.
"""
from dataclasses import dataclass

import jax

LOWERINGS = ("auto", "native", "cpu")
# XLA:CPU prefers 256-bit vectors; 512 where the CPU has them (LLVM caps the width at what it supports):
# docs/performance.md.
CPU_COMPILER_OPTIONS = {"xla_cpu_prefer_vector_width": 512}


@dataclass(frozen=True)
class Tuned:
    """The 'cpu' lowering with measured convolution forms: ((signature, (forward, input, weight)), ...), where a
    signature is ops.conv_cpu.signature(...) of a convolution (all its groups) and each form a name in
    ops.conv_cpu.FORMS; first_block: train the net's first block by the fused kernels (jaxcnn.first_block).
    Hashable, so it is a static argument like the names."""

    forms: tuple = ()
    first_block: bool = False

    def conv_forms(self, signature) -> tuple | None:
        """The (forward, input, weight) form names measured for `signature`, or None."""
        return dict(self.forms).get(signature)


def check(lowering):
    """`lowering` if it is one of LOWERINGS or a Tuned lowering, else ValueError."""
    if not isinstance(lowering, Tuned) and lowering not in LOWERINGS:
        raise ValueError(f"lowering must be one of {', '.join(map(repr, LOWERINGS))} or a Tuned lowering, "
                         f"got {lowering!r}")
    return lowering


def for_platform(lowering, platform: str):
    """A lowering for computations on devices of `platform` ('cpu', 'gpu', 'tpu', ...): 'auto' becomes 'cpu' or
    'native', an explicit choice stays."""
    if check(lowering) != "auto":
        return lowering
    return "cpu" if platform == "cpu" else "native"


def resolve(lowering, x) -> str:
    """The lowering an op uses for input x -> 'native' or 'cpu' ('auto': see the module docstring; a Tuned
    lowering is 'cpu')."""
    if isinstance(check(lowering), Tuned):
        return "cpu"
    if lowering != "auto":
        return lowering
    if isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer):
        return for_platform("auto", next(iter(x.devices())).platform)
    return for_platform("auto", jax.default_backend())


def compiler_options(backend: str | None = None) -> dict:
    """XLA compiler options for jax.jit on `backend` (default: JAX's default backend): CPU_COMPILER_OPTIONS on
    the CPU, none elsewhere."""
    return dict(CPU_COMPILER_OPTIONS) if (backend or jax.default_backend()) == "cpu" else {}
