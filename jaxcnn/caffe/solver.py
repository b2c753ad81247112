"""Caffe solver files (solver.prototxt) as jaxcnn's SolverConfig and the run's settings.

    solver = load_solver("lenet_solver.prototxt")
    tx = jaxcnn.train.optimizer(solver.config, solver.max_iter, *net.multipliers(params))

Read: net, base_lr, lr_policy (fixed, step, multistep, inv, poly, exp, sigmoid), gamma, power, stepsize,
stepvalue, momentum, momentum2, delta, rms_decay, weight_decay (L2), type / solver_type (SGD, Nesterov, Adam,
RMSProp, AdaGrad, AdaDelta), clip_gradients, iter_size, max_iter, test_iter, test_interval, display, snapshot,
snapshot_prefix, random_seed. Settings that only steer Caffe's own process (solver_mode, device_id, debug_info,
snapshot_format, average_loss, test_initialization, layer_wise_reduce) are accepted and have no effect; any other
field set is a CaffeFormatError naming it.
"""
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from google.protobuf import text_format

from ..train import SolverConfig
from . import schema
from .prototxt import CaffeFormatError, read_text

TYPES = {"SGD": "sgd", "Nesterov": "nesterov", "Adam": "adam", "RMSProp": "rmsprop", "AdaGrad": "adagrad",
         "AdaDelta": "adadelta"}
OLD_TYPES = {0: "SGD", 1: "Nesterov", 2: "AdaGrad", 3: "RMSProp", 4: "AdaDelta", 5: "Adam"}  # solver_type
POLICIES = ("fixed", "step", "multistep", "inv", "poly", "exp", "sigmoid")
READ = {"net", "base_lr", "lr_policy", "gamma", "power", "stepsize", "stepvalue", "momentum", "momentum2", "delta",
        "rms_decay", "weight_decay", "regularization_type", "type", "solver_type", "clip_gradients", "iter_size",
        "max_iter", "test_iter", "test_interval", "display", "snapshot", "snapshot_prefix", "random_seed"}
NO_EFFECT = {"solver_mode", "device_id", "debug_info", "snapshot_format", "average_loss", "test_initialization",
             "layer_wise_reduce", "snapshot_after_train", "test_compute_loss", "snapshot_diff"}


@dataclass(frozen=True)
class CaffeSolver:
    """A solver file: `config` (the optimizer and schedule) and the run's settings, in Caffe's iterations.

    net: the train/test net's path as written (Caffe reads it relative to its working directory; see
    `net_path`); max_iter: optimizer updates; iter_size: batches per update; test_iter / test_interval: test
    batches per evaluation and updates between evaluations; snapshot: updates between snapshots (0: none);
    random_seed: -1 when unset.
    """

    config: SolverConfig
    net: str | None
    max_iter: int
    iter_size: int = 1
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


def load_solver(path_or_text) -> CaffeSolver:
    """Read a Caffe solver.prototxt (a path, or its text) -> CaffeSolver."""
    text, path = str(path_or_text), None
    if "\n" not in text and ":" not in text:
        path = text
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: no such solver file")
        text = read_text(Path(path), "text solver prototxt (a .solverstate or .caffemodel?)")
    where = path or "solver"
    proto = schema.SolverParameter()
    try:
        text_format.Parse(text, proto)
    except text_format.ParseError as e:
        raise CaffeFormatError(f"{where}: {e}") from None
    for f, _ in proto.ListFields():
        if f.name not in READ | NO_EFFECT:
            raise CaffeFormatError(f"{where}: field {f.name!r} is not supported (a net in the `net` file, "
                                   "default train/test states)")
    if proto.regularization_type != "L2":
        raise CaffeFormatError(f"{where}: regularization_type {proto.regularization_type!r} is not supported (L2)")
    if proto.HasField("type") and proto.HasField("solver_type"):
        raise CaffeFormatError(f"{where}: give type or solver_type, not both")
    kind = OLD_TYPES[proto.solver_type] if proto.HasField("solver_type") else proto.type
    if kind not in TYPES:
        raise CaffeFormatError(f"{where}: solver type {kind!r} is not supported ({', '.join(TYPES)})")
    policy = proto.lr_policy or "fixed"
    if policy not in POLICIES:
        raise CaffeFormatError(f"{where}: lr_policy {policy!r} is not supported ({', '.join(POLICIES)})")
    for name, needed in (("base_lr", True), ("max_iter", True)):
        if needed and not proto.HasField(name):
            raise CaffeFormatError(f"{where}: needs {name}")
    if policy in ("step", "sigmoid") and not proto.stepsize:
        raise CaffeFormatError(f"{where}: lr_policy {policy!r} needs stepsize")
    if policy in ("step", "multistep", "inv", "exp", "sigmoid") and not proto.HasField("gamma"):
        raise CaffeFormatError(f"{where}: lr_policy {policy!r} needs gamma")
    f = {name: _decimal(getattr(proto, name)) for name in (
        "base_lr", "momentum", "weight_decay", "gamma", "power", "momentum2", "delta", "rms_decay", "clip_gradients")}
    config = SolverConfig(
        optimizer=TYPES[kind], lr=f["base_lr"], schedule=policy, momentum=f["momentum"],
        weight_decay=f["weight_decay"], gamma=f["gamma"], power=f["power"], stepsize=int(proto.stepsize),
        stepvalues=tuple(int(v) for v in proto.stepvalue), momentum2=f["momentum2"], delta=f["delta"],
        rms_decay=f["rms_decay"], iter_size=int(proto.iter_size), clip_gradients=f["clip_gradients"])
    return CaffeSolver(config, proto.net or None, int(proto.max_iter), int(proto.iter_size),
                       tuple(int(v) for v in proto.test_iter), int(proto.test_interval), int(proto.display),
                       int(proto.snapshot), proto.snapshot_prefix or None, int(proto.random_seed), path)


def _decimal(value: float) -> float:
    """A float32 field as the shortest decimal that rounds to it (0.01, not 0.009999999776)."""
    return float(str(np.float32(value)))
