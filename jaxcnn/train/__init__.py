"""Training: Optax solvers with Caffe's schedules and multipliers, the jitted loop, `fit`, and run directories."""
from ..checkpoint import CheckpointError
from .errors import ConfigError, Diverged, Interrupted, RunDirError, RunExists, RunLocked, RunMismatch
from .fit import Progress, fit
from .rundir import RunDir, make_manifest
from .solver import OPTIMIZERS, SCHEDULES, SolverConfig, optimizer, schedule
from .trainer import Trainer, TrainState, data_mesh

__all__ = ["CheckpointError", "ConfigError", "Diverged", "Interrupted", "OPTIMIZERS", "Progress", "RunDir",
           "RunDirError", "RunExists", "RunLocked", "RunMismatch", "SCHEDULES", "SolverConfig", "Trainer",
           "TrainState", "data_mesh", "fit", "make_manifest", "optimizer", "schedule"]
