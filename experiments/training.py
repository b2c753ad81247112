"""What the training experiments share: their flags, checked before any data is loaded, and the run itself
(jaxcnn.train.run_training of a zoo_spec), reported on the terminal."""
import argparse

import jax

from jaxcnn import summary, zoo
from jaxcnn.cli import HelpFormatter, ProgressBar, epoch_line, plural
from jaxcnn.hostmem import keep_freed_memory
from jaxcnn.train import OPTIMIZERS, SCHEDULES, RunDir, SolverConfig, run_training, zoo_spec
from jaxcnn.train.distributed import initialize
from jaxcnn.train.run import DTYPES, RunConfig


def parser(prog, description, *, model, datasets, epochs, batch_size, lr, out, solver_title="solver"):
    """The flags every training experiment has, with its defaults; solver_title: the heading of the solver
    flags in --help."""
    p = argparse.ArgumentParser(prog=prog, description=description,
                                formatter_class=HelpFormatter)
    p.add_argument("--model", default=model, choices=sorted(zoo.MODELS), help="the zoo model to train")
    p.add_argument("--dataset", default=datasets[0], choices=datasets, help="the dataset to train on")
    p.add_argument("--data-dir", help="directory with the dataset's original files; when given, the only place "
                   "looked (else $JAXCNN_DATA_DIR, then /usr/share/datasets/<name>, then TensorFlow Datasets, then "
                   "MNIST's and Fashion-MNIST's original files are downloaded)")
    p.add_argument("--epochs", type=int, default=epochs, help="epochs to train (with --resume: in all)")
    p.add_argument("--batch-size", type=int, default=batch_size, help="global batch, split over all devices")
    p.add_argument("--out", default=out, help="run directory: checkpoints, metrics, plots, results.json; a new run "
                   "needs it empty")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its newest checkpoint")
    p.add_argument("--overwrite", action="store_true", help="remove an earlier run from --out first")
    p.add_argument("--rescale-schedule", action="store_true", help="with --resume and more --epochs, stretch the "
                   "learning-rate schedule over them (else it keeps its length and then holds its final rate)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial weights, example order and augmentation")
    p.add_argument("--dtype", default="float32", choices=DTYPES, help="compute dtype (weights stay float32)")
    p.add_argument("--steps-per-dispatch", type=int, default=50, help="training steps between host syncs")
    s = p.add_argument_group(solver_title)
    s.add_argument("--optimizer", default="sgd", choices=OPTIMIZERS, help="the update rule")
    s.add_argument("--lr", type=float, default=lr, help="base learning rate")
    s.add_argument("--schedule", default="cosine", choices=SCHEDULES,
                   help="the learning-rate policy (Caffe's lr_policy)")
    s.add_argument("--momentum", type=float, default=0.9, help="momentum of SGD and Nesterov")
    s.add_argument("--weight-decay", type=float, default=5e-4, help="L2 weight decay (AdamW: decoupled)")
    s.add_argument("--gamma", type=float, default=0.1, help="decay factor of the step, multistep and inv schedules")
    s.add_argument("--power", type=float, default=0.75, help="exponent of the inv and poly schedules")
    s.add_argument("--stepsize", type=int, default=0, help="steps between decays of the step schedule")
    s.add_argument("--stepvalues", type=int, nargs="*", default=(), help="steps at which the multistep schedule "
                   "decays")
    s.add_argument("--warmup-steps", type=int, default=0, help="steps of linear warm-up from 0 to --lr")
    d = p.add_argument_group("multi-process (one process per host)")
    d.add_argument("--coordinator", help="host:port of process 0; enables jax.distributed")
    d.add_argument("--num-processes", type=int, default=1, help="how many processes take part")
    d.add_argument("--process-id", type=int, default=0, help="this process's index, from 0")
    return p


def config(args, augment_name) -> RunConfig:
    """The run's settings from the flags; ConfigError names the setting (jaxcnn.cli turns it into the flag)."""
    solver = SolverConfig(optimizer=args.optimizer, lr=args.lr, schedule=args.schedule, momentum=args.momentum,
                          weight_decay=args.weight_decay, gamma=args.gamma, power=args.power, stepsize=args.stepsize,
                          stepvalues=tuple(args.stepvalues), warmup_steps=args.warmup_steps)
    return RunConfig(model=args.model, dataset=args.dataset, batch_size=args.batch_size, epochs=args.epochs,
                     solver=solver, seed=args.seed, dtype=args.dtype, augment=augment_name,
                     steps_per_dispatch=args.steps_per_dispatch)


def run(args, *, preprocess_for, augment=None, augment_name="none", class_names=None):
    """Train args.model on args.dataset into --out. preprocess_for(train_images) -> uint8-to-float fn.
    Every flag, --out included, is checked before the data is loaded, and the data and the model before --out is
    touched: a failed start leaves --out as it was. Returns the results dict (also written to
    --out/results.json)."""
    keep_freed_memory()  # before JAX's first computation (jaxcnn.hostmem)
    cfg = config(args, augment_name)
    if args.coordinator:
        initialize(args.coordinator, args.num_processes, args.process_id)
    cfg.check_devices(jax.device_count())
    main = jax.process_index() == 0
    say = print if main else (lambda *a, **k: None)
    RunDir(args.out).check(resume=args.resume, overwrite=args.overwrite)
    spec = zoo_spec(cfg, data_dir=args.data_dir, preprocess_for=preprocess_for, augment=augment,
                    class_names=class_names)
    say(summary(spec.net, batch=args.batch_size))
    say(f"{len(spec.train[1]):,} training / {len(spec.test[1]):,} test images; {jax.device_count()} device(s): "
        f"{jax.devices()[0].platform}; batch {args.batch_size}, {plural(args.epochs, 'epoch')}")
    results = run_training(spec, args.out, resume=args.resume, overwrite=args.overwrite,
                           rescale_schedule=args.rescale_schedule, on_progress=ProgressBar(enabled=main),
                           on_epoch=lambda r: say(epoch_line(r)))
    say(f"test accuracy {100 * results['test_accuracy']:.2f}% after {plural(args.epochs, 'epoch')}, "
        f"{results['seconds_per_epoch']:.1f}s per epoch ({results['train_images_per_second']:,.0f} img/s); "
        f"wrote {args.out}")
    return results
