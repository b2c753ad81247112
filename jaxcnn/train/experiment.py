"""A whole training run as the experiments make it: settings checked before any work, a run directory, the
optimizer built with the schedule length the run recorded, `fit`, the final evaluation, results and plots.

    >>> from jaxcnn import Dense, Flatten, Net, datasets
    >>> from jaxcnn.train import RunConfig, RunDir, SolverConfig, run_experiment
    >>> train, test = (datasets.load("mnist", split, "../shared/data/mnist") for split in ("train", "test"))
    >>> net = Net([Flatten("flatten"), Dense("ip1", 10)], (28, 28, 1))                 # or zoo.lenet_caffe()
    >>> config = RunConfig(model="softmax", dataset="mnist", batch_size=32, epochs=1, solver=SolverConfig(lr=0.05))
    >>> with RunDir("runs/softmax").acquire() as out:
    ...     results = run_experiment(config, net, train, test, preprocess=lambda x: x * datasets.CAFFE_PIXEL_SCALE,
    ...                              out=out)
    >>> results["epochs"], 0 <= results["test_accuracy"] <= 1
    (1, True)
    >>> sorted(p.name for p in out.path.iterdir())
    ['checkpoints', 'curves.png', 'manifest.json', 'metrics.jsonl', 'misclassified.png', 'results.json']

`run_zoo_experiment` is what `python -m experiments.mnist` and the Colab notebook call: the run directory
acquired, the dataset loaded and the zoo model built from the config's names, then run_experiment.
"""
import dataclasses
import logging

import jax
import jax.numpy as jnp
import numpy as np

from .. import datasets, zoo
from ..layers import LayerError
from ..net import Net
from .errors import ConfigError, count, per_device
from .fit import epoch_steps, fit
from .rundir import RunDir, make_manifest
from .solver import SolverConfig, optimizer, schedule
from .trainer import Trainer

log = logging.getLogger(__name__)
DTYPES = ("float32", "bfloat16")
LENGTH_DEPENDENT = ("poly", "cosine")  # schedules whose rate depends on the run's length


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """The settings that define a training run (its manifest records them; a resumed run must keep all but
    `epochs` and `steps_per_dispatch`). Raises ConfigError naming the field for a value that cannot work.

    model, dataset: names recorded for readers of the run (e.g. a zoo name, 'mnist').
    batch_size: the global batch, split over all devices. epochs: at least 1.
    solver: the optimizer and schedule. seed: params, dropout, augmentation and example order.
    dtype: compute dtype, 'float32' or 'bfloat16' (params stay float32). augment: a name for the augmentation.
    steps_per_dispatch: steps between host syncs (see Trainer).
    """

    model: str
    dataset: str
    batch_size: int
    epochs: int
    solver: SolverConfig = SolverConfig()
    seed: int = 0
    dtype: str = "float32"
    augment: str = "none"
    steps_per_dispatch: int = 50

    def __post_init__(self):
        for field in ("batch_size", "epochs", "steps_per_dispatch"):
            count(field, getattr(self, field))
        if self.dtype not in DTYPES:
            raise ConfigError("dtype", self.dtype, f"expected one of {', '.join(DTYPES)}")

    def check_devices(self, devices: int) -> None:
        """ConfigError unless the batch divides over `devices` devices."""
        per_device("batch_size", self.batch_size, devices)

    def steps_per_epoch(self, train_examples: int) -> int:
        """Steps in an epoch of `train_examples`; ConfigError when the batch is larger than that."""
        return epoch_steps(train_examples, self.batch_size)

    def manifest(self, train_examples: int, schedule_steps: int) -> dict:
        """The run's manifest for a training set of `train_examples` (see rundir.make_manifest)."""
        return make_manifest(batch_size=self.batch_size, steps_per_epoch=self.steps_per_epoch(train_examples),
                             train_examples=train_examples, epochs=self.epochs, seed=self.seed, dtype=self.dtype,
                             model=self.model, dataset=self.dataset, augment=self.augment,
                             solver=dataclasses.asdict(self.solver), schedule_steps=schedule_steps)


def run_experiment(config: RunConfig, net: Net, train, test, *, preprocess, augment=None, out: RunDir | None = None,
                   resume: bool = False, rescale_schedule: bool = False, class_names=None, on_progress=None,
                   on_epoch=None) -> dict:
    """Train `net` as `config` says and return the results (also written to out/results.json, with the plots).

    Args:
      config: the run's settings.
      net: the net to train (its output width is the number of classes).
      train, test: (uint8 images (N, H, W, C), int labels (N,)) on the host.
      preprocess: uint8 (B, H, W, C) -> float (B, H, W, C), inside the step. augment: (key, batch) -> batch.
      out: an acquired RunDir, or None to save nothing.
      resume: continue the run in `out` (its manifest must match config, but for the epochs).
      rescale_schedule: on resume with more epochs, stretch the learning-rate schedule over them (the rate
        jumps); by default it keeps the length it was built with and holds its final rate after that.
      class_names: names of the classes, for the plot of misclassified images.
      on_progress, on_epoch: fit's callbacks.
    Returns:
      {'model', 'dataset', 'test_accuracy', 'epochs', 'train_images_per_second' and 'seconds_per_epoch' (medians
      over epochs), 'seconds' (of training, over all epochs), 'devices', 'platform', 'batch_size', 'dtype',
      'misclassified' (the count, when plotted)}.
    """
    n = len(train[1])
    steps_per_epoch = config.steps_per_epoch(n)
    manifest = config.manifest(n, config.epochs * steps_per_epoch)
    if out is not None:
        manifest = out.start(manifest, resume=resume, rescale_schedule=rescale_schedule)
    schedule_steps = manifest["schedule_steps"]
    if schedule_steps < config.epochs * steps_per_epoch and config.solver.schedule in LENGTH_DEPENDENT:
        final = float(schedule(config.solver, schedule_steps)(schedule_steps))
        log.info("the learning-rate schedule keeps its length of %d steps (%g epochs); the steps after it use "
                 "its final rate, %.3g", schedule_steps, schedule_steps / steps_per_epoch, final)
    tx = optimizer(config.solver, schedule_steps, *net.multipliers())
    trainer = Trainer(net, tx, batch_size=config.batch_size, preprocess=preprocess, augment=augment,
                      compute_dtype=jnp.dtype(config.dtype), steps_per_dispatch=config.steps_per_dispatch)
    ts, history = fit(trainer, train, test, epochs=config.epochs, seed=config.seed, out_dir=out, resume=resume,
                      on_progress=on_progress, on_epoch=on_epoch)
    _, accuracy, predictions = jax.device_get(trainer.evaluate(ts, *trainer.put(test)))
    results = {
        "model": config.model, "dataset": config.dataset, "test_accuracy": float(accuracy), "epochs": config.epochs,
        "train_images_per_second": float(np.median([r["images_per_second"] for r in history])),
        "seconds_per_epoch": float(np.median([r["seconds"] for r in history])),
        "seconds": float(sum(r["seconds"] for r in history)), "devices": trainer.mesh.size,
        "platform": trainer.mesh.devices.flat[0].platform, "batch_size": config.batch_size, "dtype": config.dtype,
    }
    if out is not None and out.primary:
        from .. import plots  # matplotlib: only where a run draws

        plots.curves(history, out.file("curves.png"))
        results["misclassified"] = plots.misclassified(test[0], test[1], predictions, out.file("misclassified.png"),
                                                       class_names)
        first = _first_image_filters(jax.device_get(ts.params))
        if first is not None:
            plots.filters(first[1], out.file(f"{first[0]}_filters.png"))
        out.write_results(results)
    return results


def run_zoo_experiment(config: RunConfig, out_dir, *, data_dir=None, resume: bool = False, overwrite: bool = False,
                       rescale_schedule: bool = False, preprocess_for, augment=None, class_names=None,
                       on_start=None, on_progress=None, on_epoch=None) -> dict:
    """Train the zoo model `config.model` on `config.dataset` into the run directory `out_dir`: the directory is
    checked (RunDir.check), the dataset loaded and the model built, and only then is the directory acquired (so a
    failed start leaves it as it was) and run_experiment run.

    Args:
      config: the run's settings; its model names a zoo model (10 classes), its dataset one of jaxcnn.datasets.
      out_dir: the run directory (a new run needs it empty; resume continues the run there, or starts afresh in
        an empty one; overwrite first removes an earlier run).
      data_dir: the dataset's files (datasets.load: None looks in the usual places).
      preprocess_for: train images (N, H, W, C) uint8 -> run_experiment's `preprocess`.
      augment, class_names, rescale_schedule, on_progress, on_epoch: as run_experiment.
      on_start: called as on_start(net, train, test) once the data and model are ready, before training.
    Returns:
      run_experiment's results (also in out_dir/results.json).
    Raises:
      RunDir's errors, datasets.load's, ConfigError (a model that does not fit the dataset's images) and
      run_experiment's.
    """
    out = RunDir(out_dir)
    out.check(resume=resume, overwrite=overwrite)
    train, test = (datasets.load(config.dataset, split, data_dir) for split in ("train", "test"))
    config.steps_per_epoch(len(train[1]))
    image_shape = train[0].shape[1:]
    try:
        net = zoo.get(config.model, num_classes=10, input_shape=image_shape)
        net.output_shapes()
    except LayerError as e:
        raise ConfigError("model", config.model, f"does not fit {config.dataset}'s {image_shape} images: "
                          f"{e}") from e
    if on_start is not None:
        on_start(net, train, test)
    with out.acquire(resume=resume, overwrite=overwrite):
        return run_experiment(config, net, train, test, preprocess=preprocess_for(train[0]), augment=augment,
                              out=out, resume=resume, rescale_schedule=rescale_schedule, class_names=class_names,
                              on_progress=on_progress, on_epoch=on_epoch)


def _first_image_filters(params):
    """(layer name, kernel (KH, KW, C, O)) of the first conv layer on grey or RGB images, or None."""
    for name, p in params.items():
        w = p.get("w")
        if w is not None and w.ndim == 4:
            return (name, w) if w.shape[2] in (1, 3) else None
    return None
