"""experiments.mnist's recipe written in plain JAX + Optax, for experiments.bench: what a user of JAX alone would
write for Caffe's LeNet with BatchNorm (nothing of jaxcnn but its pixel-scale constant).

The net (conv1 20@5x5, BatchNorm, per-channel scale and shift, 2x2 max pool, ReLU, conv2 50@5x5, the same, ip1 500,
ReLU, ip2 10) is made of lax ops (conv_general_dilated, reduce_window); training is optax SGD with momentum,
weight decay and a cosine schedule, one jitted step per batch with donated buffers, random shifts of up to two
pixels, the data on the device; evaluation is one jitted pass over the test set.
"""
import jax
import jax.numpy as jnp
import optax
from jax import lax

from jaxcnn.datasets import CAFFE_PIXEL_SCALE

DIMS = ("NHWC", "HWIO", "NHWC")


def init(key):
    """-> (params, batch-norm statistics) for 28x28x1 inputs."""
    k1, k2, k3, k4 = jax.random.split(key, 4)

    def uniform(key, shape, fan_in):
        bound = (3.0 / fan_in) ** 0.5
        return jax.random.uniform(key, shape, jnp.float32, -bound, bound)

    params = {"conv1": {"w": uniform(k1, (5, 5, 1, 20), 25), "b": jnp.zeros(20)},
              "conv2": {"w": uniform(k2, (5, 5, 20, 50), 500), "b": jnp.zeros(50)},
              "ip1": {"w": uniform(k3, (800, 500), 800), "b": jnp.zeros(500)},
              "ip2": {"w": uniform(k4, (500, 10), 500), "b": jnp.zeros(10)},
              "bn1": {"gamma": jnp.ones(20), "beta": jnp.zeros(20)},
              "bn2": {"gamma": jnp.ones(50), "beta": jnp.zeros(50)}}
    stats = {name: {"mean": jnp.zeros(c), "var": jnp.ones(c)} for name, c in (("bn1", 20), ("bn2", 50))}
    return params, stats


def _block(params, stats, x, conv, bn, train, momentum=0.99, eps=1e-5):
    x = lax.conv_general_dilated(x, params[conv]["w"], (1, 1), "VALID", dimension_numbers=DIMS) + params[conv]["b"]
    if train:
        mean, var = x.mean((0, 1, 2)), x.var((0, 1, 2))
        new = {"mean": momentum * stats[bn]["mean"] + (1 - momentum) * mean,
               "var": momentum * stats[bn]["var"] + (1 - momentum) * var}
    else:
        mean, var, new = stats[bn]["mean"], stats[bn]["var"], stats[bn]
    x = (x - mean) * lax.rsqrt(var + eps) * params[bn]["gamma"] + params[bn]["beta"]
    x = lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    return jax.nn.relu(x), new


def forward(params, stats, x, train):
    """x (N, 28, 28, 1) float -> (logits (N, 10), new statistics)."""
    x, s1 = _block(params, stats, x, "conv1", "bn1", train)
    x, s2 = _block(params, stats, x, "conv2", "bn2", train)
    x = jax.nn.relu(x.reshape(x.shape[0], -1) @ params["ip1"]["w"] + params["ip1"]["b"])
    return x @ params["ip2"]["w"] + params["ip2"]["b"], {"bn1": s1, "bn2": s2}


def shift(key, x, pad=2):
    """Each image of x (N, H, W, C) shifted by up to `pad` pixels: a random crop of the zero-padded image."""
    n, h, w, c = x.shape
    padded = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    offsets = jax.random.randint(key, (n, 2), 0, 2 * pad + 1)
    return jax.vmap(lambda img, o: lax.dynamic_slice(img, (o[0], o[1], 0), (h, w, c)))(padded, offsets)


class Recipe:
    """One epoch of training then evaluation, with the data on the default device."""

    def __init__(self, train, test, *, batch_size, lr, momentum, weight_decay, seed=0):
        self.images, self.labels = jax.device_put(train[0]), jax.device_put(train[1])
        self.test = jax.device_put(test[0]), jax.device_put(test[1])
        self.batch_size, self.seed = batch_size, seed
        self.steps = len(train[1]) // batch_size
        self.tx = optax.chain(optax.add_decayed_weights(weight_decay),
                              optax.sgd(optax.cosine_decay_schedule(lr, self.steps), momentum))
        self._step = jax.jit(self._train_step, donate_argnums=(0,))
        self._eval = jax.jit(self._accuracy)

    def _train_step(self, carry, images, labels, perm, i):
        params, stats, opt_state, key = carry
        idx = lax.dynamic_slice_in_dim(perm, i * self.batch_size, self.batch_size)
        x = shift(jax.random.fold_in(key, i), images[idx].astype(jnp.float32) * CAFFE_PIXEL_SCALE)

        def loss(params):
            logits, new_stats = forward(params, stats, x, True)
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels[idx]).mean(), new_stats

        (value, stats), grads = jax.value_and_grad(loss, has_aux=True)(params)
        updates, opt_state = self.tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), stats, opt_state, key), value

    def _accuracy(self, params, stats, images, labels):
        batches = images.reshape(-1, 1000, *images.shape[1:]).astype(jnp.float32) * CAFFE_PIXEL_SCALE
        logits = lax.map(lambda x: forward(params, stats, x, False)[0], batches).reshape(-1, 10)
        return jnp.mean(jnp.argmax(logits, axis=1) == labels)

    def epoch(self):
        """Train one epoch from fresh parameters, evaluate -> test accuracy (a device scalar)."""
        key = jax.random.key(self.seed)
        params, stats = init(key)
        carry = (params, stats, self.tx.init(params), key)
        perm = jax.random.permutation(key, len(self.labels))
        for i in range(self.steps):
            carry, _ = self._step(carry, self.images, self.labels, perm, jnp.int32(i))
        return self._eval(carry[0], carry[1], *self.test)

