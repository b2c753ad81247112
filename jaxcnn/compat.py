"""What differs between the JAX and Flax versions jaxcnn supports (jax >= 0.7.2, flax >= 0.11.2, as on Colab's TPU
runtime, up to the newest tested): every such difference is bridged here and nowhere else. Flax is not imported
here: the NNX helpers look at the variable they are given.
"""
import jax

# A float64 context for tests and gradient checks: jax.enable_x64 where it exists (jax 0.10), else
# jax.experimental.enable_x64 (jax 0.7).
enable_x64 = getattr(jax, "enable_x64", None)
if enable_x64 is None:
    from jax.experimental import enable_x64


def linear_term(f, primal, tangent):
    """f(tangent) for a function f linear in its argument, computed inside a custom_jvp rule: through jax.jvp at
    `primal` (f's value there is dead code that jit drops). jax 0.7 cannot transpose a lax.scan (as in
    ops.conv_cpu.im2col_chunked) bound directly on a tangent in a custom_jvp rule, as reverse mode must; a scan
    that jax.jvp binds carries the linearity its transpose needs. On jax 0.10 the compiled program is the same."""
    return jax.jvp(f, (primal,), (tangent,))[1]


def get_value(variable):
    """The array an nnx.Variable holds: Variable.get_value() (flax >= 0.12), Variable.value before."""
    return variable.get_value() if hasattr(type(variable), "get_value") else variable.value


def set_value(variable, value) -> None:
    """Replace the array an nnx.Variable holds (Variable.set_value in flax >= 0.12, assigning .value before)."""
    if hasattr(type(variable), "set_value"):
        variable.set_value(value)
    else:
        variable.value = value
