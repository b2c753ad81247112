"""Training: Optax solvers with Caffe's schedules and multipliers, the jitted loop, and `fit`."""
from .fit import Interrupted, fit
from .trainer import Trainer, TrainState, data_mesh
from .solver import OPTIMIZERS, SCHEDULES, SolverConfig, optimizer, schedule

__all__ = ["Interrupted", "OPTIMIZERS", "SCHEDULES", "SolverConfig", "Trainer", "TrainState", "data_mesh", "fit",
           "optimizer", "schedule"]
