"""A training run, whole: `RunSpec` says what it is (net, data, settings, hooks), `run_training` turns it into a
finished run directory, and `zoo_spec` builds the spec of a zoo model on a named dataset (jaxcnn.train.caffe_run's
`load` builds the spec of a Caffe solver). `python -m jaxcnn train`, the experiments, the Colab notebook and the
bench all run through run_training.

    >>> from jaxcnn import Dense, Flatten, Net, datasets
    >>> from jaxcnn.train import RunConfig, RunDir, RunSpec, SolverConfig, run_training
    >>> train, test = (datasets.load("mnist", split, "../shared/data/mnist") for split in ("train", "test"))
    >>> net = Net([Flatten("flatten"), Dense("ip1", 10)], (28, 28, 1))                 # or zoo.lenet_caffe()
    >>> config = RunConfig(model="softmax", dataset="mnist", batch_size=32, epochs=1, solver=SolverConfig(lr=0.05))
    >>> spec = RunSpec(config, net, train, test, preprocess=lambda x: x * datasets.CAFFE_PIXEL_SCALE)
    >>> results = run_training(spec, "runs/softmax")
    >>> results["epochs"], 0 <= results["test_accuracy"] <= 1
    (1, True)
    >>> sorted(p.name for p in RunDir("runs/softmax").path.iterdir())
    ['checkpoints', 'curves.png', 'manifest.json', 'metrics.jsonl', 'misclassified.png', 'results.json']

The order of a run: the directory checked (RunDir.check) and the settings (a batch larger than the training set,
one that does not divide over the devices), then the directory acquired and the manifest recorded or, on resume,
compared (a failed start leaves the directory as it was), the optimizer built with the schedule length the run
recorded, `fit`, the spec's `finish`, the plots and results.json (the last file a run writes).
"""
import contextlib
import dataclasses
import logging
from typing import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .. import datasets, zoo
from ..layers import LayerError
from .errors import ConfigError, count, per_device
from .feed import examples, is_source
from .fit import epoch_steps, fit
from .rundir import RunDir, make_manifest
from .solver import SolverConfig, optimizer, schedule
from .trainer import Trainer, TrainState

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

    def manifest(self, train_examples: int, schedule_steps: int, **meta) -> dict:
        """The run's manifest for a training set of `train_examples`, with more entries `meta` (see
        rundir.make_manifest)."""
        return make_manifest(batch_size=self.batch_size, steps_per_epoch=self.steps_per_epoch(train_examples),
                             train_examples=train_examples, epochs=self.epochs, seed=self.seed, dtype=self.dtype,
                             model=self.model, dataset=self.dataset, augment=self.augment,
                             solver=dataclasses.asdict(self.solver), schedule_steps=schedule_steps, **meta)


@dataclasses.dataclass(frozen=True, eq=False)
class RunSpec:
    """What a training run is.

    config: its settings (names, batch, epochs, optimizer, seed, dtype, ...).
    net: the net to train (a jaxcnn.Net or a Caffe net; its output width is the number of classes).
    train, test: (uint8 images (N, H, W, C), int labels (N,)) on the host, or sources of records streamed from
      disk (jaxcnn.train.feed).
    preprocess: uint8 (B, H, W, C) -> float (B, H, W, C), inside the step. augment: (key, batch) -> batch, or None.
    trainer_options: more keywords for the Trainer (eval_preprocess, lowering, compiler_options, ...).
    schedule_steps: the length of the learning-rate schedule (a Caffe solver's max_iter); None: the run's
      epochs x steps per epoch.
    class_names: names of the classes, for the plot of misclassified images.
    bgr: colour images are in BGR order (Caffe's own data files): the plots show them, and the first layer's
      filters, as RGB.
    meta: more entries for the manifest (e.g. the solver file's path); informative, not compared on resume.
    start: applied to a new run's initial TrainState (e.g. fine-tuning weights); not on resume from a checkpoint.
    finish: called as finish(run directory, Trainer, final TrainState) on the process that writes the files,
      after training; returns entries for the results (e.g. the name of a weights file it wrote there).

    A spec keeps the Trainer it builds (one per schedule length): a Trainer holds no run's state, so running the
    same spec again (timed rounds) compiles nothing again.
    """

    config: RunConfig
    net: object
    train: object
    test: object
    preprocess: Callable
    augment: Callable | None = None
    trainer_options: Mapping = dataclasses.field(default_factory=dict)
    schedule_steps: int | None = None
    class_names: Sequence[str] | None = None
    bgr: bool = False
    meta: Mapping = dataclasses.field(default_factory=dict)
    start: Callable[[TrainState], TrainState] | None = None
    finish: Callable[[RunDir, Trainer, TrainState], dict] | None = None
    _trainers: dict = dataclasses.field(default_factory=dict, init=False, repr=False)

    def steps_per_epoch(self) -> int:
        """Steps in an epoch of the training set; ConfigError when the batch is larger than it."""
        return self.config.steps_per_epoch(examples(self.train))

    def schedule_length(self) -> int:
        """schedule_steps, or the run's epochs x steps per epoch."""
        return self.schedule_steps or self.config.epochs * self.steps_per_epoch()

    def trainer(self, schedule_steps: int | None = None) -> Trainer:
        """The run's Trainer, its optimizer's schedule `schedule_steps` long (default: schedule_length())."""
        steps = schedule_steps or self.schedule_length()
        if steps not in self._trainers:
            c = self.config
            tx = optimizer(c.solver, steps, *self.net.multipliers())
            self._trainers[steps] = Trainer(self.net, tx, batch_size=c.batch_size, preprocess=self.preprocess,
                                            augment=self.augment, compute_dtype=jnp.dtype(c.dtype),
                                            steps_per_dispatch=c.steps_per_dispatch, **self.trainer_options)
        return self._trainers[steps]


def run_training(spec: RunSpec, out_dir=None, *, resume: bool = False, overwrite: bool = False,
                 rescale_schedule: bool = False, on_progress=None, on_epoch=None) -> dict:
    """Train as `spec` says into the run directory `out_dir` and return the results (see the module docstring).

    Args:
      spec: the run.
      out_dir: a path or a RunDir not acquired (a new run needs it empty; resume continues the run there, or
        starts afresh in an empty one; overwrite first removes an earlier run); None saves nothing. A command
        that loads its data first checks it before (RunDir(out_dir).check), to fail at once.
      rescale_schedule: on resume with more epochs, stretch the learning-rate schedule over them (the rate
        jumps); by default it keeps the length it was built with and holds its final rate after that.
      on_progress, on_epoch: fit's callbacks.
    Returns:
      {'model', 'dataset', 'test_accuracy', 'epochs', 'steps', 'train_images_per_second' and 'seconds_per_epoch'
      (medians over epochs), 'seconds' (of training, over all epochs), 'devices', 'platform', 'batch_size',
      'dtype', 'misclassified' (the count, when plotted), and what spec.finish returned}; also in
      out_dir/results.json, with the plots.
    Raises:
      RunDir's errors, ConfigError (a batch larger than the training set or not dividing over the devices),
      RunMismatch (resume with other settings than the run recorded) and fit's.
    """
    config = spec.config
    n, steps_per_epoch = examples(spec.train), spec.steps_per_epoch()
    config.check_devices(jax.device_count())
    own_length = spec.schedule_length()
    manifest = config.manifest(n, own_length, **spec.meta)
    out = None if out_dir is None else out_dir if isinstance(out_dir, RunDir) else RunDir(out_dir)
    if out is not None:
        out.check(resume=resume, overwrite=overwrite)
    with out.acquire(resume=resume, overwrite=overwrite) if out is not None else contextlib.nullcontext():
        if out is not None:
            manifest = out.start(manifest, resume=resume, rescale_schedule=rescale_schedule)
        schedule_steps = manifest["schedule_steps"]
        if schedule_steps < own_length and config.solver.schedule in LENGTH_DEPENDENT:
            final = float(schedule(config.solver, schedule_steps)(schedule_steps))
            log.info("the learning-rate schedule keeps its length of %d steps (%g epochs); the steps after it use "
                     "its final rate, %.3g", schedule_steps, schedule_steps / steps_per_epoch, final)
        trainer, predictions = spec.trainer(schedule_steps), None
        ts, history = fit(trainer, spec.train, spec.test, epochs=config.epochs, seed=config.seed, out_dir=out,
                          resume=resume, start=spec.start, on_progress=on_progress, on_epoch=on_epoch)
        results = {
            "model": config.model, "dataset": config.dataset, "test_accuracy": history[-1]["test_accuracy"],
            "epochs": config.epochs, "steps": int(ts.step),
            "train_images_per_second": float(np.median([r["images_per_second"] for r in history])),
            "seconds_per_epoch": float(np.median([r["seconds"] for r in history])),
            "seconds": float(sum(r["seconds"] for r in history)), "devices": trainer.mesh.size,
            "platform": trainer.mesh.devices.flat[0].platform, "batch_size": config.batch_size, "dtype": config.dtype,
        }
        if out is not None and not is_source(spec.test):  # on every process: it computes on all devices
            _, _, predictions = jax.device_get(trainer.evaluate(ts, *trainer.put(spec.test)))
        if out is not None and out.primary:
            if spec.finish is not None:
                results.update(spec.finish(out, trainer, ts))
            _plot(spec, ts, history, predictions, out, results)
            out.write_results(results)
    return results


def _plot(spec, ts, history, predictions, out, results):
    """The run's plots in `out`: curves, the misclassified test images (with `predictions`, of a test set in
    memory; their count goes in results), and the first conv layer's filters."""
    from .. import plots  # matplotlib: only where a run draws

    plots.curves(history, out.file("curves.png"))
    if predictions is not None:
        images, labels = spec.test
        results["misclassified"] = plots.misclassified(_rgb(images, -1, spec.bgr), labels, predictions,
                                                       out.file("misclassified.png"), spec.class_names)
    first = _first_image_filters(jax.device_get(ts.params))
    if first is not None:
        plots.filters(_rgb(first[1], 2, spec.bgr), out.file(f"{first[0]}_filters.png"))


def zoo_spec(config: RunConfig, *, data_dir=None, preprocess_for, augment=None, class_names=None) -> RunSpec:
    """The spec of training the zoo model `config.model` (10 classes) on `config.dataset` (one of
    jaxcnn.datasets, loaded from `data_dir`: None looks in the usual places).

    preprocess_for: train images (N, H, W, C) uint8 -> RunSpec's `preprocess`. augment, class_names: RunSpec's.
    Raises datasets.load's errors and ConfigError (a batch larger than the training set, a model that does not fit
    the dataset's images).
    """
    train, test = (datasets.load(config.dataset, split, data_dir) for split in ("train", "test"))
    config.steps_per_epoch(len(train[1]))
    image_shape = train[0].shape[1:]
    try:
        net = zoo.get(config.model, num_classes=10, input_shape=image_shape)
        net.output_shapes()
    except LayerError as e:
        raise ConfigError("model", config.model, f"does not fit {config.dataset}'s {image_shape} images: "
                          f"{e}") from e
    return RunSpec(config, net, train, test, preprocess=preprocess_for(train[0]), augment=augment,
                   class_names=class_names)


def _rgb(a, axis: int, bgr: bool):
    """`a` with its colour axis in RGB order: reversed where `bgr` says it holds B, G, R."""
    return np.flip(a, axis) if bgr and a.shape[axis] == 3 else a


def _first_image_filters(params):
    """(layer name, kernel (KH, KW, C, O)) of the first conv layer on grey or RGB images, or None."""
    for name, p in params.items():
        w = p.get("w")
        if w is not None and w.ndim == 4:
            return (name, w) if w.shape[2] in (1, 3) else None
    return None
