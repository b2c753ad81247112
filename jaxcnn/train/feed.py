"""How fit reaches its data: arrays put on the devices once (`Resident`), or a source of records read from disk in
batches, ahead of the steps, by a background thread (`Streamed`). A source is any object with len(), a per-example
`shape` and read(indices) -> (images, labels), as the readers of jaxcnn.caffe.sources are.

Both take an epoch's batches in the order of the Trainer's permutation of that epoch (drawn from the run's key), so
a source streamed and the same records held in memory train alike, and a resumed run continues where it stopped.
"""
import os

import jax
import jax.numpy as jnp
import numpy as np

from .. import ops
from ..datasets.prefetch import Prefetch
from .errors import ConfigError

PREFETCH = 4  # batches read ahead of the step


def default_workers() -> int:
    """Reading threads of a stream: half the CPU cores (the other half runs the host side of training), 1 to 8."""
    return max(1, min(8, (os.cpu_count() or 2) // 2))


def is_source(data) -> bool:
    """Whether `data` is a source of records (else an (images, labels) pair of arrays)."""
    return hasattr(data, "read") and hasattr(data, "shape")


def examples(data) -> int:
    """The number of examples in (images, labels) arrays or a source."""
    return len(data) if is_source(data) else len(data[1])


def feed(trainer, data, what: str, *, depth: int = PREFETCH, workers: int | None = None):
    """`data` as fit reads it: a Streamed source (depth batches read ahead by `workers` threads, default
    default_workers()) or Resident arrays. `what` ('training set', 'test set') names it in errors."""
    if is_source(data):
        return Streamed(trainer, data, what, depth=depth, workers=workers)
    return Resident(trainer, data, what)


class Resident:
    """(images, labels) put on the devices (replicated) by trainer.put; a chunk of steps is one dispatch."""

    def __init__(self, trainer, data, what):
        try:
            self.images, self.labels = trainer.put(data)
        except ValueError as e:
            raise ValueError(f"{what}: {e}") from e
        self.trainer, self.n, self._perm = trainer, len(data[1]), (None, None)

    def steps(self, ts, epoch: int, start: int, count: int):
        """Steps start .. start+count-1 of `epoch` -> (ts, losses (count,))."""
        if self._perm[0] != epoch:
            self._perm = (epoch, self.trainer.permutation(ts, epoch, self.n))
        return self.trainer.train_steps(ts, self.images, self.labels, self._perm[1], start, count)

    def evaluate(self, ts):
        """-> (mean loss, accuracy) over the whole set."""
        loss, accuracy, _ = self.trainer.evaluate(ts, self.images, self.labels)
        return loss, accuracy

    def close(self):
        pass


class Streamed:
    """A source read in batches by background threads (jaxcnn.datasets.prefetch), each batch placed over the mesh
    and trained on in its own step. One process only (each process would need its share of each batch)."""

    def __init__(self, trainer, source, what, *, depth: int = PREFETCH, workers: int | None = None):
        if jax.process_count() > 1:
            raise ConfigError("data", what, "streaming from disk runs in one process; load it into memory")
        self.trainer, self.source, self.what, self.n = trainer, source, what, len(source)
        self.depth, self.workers = depth, default_workers() if workers is None else workers
        self.classes = trainer.net.output_shapes()[-1]
        self._batches, self._at = None, None

    def _read(self, indices):
        images, labels = self.source.read(indices)
        try:
            ops.loss.check_labels(labels, self.classes)
        except ValueError as e:
            raise ValueError(f"{self.what} {getattr(self.source, 'path', '')}: {e}") from None
        return images, labels

    def steps(self, ts, epoch: int, start: int, count: int):
        """Steps start .. start+count-1 of `epoch` -> (ts, losses (count,)), reading on from the last call's batches
        (or starting the epoch's reads at `start`)."""
        if self._at != (epoch, start):
            self.close()
            order = np.asarray(self.trainer.permutation(ts, epoch, self.n))
            b = self.trainer.batch_size
            chunks = (order[i * b:(i + 1) * b] for i in range(start, self.n // b))
            self._batches = Prefetch(self._read, chunks, depth=self.depth, workers=self.workers)
        losses = []
        for _ in range(count):
            images, labels = next(self._batches)
            ts, loss = self.trainer.train_batch(ts, images, labels)
            losses.append(loss)
        self._at = (epoch, start + count)
        return ts, jnp.stack(losses)

    def evaluate(self, ts):
        """-> (mean loss, accuracy) over the whole source, read in batches of the Trainer's eval_batch_size."""
        b = self.trainer.eval_batch_size
        chunks = (np.arange(i, min(i + b, self.n)) for i in range(0, self.n, b))
        loss = correct = 0.0
        with Prefetch(self._read, chunks, depth=self.depth, workers=self.workers) as batches:
            for images, labels in batches:
                batch_loss, accuracy, _ = self.trainer.evaluate(ts, images, labels)
                loss, correct = loss + batch_loss * len(labels), correct + accuracy * len(labels)
        return loss / self.n, correct / self.n

    def close(self):
        """Stop the reads of an epoch left unfinished."""
        if self._batches is not None:
            self._batches.close()
        self._batches, self._at = None, None
