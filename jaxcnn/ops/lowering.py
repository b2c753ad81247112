"""Which lowering the ops with alternatives (conv2d, max_pool, local2d) trace to.

    'native'  XLA's own ops (lax.conv_general_dilated with feature_group_count, lax.reduce_window): the right
              choice on GPU and TPU, where they map to cuDNN and the MXU.
    'cpu'     lowerings that XLA:CPU runs faster: conv2d per group with patch-matmul gradients (ops.conv_cpu),
              max_pool as a max over strided views with a scatter-add gradient, local2d as a batched matmul
              over output positions; each op's docstring says more. Every one gives the native op's values
              and gradients (tests/test_lowering.py).
    'auto'    the default: 'cpu' when the op is traced for the CPU backend, else 'native'.

The backend is the platform of the input's device when the op runs eagerly on a concrete array, else (inside
jax.jit, where inputs are tracers without devices) jax.default_backend(); to jit for another backend, set the
lowering explicitly. The choice is made when an op is traced: a jitted function keeps the lowering of its
first trace, so set the policy before the first call (or jit afresh).

    with jaxcnn.ops.use_lowering("native"): ...   # or set_lowering("native"); or conv2d(..., lowering="native")

compiler_options() gives the XLA options jaxcnn's own jitted functions (the Trainer's steps, the experiments)
compile with on each backend; pass them to jax.jit(..., compiler_options=...) in your own code too.
"""
import contextlib
import contextvars

import jax

LOWERINGS = ("auto", "native", "cpu")
# XLA:CPU prefers 256-bit vectors; 512 where the CPU has them (LLVM caps the width at what it supports), paired
# runs on a 2-core AMD EPYC (Zen 4): AlexNet's conv2 forward + backward +10%, the LeNet-BN training step -2% to
# +15% (median +3.5%), elementwise chains up to 1.8x; on a 2-core AVX-512 Intel Xeon: within 1% either way.
CPU_COMPILER_OPTIONS = {"xla_cpu_prefer_vector_width": 512}
_policy = contextvars.ContextVar("jaxcnn_lowering", default="auto")


def _check(name):
    if name not in LOWERINGS:
        raise ValueError(f"lowering must be one of {', '.join(map(repr, LOWERINGS))}, got {name!r}")
    return name


def set_lowering(name: str) -> None:
    """Set the lowering used by ops called without lowering= (in this thread or context): see LOWERINGS."""
    _policy.set(_check(name))


def get_lowering() -> str:
    """The policy ops called without lowering= follow: 'auto', 'native' or 'cpu'."""
    return _policy.get()


@contextlib.contextmanager
def use_lowering(name: str):
    """Within the block, ops called without lowering= use `name`."""
    token = _policy.set(_check(name))
    try:
        yield
    finally:
        _policy.reset(token)


def resolve(lowering, x) -> str:
    """A per-call lowering (None: the current policy) for input x -> 'native' or 'cpu'."""
    name = _check(get_lowering() if lowering is None else lowering)
    if name != "auto":
        return name
    if isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer):
        platform = next(iter(x.devices())).platform
    else:
        platform = jax.default_backend()
    return "cpu" if platform == "cpu" else "native"


def compiler_options(backend=None) -> dict:
    """XLA compiler options for jax.jit on `backend` (default: JAX's default backend): CPU_COMPILER_OPTIONS on
    the CPU, none elsewhere."""
    return dict(CPU_COMPILER_OPTIONS) if (backend or jax.default_backend()) == "cpu" else {}
