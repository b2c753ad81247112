"""A fusion boundary that XLA:CPU keeps, for the gradients of the CPU lowerings.

XLA:CPU fuses cheap producers into each consumer, recomputing them there: in the LeNet-BN step it folded conv2's
col2im and conv1's batch normalisation into pool1's gradient. lax.optimization_barrier does not stop it (XLA:CPU
drops the barrier before fusing), but nothing is fused across a conditional. The CPU conv and max-pool gradients
pass the cotangents they receive and send through `boundary`: each is computed once, in kernels of its own
(the effect on training steps: docs/performance.md).
"""
from jax import lax


def boundary(x, anchor):
    """x unchanged, as the result of a conditional on one element of `anchor` (a primal value: a predicate may
    not depend on a tangent) whose branches both return x (the second as x * 1, else JAX merges the branches and
    drops the conditional). Under vmap with a batched anchor the conditional becomes a select: no boundary."""
    return lax.cond(anchor.reshape(-1)[0] > 0, lambda v: v, lambda v: v * 1, x)
