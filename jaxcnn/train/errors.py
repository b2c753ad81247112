"""Why training cannot start or stopped: the errors of `jaxcnn.train`, each with the values a caller needs to
say what went wrong in its own words (a command line names its flags; the library names settings), and the
checks of settings that several of its functions take (each rule once: `count`, `per_device`)."""
import signal

import numpy as np


class ConfigError(ValueError):
    """A setting that cannot work, e.g. batch_size 0 or a non-finite lr.

    Attributes: field (the setting's name, e.g. 'batch_size' or 'lr'), value (what was given) and expected
    (what would work). str(): "batch_size 0: must be at least 1".
    """

    def __init__(self, field: str, value, expected: str):
        super().__init__(f"{field} {value}: {expected}")
        self.field, self.value, self.expected = field, value, expected


def count(field: str, value) -> int:
    """A count (batch_size, epochs, steps_per_dispatch, ...) as an int; ConfigError unless it is an integer of at
    least 1."""
    if not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(field, value, "must be an integer of at least 1")
    return int(value)


def per_device(field: str, value: int, devices: int) -> int:
    """A batch size that divides over `devices` devices; ConfigError otherwise."""
    if value % devices:
        raise ConfigError(field, value, f"does not divide over {devices} devices; use a multiple of {devices}")
    return value


class RunDirError(RuntimeError):
    """A run directory that cannot be used: unwritable, unreadable, or its files damaged beyond repair."""


class RunLocked(RunDirError):
    """Another process is training into the run directory (it holds the lock)."""


class RunExists(RunDirError):
    """A run cannot start in the directory as it is: it holds files that are not a run to resume or to replace,
    or resume and overwrite were both asked for."""


class RunNotEmpty(RunExists):
    """A new run was asked for in a directory that already holds files (neither resume nor overwrite)."""


class RunMismatch(RunDirError):
    """A resumed run was asked for with settings that differ from the run's manifest (model, dataset, ...),
    or for fewer epochs than it has done. manifest: the manifest's path; differences: [(setting, recorded
    value, asked-for value)]."""

    def __init__(self, message: str, differences=(), manifest=None):
        super().__init__(message)
        self.differences, self.manifest = list(differences), manifest


class Diverged(RuntimeError):
    """Training produced a non-finite loss or non-finite parameters at `step` (what: e.g. 'loss nan'); nothing
    after the last finite checkpoint was saved. Attributes: step, what, last_checkpoint (a path or None)."""

    def __init__(self, step: int, what: str, last_checkpoint):
        kept = f"the last checkpoint, {last_checkpoint}, is kept" if last_checkpoint else "no checkpoint was saved"
        super().__init__(f"training diverged: {what} at step {step}; nothing after it was saved ({kept}); a lower "
                         "learning rate may help")
        self.step, self.what, self.last_checkpoint = step, what, last_checkpoint


class Interrupted(Exception):
    """Training stopped on a signal (SIGTERM, SIGINT) after saving a checkpoint at `step` into `directory`."""

    def __init__(self, signum: int, step: int, directory):
        where = f"checkpoint saved in {directory}" if directory else "no run directory, nothing saved"
        super().__init__(f"stopped by {signal.Signals(signum).name} at step {step}; {where}")
        self.signum, self.step, self.directory = signum, step, directory
