"""Seconds per training epoch of experiments.mnist's recipe under several Trainer settings, side by side.

    python -m experiments.epoch_time [--data-dir DIR] [--images N] [--rounds R] [--out DIR]

The recipe is the command's defaults (LeNet-BN, batch 64, SGD momentum 0.9, cosine schedule, random 2-pixel
shifts); the settings vary how the steps are dispatched (steps per dispatch: a chunk of steps is one lax.scan on
GPU/TPU, one host sync per chunk) and the compute dtype. Each round runs one epoch of every
setting from fresh weights through `fit`, interleaved; the table gives each setting's median training seconds (the
epoch's steps, data already on the device: fit's `seconds`), its first epoch (compilation included) and the test
accuracy after it. Data: DIR's MNIST-format IDX files, else N random images of MNIST's size (60,000 by default; the
speed does not depend on the pixels). Writes DIR/epoch_time.json.
"""
import argparse
import json
import statistics
from pathlib import Path

import jax
import jax.numpy as jnp

from jaxcnn import ops, zoo
from jaxcnn.cli import HelpFormatter, entry
from jaxcnn.hostmem import keep_freed_memory
from jaxcnn.train import SolverConfig, Trainer, fit, optimizer
from jaxcnn.train import mnist as mnist_recipe

from . import bench, mnist

SETTINGS = {  # name -> Trainer arguments; steps_per_dispatch None: the whole epoch in one dispatch
    "dispatch 50": {"steps_per_dispatch": 50},
    "dispatch epoch": {"steps_per_dispatch": None},
    "dispatch 50, bfloat16": {"steps_per_dispatch": 50, "compute_dtype": jnp.bfloat16},
}


def trainer_for(recipe, net, steps, settings):
    _, params, _ = net.init(jax.random.key(0))
    lr_mult, decay_mult = net.multipliers(params)
    solver = SolverConfig(optimizer=recipe.optimizer, lr=recipe.lr, schedule=recipe.schedule,
                          momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    settings = {**settings, "steps_per_dispatch": settings["steps_per_dispatch"] or steps}
    return Trainer(net, optimizer(solver, steps, lr_mult, decay_mult), batch_size=recipe.batch_size,
                   preprocess=mnist_recipe.caffe_scale(None), augment=mnist_recipe.AUGMENTATIONS[recipe.augment],
                   compiler_options=ops.compiler_options(jax.default_backend()), **settings)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m experiments.epoch_time", description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("--data-dir", help="MNIST-format IDX files (default: random images)")
    p.add_argument("--images", type=int, default=60_000, help="training images per epoch")
    p.add_argument("--rounds", type=int, default=3, help="timed epochs of each setting, after the first")
    p.add_argument("--settings", nargs="*", choices=list(SETTINGS), help="the settings to compare (default: all)")
    p.add_argument("--out", default="runs/epoch_time", help="directory for epoch_time.json")
    args = p.parse_args(argv)
    if args.images < 64 or args.rounds < 1:
        p.error("--images must be at least one batch (64) and --rounds at least 1")
    keep_freed_memory()
    recipe = mnist.arguments([])
    train, test = bench.mnist_data(args.data_dir, args.images)
    net = zoo.get(recipe.model)
    steps = len(train[1]) // recipe.batch_size
    names = args.settings or list(SETTINGS)
    trainers = {name: trainer_for(recipe, net, steps, SETTINGS[name]) for name in names}
    seconds, first, accuracy = {name: [] for name in names}, {}, {}
    for r in range(args.rounds + 1):
        for name, trainer in trainers.items():
            (record,) = fit(trainer, train, test, epochs=1, seed=r)[1]
            if r == 0:
                first[name] = record["seconds"]
            else:
                seconds[name].append(record["seconds"])
            accuracy[name] = record["test_accuracy"]
    device = jax.devices()[0]
    print(f"{len(train[1]):,} images, {steps} steps of batch {recipe.batch_size} on {device.device_kind} "
          f"({jax.default_backend()}), jax {jax.__version__}; median of {args.rounds}")
    print(f"{'setting':28} {'seconds':>8} {'images/s':>10} {'first':>7} {'test accuracy':>14}")
    for name in names:
        med = statistics.median(seconds[name])
        print(f"{name:28} {med:8.3f} {steps * recipe.batch_size / med:10,.0f} {first[name]:7.2f} "
              f"{100 * accuracy[name]:13.2f}%")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"images": len(train[1]), "steps": steps, "batch_size": recipe.batch_size, "device": device.device_kind,
              "platform": jax.default_backend(), "jax": jax.__version__, "data": args.data_dir or "random images",
              "settings": {name: {k: str(v) for k, v in SETTINGS[name].items()} for name in names},
              "seconds": seconds, "median_seconds": {n: statistics.median(s) for n, s in seconds.items()},
              "first_epoch_seconds": first, "test_accuracy": accuracy}
    (out / "epoch_time.json").write_text(json.dumps(report, indent=1))
    print(f"wrote {out / 'epoch_time.json'}")
    return report


if __name__ == "__main__":
    raise SystemExit(entry(main))
