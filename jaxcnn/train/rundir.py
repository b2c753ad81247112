"""A training run's directory: its layout, the lock that makes it one run's, its manifest, and files that agree
with its checkpoints after any crash.

    manifest.json        what the run is: model, dataset, batch size, steps per epoch, solver, seed, dtype, the
                         schedule's length, versions; written when the run starts, checked when it resumes
    checkpoints/<step>/  orbax checkpoints (each epoch's end, and on SIGTERM/SIGINT); each also holds the metrics
                         of every epoch finished before it
    metrics.jsonl        one JSON line per finished epoch, rewritten after each checkpoint from the records it
                         holds (a crash between the two leaves it an epoch behind until the run resumes)
    results.json         the finished run's results
    *.png                its plots
    *.caffemodel         a Caffe solver's run (jaxcnn.train.caffe_run): its trained weights and its solver's state,
    *.solverstate        as Caffe writes them at a snapshot
    .lock                held (fcntl.flock) by the process training into the directory; says which one; removed
                         when it lets go, even after an error

The rules:
- One run at a time: `acquire` takes the lock or fails at once, naming the holder (pid, host, start time). A lock
  left by a process that has ended (killed, or its descriptor kept by a process it started) is taken over with a
  warning naming it. `check` finds what `acquire` would refuse without changing anything, so a command can check
  its output directory first, read its inputs, and only then acquire it: a failed start leaves it as it was
  (`release` also removes a directory `acquire` created that is still empty).
- A new run needs an empty directory; `overwrite=True` first removes what an earlier run wrote (and refuses a
  directory holding other files). A resumed run must match the manifest (`IDENTITY`): only the number of epochs
  may change, and the schedule keeps its length unless `rescale_schedule=True`.
- The newest checkpoint that loads is the truth: resuming restores it (skipping, naming and removing newer ones
  that do not load) and rewrites metrics.jsonl from the epochs it records, so a crash anywhere (during a step, a
  checkpoint write or a metrics write) loses no finished epoch's line and duplicates none.
- Every file is written whole or not at all: a temporary file, fsync, then os.replace.
- Only process 0 of a multi-process run writes files other than checkpoints, and only it checks and locks.
"""
import contextlib
import datetime
import errno
import fcntl
import json
import logging
import os
import shutil
import socket
from pathlib import Path
from typing import Callable, NamedTuple

import jax

from .._version import __version__
from ..checkpoint import Checkpointer, Restored
from .errors import RunDirError, RunExists, RunLocked, RunMismatch, RunNotEmpty

log = logging.getLogger(__name__)

MANIFEST, METRICS, RESULTS, CHECKPOINTS, LOCK = "manifest.json", "metrics.jsonl", "results.json", "checkpoints", ".lock"
RUN_SUFFIXES = (".png", ".caffemodel", ".solverstate")  # the other files a run writes
# What a resumed run must share with the run it continues (the manifest's keys; those absent from either are
# not compared).
IDENTITY = ("model", "dataset", "batch_size", "steps_per_epoch", "dtype", "seed", "solver", "augment")
# Called with the label of each fault point passed (see fault_point): crash tests install one to trace the points
# or to kill the process at one. None in normal runs.
fault_hook: Callable[[str], None] | None = None


def fault_point(label: str) -> None:
    """A named point where a crash must leave the run resumable; calls `fault_hook` with `label` when one is set.
    Labels: step-<step>, checkpoint-<step>-writing, checkpoint-<step>-written, metrics-<epochs>-temp,
    metrics-<epochs>-replaced, results-temp, manifest-temp."""
    if fault_hook is not None:
        fault_hook(label)


def write_atomic(path, text: str, label: str) -> None:
    """Write `text` to `path` whole or not at all: a temporary file beside it, fsync, os.replace, fsync of the
    directory. `label` names the write's fault point (fault_point(label + '-temp') before the rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    fault_point(f"{label}-temp")
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def make_manifest(*, batch_size: int, steps_per_epoch: int, train_examples: int, epochs: int, seed: int,
                  dtype: str, **fields) -> dict:
    """A run's manifest: the given settings (model, dataset, solver, schedule_steps, ... as `fields`) plus the
    versions of jaxcnn and jax and the time it was made."""
    return {"batch_size": int(batch_size), "steps_per_epoch": int(steps_per_epoch),
            "train_examples": int(train_examples), "epochs": int(epochs), "seed": int(seed), "dtype": str(dtype),
            **fields, "jaxcnn_version": __version__, "jax_version": jax.__version__, "created": _now()}


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def _flatten(tree, prefix=""):
    """{'solver': {'lr': 0.1}} -> {'solver.lr': 0.1}; values as JSON gives them back (tuples become lists)."""
    if not isinstance(tree, dict):
        return {prefix: json.loads(json.dumps(tree))}
    return {k: v for key, value in tree.items()
            for k, v in _flatten(value, f"{prefix}.{key}" if prefix else key).items()}


def _is_run_file(name: str) -> bool:
    """Whether a run writes a file of this name (so overwrite may remove it)."""
    return (name in (MANIFEST, METRICS, RESULTS, CHECKPOINTS, LOCK) or name.endswith(RUN_SUFFIXES)
            or (name.startswith(".") and name.endswith(".tmp")))


class RunDir:
    """A run's directory (see the module's docstring for its layout and rules).

        >>> from jaxcnn.train import RunDir, make_manifest
        >>> run = RunDir("runs/mnist").acquire(resume=False)          # lock; refuse a non-empty directory
        >>> manifest = run.start(make_manifest(batch_size=64, steps_per_epoch=375, train_examples=24_000, epochs=12,
        ...                                    seed=0, dtype="float32", model="lenet_caffe"), resume=False)
        >>> sorted(p.name for p in run.path.iterdir())                # fit(..., out_dir=run) would train into it now
        ['.lock', 'manifest.json']
        >>> run.release()
        >>> RunDir("runs/mnist").acquire(resume=False)
        Traceback (most recent call last):
        ...
        jaxcnn.train.errors.RunNotEmpty: runs/mnist is not empty (manifest.json): a new run needs an empty directory

    primary: whether this process writes the files and holds the lock (default: process 0 of jax.distributed).
    """

    def __init__(self, path, primary: bool | None = None):
        path = Path(path)
        if path.name == CHECKPOINTS and not (path / MANIFEST).exists() and (path.parent / MANIFEST).exists():
            path = path.parent  # its checkpoints/ directory names the run too
        self.path = path
        self.primary = jax.process_index() == 0 if primary is None else primary
        self.manifest = None
        self._lock = None
        self._acquired = False
        self._checkpointer = None
        self._created = None  # the outermost directory acquire() created, if any

    def __repr__(self):
        return f"RunDir({str(self.path)!r})"

    @property
    def held(self) -> bool:
        """Whether acquire() has made the directory this process's (always, for a process that is not primary)."""
        return self._acquired

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    def file(self, name: str) -> Path:
        """The path of one of the run's files (e.g. 'metrics.jsonl', 'curves.png')."""
        return self.path / name

    # -- ownership -------------------------------------------------------------------------------------
    def check(self, *, resume: bool = False, overwrite: bool = False) -> None:
        """Raise what acquire(resume=..., overwrite=...) would raise about the directory as it is now, changing
        nothing (not even creating it): for a command to find a bad output directory before it reads its inputs,
        and acquire it after."""
        if resume and overwrite:
            raise RunExists(f"{self.path}: resume and overwrite exclude each other")
        if not self.primary:
            return
        existing = next(p for p in (self.path, *self.path.absolute().parents) if p.exists())
        if not existing.is_dir():
            raise _cannot_create(self.path, errno.EEXIST if existing == self.path else errno.ENOTDIR)
        if not os.access(existing, os.W_OK | os.X_OK):
            raise _cannot_create(self.path, errno.EACCES)
        if existing != self.path:
            return
        with contextlib.suppress(FileNotFoundError), open(self.path / LOCK, "rb") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(f.fileno())
                if not _ended(holder):
                    raise _locked(self.path, holder) from None
        refusal = self._refusal(self._entries(), resume, overwrite)
        if refusal is not None:
            raise refusal

    def acquire(self, *, resume: bool = False, overwrite: bool = False) -> "RunDir":
        """Make the directory this process's run: create it, take its lock, and check what it holds.

        A new run (resume False) needs a directory with nothing but the lock in it; overwrite=True first removes
        what a run writes (the manifest, metrics, results, checkpoints/, *.png) and refuses a directory holding
        anything else. A resumed run needs a manifest unless the directory is empty (then it starts afresh).
        A lock whose process has ended is taken over (a warning names that process).
        Raises RunLocked (a live process holds the lock: its pid, host and start time), RunExists, RunDirError
        (the directory cannot be created or written). Returns self; release() or `with` lets go of the lock.
        """
        if resume and overwrite:
            raise RunExists(f"{self.path}: resume and overwrite exclude each other")
        if not self.primary:
            self._acquired = True
            return self
        created = next((p for p in (*reversed(self.path.absolute().parents), self.path.absolute())
                        if not p.exists()), None)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise _cannot_create(self.path, e.errno) from e
        self._created = created
        try:
            self._lock = self._take_lock()
            self._check_contents(resume, overwrite)
        except BaseException:
            self.release()
            raise
        self._acquired = True
        return self

    def _take_lock(self) -> int:
        """Open and flock the lock file and record this process in it -> its descriptor. RunLocked when a live
        process holds it; one whose recorded process has ended on this host is taken over."""
        path = self.path / LOCK
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise _cannot_create(self.path, e.errno) from e
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                if not _ended(holder):
                    raise _locked(self.path, holder) from None
                log.warning("%s: %s has ended, but a process it started still holds its lock; taking the lock "
                            "over", self.path, _describe_holder(holder))
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()  # that process keeps a lock on a file no one opens again
                continue
            try:
                if _same_file(fd, path):  # else removed (let go of, or taken over) between open and flock
                    previous = _holder(fd)
                    os.ftruncate(fd, 0)
                    os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                             "started": _now()}).encode())
                    os.fsync(fd)
                    if _same_file(fd, path):  # not taken over while this process wrote itself in
                        if previous is not None:
                            log.warning("%s: %s left its lock behind; taking it over", self.path,
                                        _describe_holder(previous))
                        return fd
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)

    def _entries(self) -> list[str]:
        """The names in the directory other than the lock and what writes cut short by a crash left (.*.tmp)."""
        return sorted(p.name for p in self.path.iterdir()
                      if p.name != LOCK and not (p.name.startswith(".") and p.name.endswith(".tmp")))

    def _refusal(self, entries, resume, overwrite) -> RunExists | None:
        """Why a run cannot start in the directory holding `entries` (a new one, resumed, or overwriting), or
        None."""
        if not entries or (resume and MANIFEST in entries):
            return None
        listing = _listing(entries)
        if resume:
            return RunExists(f"{self.path} holds {listing} but no {MANIFEST}: not a run that can be resumed")
        if not overwrite:
            return RunNotEmpty(f"{self.path} is not empty ({listing}): a new run needs an empty directory")
        foreign = [name for name in entries if not _is_run_file(name)]
        if foreign:
            return RunExists(f"{self.path} holds files no run writes ({', '.join(foreign[:6])}): refusing to "
                             "overwrite it; choose another directory")
        return None

    def _check_contents(self, resume, overwrite):
        for leftover in self.path.glob(".*.tmp"):  # a write cut short by a crash (it never replaced its file)
            leftover.unlink()
        entries = self._entries()
        refusal = self._refusal(entries, resume, overwrite)
        if refusal is not None:
            raise refusal
        if entries and not resume:
            for name in entries:
                p = self.path / name
                shutil.rmtree(p) if p.is_dir() else p.unlink()
            log.info("removed the earlier run in %s (%s)", self.path, _listing(entries))

    def release(self) -> None:
        """Close the checkpointer, remove the lock and let go of it; remove the directory if acquire() created
        it (with its parents) and nothing is in it."""
        if self._checkpointer is not None:
            self._checkpointer.close()
            self._checkpointer = None
        if self._lock is not None:
            path = self.path / LOCK
            with contextlib.suppress(OSError):
                if _same_file(self._lock, path):
                    path.unlink()  # before letting go: a process that opened it meanwhile sees it gone, and retries
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            os.close(self._lock)
            self._lock = None
        if self._created is not None:
            with contextlib.suppress(OSError):  # not empty: the run wrote something, which stays
                for directory in (self.path.absolute(), *self.path.absolute().parents):
                    directory.rmdir()
                    if directory == self._created:
                        break
            self._created = None
        self._acquired = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()

    # -- the manifest ----------------------------------------------------------------------------------
    def read_manifest(self) -> dict | None:
        """The run's manifest, or None when it has none. Raises RunDirError naming the file if it is damaged."""
        path = self.file(MANIFEST)
        if not path.exists():
            return None
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise RunDirError(f"{path}: not a readable manifest ({e})") from e
        if not isinstance(manifest, dict):
            raise RunDirError(f"{path}: not a readable manifest (a JSON object expected)")
        return manifest

    def start(self, manifest: dict, *, resume: bool, rescale_schedule: bool = False) -> dict:
        """Record a new run's manifest, or check a resumed run's settings against the one recorded.

        Args:
          manifest: make_manifest(...) of the settings asked for; its 'schedule_steps', if any, is the length of
            a new run's learning-rate schedule.
          resume: whether the run continues the one recorded (if there is one).
          rescale_schedule: on resume, stretch the schedule to the epochs asked for (schedule_steps becomes
            epochs * steps_per_epoch); otherwise it keeps the recorded length.
        Returns:
          The manifest in force (what was recorded, with the epochs asked for): its 'schedule_steps' is the
          length to build the schedule with. Also kept as self.manifest.
        Raises:
          RunMismatch when a resumed run's IDENTITY settings differ: one line naming each old and new value.
        """
        old = self.read_manifest() if resume else None
        if old is None:
            current = dict(manifest)
        else:
            changed = _differences(old, manifest)
            if changed:
                raise RunMismatch(f"{self.file(MANIFEST)}: the run was made with "
                                  + ", ".join(f"{k} {a!r}" for k, a, _ in changed) + "; asked for "
                                  + ", ".join(f"{k} {b!r}" for k, _, b in changed)
                                  + ": a resumed run keeps them", changed, self.file(MANIFEST))
            current = {**manifest, "created": old.get("created"),
                       "schedule_steps": old.get("schedule_steps", manifest.get("schedule_steps"))}
            if rescale_schedule and manifest.get("schedule_steps") is not None:
                current["schedule_steps"] = int(manifest["epochs"]) * int(manifest["steps_per_epoch"])
            current["resumed"] = [*old.get("resumed", []), _now()]
        if self.primary:
            write_atomic(self.file(MANIFEST), json.dumps(current, indent=1) + "\n", "manifest")
        if jax.process_count() > 1:  # the others wait until process 0 has checked and cleared the directory
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices(f"jaxcnn run {self.path}")
        self.manifest = current
        return current

    # -- checkpoints and metrics -----------------------------------------------------------------------
    def checkpointer(self, max_to_keep: int = 3) -> Checkpointer:
        """The run's Checkpointer (opened once; closed by release())."""
        if self._checkpointer is None:
            self._checkpointer = Checkpointer(self.checkpoints, max_to_keep=max_to_keep)
        return self._checkpointer

    def resume(self, template) -> Restored | None:
        """Restore the newest checkpoint that loads into `template`'s structure and make the files agree with it:
        newer checkpoints that do not load are removed (the log names each and why) and metrics.jsonl is
        rewritten from the epochs the checkpoint records. -> Restored (meta['history']: the metric records), or
        None when there is no checkpoint. Raises CheckpointError when none loads."""
        ckpt = self.checkpointer()
        if ckpt.latest_step() is None:
            log.info("%s: no checkpoint, starting afresh", self.path)
            return None
        restored = ckpt.restore(template)
        for step, _ in restored.skipped:  # Checkpointer.restore has logged why each does not load
            ckpt.delete(step)
            log.warning("removed checkpoint %s, which does not load", ckpt.path(step))
        if self.primary:
            self.write_metrics(restored.meta["history"])
        return restored

    def save(self, step: int, tree, history: list[dict], partial: dict | None = None) -> None:
        """Checkpoint `tree` at `step` with the finished epochs' metric records (and, saved mid-epoch, `partial`:
        the epoch's losses and seconds so far), then rewrite metrics.jsonl."""
        ckpt = self.checkpointer()
        meta = {"step": int(step), "history": history} | ({"partial": partial} if partial else {})
        ckpt.start_save(step, tree, meta)
        fault_point(f"checkpoint-{step}-writing")
        ckpt.wait()
        fault_point(f"checkpoint-{step}-written")
        if self.primary:
            self.write_metrics(history)

    def write_metrics(self, history: list[dict]) -> None:
        """metrics.jsonl: one JSON line per record, written atomically."""
        write_atomic(self.file(METRICS), "".join(json.dumps(r) + "\n" for r in history), f"metrics-{len(history)}")
        fault_point(f"metrics-{len(history)}-replaced")

    def read_metrics(self) -> list[dict]:
        """The records of metrics.jsonl ([] when absent). Raises RunDirError naming the file and line for a line
        that is not a JSON object (a damaged file; resuming the run rewrites it from its checkpoint)."""
        path = self.file(METRICS)
        if not path.exists():
            return []
        records = []
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if not isinstance(record, dict):
                raise RunDirError(f"{path}, line {number}: not a JSON record (the file is damaged; resuming the "
                                  "run rewrites it from its newest checkpoint)")
            records.append(record)
        return records

    def write_results(self, results: dict) -> None:
        """results.json, written atomically."""
        write_atomic(self.file(RESULTS), json.dumps(results, indent=1) + "\n", "results")


class Run(NamedTuple):
    """A run read back: its manifest, and the params, net state and step of its newest loadable checkpoint."""

    manifest: dict
    params: dict
    state: dict
    step: int


def load(path) -> Run:
    """Read a run (its directory, or the checkpoints/ directory inside it) without changing anything in it.
    The params and state come as nested dicts of arrays on this process's first device. Raises RunDirError
    when it has no manifest, CheckpointError when no checkpoint loads."""
    run = RunDir(path, primary=False)
    manifest = run.read_manifest()
    if manifest is None:
        raise RunDirError(f"{run.path}: no {MANIFEST}, not a training run's directory")
    if not run.checkpoints.is_dir():
        raise RunDirError(f"{run.path}: no {CHECKPOINTS}/ directory, the run saved no checkpoint")
    ckpt = Checkpointer(run.checkpoints, create=False)
    try:
        restored = ckpt.restore()
    finally:
        ckpt.close()
    return Run(manifest, restored.tree["params"], restored.tree["state"], restored.step)


def _differences(old: dict, new: dict) -> list[tuple]:
    """[(setting, old value, new value)] for each IDENTITY setting recorded in both that differs."""
    a = _flatten({k: old[k] for k in IDENTITY if k in old and k in new})
    b = _flatten({k: new[k] for k in IDENTITY if k in old and k in new})
    return [(k, a.get(k), b.get(k)) for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)]


def _listing(names) -> str:
    return ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")


def _cannot_create(path, code: int) -> RunDirError:
    return RunDirError(f"{path}: cannot create a run directory there ({os.strerror(code)})")


def _same_file(fd: int, path) -> bool:
    """Whether the open file `fd` is the file at `path` now (not removed or replaced since it was opened)."""
    try:
        here, there = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _holder(fd: int) -> dict | None:
    """The lock file's record of its holder ({'pid', 'host', 'started'}), or None when it has none."""
    try:
        holder = json.loads(os.pread(fd, 4096, 0).decode(errors="replace"))
    except ValueError:
        return None
    return holder if isinstance(holder, dict) and isinstance(holder.get("pid"), int) else None


def _ended(holder: dict | None) -> bool:
    """Whether the recorded holder is known to have ended: a process of this host that no longer runs."""
    if holder is None or holder.get("host") != socket.gethostname() or holder["pid"] <= 0:
        return False
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # it runs, as another user
        pass
    return False


def _locked(path, holder: dict | None) -> RunLocked:
    return RunLocked(f"{path} is in use by {_describe_holder(holder)}; wait for that run to end or choose another "
                     "directory")


def _describe_holder(holder: dict | None) -> str:
    if holder is None:
        return "another process"
    return f"process {holder['pid']} on {holder.get('host', '?')} (started {holder.get('started', '?')})"
