"""What experiments/colab_tpu.ipynb says about the machine it runs on and about a run that cannot start or
stopped, in the names of its parameters cell (DATA_DIR, EPOCHS, BATCH_SIZE, DTYPE, OUT_DIR, OVERWRITE), and the
README's check of a TPU (speed_check).
"""
import time

import jax
import jax.numpy as jnp
import numpy as np

from . import zoo
from .datasets import DataFormatError
from .train import mnist
from .train.errors import (
    ConfigError,
    Diverged,
    Interrupted,
    RunDirError,
    RunExists,
    RunMismatch,
)
from .train.solver import SolverConfig, optimizer
from .train.trainer import Trainer

PARAMETERS = {"data_dir": "DATA_DIR", "epochs": "EPOCHS", "batch_size": "BATCH_SIZE", "dtype": "DTYPE"}
# Colab's names of its TPUs (v2-8, v5e-1), by JAX's device_kind; each of these has one JAX device per core.
TPU_NAMES = {"TPU v2": "v2", "TPU v3": "v3", "TPU v5 lite": "v5e", "TPU v6 lite": "v6e"}
# The failures that are the notebook user's to fix (a parameter, the data, OUT_DIR) or that stop a run on
# purpose: message() says them in one sentence; anything else keeps its traceback.
USER_ERRORS = (ConfigError, RunDirError, Interrupted, Diverged, OSError, DataFormatError)


def describe_devices(devices, batch_size: int) -> str:
    """What training runs on and how `batch_size` splits over it, e.g. 'TPU v2 (v2-8): 8 cores; each batch of
    64 is split over them, 8 images per core.', or, without a TPU, a sentence that says so and what is used."""
    first, n = devices[0], len(devices)
    if first.platform == "tpu":
        short = TPU_NAMES.get(first.device_kind)
        unit = "core"
        where = (f"TPU {first.device_kind.removeprefix('TPU ')}" + (f" ({short}-{n})" if short else "")
                 + f": {n} core{'s' if n > 1 else ''}")
    else:
        unit = "device"
        where = (f"No TPU: JAX sees {n} {first.platform.upper()} device{'s' if n > 1 else ''} "
                 f"({first.device_kind}) and trains there, far slower than on a TPU (on Colab: Runtime > Change "
                 "runtime type > TPU, then run all cells again)")
    if batch_size % n:
        return f"{where}; BATCH_SIZE {batch_size} does not divide over them: use a multiple of {n}."
    if n == 1:
        return f"{where}; each batch of {batch_size} runs on it whole."
    return f"{where}; each batch of {batch_size} is split over them, {batch_size // n} images per {unit}."


def _parameter(setting: str) -> str:
    return PARAMETERS.get(setting, setting)


def message(error: BaseException) -> str:
    """One sentence on why a run did not start or stopped (one of USER_ERRORS), naming the parameter to change."""
    if isinstance(error, ConfigError):
        return f"{_parameter(error.field)} = {error.value!r}: {error.expected}."
    if isinstance(error, RunMismatch) and error.differences:
        made = ", ".join(f"{_parameter(k)} {a!r}" for k, a, _ in error.differences)
        asked = ", ".join(f"{_parameter(k)} {b!r}" for k, _, b in error.differences)
        return (f"OUT_DIR holds a run made with {made}, not {asked}: set OUT_DIR to another folder to keep that "
                "run, or OVERWRITE = True to replace it.")
    if isinstance(error, RunExists):
        return f"OUT_DIR: {error}; set OUT_DIR to a new or empty folder."
    if isinstance(error, Interrupted):
        return f"{error}; run this cell again to continue from there."
    return str(error)


_COMPILES, _LISTENING = [0], []  # XLA compilations in this process since speed_check first listened


def _count_compile(event: str, seconds: float, **kwargs) -> None:
    if event == "/jax/core/compile/backend_compile_duration":
        _COMPILES[0] += 1


def speed_check(chunks: int = 5, steps: int = 50, per_core: int = 128, dtype: str = "bfloat16") -> dict:
    """A TPU (or any backend) at work: the MNIST recipe's training step (Caffe's LeNet with BatchNorm, random
    shifts) in `dtype` on every device, on random 28x28 images, `chunks` chunks of `steps` steps with a batch of
    `per_core` images per device.

    Returns {'platform', 'device_kind', 'devices', 'batch_size', 'dtype', 'compiles' (XLA compilations during
    the first chunk), 'compiles_after_first' (after it: 0 when the step compiled once), 'images_per_second' (the
    chunks after the first), 'loss' (the last step's; finite)}.
    """
    if not _LISTENING:  # listen once: jax 0.7 cannot remove a listener
        jax.monitoring.register_event_duration_secs_listener(_count_compile)
        _LISTENING.append(True)
    devices = jax.devices()
    batch, n = per_core * len(devices), per_core * len(devices) * steps
    net = zoo.lenet_caffe()
    trainer = Trainer(net, optimizer(SolverConfig(lr=mnist.LR), chunks * steps, *net.multipliers()),
                      batch_size=batch, preprocess=mnist.caffe_scale(None), augment=mnist.AUGMENTATIONS["shift"],
                      compute_dtype=jnp.dtype(dtype), steps_per_dispatch=steps, autotune=False)
    rng = np.random.default_rng(0)
    images, labels = trainer.put((rng.integers(0, 256, (n, 28, 28, 1), np.uint8), rng.integers(0, 10, n)))
    before = _COMPILES[0]
    ts = trainer.init(0)
    perm = trainer.permutation(ts, 0, n)
    ts, losses = jax.block_until_ready(trainer.train_steps(ts, images, labels, perm, 0, steps))
    compiled, start = _COMPILES[0], time.perf_counter()
    for _ in range(chunks - 1):
        ts, losses = trainer.train_steps(ts, images, labels, perm, 0, steps)
    losses = jax.device_get(losses)
    seconds = time.perf_counter() - start
    return {"platform": devices[0].platform, "device_kind": devices[0].device_kind, "devices": len(devices),
            "batch_size": batch, "dtype": dtype, "compiles": compiled - before,
            "compiles_after_first": _COMPILES[0] - compiled,
            "images_per_second": (chunks - 1) * steps * batch / seconds, "loss": float(losses[-1])}
