"""ops.fusion.boundary: an identity in value and derivatives that XLA:CPU compiles as a conditional."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxcnn.ops import conv_cpu, fusion


@pytest.mark.slow
def test_boundary_is_the_identity_with_derivatives(x64, rng):
    x, anchor = rng.standard_normal((3, 4)), -np.abs(rng.standard_normal(5))  # both branches: the predicate is
    for a in (anchor, -anchor):                                                # false, then true
        f = lambda x: jnp.sin(fusion.boundary(x * 2, a))  # noqa: E731
        np.testing.assert_array_equal(jax.jit(f)(x), jnp.sin(x * 2))
        check_grads(f, (x,), order=2, modes=("fwd", "rev"))
    batched = jax.vmap(lambda x, a: fusion.boundary(x, a))(x, rng.standard_normal((3, 2)))
    np.testing.assert_array_equal(batched, x)


def test_xla_keeps_the_boundary_in_a_conv_gradient():
    """If a JAX or XLA release folds the conditional away, the CPU gradients lose their fusion boundaries."""
    x, w = jnp.ones((2, 8, 8, 3)), jnp.ones((3, 3, 3, 4))
    loss = lambda x, w: jnp.sum(jnp.tanh(conv_cpu.conv(x, w, (1, 1), ((0, 0), (0, 0)), (1, 1))))  # noqa: E731
    hlo = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(x, w).compile().as_text()
    assert " conditional(" in hlo
