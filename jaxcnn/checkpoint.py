"""Checkpoints of a pytree (a training state) plus JSON metadata, with orbax.

Each save goes to `<directory>/<step>/` through a temporary directory that is renamed when complete, so a crash
during a save never leaves a checkpoint that looks finished. A checkpoint that looks finished but does not load
(its files lost or cut short, e.g. by two writers racing) is skipped on restore in favour of the newest one that
loads; the log names each skipped step and why. Where a run keeps its checkpoints is `jaxcnn.train.rundir`'s
business.
"""
import logging
import os
import sys
from typing import Any, NamedTuple

import jax
import orbax.checkpoint as ocp

log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """No checkpoint could be loaded; the message names each one tried and why it failed."""


class Restored(NamedTuple):
    """A restored checkpoint: its step, tree and metadata, and the newer steps skipped as [(step, reason)]."""

    step: int
    tree: Any
    meta: dict
    skipped: list


def _drop_late_callbacks() -> None:
    """Make sys.unraisablehook drop 'RuntimeError: Event loop is closed' (once per process; anything else goes
    on to the hook in place before). When a restore fails, tensorstore still finishes the reads it had started
    and calls back into the event loop orbax has already closed; each call would print that traceback."""
    previous = sys.unraisablehook
    if getattr(previous, "drops_late_callbacks", False):
        return

    def hook(unraisable):
        if not (isinstance(unraisable.exc_value, RuntimeError) and str(unraisable.exc_value) == "Event loop is closed"):
            previous(unraisable)

    hook.drops_late_callbacks = True
    sys.unraisablehook = hook


def _reason(error: Exception) -> str:
    """The first line of an exception, at most 160 characters (orbax's messages run to pages)."""
    first = (str(error).strip().splitlines() or [""])[0]
    return f"{type(error).__name__}: {first[:160]}{'...' if len(first) > 160 else ''}"


class Checkpointer:
    """Save and restore a pytree plus JSON metadata, keeping the newest `max_to_keep` checkpoints.

    create=False opens an existing directory only (FileNotFoundError when there is none).
    """

    def __init__(self, directory, max_to_keep: int = 3, create: bool = True):
        self.directory = os.path.abspath(directory)
        if not create and not os.path.isdir(self.directory):
            raise FileNotFoundError(f"{self.directory}: no such checkpoint directory")
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=create,
                                                 cleanup_tmp_directories=create),
            item_handlers={"tree": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()},
        )

    def path(self, step: int) -> str:
        """The directory of checkpoint `step`."""
        return os.path.join(self.directory, str(int(step)))

    def start_save(self, step: int, tree, meta: dict) -> None:
        """Begin writing checkpoint `step` (the arrays are copied off the devices first); wait() finishes it."""
        self._manager.save(int(step), args=ocp.args.Composite(tree=ocp.args.StandardSave(tree),
                                                              meta=ocp.args.JsonSave(meta)), force=True)

    def wait(self) -> None:
        """Block until the save in flight is complete on disk (renamed into place)."""
        self._manager.wait_until_finished()

    def save(self, step: int, tree, meta: dict) -> None:
        """Write checkpoint `step` and wait until it is complete on disk."""
        self.start_save(step, tree, meta)
        self.wait()

    def steps(self) -> list[int]:
        """The steps of the finished checkpoints, oldest first (whether they load or not)."""
        return sorted(self._manager.all_steps())

    def latest_step(self):
        """The newest finished checkpoint's step, or None."""
        steps = self.steps()
        return steps[-1] if steps else None

    def delete(self, step: int) -> None:
        """Remove checkpoint `step`."""
        self._manager.delete(int(step))

    def restore(self, template=None, step=None) -> Restored:
        """Restore checkpoint `step`, or by default the newest one that loads.

        Args:
          template: a pytree like the saved one, whose structure, shardings and dtypes the result takes; None
            gives nested dicts of arrays on this process's first device, whatever devices wrote it (a run on 8
            TPU cores restores on a laptop).
          step: a step to restore (no fallback), or None.
        Returns:
          Restored(step, tree, meta, skipped): skipped lists the newer checkpoints that did not load, with why.
        Raises:
          CheckpointError naming every checkpoint tried and why it failed, or that there is none.
        """
        steps = [int(step)] if step is not None else self.steps()[::-1]
        if not steps:
            raise CheckpointError(f"{self.directory}: no checkpoint")
        skipped = []
        _drop_late_callbacks()
        for s in steps:
            try:
                tree, meta = self._restore(s, template)
            except Exception as e:  # orbax and tensorstore fail in many ways on damaged files
                skipped.append((s, _reason(e)))
                log.warning("checkpoint %s does not load, skipped: %s", self.path(s), skipped[-1][1])
                continue
            return Restored(s, tree, meta, skipped)
        raise CheckpointError(f"{self.directory}: no checkpoint loads: "
                              + "; ".join(f"step {s}: {why}" for s, why in skipped))

    def _restore(self, step, template):
        if template is None:
            device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
            template = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                                    self._manager.item_metadata(step)["tree"])
        restored = self._manager.restore(step, args=ocp.args.Composite(
            tree=ocp.args.StandardRestore(template), meta=ocp.args.JsonRestore()))
        return restored.tree, restored.meta

    def close(self):
        self._manager.close()


def restore(directory, template=None) -> Restored:
    """The newest checkpoint that loads from a checkpoint directory (a run's is `RunDir(path).checkpoints`)."""
    ckpt = Checkpointer(directory, create=False)
    try:
        return ckpt.restore(template)
    finally:
        ckpt.close()
