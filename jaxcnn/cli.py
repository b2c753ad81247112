"""What jaxcnn's command lines share (`python -m jaxcnn`, the experiments): failures as one line, the library's
log messages on the terminal, and a progress bar for `jaxcnn.train.fit`.

A failing command prints any detail first and ends with one line, `error: ...`, naming the flag, file or layer
and what was expected; it exits with 2 for a usage error (a flag that cannot work, a run directory that does not
fit the flags) and 1 for anything else. JAXCNN_DEBUG=1 shows the traceback instead.
"""
import argparse
import functools
import logging
import os
import sys
from typing import Callable

from tqdm import tqdm

from .layers import LayerError
from .train.errors import ConfigError, Interrupted, RunExists, RunMismatch

DEBUG_VAR = "JAXCNN_DEBUG"
USAGE, RUNTIME = 2, 1
NOT_FLAGS = ("steps_per_epoch", "train_examples", "eval_batch_size", "total_steps")  # settings a run derives


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds "(default: X)" to each flag's help, unless the help already says what the default is."""

    def _get_help_string(self, action):
        return action.help if "default" in (action.help or "") else super()._get_help_string(action)


def flag(setting: str) -> str:
    """A library setting's flag: 'batch_size' -> '--batch-size', 'solver.lr' -> '--lr' (a setting that no flag
    sets, such as 'steps_per_epoch', in words)."""
    name = setting.rsplit(".", 1)[-1]
    return name.replace("_", " ") if name in NOT_FLAGS else "--" + name.replace("_", "-")


def message(error: BaseException) -> str:
    """The words a command-line user reads for `error`, in terms of flags."""
    if isinstance(error, ConfigError):
        return f"{flag(error.field)} {error.value}: {error.expected}"
    if isinstance(error, RunMismatch) and error.differences:
        where = str(error).split(": ", 1)[0]
        recorded = ", ".join(f"{flag(k)} {a}" for k, a, _ in error.differences)
        asked = ", ".join(f"{flag(k)} {b}" for k, _, b in error.differences)
        return (f"{where}: the run there was made with {recorded}, not {asked}; --resume keeps them (start a new "
                "run with another --out, or --overwrite)")
    if isinstance(error, RunExists) and str(error).endswith("a new run needs an empty directory"):
        return f"{error}; --resume continues the run there, --overwrite replaces it"
    if isinstance(error, Interrupted):
        return f"{error}; run the same command with --resume to continue"
    if isinstance(error, (OSError, LayerError, ValueError, RuntimeError)):
        return str(error)
    return f"{type(error).__name__}: {error}"


def exit_code(error: BaseException) -> int:
    return USAGE if isinstance(error, (ConfigError, RunExists, RunMismatch)) else RUNTIME


def fail(text: str, code: int = USAGE):
    """Print `text` as the command's last line ('error: ...'; earlier lines of it first, as detail) and exit."""
    first, *detail = str(text).splitlines() or [""]
    for line in detail:
        print(line, file=sys.stderr)
    print(f"error: {first}", file=sys.stderr)
    sys.exit(code)


def entry(main: Callable[[], object]) -> int:
    """Run main() as a command: 0 when it returns; otherwise fail() with message(error) and exit_code(error).
    With $JAXCNN_DEBUG=1 an error propagates with its traceback."""
    debug = os.environ.get(DEBUG_VAR) == "1"
    show_logs()
    try:
        main()
    except KeyboardInterrupt:
        if debug:
            raise
        fail("interrupted", 130)
    except Exception as e:
        if debug:
            raise
        fail(message(e), exit_code(e))
    return 0


def show_logs() -> None:
    """jaxcnn's log messages on the terminal: information on stdout, warnings on stderr (once per process)."""
    logger = logging.getLogger("jaxcnn")
    if logger.handlers:
        return
    info = logging.StreamHandler(sys.stdout)
    info.addFilter(lambda record: record.levelno < logging.WARNING)
    warnings = logging.StreamHandler(sys.stderr)
    warnings.setLevel(logging.WARNING)
    warnings.setFormatter(logging.Formatter("warning: %(message)s"))
    for handler in (info, warnings):
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # not again through handlers other libraries put on the root logger


def epoch_line(record: dict) -> str:
    """One line for one of fit's epoch records: epoch, step, losses, test accuracy, speed and time."""
    r = record
    return (f"epoch {r['epoch']:3d}  step {r['step']:6d}  train loss {r['train_loss']:.4f}  test loss "
            f"{r['test_loss']:.4f}  test accuracy {100 * r['test_accuracy']:.2f}%  {r['images_per_second']:,.0f} "
            f"img/s  {r['seconds']:.1f}s")


class ProgressBar:
    """fit's on_progress as a tqdm bar per epoch, showing the loss and images/s: on a terminal only, or drawn
    always by `bar`, a tqdm class (a notebook passes tqdm.auto.tqdm)."""

    def __init__(self, enabled: bool = True, bar=None):
        self.enabled, self._bar, self._epoch = enabled, None, None
        self._make = bar or functools.partial(tqdm, disable=None)  # disable=None: off unless on a terminal

    def __call__(self, p) -> None:
        if not self.enabled:
            return
        if self._bar is None or self._epoch != p.epoch:
            self.close()
            self._bar = self._make(total=p.steps_per_epoch, desc=f"epoch {p.epoch}/{p.epochs}", unit="step",
                                   leave=False)
            self._epoch = p.epoch
        self._bar.set_postfix(loss=f"{p.loss:.4f}", img_s=f"{p.images_per_second:,.0f}", refresh=False)
        self._bar.update(p.step - self._bar.n)
        if p.step == p.steps_per_epoch:
            self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
