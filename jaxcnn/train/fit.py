"""The epoch loop: progress, evaluation, metrics, checkpoints, resume, and a clean stop on SIGTERM/SIGINT."""
import contextlib
import json
import os
import signal
import time

import jax
import numpy as np
from tqdm import tqdm

from ..checkpoint import Checkpointer
from .trainer import Trainer, TrainState


class Interrupted(Exception):
    """Training stopped on a signal after saving a checkpoint at `step`."""

    def __init__(self, signum, step):
        super().__init__(f"stopped by {signal.Signals(signum).name} at step {step}; checkpoint saved, --resume continues")
        self.signum, self.step = signum, step


@contextlib.contextmanager
def _catch_signals(flag: dict):
    """While active, SIGTERM/SIGINT only set flag['signum']; the loop saves and stops at the next chunk."""
    def handler(signum, frame):
        flag["signum"] = signum

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _is_main():
    return jax.process_index() == 0


def _read_metrics(path, upto_epoch):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [r for r in rows if r["epoch"] <= upto_epoch]


def fit(trainer: Trainer, train, test, *, epochs: int, seed: int = 0, out_dir=None, resume=False,
        meta=None, progress=True, on_epoch=None):
    """Train for `epochs` epochs; evaluate on `test` after each.

    train, test: (uint8 images (N, H, W, C), int labels (N,)) on the host.
    out_dir: if given, checkpoints go to out_dir/checkpoints (each epoch and on SIGTERM/SIGINT) and one JSON
    line per epoch to out_dir/metrics.jsonl. resume=True continues from the latest checkpoint there.
    meta: JSON-able dict saved with checkpoints (e.g. model name, flags). on_epoch(record) is called per epoch.
    -> (final TrainState, list of per-epoch metric records).
    """
    images, labels = trainer.put(train)
    test_images, test_labels = trainer.put(test)
    n, bs = len(train[1]), trainer.batch_size
    steps_per_epoch = n // bs
    if steps_per_epoch == 0:
        raise ValueError(f"--batch-size {bs} is larger than the {n} training examples")

    ts = trainer.init(seed)
    ckpt = Checkpointer(os.path.join(out_dir, "checkpoints")) if out_dir else None
    history = []
    if resume and ckpt is not None and ckpt.latest_step() is not None:
        tree, _ = ckpt.restore(template=dict(ts._asdict()))
        ts = TrainState(**tree)
        history = _read_metrics(os.path.join(out_dir, "metrics.jsonl"), int(ts.step) // steps_per_epoch)
    elif resume:
        print(f"--resume: no checkpoint in {out_dir}, starting afresh")

    def save(ts):
        if ckpt is not None:
            ckpt.save(int(ts.step), dict(ts._asdict()), {**(meta or {}), "step": int(ts.step),
                                                         "steps_per_epoch": steps_per_epoch})

    flag = {}
    try:
        with _catch_signals(flag):
            while int(ts.step) < epochs * steps_per_epoch:
                epoch, offset = divmod(int(ts.step), steps_per_epoch)
                perm = trainer.permutation(ts, epoch, n)
                bar = tqdm(total=steps_per_epoch, initial=offset, desc=f"epoch {epoch + 1}/{epochs}",
                           unit="step", disable=None if progress and _is_main() else True, leave=False)
                start_time, losses = time.perf_counter(), []
                while offset < steps_per_epoch:
                    count = min(trainer.steps_per_dispatch, steps_per_epoch - offset)
                    ts, chunk_losses = trainer.train_steps(ts, images, labels, perm, offset, count)
                    losses.append(np.asarray(chunk_losses))  # waits for the chunk
                    offset += count
                    rate = bs * sum(map(len, losses)) / (time.perf_counter() - start_time)
                    bar.set_postfix(loss=f"{losses[-1].mean():.4f}", img_s=f"{rate:,.0f}")
                    bar.update(count)
                    if "signum" in flag:
                        save(ts)
                        raise Interrupted(flag["signum"], int(ts.step))
                bar.close()
                seconds = time.perf_counter() - start_time
                test_loss, test_acc, _ = jax.device_get(trainer.evaluate(ts, test_images, test_labels))
                record = {"epoch": epoch + 1, "step": int(ts.step), "train_loss": float(np.concatenate(losses).mean()),
                          "test_loss": float(test_loss), "test_accuracy": float(test_acc),
                          "seconds": seconds, "images_per_second": bs * sum(map(len, losses)) / seconds}
                history.append(record)
                save(ts)
                if out_dir and _is_main():
                    with open(os.path.join(out_dir, "metrics.jsonl"), "w") as f:
                        f.writelines(json.dumps(r) + "\n" for r in history)
                if on_epoch is not None:
                    on_epoch(record)
    finally:
        if ckpt is not None:
            ckpt.close()
    return ts, history
