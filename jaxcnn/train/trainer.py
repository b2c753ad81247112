"""Jitted training and evaluation of a Net on uint8 images held on the devices.

The whole dataset lives on the devices (replicated); each epoch draws a permutation there, and on GPU/TPU a
chunk of `steps_per_dispatch` SGD steps runs as one `lax.scan`, so an epoch costs a handful of dispatches.
On CPU each step is its own asynchronous dispatch and the host waits once per chunk (a scanned chunk runs at
the same speed there and gains nothing: docs/performance.md).
With several devices (or processes) the batch is sharded over a 1-d 'data' mesh and params are replicated;
XLA inserts the gradient all-reduce, so the numbers match one device up to float rounding.
"""
import dataclasses
import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from .. import ops, tuning
from ..net import Net
from .errors import count, per_device


class TrainState(NamedTuple):
    """Everything a step reads and writes. rng is raw key data (uint32[2]); step keys fold in `step`."""

    step: Any
    params: Any
    state: Any
    opt_state: Any
    rng: Any


def data_mesh(devices=None) -> jax.sharding.Mesh:
    """A 1-d mesh named 'data' over all devices (all processes' devices when distributed)."""
    devices = jax.devices() if devices is None else devices
    return jax.sharding.Mesh(np.asarray(devices), ("data",))


def _cast(tree, dtype):
    return jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


class Trainer:
    """Train `net` with the Optax transformation `tx`.

    preprocess: uint8 (B, H, W, C) -> float (B, H, W, C), inside the step (e.g. x / 256).
    augment: optional (key, float batch) -> float batch, jit-compiled into the step (after preprocess; it may
        change the batch's size, e.g. a random crop).
    eval_preprocess: the preprocessing of evaluation batches, where it differs from preprocess (Caffe's TEST-phase
        data layer: e.g. a centre crop where training crops at random); default: preprocess.
    compute_dtype: float32, or bfloat16 for mixed precision (params and gradients stay float32).
    scan: run a chunk of steps as one lax.scan (default: on every backend but CPU).
    lowering: 'auto', 'native' or 'cpu' (jaxcnn.ops.lowering); 'auto' is resolved from the mesh's devices.
    autotune: on the CPU, what 'auto' uses: None (default) the convolution forms and YNNPACK choice measured for
        this net and batch on this machine (jaxcnn.tuning.lookup: `python -m jaxcnn tune` measures them; nothing is
        measured here), the fixed rules and XLA's defaults where none were, or with $JAXCNN_AUTOTUNE=0; True
        measures what the cache lacks now (jaxcnn.tuning.tune: minutes for a large net); False the fixed rules.
    compiler_options: XLA options for the jitted steps (default: ops.compiler_options() for the mesh's platform,
        with the YNNPACK choice where 'auto' found one).
    Raises ConfigError for a batch size or steps_per_dispatch below 1, or a batch that does not divide over the
    mesh's devices.
    """

    def __init__(self, net: Net, tx: optax.GradientTransformation, *, batch_size: int,
                 preprocess: Callable, augment: Callable | None = None, eval_preprocess: Callable | None = None,
                 compute_dtype=jnp.float32,
                 steps_per_dispatch: int = 50, eval_batch_size: int = 1000, mesh=None, scan=None,
                 lowering="auto", autotune: bool | None = None, compiler_options: dict | None = None):
        batch_size, eval_batch_size = count("batch_size", batch_size), count("eval_batch_size", eval_batch_size)
        self.steps_per_dispatch = count("steps_per_dispatch", steps_per_dispatch)
        self.mesh = data_mesh() if mesh is None else mesh
        self.batch_size = per_device("batch_size", batch_size, self.mesh.size)
        self.eval_batch_size = per_device("eval_batch_size", eval_batch_size, self.mesh.size)
        self.net, self.tx = net, tx
        self.preprocess, self.augment = preprocess, augment
        self.eval_preprocess = preprocess if eval_preprocess is None else eval_preprocess
        self.compute_dtype = jnp.dtype(compute_dtype)
        self.replicated = NamedSharding(self.mesh, P())
        self.batch_sharding = NamedSharding(self.mesh, P("data"))
        platform = self.mesh.devices.flat[0].platform
        self.scan = platform != "cpu" if scan is None else scan
        self.lowering = ops.lowering.for_platform(lowering, platform)
        if lowering == "auto" and self.lowering == "cpu" and net.input_shape is not None and autotune is not False:
            tuned = (tuning.tune if autotune else tuning.lookup)(net, batch_size, dtype=self.compute_dtype.name,
                                                                 backend=platform)
            self.lowering = tuned.lowering
            if self.mesh.size > 1 and isinstance(self.lowering, ops.lowering.Tuned):  # kernels of one device
                self.lowering = dataclasses.replace(self.lowering, first_block=False)
            compiler_options = tuned.compiler_options if compiler_options is None else compiler_options
        if compiler_options is None:
            compiler_options = ops.compiler_options(platform)
        self.compiler_options = compiler_options
        jit = functools.partial(jax.jit, compiler_options=compiler_options)
        self._chunk = jit(self._train_chunk, static_argnums=(5,), donate_argnums=(0,))
        self._one = jit(self._train_one, donate_argnums=(0,))
        self._batch = jit(self._train_batch, donate_argnums=(0,))
        self._eval = jit(self._eval_all, out_shardings=self.replicated)
        self._perm = jax.jit(lambda key, epoch, n: jax.random.permutation(jax.random.fold_in(key, epoch), n),
                             static_argnums=(2,), out_shardings=self.replicated)
        self._finite = jax.jit(lambda tree: jnp.all(jnp.stack([jnp.all(jnp.isfinite(a)) for a in jax.tree.leaves(tree)
                                                               if jnp.issubdtype(a.dtype, jnp.floating)])))

    # -- placement -----------------------------------------------------------------------------------
    def _replicate(self, tree):
        """Replicate a pytree of host arrays over the mesh (works across processes too)."""
        def one(a):
            a = np.asarray(a)
            return jax.make_array_from_callback(a.shape, self.replicated, lambda idx: a[idx])
        return jax.tree.map(one, tree)

    def put(self, data):
        """A dataset on the host -> replicated on the mesh.

        Args:
          data: (images (N, H, W, C), labels (N,)), images as the net's preprocess takes them (uint8 for the
            experiments), labels integers in [0, K) for the net's K outputs.
        Returns:
          (images, labels) as jax arrays replicated over the mesh. Raises ValueError for labels that are not
          integers in [0, K) or a count of labels that differs from the count of images.
        """
        images, labels = (np.asarray(a) for a in data)
        if labels.shape != images.shape[:1]:
            raise ValueError(f"expected one label per image: {len(images)} images, labels of shape {labels.shape}")
        ops.loss.check_labels(labels, self.net.shapes(images.shape[1:])[-1].out_shape[-1])
        return self._replicate((images, labels))

    def init(self, seed: int, input_shape=None, params=None, state=None) -> TrainState:
        """A replicated TrainState at step 0: `params` and `state` (e.g. loaded weights) or fresh ones drawn from
        `seed`, a fresh optimizer state, and the run's key from `seed`."""
        key = jax.random.key(seed)
        if params is None:
            _, params, state = self.net.init(key, input_shape)
        elif state is None:
            raise ValueError("params given without the net state that goes with them (pass state={} if it has none)")
        ts = TrainState(np.int32(0), params, state, self.tx.init(params),
                        jax.random.key_data(jax.random.fold_in(key, 1)))
        return self.place(ts)

    def place(self, ts: TrainState) -> TrainState:
        """A TrainState (on the host, or on any devices) replicated over the mesh, as init makes it."""
        return self._replicate(jax.device_get(ts))

    # -- training ------------------------------------------------------------------------------------
    def _loss(self, params, state, x, y, key):
        logits, new_state = self.net.apply(_cast(params, self.compute_dtype), state,
                                           x.astype(self.compute_dtype), train=True, rng=key, lowering=self.lowering)
        return ops.softmax_cross_entropy(logits.astype(jnp.float32), y), _cast(new_state, jnp.float32)

    def _step(self, ts: TrainState, x, y):
        key = jax.random.fold_in(jax.random.wrap_key_data(ts.rng), ts.step)
        aug_key, drop_key = jax.random.split(key)
        x = self.preprocess(x)
        if self.augment is not None:
            x = self.augment(aug_key, x)
        (loss, state), grads = jax.value_and_grad(self._loss, has_aux=True)(ts.params, ts.state, x, y, drop_key)
        updates, opt_state = self.tx.update(grads, ts.opt_state, ts.params)
        return TrainState(ts.step + 1, optax.apply_updates(ts.params, updates), state, opt_state, ts.rng), loss

    def _train_one(self, ts, images, labels, perm, i):
        idx = lax.dynamic_slice_in_dim(perm, i * self.batch_size, self.batch_size)
        x = lax.with_sharding_constraint(images[idx], self.batch_sharding)
        y = lax.with_sharding_constraint(labels[idx], self.batch_sharding)
        return self._step(ts, x, y)

    def _train_batch(self, ts, x, y):
        return self._step(ts, lax.with_sharding_constraint(x, self.batch_sharding),
                          lax.with_sharding_constraint(y, self.batch_sharding))

    def _train_chunk(self, ts, images, labels, perm, start, count):
        return lax.scan(lambda ts, i: self._train_one(ts, images, labels, perm, start + i), ts, jnp.arange(count))

    def is_finite(self, ts: TrainState) -> bool:
        """Whether every float in the params and net state is finite (checked on the devices)."""
        return bool(self._finite((ts.params, ts.state)))

    def permutation(self, ts: TrainState, epoch: int, n: int):
        """The epoch's example order, drawn on the devices from the run's key."""
        return self._perm(jax.random.wrap_key_data(ts.rng), epoch, n)

    def train_steps(self, ts, images, labels, perm, start: int, count: int):
        """Run steps start .. start+count-1 of an epoch (batch i = perm[i*B:(i+1)*B]) -> (ts, losses)."""
        if self.scan:
            return self._chunk(ts, images, labels, perm, jnp.int32(start), count)
        losses = []
        for i in range(start, start + count):
            ts, loss = self._one(ts, images, labels, perm, jnp.int32(i))
            losses.append(loss)
        return ts, jnp.stack(losses)

    def train_batch(self, ts, images, labels):
        """One step on a batch from the host (images (B, ...), labels (B,): B = batch_size), placed over the mesh
        (one process) -> (ts, loss): what jaxcnn.train.feed runs for data streamed from disk."""
        return self._batch(ts, jax.device_put(images, self.batch_sharding), jax.device_put(labels, self.batch_sharding))

    # -- evaluation ----------------------------------------------------------------------------------
    def _eval_all(self, params, state, images, labels):
        b, n = self.eval_batch_size, images.shape[0]
        pad = -n % b
        images = jnp.pad(images, ((0, pad),) + ((0, 0),) * (images.ndim - 1))
        labels = jnp.pad(labels, (0, pad))
        valid = jnp.arange(n + pad) < n

        def body(carry, batch):
            x, y, m = (lax.with_sharding_constraint(a, self.batch_sharding) for a in batch)
            logits, _ = self.net.apply(_cast(params, self.compute_dtype), state,
                                       self.eval_preprocess(x).astype(self.compute_dtype), lowering=self.lowering)
            logits = logits.astype(jnp.float32)
            nll = ops.softmax_cross_entropy(logits, y, reduction="none")
            correct = ops.accuracy(logits, y, reduction="none")
            return (carry[0] + jnp.sum(nll * m), carry[1] + jnp.sum(correct * m)), jnp.argmax(logits, axis=1)

        split = lambda a: a.reshape(-1, b, *a.shape[1:])  # noqa: E731
        (loss, correct), preds = lax.scan(body, (0.0, 0), (split(images), split(labels), split(valid)))
        return loss / n, correct / n, preds.reshape(-1)[:n]

    def evaluate(self, ts: TrainState, images, labels):
        """-> (mean loss, accuracy, predicted labels) over the whole (device-resident) set."""
        return self._eval(ts.params, ts.state, images, labels)
