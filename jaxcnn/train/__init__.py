"""Training: Optax solvers with Caffe's schedules and multipliers, the jitted loop, `fit`, run directories, and
`run_experiment` / `run_zoo_experiment`, a whole run as the experiments make it."""
from ..checkpoint import CheckpointError
from .errors import (
           ConfigError,
           Diverged,
           Interrupted,
           RunDirError,
           RunExists,
           RunLocked,
           RunMismatch,
)
from .experiment import RunConfig, run_experiment, run_zoo_experiment
from .fit import Progress, fit
from .rundir import RunDir, make_manifest
from .solver import OPTIMIZERS, SCHEDULES, SolverConfig, optimizer, schedule
from .trainer import Trainer, TrainState, data_mesh

__all__ = ["CheckpointError", "ConfigError", "Diverged", "Interrupted", "OPTIMIZERS", "Progress", "RunConfig",
           "RunDir", "RunDirError", "RunExists", "RunLocked", "RunMismatch", "SCHEDULES", "SolverConfig", "Trainer",
           "TrainState", "data_mesh", "fit", "make_manifest", "optimizer", "run_experiment", "run_zoo_experiment",
           "schedule"]
