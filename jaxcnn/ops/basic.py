"""Dense, flatten, activations and dropout."""
import jax
import jax.numpy as jnp

relu = jax.nn.relu
tanh = jnp.tanh
sigmoid = jax.nn.sigmoid


def dense(x: jax.Array, w: jax.Array, b: jax.Array | None = None) -> jax.Array:
    """Fully-connected (Caffe's InnerProduct). x: (N, I); w: (I, O); b: (O,) or None -> (N, O)."""
    if x.ndim != 2 or x.shape[-1] != w.shape[0]:
        raise ValueError(f"expected an input (N, {w.shape[0]}) for weights {tuple(w.shape)}, got {tuple(x.shape)}")
    y = x @ w
    return y if b is None else y + b


def flatten(x: jax.Array) -> jax.Array:
    """(N, H, W, C) -> (N, H*W*C), row-major, so feature index = (h * W + w) * C + c."""
    return x.reshape(x.shape[0], -1)


def dropout(x: jax.Array, rate: float, *, rng: jax.Array | None = None, train: bool = False) -> jax.Array:
    """Inverted dropout: in training zero each element with probability `rate` and scale the rest by
    1 / (1 - rate); in evaluation return x unchanged. rng: a jax.random key, required when training."""
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout rate must be in [0, 1), got {rate!r}")
    if not train or rate == 0.0:
        return x
    if rng is None:
        raise ValueError("dropout in training needs an rng key")
    keep = jax.random.bernoulli(rng, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0).astype(x.dtype)
