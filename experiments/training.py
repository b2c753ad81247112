"""What the training experiments share: flags, the run itself, and the files it writes."""
import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn import LayerError, datasets, plots, summary, zoo
from jaxcnn.hostmem import keep_freed_memory
from jaxcnn.train import OPTIMIZERS, SCHEDULES, Interrupted, SolverConfig, Trainer, fit, optimizer
from jaxcnn.train.distributed import initialize


def parser(description, *, model, datasets, epochs, batch_size, lr, out):
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default=model, choices=sorted(zoo.MODELS), help="zoo model")
    p.add_argument("--dataset", default=datasets[0], choices=datasets)
    p.add_argument("--data-dir", help="directory with the dataset's original files (else $JAXCNN_DATA_DIR, "
                   "/usr/share/datasets/<name>, then TensorFlow Datasets)")
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--batch-size", type=int, default=batch_size, help="global batch, split over all devices")
    p.add_argument("--out", default=out, help="directory for checkpoints, metrics, plots and results.json")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="compute dtype")
    p.add_argument("--steps-per-dispatch", type=int, default=50, help="steps between host syncs")
    s = p.add_argument_group("solver (Caffe's LeNet solver: --lr 0.01 --schedule inv --gamma 1e-4 --power 0.75)")
    s.add_argument("--optimizer", default="sgd", choices=OPTIMIZERS)
    s.add_argument("--lr", type=float, default=lr, help="base learning rate")
    s.add_argument("--schedule", default="cosine", choices=SCHEDULES)
    s.add_argument("--momentum", type=float, default=0.9)
    s.add_argument("--weight-decay", type=float, default=5e-4)
    s.add_argument("--gamma", type=float, default=0.1, help="step/multistep/inv gamma")
    s.add_argument("--power", type=float, default=0.75, help="inv/poly power")
    s.add_argument("--stepsize", type=int, default=0, help="step schedule: steps between decays")
    s.add_argument("--stepvalues", type=int, nargs="*", default=(), help="multistep schedule: steps to decay at")
    s.add_argument("--warmup-steps", type=int, default=0)
    d = p.add_argument_group("multi-process (one process per host)")
    d.add_argument("--coordinator", help="host:port of process 0; enables jax.distributed")
    d.add_argument("--num-processes", type=int, default=1)
    d.add_argument("--process-id", type=int, default=0)
    return p


def _solver(args):
    return SolverConfig(optimizer=args.optimizer, lr=args.lr, schedule=args.schedule, momentum=args.momentum,
                        weight_decay=args.weight_decay, gamma=args.gamma, power=args.power, stepsize=args.stepsize,
                        stepvalues=tuple(args.stepvalues), warmup_steps=args.warmup_steps)


def run(args, *, preprocess_for, augment=None, class_names=None):
    """Train args.model on args.dataset and write --out. preprocess_for(train_images) -> uint8-to-float fn.
    Returns the results dict (also written to --out/results.json)."""
    keep_freed_memory()  # before JAX's first computation (jaxcnn.hostmem)
    if args.coordinator:
        initialize(args.coordinator, args.num_processes, args.process_id)
    main = jax.process_index() == 0
    say = print if main else (lambda *a, **k: None)
    train, test = datasets.load(args.dataset, "train", args.data_dir), datasets.load(args.dataset, "test", args.data_dir)
    try:
        net = zoo.get(args.model, num_classes=10, input_shape=train[0].shape[1:])
        say(summary(net, batch=args.batch_size))
        _, params, _ = net.init(jax.random.key(args.seed))
    except LayerError as e:
        sys.exit(f"--model {args.model} does not fit {args.dataset}'s {train[0].shape[1:]} images: {e}")
    steps = args.epochs * (len(train[1]) // args.batch_size)
    tx = optimizer(_solver(args), steps, *net.multipliers(params))
    try:
        trainer = Trainer(net, tx, batch_size=args.batch_size, preprocess=preprocess_for(train[0]), augment=augment,
                          compute_dtype=jnp.dtype(args.dtype), steps_per_dispatch=args.steps_per_dispatch)
    except ValueError as e:
        sys.exit(str(e))
    say(f"{len(train[1]):,} training / {len(test[1]):,} test images; {trainer.mesh.size} device(s): "
        f"{jax.devices()[0].platform}; batch {args.batch_size}, {args.epochs} epochs")
    os.makedirs(args.out, exist_ok=True)
    meta = {"model": args.model, "dataset": args.dataset, "args": vars(args)}

    def report(r):
        say(f"epoch {r['epoch']:3d}  train loss {r['train_loss']:.4f}  test loss {r['test_loss']:.4f}  "
            f"test accuracy {100 * r['test_accuracy']:.2f}%  {r['images_per_second']:,.0f} img/s  {r['seconds']:.1f}s")

    start = time.perf_counter()
    try:
        ts, history = fit(trainer, train, test, epochs=args.epochs, seed=args.seed, out_dir=args.out,
                          resume=args.resume, meta=meta, on_epoch=report)
    except Interrupted as e:
        sys.exit(str(e))
    seconds = time.perf_counter() - start
    if not history:
        sys.exit(f"nothing to train: --epochs {args.epochs} already done in {args.out}")
    _, accuracy, predictions = jax.device_get(trainer.evaluate(ts, *trainer.put(test)))
    results = {
        "model": args.model, "dataset": args.dataset, "test_accuracy": float(accuracy), "epochs": args.epochs,
        "train_images_per_second": float(np.median([r["images_per_second"] for r in history])),
        "seconds_per_epoch": float(np.median([r["seconds"] for r in history])),
        "seconds": seconds, "devices": trainer.mesh.size, "platform": jax.devices()[0].platform,
        "batch_size": args.batch_size, "dtype": args.dtype,
    }
    if main:
        plots.curves(history, os.path.join(args.out, "curves.png"))
        results["misclassified"] = plots.misclassified(test[0], test[1], predictions,
                                                       os.path.join(args.out, "misclassified.png"), class_names)
        conv1 = next(name for name in jax.device_get(ts.params) if "conv" in name)
        plots.filters(jax.device_get(ts.params[conv1]["w"]), os.path.join(args.out, f"{conv1}_filters.png"))
        with open(os.path.join(args.out, "results.json"), "w") as f:
            json.dump(results, f, indent=1)
    say(f"test accuracy {100 * accuracy:.2f}% after {args.epochs} epochs, {results['seconds_per_epoch']:.1f}s "
        f"per epoch ({results['train_images_per_second']:,.0f} img/s); wrote {args.out}")
    return results
