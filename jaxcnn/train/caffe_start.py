"""A new run's start from Caffe's files, as `caffe train -weights W.caffemodel` (fine-tuning) and
`caffe train -snapshot S.solverstate` (resuming Caffe's solver) start one, and the .solverstate of a run's end.

    >>> from jaxcnn import caffe
    >>> from jaxcnn.train import caffe_run, caffe_start
    >>> spec = caffe_run.load("experiments/caffe/lenet_solver.prototxt", data_dir="../shared/data/mnist")
    >>> trainer = spec.trainer()
    >>> ts = trainer.init(0)
    >>> caffe.save_caffemodel(spec.net, ts.params, ts.state, "lenet_bn_iter_0.caffemodel")
    >>> made = trainer, spec.config.solver, spec.schedule_steps  # the Trainer, and what its optimizer was made from
    >>> caffe_start.save_solverstate(*made, ts, "lenet_bn_iter_0.solverstate", "lenet_bn_iter_0.caffemodel").iter
    0
    >>> start = caffe_start.fine_tune(trainer, ["lenet_bn_iter_0.caffemodel"])  # TrainState -> TrainState
    >>> start = caffe_start.from_solverstate(*made, "lenet_bn_iter_0.solverstate")
    >>> int(start(trainer.init(1)).step)
    0

and `caffe_run.load(solver, weights=[...])` or `load(solver, snapshot=...)` makes one the RunSpec's `start`, which
fit applies to a new run's initial state.

Fine-tuning copies the blobs of the layers whose names the caffemodels share with the net (later files over
earlier ones, as Caffe's comma-separated -weights); the others keep the run's own init (fit's seed), so a layer
renamed in the net (Caffe's flickr_style example: fc8 -> fc8_flickr) starts from its fillers.

Resuming: step = the solverstate's iter (times iter_size), the params from its learned_net
and the optimizer's buffers from its history (jaxcnn.caffe.solverstate gives Caffe's layout), into Optax's state of
jaxcnn.train.solver.optimizer:
    SGD, Nesterov   Caffe's h = lr(iter) * optax.trace's v (jaxcnn applies lr after the momentum: w -= lr v);
                    exact for Caffe's next update, and a round trip, at any lr_policy
    AdaGrad, RMSProp  AccumulatorState.first; AdaDelta: first and second
    Adam            scale_by_adam's mu and nu, its count = iter
and the schedule's count = iter. jaxcnn's adamw has no Caffe solver type: ConfigError. Caffe keeps no random
state: the run's own key (fit's seed) draws dropout and the example order on.
"""
import logging
from typing import Callable

import jax
import numpy as np
import optax

from ..caffe.solverstate import HISTORY_SETS, SolverState, read_solverstate, write_solverstate
from ..caffe.weights import matching_weights, param_blobs, params_from_blobs
from ..errors import CaffeFormatError
from .errors import ConfigError
from .solver import AccumulatorState, SolverConfig, schedule
from .trainer import Trainer, TrainState

log = logging.getLogger(__name__)

CAFFE_TYPES = {"sgd": "SGD", "nesterov": "Nesterov", "adagrad": "AdaGrad", "rmsprop": "RMSProp",
               "adadelta": "AdaDelta", "adam": "Adam"}
"""jaxcnn's optimizer -> the Caffe solver type whose history it keeps."""


def fine_tune(trainer: Trainer, weights, *, input_shape=None) -> Callable[[TrainState], TrainState]:
    """TrainState -> the same with the params and state of the layers the caffemodels `weights` (paths, read now:
    their errors come here) have by name. See the module docstring."""
    params, state = _matching(trainer.net, weights, input_shape)

    def start(ts: TrainState) -> TrainState:
        ts = jax.device_get(ts)
        return trainer.place(ts._replace(params={**ts.params, **params}, state={**ts.state, **state}))
    return start


def from_solverstate(trainer: Trainer, config: SolverConfig, total_steps: int, path, *, end_step: int | None = None,
                     input_shape=None) -> Callable[[TrainState], TrainState]:
    """TrainState -> the same resumed from Caffe's .solverstate at `path` (read now, with its caffemodel).
    config and total_steps: those trainer.tx was made from (optimizer(config, total_steps, ...)); end_step: the
    step the run ends at. CaffeFormatError naming the file for history that is not the net's under config's
    type; ValueError naming it when its iteration leaves no step before end_step."""
    snap = read_solverstate(path)
    if end_step is not None and snap.iter * config.iter_size >= end_step:
        raise ValueError(f"{path}: iteration {snap.iter} leaves nothing to train: the run ends at step {end_step}")
    kind = _caffe_type(config)
    sets = HISTORY_SETS[kind]
    if len(snap.history) % sets:
        raise CaffeFormatError(str(path), f"{len(snap.history)} history blobs: Caffe's {kind} keeps {sets} per "
                                          "learnable blob")
    n = len(snap.history) // sets
    try:
        trees = [params_from_blobs(trainer.net, snap.history[i * n:(i + 1) * n], path, input_shape=input_shape)
                 for i in range(sets)]
    except CaffeFormatError as e:
        raise CaffeFormatError(e.file, f"history for Caffe's {kind} ({sets} per learnable blob): {e.message}",
                               layer=e.layer, kind=e.kind) from None
    params, state = _matching(trainer.net, [snap.learned_net_path()], input_shape)
    lr = _lr(config, total_steps, snap.iter)

    def start(ts: TrainState) -> TrainState:
        ts = jax.device_get(ts)
        opt_state = _with_history(ts.opt_state, kind, [jax.tree.map(np.asarray, t) for t in trees], lr, snap.iter)
        return trainer.place(ts._replace(step=np.int32(snap.iter * config.iter_size), params={**ts.params, **params},
                                         state={**ts.state, **state}, opt_state=opt_state))
    return start


def save_solverstate(trainer: Trainer, config: SolverConfig, total_steps: int, ts: TrainState, path, learned_net,
                     *, input_shape=None) -> SolverState:
    """Write ts's optimizer state as Caffe's .solverstate at `path` (whole or not at all), naming the caffemodel
    `learned_net` that holds ts's params; -> what was written. A run stopped inside an iter_size accumulation is
    written as of its last update (Caffe keeps no partial gradients)."""
    kind = _caffe_type(config)
    done = int(ts.step)
    it = done // config.iter_size
    if done % config.iter_size:
        log.warning("%s: the gradients of %d batches since update %d are not kept (Caffe's solverstate has none)",
                    path, done % config.iter_size, it)
    trees = _history(jax.device_get(ts.opt_state), kind, _lr(config, total_steps, it))
    history = [b for tree in trees for b in param_blobs(trainer.net, tree, input_shape=input_shape)]
    current = sum(1 for v in config.stepvalues if v < it) if config.schedule == "multistep" else 0
    snap = SolverState(it, str(learned_net), tuple(history), current, str(path))
    write_solverstate(snap, path)
    return snap


def _caffe_type(config: SolverConfig) -> str:
    if config.optimizer not in CAFFE_TYPES:
        raise ConfigError("optimizer", config.optimizer, f"has no Caffe solverstate (Caffe's solver types: "
                                                         f"{', '.join(CAFFE_TYPES.values())})")
    return CAFFE_TYPES[config.optimizer]


def _matching(net, weights, input_shape) -> tuple[dict, dict]:
    """The params and state that the caffemodels `weights` give the layers of `net` (later files win)."""
    params, state = {}, {}
    for path in weights:
        p, s = matching_weights(net, path, input_shape=input_shape)
        params, state = {**params, **p}, {**state, **s}
    fresh = [r.layer.name for r in net.shapes(input_shape) if (r.params and r.layer.name not in params)
             or (r.state and r.layer.name not in state)]
    if fresh:
        log.info("%s: layers %s start from their fillers (%s holds no blobs of their names)", net.name, fresh,
                 ", ".join(map(str, weights)))
    return params, state


def _lr(config, total_steps, it) -> np.float32:
    """The learning rate of update `it` (0-based), Caffe's GetLearningRate at iter_ = it."""
    return np.float32(schedule(config, total_steps)(it))


def _states(opt_state) -> list:
    """The states of the transformations in an optimizer's state (inside MultiSteps, chains flattened)."""
    if isinstance(opt_state, optax.MultiStepsState):
        return _states(opt_state.inner_opt_state)
    if type(opt_state) is tuple:
        return [s for part in opt_state for s in _states(part)]
    return [opt_state]


def _replaced(opt_state, fn):
    """opt_state with each transformation's state s replaced by fn(s) (MultiSteps: at an update's start)."""
    if isinstance(opt_state, optax.MultiStepsState):
        return opt_state._replace(inner_opt_state=_replaced(opt_state.inner_opt_state, fn),
                                  mini_step=np.zeros_like(opt_state.mini_step),
                                  acc_grads=jax.tree.map(np.zeros_like, opt_state.acc_grads))
    if type(opt_state) is tuple:
        return tuple(_replaced(s, fn) for s in opt_state)
    return fn(opt_state)


def _scaled(tree, factor):
    return jax.tree.map(lambda a: (np.asarray(a, np.float32) * factor).astype(np.float32), tree)


def _history(opt_state, kind, lr) -> list:
    """Optax's state of Caffe's `kind` -> Caffe's history, as trees shaped like the params (one per set)."""
    for s in _states(opt_state):
        if kind in ("SGD", "Nesterov") and isinstance(s, optax.TraceState):
            return [_scaled(s.trace, lr)]
        if kind == "Adam" and isinstance(s, optax.ScaleByAdamState):
            return [s.mu, s.nu]
        if isinstance(s, AccumulatorState):
            return [s.first, s.second] if kind == "AdaDelta" else [s.first]
    raise ValueError(f"no optimizer state of Caffe's {kind} in {type(opt_state).__name__}")


def _with_history(opt_state, kind, trees, lr, it):
    """Optax's state of Caffe's `kind` with its buffers from Caffe's history (trees, as _history gives them) and
    its counts at update `it`."""
    def one(s):
        count = lambda c: np.asarray(it, np.asarray(c).dtype)  # noqa: E731
        if isinstance(s, optax.TraceState):
            return s._replace(trace=_scaled(trees[0], 0 if lr == 0 else 1 / lr))
        if isinstance(s, optax.ScaleByAdamState):
            return s._replace(count=count(s.count), mu=trees[0], nu=trees[1])
        if isinstance(s, AccumulatorState):
            return AccumulatorState(trees[0], trees[1] if kind == "AdaDelta" else jax.tree.map(np.zeros_like,
                                                                                              trees[0]))
        if isinstance(s, optax.ScaleByScheduleState):
            return s._replace(count=count(s.count))
        return s

    opt_state = _replaced(opt_state, one)
    if isinstance(opt_state, optax.MultiStepsState):
        opt_state = opt_state._replace(gradient_step=np.asarray(it, np.asarray(opt_state.gradient_step).dtype))
    return opt_state
