"""Optimizers and learning-rate schedules: Optax, with Caffe's policies and per-parameter multipliers.

Caffe's SGD update for a parameter w with multipliers (lr_mult, decay_mult):
    v <- momentum * v + lr_mult * (grad + weight_decay * decay_mult * w);  w <- w - lr * v
Caffe's adaptive solvers, with g = grad + weight_decay * decay_mult * w and delta their epsilon:
    rmsprop   r <- rms_decay * r + (1 - rms_decay) g^2;          w <- w - lr lr_mult g / (sqrt(r) + delta)
    adagrad   r <- r + g^2;                                       w <- w - lr lr_mult g / (sqrt(r) + delta)
    adadelta  r <- m r + (1 - m) g^2;  u = g sqrt(d + delta) / sqrt(r + delta);  d <- m d + (1 - m) u^2;
              w <- w - lr lr_mult u          (m: momentum)
"""
import math
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from .errors import ConfigError, count

SCHEDULES = ("fixed", "step", "multistep", "inv", "poly", "exp", "sigmoid", "cosine")
OPTIMIZERS = ("sgd", "nesterov", "adam", "adamw", "rmsprop", "adagrad", "adadelta")


@dataclass(frozen=True)
class SolverConfig:
    """Everything that defines the optimizer; mirrors Caffe's solver.prototxt where it can.

    gamma/power/stepsize/stepvalues are Caffe's lr_policy parameters (step: lr * gamma^floor(t/stepsize);
    multistep: lr * gamma^(#stepvalues <= t); inv: lr * (1 + gamma*t)^-power; poly: lr * (1 - t/T)^power;
    exp: lr * gamma^t; sigmoid: lr / (1 + exp(-gamma * (t - stepsize)))).
    warmup_steps ramps linearly from 0 to lr before the schedule starts. momentum2 and delta: Adam's second
    moment decay and epsilon (Caffe's momentum2, delta; Adam's first moment decay is `momentum`); rms_decay:
    RMSProp's. iter_size: Caffe's gradient accumulation, one update from the mean gradient of that many
    batches (steps count updates). clip_gradients: Caffe's, the largest global L2 norm of the gradient (< 0:
    none). Raises ConfigError naming the field for a value that cannot work (lr not finite and > 0, an unknown
    optimizer or schedule, 'step' without a stepsize, ...).
    """

    optimizer: str = "sgd"
    lr: float = 0.01
    schedule: str = "cosine"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    gamma: float = 0.1
    power: float = 0.75
    stepsize: int = 0
    stepvalues: tuple = ()
    warmup_steps: int = 0
    momentum2: float = 0.999
    delta: float = 1e-8
    rms_decay: float = 0.99
    iter_size: int = 1
    clip_gradients: float = -1.0

    def __post_init__(self):
        object.__setattr__(self, "stepvalues", tuple(self.stepvalues))
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError("optimizer", repr(self.optimizer), f"expected one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ConfigError("schedule", repr(self.schedule), f"expected one of {', '.join(SCHEDULES)}")
        checks = [("lr", self.lr, self.lr > 0, "must be finite and greater than 0"),
                  ("momentum", self.momentum, 0 <= self.momentum < 1, "must lie in [0, 1)"),
                  ("weight_decay", self.weight_decay, self.weight_decay >= 0, "must be finite and at least 0"),
                  ("gamma", self.gamma, self.gamma > 0 or self.schedule not in ("step", "multistep", "exp"),
                   f"must be finite, and greater than 0 for the {self.schedule} schedule"),
                  ("power", self.power, True, "must be finite"),
                  ("momentum2", self.momentum2, 0 <= self.momentum2 < 1, "must lie in [0, 1)"),
                  ("delta", self.delta, self.delta > 0, "must be finite and greater than 0"),
                  ("rms_decay", self.rms_decay, 0 <= self.rms_decay < 1, "must lie in [0, 1)"),
                  ("clip_gradients", self.clip_gradients, True, "must be finite")]
        for field, value, ok, expected in checks:
            if not (math.isfinite(value) and ok):
                raise ConfigError(field, value, expected)
        if self.schedule == "step" and self.stepsize <= 0:
            raise ConfigError("stepsize", self.stepsize, "the step schedule needs a stepsize of at least 1")
        if self.stepsize < 0:
            raise ConfigError("stepsize", self.stepsize, "must be at least 0")
        if any(v < 0 for v in self.stepvalues) or list(self.stepvalues) != sorted(self.stepvalues):
            raise ConfigError("stepvalues", list(self.stepvalues), "must be increasing step numbers, at least 0")
        if self.warmup_steps < 0:
            raise ConfigError("warmup_steps", self.warmup_steps, "must be at least 0")
        count("iter_size", self.iter_size)

    @classmethod
    def from_caffe(cls, solver) -> "SolverConfig":
        """The optimizer of a Caffe solver file (a jaxcnn.caffe.CaffeSolver): its type, base_lr, lr_policy and
        their settings under jaxcnn's names (Caffe's 'RMSProp' is 'rmsprop', base_lr lr, stepvalue stepvalues)."""
        return cls(optimizer=solver.type.lower(), lr=solver.base_lr, schedule=solver.lr_policy,
                   momentum=solver.momentum, weight_decay=solver.weight_decay, gamma=solver.gamma, power=solver.power,
                   stepsize=solver.stepsize, stepvalues=solver.stepvalue, momentum2=solver.momentum2,
                   delta=solver.delta, rms_decay=solver.rms_decay, iter_size=solver.iter_size,
                   clip_gradients=solver.clip_gradients)

    @classmethod
    def from_cudaconvnet(cls, net) -> "SolverConfig":
        """Caffe-style SGD with a fixed rate under which a cuda-convnet net's (a jaxcnn.cudaconvnet.ConvNet)
        lr_mult / decay_mult give its layers' updates: net.sgd_settings()'s lr, momentum and weight_decay."""
        sgd = net.sgd_settings()
        return cls(optimizer="sgd", lr=sgd.lr, schedule="fixed", momentum=sgd.momentum,
                   weight_decay=sgd.weight_decay)


def schedule(cfg: SolverConfig, total_steps: int) -> optax.Schedule:
    """Step -> learning rate, for a run of total_steps optimizer steps (at least 1)."""
    if total_steps < 1:
        raise ConfigError("total_steps", total_steps, "a schedule needs at least 1 step")
    lr, name = cfg.lr, cfg.schedule
    decay_steps = max(total_steps - cfg.warmup_steps, 1)
    if name == "fixed":
        main = optax.constant_schedule(lr)
    elif name == "step":
        main = optax.exponential_decay(lr, cfg.stepsize, cfg.gamma, staircase=True)
    elif name == "multistep":
        main = optax.piecewise_constant_schedule(lr, {int(s): cfg.gamma for s in cfg.stepvalues})
    elif name == "inv":
        main = lambda t: lr * (1.0 + cfg.gamma * t) ** (-cfg.power)  # noqa: E731
    elif name == "poly":
        main = optax.polynomial_schedule(lr, 0.0, cfg.power, decay_steps)
    elif name == "exp":
        main = lambda t: lr * cfg.gamma ** t  # noqa: E731
    elif name == "sigmoid":
        main = lambda t: lr / (1.0 + jnp.exp(-cfg.gamma * (t - cfg.stepsize)))  # noqa: E731
    else:
        main = optax.cosine_decay_schedule(lr, decay_steps)
    if cfg.warmup_steps <= 0:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, lr, cfg.warmup_steps), main], [cfg.warmup_steps])


def _scale_by_tree(tree):
    return optax.stateless(lambda updates, params=None: jax.tree.map(lambda u, m: u * m, updates, tree))


def _caffe_weight_decay(weight_decay, decay_mult):
    return optax.stateless(lambda updates, params: jax.tree.map(
        lambda g, p, d: g + weight_decay * d * p, updates, params, decay_mult))


class AccumulatorState(NamedTuple):
    """The state of Caffe's RMSProp, AdaGrad and AdaDelta: first r (the squared gradients' running mean or sum),
    second d (AdaDelta's squared updates' running mean; zeros for the others)."""

    first: optax.Updates
    second: optax.Updates


def _caffe_adaptive(kind: str, cfg: SolverConfig) -> optax.GradientTransformation:
    """Caffe's RMSProp, AdaGrad or AdaDelta direction (see the module docstring), before lr and lr_mult."""
    def init(params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        return AccumulatorState(zeros, zeros)

    def update(grads, state, params=None):
        r, d = state
        if kind == "rmsprop":
            r = jax.tree.map(lambda r, g: cfg.rms_decay * r + (1 - cfg.rms_decay) * g * g, r, grads)
            out = jax.tree.map(lambda g, r: g / (jnp.sqrt(r) + cfg.delta), grads, r)
        elif kind == "adagrad":
            r = jax.tree.map(lambda r, g: r + g * g, r, grads)
            out = jax.tree.map(lambda g, r: g / (jnp.sqrt(r) + cfg.delta), grads, r)
        else:
            m = cfg.momentum
            r = jax.tree.map(lambda r, g: m * r + (1 - m) * g * g, r, grads)
            out = jax.tree.map(lambda g, r, d: g * jnp.sqrt(d + cfg.delta) / jnp.sqrt(r + cfg.delta), grads, r, d)
            d = jax.tree.map(lambda d, u: m * d + (1 - m) * u * u, d, out)
        return out, AccumulatorState(r, d)

    return optax.GradientTransformation(init, update)


def optimizer(cfg: SolverConfig, total_steps: int, lr_mult, decay_mult) -> optax.GradientTransformation:
    """The Optax transformation for cfg. lr_mult / decay_mult: pytrees like params (Net.multipliers).
    total_steps counts updates (with iter_size > 1 the transformation is called iter_size times per update).

    sgd / nesterov: Caffe's SGD with L2 weight decay (scaled by decay_mult) and momentum.
    adam: L2 weight decay added to the gradient before Adam (b1 = momentum, b2 = momentum2, eps = delta);
    adamw: decoupled weight decay. rmsprop / adagrad / adadelta: Caffe's (see the module docstring).
    """
    lr = schedule(cfg, total_steps)
    decay = _caffe_weight_decay(cfg.weight_decay, decay_mult)
    adam = optax.scale_by_adam(b1=cfg.momentum, b2=cfg.momentum2, eps=cfg.delta)
    if cfg.optimizer in ("sgd", "nesterov"):
        core = [decay, _scale_by_tree(lr_mult), optax.trace(cfg.momentum, nesterov=cfg.optimizer == "nesterov")]
    elif cfg.optimizer == "adam":
        core = [decay, adam, _scale_by_tree(lr_mult)]
    elif cfg.optimizer == "adamw":
        core = [adam, decay, _scale_by_tree(lr_mult)]
    else:
        core = [decay, _caffe_adaptive(cfg.optimizer, cfg), _scale_by_tree(lr_mult)]
    if cfg.clip_gradients >= 0:
        core.insert(0, optax.clip_by_global_norm(cfg.clip_gradients))
    tx = optax.chain(*core, optax.scale_by_learning_rate(lr))
    return optax.MultiSteps(tx, cfg.iter_size).gradient_transformation() if cfg.iter_size > 1 else tx
