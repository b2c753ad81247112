"""What jaxcnn's command lines share (`python -m jaxcnn`, the experiments): failures as one line, the library's
log messages on the terminal, and the progress of `jaxcnn.train.fit`.

A failing command prints any detail first and ends with one line, `error: ...`, naming the flag, file or layer
and what was expected; it exits with 2 for a usage error (a flag that cannot work, a run directory that does not
fit the flags) and 1 for anything else. JAXCNN_DEBUG=1 shows the traceback instead. The library names settings
(`data_dir`, `input_shape`: jaxcnn.settings, jaxcnn.train.ConfigError); here they become flags.
"""
import argparse
import contextlib
import logging
import os
import sys
from typing import Callable

from tqdm import tqdm

from .errors import LayerError, ModelFileError
from .settings import Setting, SettingError
from .train.errors import ConfigError, Interrupted, RunExists, RunMismatch, RunNotEmpty

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


def words(setting: Setting) -> str:
    """A setting as a command line gives it: '--data-dir DIR', '--input-shape H,W,C', or the bare flag."""
    if setting.value is None:
        return flag(setting.name)
    value = ",".join(map(str, setting.value)) if isinstance(setting.value, tuple) else setting.value
    return f"{flag(setting.name)} {value}"


def message(error: BaseException, name: Callable[[str], str] = flag) -> str:
    """The words a command-line user reads for `error`, the settings it names written by `name` (by default as
    flags)."""
    if isinstance(error, SettingError):
        return error.text(words)
    if isinstance(error, ConfigError):
        return f"{name(error.field)} {error.value}: {error.expected}"
    if isinstance(error, RunMismatch) and error.differences:
        recorded = ", ".join(f"{name(k)} {a}" for k, a, _ in error.differences)
        asked = ", ".join(f"{name(k)} {b}" for k, _, b in error.differences)
        return (f"{error.manifest}: the run there was made with {recorded}, not {asked}; --resume keeps them (start "
                "a new run with another --out, or --overwrite)")
    if isinstance(error, RunNotEmpty):
        return f"{error}; --resume continues the run there, --overwrite replaces it"
    if isinstance(error, Interrupted):
        return f"{error}; run the same command with --resume to continue"
    if isinstance(error, (OSError, LayerError, ModelFileError, ValueError, RuntimeError)):
        return str(error)
    return f"{type(error).__name__}: {error}"


def exit_code(error: BaseException) -> int:
    """USAGE for a setting that cannot work (given wrong, or missing) and a run directory that does not fit the
    flags; RUNTIME otherwise."""
    usage = (isinstance(error, (ConfigError, RunExists, RunMismatch))
             or isinstance(error, SettingError) and error.setting is not None)
    return USAGE if usage else RUNTIME


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
    with contextlib.suppress(AttributeError, ValueError):
        sys.stdout.reconfigure(line_buffering=True)  # each line reaches a log file (nohup, CI) when printed
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


class _SysStream(logging.StreamHandler):
    """A handler writing to sys.stdout or sys.stderr as it is when a record comes (a notebook or a test may have
    replaced the one there was when the handler was made)."""

    def __init__(self, name: str):
        self.name_in_sys = name
        super().__init__()

    @property
    def stream(self):
        return getattr(sys, self.name_in_sys)

    @stream.setter
    def stream(self, value):  # StreamHandler sets it; the current one is always read instead
        pass


def show_logs() -> None:
    """jaxcnn's log messages on the terminal: information on stdout, warnings on stderr (once per process)."""
    logger = logging.getLogger("jaxcnn")
    if logger.handlers:
        return
    info = _SysStream("stdout")
    info.addFilter(lambda record: record.levelno < logging.WARNING)
    warnings = _SysStream("stderr")
    warnings.setLevel(logging.WARNING)
    warnings.setFormatter(logging.Formatter("warning: %(message)s"))
    for handler in (info, warnings):
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # not again through handlers other libraries put on the root logger


def plural(n: int, word: str) -> str:
    """'1 epoch', '12 epochs': n and the word, with an s unless n is 1."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def epoch_line(record: dict) -> str:
    """One line for one of fit's epoch records: epoch, step, losses, test accuracy, speed and time."""
    r = record
    return (f"epoch {r['epoch']:3d}  step {r['step']:6d}  train loss {r['train_loss']:.4f}  test loss "
            f"{r['test_loss']:.4f}  test accuracy {100 * r['test_accuracy']:.2f}%  {r['images_per_second']:,.0f} "
            f"img/s  {r['seconds']:.1f}s")


def progress_line(p) -> str:
    """One line for where an epoch stands (a jaxcnn.train.Progress): steps done of the epoch, loss, speed."""
    return (f"epoch {p.epoch}/{p.epochs}  {p.step}/{p.steps_per_epoch} steps  loss {p.loss:.4f}  "
            f"{p.images_per_second:,.0f} img/s")


class ProgressBar:
    """fit's on_progress. On a terminal (stdout and stderr both), a tqdm bar per epoch showing the loss and
    images/s; elsewhere (a log file, CI, nohup, a notebook) a progress_line each time the epoch passes another
    of its `LINES` equal parts of steps, except at its end, where the epoch's own line follows.

    enabled: False shows nothing (processes other than the first); terminal: None decides by isatty(), and is
    True when `bar` is given: the tqdm class that draws (a notebook passes tqdm.auto.tqdm)."""

    LINES = 10

    def __init__(self, enabled: bool = True, terminal: bool | None = None, bar=None):
        self.enabled, self._bar, self._epoch, self._shown = enabled, None, None, 0
        self._make = bar or tqdm
        if terminal is None:
            terminal = bar is not None or (sys.stdout.isatty() and sys.stderr.isatty())
        self.terminal = terminal

    def __call__(self, p) -> None:
        if self.enabled:
            self._draw(p) if self.terminal else self._line(p)

    def _draw(self, p) -> None:
        if self._bar is None or self._epoch != p.epoch:
            self.close()
            self._bar = self._make(total=p.steps_per_epoch, desc=f"epoch {p.epoch}/{p.epochs}", unit="step",
                                   leave=False)
            self._epoch = p.epoch
        self._bar.set_postfix(loss=f"{p.loss:.4f}", img_s=f"{p.images_per_second:,.0f}", refresh=False)
        self._bar.update(p.step - self._bar.n)
        if p.step == p.steps_per_epoch:
            self.close()

    def _line(self, p) -> None:
        if self._epoch != p.epoch:
            self._epoch, self._shown = p.epoch, 0
        part = p.step * self.LINES // p.steps_per_epoch
        if p.step < p.steps_per_epoch and part > self._shown * self.LINES // p.steps_per_epoch:
            print(progress_line(p))
            self._shown = p.step

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
