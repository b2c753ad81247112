"""Jit-compatible data augmentation on float batches (N, H, W, C)."""
import jax
import jax.numpy as jnp


def random_crop_flip(key, x, pad=4, flip=True):
    """Zero-pad each image by `pad`, take a random H x W crop of it, and mirror it left-right with
    probability 1/2 (the usual CIFAR-10 augmentation); pad=0 only flips. x: (N, H, W, C) -> same shape."""
    n, h, w, _ = x.shape
    k_y, k_x, k_f = jax.random.split(key, 3)
    out = x
    if pad:
        padded = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        dy = jax.random.randint(k_y, (n,), 0, 2 * pad + 1)
        dx = jax.random.randint(k_x, (n,), 0, 2 * pad + 1)
        crop = jax.vmap(lambda img, y0, x0: jax.lax.dynamic_slice(img, (y0, x0, 0), (h, w, x.shape[-1])))
        out = crop(padded, dy, dx)
    if flip:
        mirror = jax.random.bernoulli(k_f, 0.5, (n, 1, 1, 1))
        out = jnp.where(mirror, out[:, :, ::-1, :], out)
    return out
