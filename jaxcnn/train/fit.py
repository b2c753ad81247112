"""The epoch loop: evaluation, metrics, checkpoints, resume, a divergence guard, and a clean stop on
SIGTERM/SIGINT."""
import contextlib
import logging
import signal
import time
from typing import Callable, NamedTuple

import jax
import numpy as np

from .errors import ConfigError, Diverged, Interrupted, count
from .feed import examples, feed
from .rundir import RunDir, fault_point, make_manifest
from .trainer import Trainer, TrainState

log = logging.getLogger(__name__)


class Progress(NamedTuple):
    """Where an epoch stands, passed to fit's on_progress after each chunk of steps."""

    epoch: int  # 1-based
    epochs: int
    step: int  # steps done in this epoch
    steps_per_epoch: int
    loss: float  # mean loss of the chunk just run
    images_per_second: float  # over the epoch so far


@contextlib.contextmanager
def _catch_signals(flag: dict):
    """While active, SIGTERM/SIGINT only set flag['signum']; the loop saves and stops after the chunk in flight."""
    def handler(signum, frame):
        flag["signum"] = signum

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextlib.contextmanager
def _opened(out_dir, resume, manifest):
    """The RunDir to train into (None without out_dir). One the caller has acquired stays the caller's (and is
    started here unless it is already); a path, or a RunDir not acquired, is acquired and started here and
    released at the end."""
    if out_dir is None:
        yield None
    elif isinstance(out_dir, RunDir) and out_dir.held:
        if out_dir.manifest is None:
            out_dir.start(manifest(), resume=resume)
        yield out_dir
    else:
        with (out_dir if isinstance(out_dir, RunDir) else RunDir(out_dir)).acquire(resume=resume) as run:
            run.start(manifest(), resume=resume)
            yield run


def epoch_steps(train_examples: int, batch_size: int) -> int:
    """Steps in an epoch: train_examples // batch_size; ConfigError when the batch is larger than the training
    set."""
    if train_examples < batch_size:
        raise ConfigError("batch_size", batch_size, f"is larger than the {train_examples} training examples")
    return train_examples // batch_size


def fit(trainer: Trainer, train, test, *, epochs: int, seed: int = 0, out_dir=None, resume: bool = False,
        meta: dict | None = None, start: Callable[[TrainState], TrainState] | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        on_epoch: Callable[[dict], None] | None = None):
    """Train for `epochs` epochs of len(train) // batch_size steps; evaluate on `test` after each.

    Args:
      trainer: the Trainer (net, optimizer, batch size, ...).
      train, test: (images (N, H, W, C), labels (N,)) on the host, labels in [0, K) for the net's K outputs, put
        on the devices; or sources of records on disk (jaxcnn.caffe.sources), read in batches by a background
        thread while the devices train (jaxcnn.train.feed).
      epochs: at least 1; a resumed run may ask for more epochs than it has done, not fewer.
      seed: params, dropout and augmentation keys and example order of a new run (a resumed run continues the
        checkpoint's).
      out_dir: None (nothing is saved), a directory path, or a jaxcnn.train.RunDir. A path (or a RunDir not
        acquired) is acquired here (locked; a new run needs it empty), given a manifest of the trainer's settings
        and `meta`, and released at the end; an acquired RunDir stays the caller's. Checkpoints are saved at each
        epoch's end and on SIGTERM/SIGINT, never with non-finite params or state; metrics.jsonl follows each
        checkpoint.
      resume: continue from the newest checkpoint in out_dir that loads (afresh when there is none).
      meta: settings to record in the manifest of a run started here (model, dataset, solver, ...).
      start: applied to a new run's initial state (e.g. fine-tuning weights, a Caffe solverstate); not on resume
        from a checkpoint.
      on_progress: called with a Progress after each chunk of steps (e.g. to draw a progress bar).
      on_epoch: called with each new epoch's metric record.
    Returns:
      (final TrainState, history): one record per finished epoch with epoch, step, train_loss, test_loss,
      test_accuracy, seconds and images_per_second.
    Raises:
      ConfigError (epochs below 1 or fewer than a resumed run has done, a batch larger than the training set),
      RunMismatch (a manifest that differs from the settings), Diverged (a non-finite loss), Interrupted
      (SIGTERM/SIGINT; a checkpoint was saved), ValueError (labels outside [0, K)), and out_dir's errors
      (jaxcnn.train.RunDir).
    """
    epochs = count("epochs", epochs)
    n, bs = examples(train), trainer.batch_size
    steps_per_epoch = epoch_steps(n, bs)
    train, test = feed(trainer, train, "training set"), feed(trainer, test, "test set")

    def manifest():
        return make_manifest(batch_size=bs, steps_per_epoch=steps_per_epoch, train_examples=n, epochs=epochs,
                             seed=seed, dtype=trainer.compute_dtype.name, **(meta or {}))

    with _opened(out_dir, resume, manifest) as run, contextlib.closing(train), contextlib.closing(test):
        ts, history, partial, saved = trainer.init(seed), [], {"losses": [], "seconds": 0.0}, None
        if start is not None:
            ts = start(ts)
        if run is not None and resume:
            restored = run.resume(dict(ts._asdict()))
            if restored is not None:
                ts, history = TrainState(**restored.tree), restored.meta["history"]
                partial = restored.meta.get("partial", partial)
                done = saved = restored.step
                if done > epochs * steps_per_epoch:
                    raise ConfigError("epochs", epochs, f"fewer than the {done / steps_per_epoch:g} epochs the run in "
                                      f"{run.path} has done")
                epoch, offset = divmod(done, steps_per_epoch)
                where = (f"after epoch {epoch}" if offset == 0 else
                         f"in epoch {epoch + 1}, after its step {offset} of {steps_per_epoch}")
                log.info("resuming %s %s (step %d), from checkpoint %s", run.path, where, done,
                         run.checkpointer().path(done))
                if done == epochs * steps_per_epoch:
                    log.info("%s: nothing to train, the run has done epoch %d of %d", run.path, epochs, epochs)
        return _loop(trainer, ts, history, partial, saved, train, test, epochs, steps_per_epoch, run, on_progress,
                     on_epoch)


def _loop(trainer, ts, history, partial, last_saved, train, test, epochs, steps_per_epoch, run, on_progress,
          on_epoch):
    """fit's epochs from ts.step on (train, test: jaxcnn.train.feed's); last_saved: the step of the newest
    checkpoint (None before the first)."""
    bs = trainer.batch_size

    def save(ts, partial=None):
        nonlocal last_saved
        step = int(ts.step)
        if run is None or step == last_saved:
            return
        if not trainer.is_finite(ts):
            raise Diverged(step, "non-finite parameters or statistics", _checkpoint_path(run, last_saved))
        run.save(step, dict(ts._asdict()), history, partial)
        last_saved = step

    flag = {}
    with _catch_signals(flag):
        while int(ts.step) < epochs * steps_per_epoch:
            epoch, offset = divmod(int(ts.step), steps_per_epoch)
            start_time, losses = time.perf_counter() - partial["seconds"], list(partial["losses"])
            partial = {"losses": [], "seconds": 0.0}
            while offset < steps_per_epoch:
                count = min(trainer.steps_per_dispatch, steps_per_epoch - offset)
                ts, chunk = train.steps(ts, epoch, offset, count)
                chunk = np.asarray(chunk, np.float64)  # waits for the chunk
                if not np.isfinite(chunk).all():
                    i = int(np.argmin(np.isfinite(chunk)))
                    raise Diverged(epoch * steps_per_epoch + offset + i + 1, f"loss {chunk[i]}",
                                   _checkpoint_path(run, last_saved))
                losses.extend(chunk.tolist())
                offset += count
                fault_point(f"step-{int(ts.step)}")
                seconds = time.perf_counter() - start_time
                if on_progress is not None:
                    on_progress(Progress(epoch + 1, epochs, offset, steps_per_epoch, float(chunk.mean()),
                                         bs * len(losses) / seconds))
                if "signum" in flag:
                    save(ts, {"losses": losses, "seconds": seconds})
                    raise Interrupted(flag["signum"], int(ts.step), _checkpoint_path(run, last_saved))
            seconds = time.perf_counter() - start_time
            test_loss, test_acc = jax.device_get(test.evaluate(ts))
            record = {"epoch": epoch + 1, "step": int(ts.step), "train_loss": float(np.mean(losses)),
                      "test_loss": float(test_loss), "test_accuracy": float(test_acc), "seconds": seconds,
                      "images_per_second": bs * len(losses) / seconds}
            history = [*history, record]
            save(ts)
            if on_epoch is not None:
                on_epoch(record)
    return ts, history


def _checkpoint_path(run, step):
    return None if run is None or step is None else run.checkpointer().path(step)
