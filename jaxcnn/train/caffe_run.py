"""Caffe's train/test net and its solver as a jaxcnn training run (a jaxcnn.train.RunSpec).

    >>> from jaxcnn.train import caffe_run
    >>> spec = caffe_run.load("experiments/caffe/lenet_solver.prototxt", data_dir="../shared/data/mnist")
    >>> spec.config.dataset, spec.config.batch_size, spec.config.solver.schedule, spec.schedule_steps
    ('mnist', 64, 'inv', 10000)
    >>> spec.net.transform.scale
    0.00390625

`jaxcnn.train.run_training(spec, "runs/lenet")` then trains it, as `python -m jaxcnn train --solver
experiments/caffe/lenet_solver.prototxt` does: a run directory (jaxcnn.train.run) that also holds the trained
weights as `<snapshot_prefix>_iter_<steps>.caffemodel` (snapshot_prefix's last part; default the net's name) and
the solver's state as Caffe's `.solverstate` beside it. A new run may start from caffemodels (`weights`: Caffe's
fine-tuning) or a .solverstate (`snapshot`), as jaxcnn.train.caffe_start says.

The solver's net is loaded in the TRAIN phase; its data layer gives the batch size, its TRAIN and TEST data layers
the data and preprocessing (jaxcnn.train.caffe_data: a named dataset, or the layers' own LMDB, image list or HDF5
files; transform_param in full); its one SoftmaxWithLoss is the loss the Trainer minimises on the net's output.
The run trains whole epochs: ceil(max_iter * iter_size / batches per epoch) of them (Caffe stops at max_iter
exactly), evaluating after each (Caffe: every test_interval); the learning-rate schedule is max_iter steps long,
and holds its final rate after that. The manifest records the solver's settings (and its file's path), so a
solver edited since is a different run on resume (RunMismatch naming the setting, e.g. solver.lr).
"""
import dataclasses
import math
import os

import jax

from ..caffe import CaffeFormatError, load_prototxt, load_solver, save_caffemodel
from . import caffe_start
from .caffe_data import load_data
from .feed import examples
from .run import RunConfig, RunSpec
from .solver import SolverConfig


def load(solver_path, *, dataset: str | None = None, data_dir=None, epochs: int | None = None, weights=None,
         snapshot=None, **trainer_options) -> RunSpec:
    """Read the solver and its net and load the data (see the module docstring) -> the run's RunSpec. epochs
    overrides the count derived from max_iter; weights (caffemodel paths) or snapshot (a .solverstate path) are
    read now and start a new run; trainer_options go to the Trainer (e.g. lowering)."""
    solver = load_solver(solver_path)
    net_path = solver.net_path()
    net = load_prototxt(net_path, "TRAIN")
    where = str(net_path)
    if net.data is None or net.transform is None:
        raise CaffeFormatError(where, "the TRAIN phase has no Data, ImageData or MemoryData layer")
    if len(net.losses) != 1 or net.losses[0].logits != net.outputs[0] or len(net.outputs) != 1:
        raise CaffeFormatError(where, f"training needs one SoftmaxWithLoss on the net's one output, got losses "
                                      f"{[l.name for l in net.losses]} and outputs {list(net.outputs)}")
    if net.losses[0].weight != 1:
        raise CaffeFormatError(where, f"loss_weight {net.losses[0].weight} is not supported for training (the "
                                      "Trainer minimises the loss itself)", layer=net.losses[0].name)
    data = load_data(net_path, dataset=dataset, data_dir=data_dir)
    net = load_prototxt(net_path, "TRAIN", input_shape=data.input_shape)
    batch = net.data.batch_size or 64
    per_epoch = examples(data.train) // batch
    if per_epoch == 0:
        raise ValueError(f"{where}: batch_size {batch} is larger than the {examples(data.train)} training images")
    t = data.train_transform
    augment = ", ".join(([f"random crop {t.crop_size}"] if t.crop_size else []) + (["mirror"] if t.mirror else []))
    config = RunConfig(model=net.name, dataset=data.name, batch_size=batch,
                       epochs=epochs or math.ceil(solver.max_iter * solver.iter_size / per_epoch),
                       solver=SolverConfig.from_caffe(solver), seed=max(solver.random_seed, 0),
                       augment=augment or "none")
    prefix = os.path.basename(solver.snapshot_prefix or net.name)
    p = data.preprocessing()
    spec = RunSpec(config, net, data.train, data.test, preprocess=p["preprocess"], augment=p["augment"], bgr=data.bgr,
                   trainer_options={"eval_preprocess": p["eval_preprocess"], **trainer_options},
                   schedule_steps=solver.max_iter, meta={"solver_file": os.path.abspath(solver_path)},
                   finish=lambda out, trainer, ts: _save_weights(out, trainer, ts, prefix, config.solver))
    if snapshot is not None:
        return dataclasses.replace(spec, meta={**spec.meta, "snapshot": os.path.abspath(snapshot)},
                                   start=caffe_start.from_solverstate(spec.trainer(), config.solver, solver.max_iter,
                                                                      snapshot, end_step=config.epochs * per_epoch))
    if weights:
        return dataclasses.replace(spec, meta={**spec.meta, "weights": [os.path.abspath(w) for w in weights]},
                                   start=caffe_start.fine_tune(spec.trainer(), weights))
    return spec


def _save_weights(out, trainer, ts, prefix, solver: SolverConfig) -> dict:
    """Write the trained params and state as `<prefix>_iter_<step>.caffemodel` in the run directory `out`, and the
    optimizer's state (`solver`'s, with the run's schedule length) as Caffe's `.solverstate` beside it ->
    {'caffemodel', 'solverstate': their names}."""
    stem = f"{prefix}_iter_{int(ts.step)}"
    save_caffemodel(trainer.net, jax.device_get(ts.params), jax.device_get(ts.state), out.file(stem + ".caffemodel"))
    caffe_start.save_solverstate(trainer, solver, out.manifest["schedule_steps"], ts,
                                 out.file(stem + ".solverstate"), out.file(stem + ".caffemodel"))
    return {"caffemodel": stem + ".caffemodel", "solverstate": stem + ".solverstate"}
