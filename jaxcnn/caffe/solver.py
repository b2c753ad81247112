"""Caffe solver files (solver.prototxt): the optimizer's settings and the run's, in Caffe's names and iterations.

    >>> from jaxcnn.caffe import load_prototxt, load_solver
    >>> from jaxcnn.train import SolverConfig, optimizer
    >>> solver = load_solver("experiments/caffe/lenet_solver.prototxt")  # or parse_solver(text)
    >>> solver.type, solver.base_lr, solver.lr_policy, solver.gamma, solver.power
    ('SGD', 0.01, 'inv', 0.0001, 0.75)
    >>> net = load_prototxt("experiments/caffe/lenet_bn_deploy.prototxt")
    >>> tx = optimizer(SolverConfig.from_caffe(solver), solver.max_iter, *net.multipliers())

Read: net, base_lr, lr_policy (fixed, step, multistep, inv, poly, exp, sigmoid), gamma, power, stepsize,
stepvalue, momentum, momentum2, delta, rms_decay, weight_decay (L2), type / solver_type (SGD, Nesterov, Adam,
RMSProp, AdaGrad, AdaDelta), clip_gradients, iter_size, max_iter, test_iter, test_interval, display, snapshot,
snapshot_prefix, random_seed. Settings that only steer Caffe's own process (solver_mode, device_id, debug_info,
snapshot_format, average_loss, test_initialization, layer_wise_reduce) are accepted and have no effect; any other
field set is a CaffeFormatError naming it.
"""
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from google.protobuf import text_format

from ..errors import CaffeFormatError
from . import schema
from .prototxt import read_text

TYPES = ("SGD", "Nesterov", "Adam", "RMSProp", "AdaGrad", "AdaDelta")
POLICIES = ("fixed", "step", "multistep", "inv", "poly", "exp", "sigmoid")
READ = {"net", "base_lr", "lr_policy", "gamma", "power", "stepsize", "stepvalue", "momentum", "momentum2", "delta",
        "rms_decay", "weight_decay", "regularization_type", "type", "solver_type", "clip_gradients", "iter_size",
        "max_iter", "test_iter", "test_interval", "display", "snapshot", "snapshot_prefix", "random_seed"}
NO_EFFECT = {"solver_mode", "device_id", "debug_info", "snapshot_format", "average_loss", "test_initialization",
             "layer_wise_reduce", "snapshot_after_train", "test_compute_loss", "snapshot_diff"}
FLOATS = ("base_lr", "momentum", "weight_decay", "gamma", "power", "momentum2", "delta", "rms_decay",
          "clip_gradients")


@dataclass(frozen=True)
class CaffeSolver:
    """A solver file's settings, in Caffe's names (jaxcnn.train.SolverConfig.from_caffe makes an optimizer's).

    type: the update rule, one of TYPES (an old file's solver_type too); base_lr, lr_policy (one of POLICIES) and
    its gamma, power, stepsize and stepvalue; momentum, momentum2, delta, rms_decay, weight_decay (L2) and
    clip_gradients (< 0: none), as the file gives them, or Caffe's defaults. max_iter: optimizer updates;
    iter_size: batches per update; test_iter / test_interval: test batches per evaluation and updates between
    evaluations; snapshot: updates between snapshots (0: none); random_seed: -1 when unset. net: the train/test
    net's path as written (Caffe reads it relative to its working directory; see `net_path`); path: the solver
    file (None for a solver given as text).
    """

    type: str
    base_lr: float
    lr_policy: str
    max_iter: int
    gamma: float = 0.0
    power: float = 0.0
    stepsize: int = 0
    stepvalue: tuple = ()
    momentum: float = 0.0
    momentum2: float = 0.999
    delta: float = 1e-8
    rms_decay: float = 0.99
    weight_decay: float = 0.0
    clip_gradients: float = -1.0
    iter_size: int = 1
    net: str | None = None
    test_iter: tuple = ()
    test_interval: int = 0
    display: int = 0
    snapshot: int = 0
    snapshot_prefix: str | None = None
    random_seed: int = -1
    path: str | None = None

    def net_path(self) -> Path:
        """The net file: `net` as given if it exists, else beside the solver file (its name, then its path
        relative to the solver's directory); FileNotFoundError naming both places otherwise."""
        if not self.net:
            raise FileNotFoundError(f"{self.path}: the solver names no net")
        here = Path(self.path).parent if self.path else Path(".")
        for candidate in (Path(self.net), here / self.net, here / Path(self.net).name):
            if candidate.is_file():
                return candidate
        raise FileNotFoundError(f"{self.path}: net {self.net!r} not found (looked in the working directory and in "
                                f"{here})")


def load_solver(path) -> CaffeSolver:
    """Read a Caffe solver.prototxt file -> CaffeSolver. FileNotFoundError when there is no such file;
    CaffeFormatError naming the file and the field for what jaxcnn cannot read."""
    text = read_text(path, "solver", "text solver prototxt (a .solverstate or .caffemodel?)")
    return dataclasses.replace(parse_solver(text, file=str(path)), path=str(path))


def parse_solver(text: str, *, file: str = "solver") -> CaffeSolver:
    """A solver from its text (see load_solver); `file` names it in errors."""
    proto = schema.SolverParameter()
    try:
        text_format.Parse(text, proto)
    except text_format.ParseError as e:
        raise CaffeFormatError(file, str(e)) from None
    kind = _check(proto, file)
    f = {name: _decimal(getattr(proto, name)) for name in FLOATS}
    return CaffeSolver(
        type=kind, lr_policy=proto.lr_policy or "fixed", max_iter=int(proto.max_iter), stepsize=int(proto.stepsize),
        stepvalue=tuple(int(v) for v in proto.stepvalue), iter_size=int(proto.iter_size), net=proto.net or None,
        test_iter=tuple(int(v) for v in proto.test_iter), test_interval=int(proto.test_interval),
        display=int(proto.display), snapshot=int(proto.snapshot), snapshot_prefix=proto.snapshot_prefix or None,
        random_seed=int(proto.random_seed), **f)


def _check(proto, file) -> str:
    """CaffeFormatError for what jaxcnn does not read or what the solver lacks; -> the solver's type."""
    for f, _ in proto.ListFields():
        if f.name not in READ | NO_EFFECT:
            raise CaffeFormatError(file, f"field {f.name!r} is not supported (a net in the `net` file, default "
                                         "train/test states)")
    if proto.regularization_type != "L2":
        raise CaffeFormatError(file, f"regularization_type {proto.regularization_type!r} is not supported (L2)")
    if proto.HasField("type") and proto.HasField("solver_type"):
        raise CaffeFormatError(file, "give type or solver_type, not both")
    old = {t.upper(): t for t in TYPES}  # solver_type: SGD, NESTEROV, ADAGRAD, ...
    kind = old[schema.enum_name(proto, "solver_type")] if proto.HasField("solver_type") else proto.type
    if kind not in TYPES:
        raise CaffeFormatError(file, f"solver type {kind!r} is not supported ({', '.join(TYPES)})")
    policy = proto.lr_policy or "fixed"
    if policy not in POLICIES:
        raise CaffeFormatError(file, f"lr_policy {policy!r} is not supported ({', '.join(POLICIES)})")
    for name in ("base_lr", "max_iter"):
        if not proto.HasField(name):
            raise CaffeFormatError(file, f"needs {name}")
    if policy in ("step", "sigmoid") and not proto.stepsize:
        raise CaffeFormatError(file, f"lr_policy {policy!r} needs stepsize")
    if policy in ("step", "multistep", "inv", "exp", "sigmoid") and not proto.HasField("gamma"):
        raise CaffeFormatError(file, f"lr_policy {policy!r} needs gamma")
    return kind


def _decimal(value: float) -> float:
    """A float32 field as the shortest decimal that rounds to it (0.01, not 0.009999999776)."""
    return float(str(np.float32(value)))
