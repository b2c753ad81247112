"""Training: Optax solvers with Caffe's schedules and multipliers, the jitted loop, `fit`, run directories, and
`run_training`, a whole run (a `RunSpec`) into its run directory, as the commands and experiments make it."""
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
from .fit import Progress, fit
from .run import RunConfig, RunSpec, run_training, zoo_spec
from .rundir import RunDir, make_manifest
from .solver import OPTIMIZERS, SCHEDULES, SolverConfig, optimizer, schedule
from .trainer import Trainer, TrainState, data_mesh

__all__ = ["CheckpointError", "ConfigError", "Diverged", "Interrupted", "OPTIMIZERS", "Progress", "RunConfig",
           "RunDir", "RunDirError", "RunExists", "RunLocked", "RunMismatch", "RunSpec", "SCHEDULES", "SolverConfig",
           "Trainer", "TrainState", "data_mesh", "fit", "make_manifest", "optimizer", "run_training", "schedule",
           "zoo_spec"]
