"""Caffe's train/test net and its solver as a jaxcnn training run: the Trainer, the data, the number of epochs.

    >>> from jaxcnn.train import caffe_run
    >>> run = caffe_run.setup("experiments/caffe/lenet_solver.prototxt", data_dir="../shared/data/mnist")
    >>> run.dataset, run.trainer.batch_size, run.config.schedule, run.net.transform.scale
    ('mnist', 64, 'inv', 0.00390625)

`jaxcnn.train.fit(run.trainer, run.train, run.test, epochs=run.epochs, seed=run.seed, out_dir="runs/lenet")`
then trains it, as `python -m jaxcnn train --solver experiments/caffe/lenet_solver.prototxt` does (a whole run on a
small net: the example of jaxcnn.train.experiment).

The solver's net is loaded in the TRAIN phase; its data layer gives the batch size, its TRAIN and TEST data layers
the data and preprocessing (jaxcnn.train.caffe_data: a named dataset, or the layers' own LMDB, image list or HDF5
files; transform_param in full); its one SoftmaxWithLoss is the loss the Trainer minimises on the net's output.
The run trains whole epochs: ceil(max_iter * iter_size / batches per epoch) of them (Caffe stops at max_iter
exactly), evaluating after each (Caffe: every test_interval).
"""
import math
from dataclasses import dataclass

from ..caffe import CaffeFormatError, CaffeNet, CaffeSolver, load_prototxt, load_solver
from .caffe_data import load_data
from .feed import examples
from .solver import SolverConfig, optimizer
from .trainer import Trainer


@dataclass
class CaffeRun:
    """What fit() needs: the net (TRAIN phase), its Trainer, the data (as (images, labels) pairs, or sources
    streamed from disk: jaxcnn.train.caffe_data), the epochs and the seed (the solver's random_seed, or 0), with the
    solver, its optimizer's settings and the dataset's name (or the TRAIN source's path)."""

    solver: CaffeSolver
    config: SolverConfig
    net: CaffeNet
    trainer: Trainer
    train: tuple
    test: tuple
    dataset: str
    epochs: int
    seed: int


def setup(solver_path, *, dataset: str | None = None, data_dir=None, epochs: int | None = None,
          **trainer_options) -> CaffeRun:
    """Read the solver and its net, load the data, and build the Trainer (see the module docstring). epochs
    overrides the count derived from max_iter; trainer_options go to Trainer (e.g. steps_per_dispatch)."""
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
    steps = solver.max_iter * solver.iter_size
    per_epoch = examples(data.train) // batch
    if per_epoch == 0:
        raise ValueError(f"{where}: batch_size {batch} is larger than the {examples(data.train)} training images")
    config = SolverConfig.from_caffe(solver)
    tx = optimizer(config, solver.max_iter, *net.multipliers())
    trainer = Trainer(net, tx, batch_size=batch, **data.preprocessing(), **trainer_options)
    return CaffeRun(solver, config, net, trainer, data.train, data.test, data.name,
                    epochs or math.ceil(steps / per_epoch), max(solver.random_seed, 0))
