"""Checkpoints of a training run, with orbax.

Each save goes to `<dir>/<step>/` through a temporary directory that is renamed when complete, so a crash
never leaves a half-written checkpoint that looks valid; restore takes the newest complete one.
A run's `--out` directory keeps them under `checkpoints/`.
"""
import os

import jax
import orbax.checkpoint as ocp


class Checkpointer:
    """Save and restore a pytree (the train state) plus JSON metadata (model name, epoch, config)."""

    def __init__(self, directory, max_to_keep=3):
        self.directory = os.path.abspath(directory)
        self._manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
            item_handlers={"tree": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()},
        )

    def save(self, step: int, tree, meta: dict) -> None:
        """Write checkpoint `step` and wait until it is complete on disk."""
        self._manager.save(int(step), args=ocp.args.Composite(tree=ocp.args.StandardSave(tree),
                                                              meta=ocp.args.JsonSave(meta)), force=True)
        self._manager.wait_until_finished()

    def latest_step(self):
        return self._manager.latest_step()

    def restore(self, template=None, step=None):
        """-> (tree, meta) of `step` (default: the latest). With a template the tree has its structure,
        shardings and dtypes; without, nested dicts of arrays on this process's first device, whatever
        devices wrote it (a run on 8 TPU cores restores on a laptop)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        if template is None:
            device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
            template = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                                    self._manager.item_metadata(step)["tree"])
        restored = self._manager.restore(step, args=ocp.args.Composite(
            tree=ocp.args.StandardRestore(template), meta=ocp.args.JsonRestore()))
        return restored.tree, restored.meta

    def close(self):
        self._manager.close()


def checkpoint_dir(path) -> str:
    """A run's --out directory or its checkpoints/ directory -> the checkpoints directory."""
    inner = os.path.join(path, "checkpoints")
    return inner if os.path.isdir(inner) else path


def restore(path) -> dict:
    """Latest checkpoint of a run (its --out directory or the checkpoints/ inside it)
    -> {'params', 'state', 'model', 'meta'}; 'model' is the zoo name the run trained."""
    directory = checkpoint_dir(path)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"checkpoint path {path!r} does not exist")
    ckpt = Checkpointer(directory)
    try:
        tree, meta = ckpt.restore()
    finally:
        ckpt.close()
    return {"params": tree["params"], "state": tree["state"], "model": meta.get("model"), "meta": meta}
