"""Optimizers and learning-rate schedules: Optax, with Caffe's policies and per-parameter multipliers.

Caffe's SGD update for a parameter w with multipliers (lr_mult, decay_mult):
    v <- momentum * v + lr_mult * (grad + weight_decay * decay_mult * w);  w <- w - lr * v
"""
import math
from dataclasses import dataclass

import jax
import optax

from .errors import ConfigError

SCHEDULES = ("fixed", "step", "multistep", "inv", "poly", "cosine")
OPTIMIZERS = ("sgd", "nesterov", "adam", "adamw")


@dataclass(frozen=True)
class SolverConfig:
    """Everything that defines the optimizer; mirrors Caffe's solver.prototxt where it can.

    gamma/power/stepsize/stepvalues are Caffe's lr_policy parameters (step: lr * gamma^floor(t/stepsize);
    multistep: lr * gamma^(#stepvalues <= t); inv: lr * (1 + gamma*t)^-power; poly: lr * (1 - t/T)^power).
    warmup_steps ramps linearly from 0 to lr before the schedule starts. Raises ConfigError naming the field for a
    value that cannot work (lr not finite and > 0, an unknown optimizer or schedule, 'step' without a stepsize, ...).
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

    def __post_init__(self):
        object.__setattr__(self, "stepvalues", tuple(self.stepvalues))
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError("optimizer", repr(self.optimizer), f"expected one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ConfigError("schedule", repr(self.schedule), f"expected one of {', '.join(SCHEDULES)}")
        checks = [("lr", self.lr, self.lr > 0, "must be finite and greater than 0"),
                  ("momentum", self.momentum, 0 <= self.momentum < 1, "must lie in [0, 1)"),
                  ("weight_decay", self.weight_decay, self.weight_decay >= 0, "must be finite and at least 0"),
                  ("gamma", self.gamma, self.gamma > 0, "must be finite and greater than 0"),
                  ("power", self.power, True, "must be finite")]
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


def optimizer(cfg: SolverConfig, total_steps: int, lr_mult, decay_mult) -> optax.GradientTransformation:
    """The Optax transformation for cfg. lr_mult / decay_mult: pytrees like params (Net.multipliers).

    sgd / nesterov: Caffe's SGD with L2 weight decay (scaled by decay_mult) and momentum.
    adam: L2 weight decay added to the gradient before Adam; adamw: decoupled weight decay.
    """
    lr = schedule(cfg, total_steps)
    decay = _caffe_weight_decay(cfg.weight_decay, decay_mult)
    if cfg.optimizer in ("sgd", "nesterov"):
        core = [decay, _scale_by_tree(lr_mult), optax.trace(cfg.momentum, nesterov=cfg.optimizer == "nesterov")]
    elif cfg.optimizer == "adam":
        core = [decay, optax.scale_by_adam(), _scale_by_tree(lr_mult)]
    else:
        core = [optax.scale_by_adam(), decay, _scale_by_tree(lr_mult)]
    return optax.chain(*core, optax.scale_by_learning_rate(lr))
