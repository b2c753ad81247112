"""Command line:
    python -m jaxcnn summary MODEL [--input-shape H,W,C] [--batch N] [--json]
    python -m jaxcnn draw MODEL --out net.svg [--input-shape H,W,C]
    python -m jaxcnn train --solver solver.prototxt [--data-dir DIR] [--dataset NAME] [--out DIR]
                           [--weights W.caffemodel[,W2...] | --snapshot S.solverstate]
    python -m jaxcnn tune MODEL [--batch N [N ...]] [--inference] [--input-shape H,W,C] [--budget SECONDS]
    python -m jaxcnn export MODEL|RUN_DIR [--weights FILE] (--onnx OUT.onnx | --stablehlo OUT) [--batch N]
                     [--fold-batchnorm]
MODEL: a zoo model, a Caffe net (.prototxt) or a cuda-convnet layer definition (.cfg; give --input-shape).
"""
import argparse
import json
import os
import sys

from . import zoo
from .cli import USAGE, HelpFormatter, ProgressBar, entry, epoch_line, exit_code, fail, flag, message, plural
from .datasets import DataNotFound
from .errors import LayerError
from .fold import fold_batchnorm, folding
from .models import is_model, load_model
from .summary import summary
from .train.errors import RunMismatch


def _shape(text):
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"expected H,W,C as three positive ints, e.g. 32,32,1; got {text!r}")
    return shape


def _model_type(runs: bool = False):
    """An argparse type for MODEL: a zoo model, a .prototxt or a .cfg, and with `runs` a run's directory too."""
    what = "a Caffe .prototxt, a cuda-convnet .cfg file or a training run's directory" if runs else \
        "a Caffe .prototxt or a cuda-convnet .cfg file"

    def check(text):
        if is_model(text) or runs and os.path.isdir(text):
            return text
        raise argparse.ArgumentTypeError(f"expected a zoo model ({', '.join(sorted(zoo.MODELS))}), {what}; got "
                                         f"{text!r}")
    return check


# what a bad model file or shape raises: CaffeFormatError, ConvNetFormatError and LayerError are ValueErrors
FILE_ERRORS = (FileNotFoundError, ValueError)


def _loaded(args):
    """The net of args.model (and args.input_shape); a bad file fails with the file's error (it names the file)."""
    try:
        return load_model(args.model, args.input_shape)
    except FILE_ERRORS as e:
        fail(message(e))


def _summary(args):
    net = _loaded(args)
    try:
        result = summary(net, args.input_shape, batch=args.batch)
    except FILE_ERRORS as e:
        shape = args.input_shape or net.input_shape
        shape = f" with --input-shape {','.join(map(str, shape))}" if isinstance(shape, tuple) else ""
        fail(f"{args.model}{shape}: {message(e)}")
    print(json.dumps(result.to_dict(), indent=1) if args.json else result)


def _draw(args):
    from . import draw
    try:
        import graphviz
    except ImportError:
        fail("drawing needs the graphviz package: pip install 'jaxcnn[draw]'")
    net = _loaded(args)
    try:
        path = draw.render(net, args.out, args.input_shape)
    except graphviz.ExecutableNotFound:
        fail("Graphviz's dot program is not installed (Debian: apt-get install graphviz)")
    except FILE_ERRORS as e:
        fail(f"{args.model}: {message(e)}")
    except graphviz.CalledProcessError as e:
        fail(f"--out {args.out}: Graphviz failed: {e}", 1)
    print(f"wrote {path}")


def _train(args):
    from .hostmem import keep_freed_memory
    from .train import RunDir, caffe_run, run_training
    from .train.feed import examples
    weights = None if args.weights is None else args.weights.split(",")
    if weights is not None and not all(weights):
        fail(f"--weights {args.weights!r}: expected caffemodel paths separated by commas, with none empty")
    keep_freed_memory()  # before JAX's first computation (jaxcnn.hostmem)
    RunDir(args.out).check(resume=args.resume, overwrite=args.overwrite)  # and --out is touched only once every
    try:  # input is read
        spec = caffe_run.load(args.solver, dataset=args.dataset, data_dir=args.data_dir, epochs=args.epochs,
                              weights=weights, snapshot=args.snapshot)
    except FILE_ERRORS as e:  # each names its file (the solver, its net, the data) or flag; a bad file is a usage
        fail(message(e), exit_code(e) if isinstance(e, DataNotFound) else USAGE)  # error, missing data as elsewhere
    c = spec.config
    print(summary(spec.net, batch=c.batch_size))
    print(f"{c.dataset}: {examples(spec.train):,} training / {examples(spec.test):,} test images; batch "
          f"{c.batch_size}; {c.solver.optimizer} lr {c.solver.lr} ({c.solver.schedule}), max_iter "
          f"{spec.schedule_steps} -> {plural(c.epochs, 'epoch')}")
    try:
        results = run_training(spec, args.out, resume=args.resume, overwrite=args.overwrite,
                               on_progress=ProgressBar(), on_epoch=lambda r: print(epoch_line(r)))
    except RunMismatch as e:  # the manifest holds the solver's settings, which have no flags: an edited solver
        fail(message(e, name=lambda s: f"solver setting {s.removeprefix('solver.')}"  # is a different run
                     if s.startswith("solver.") else flag(s)))
    weights = os.path.join(args.out, results["caffemodel"]).removesuffix(".caffemodel")
    print(f"test accuracy {100 * results['test_accuracy']:.2f}% after {results['steps']} steps; wrote "
          f"{args.out}, {weights}.caffemodel and .solverstate")


def _tune(args):
    import jax

    from . import tuning
    net = _loaded(args)
    if jax.default_backend() != "cpu":
        print(f"JAX's default backend is {jax.default_backend()}: jaxcnn runs XLA's native ops there; nothing to tune")
        return
    mode = "inference" if args.inference else "training"
    if args.inference:
        net = folding(net).net
    for batch in args.batch:
        try:
            result = tuning.tune(net, batch, input_shape=args.input_shape, dtype=args.dtype,
                                 training=not args.inference, budget_s=args.budget)
        except FILE_ERRORS as e:
            fail(f"{args.model}: {message(e)}")
        print(f"\n{net.name}, batch {batch}, {mode}, {args.dtype} ({tuning.processor()}):\n{result.table()}")
    print(f"\ncache: {tuning.cache_file()}")
def _weighted(args, check):
    """The net of args.model with its weights: --weights, else a run directory's checkpoint, else its fillers'.
    check(net) runs before any weights are made or read."""
    from . import models
    from .train import CheckpointError, RunDirError
    try:
        found = models.load_run(args.model, args.input_shape) if os.path.isdir(args.model) else None
        net = found.net if found else load_model(args.model, args.input_shape)
        check(net)
        if args.weights:
            found = models.Weighted(net, *models.load_weights(net, args.weights, args.input_shape), args.weights)
        return found or models.random_weights(net, input_shape=args.input_shape)
    except (*FILE_ERRORS, RunDirError, CheckpointError) as e:
        fail(message(e))


def _export(args):
    if args.batch is not None and args.batch < 1:
        fail(f"--batch must be a positive int, got {args.batch}")
    flag, out = ("--onnx", args.onnx) if args.onnx else ("--stablehlo", args.stablehlo)
    if os.path.isdir(out) or not os.path.isdir(os.path.dirname(out) or "."):
        fail(f"{flag} {out}: expected a file in an existing directory")
    try:
        if args.onnx:
            from .export import onnx as target
            save, convertible = target.save_onnx, target.check_layers
        else:
            from .export import stablehlo as target
            save, convertible = target.save_stablehlo, lambda net: None  # any layer: it is JAX
    except ImportError as e:
        fail(str(e))

    def check(net):
        try:
            convertible(net)
        except LayerError as e:
            fail(f"{args.model}: {message(e)}")

    net, params, state, source = _weighted(args, check)
    try:
        if args.fold_batchnorm:
            net, params, state = fold_batchnorm(net, params, state)
        save(net, params, state, out, input_shape=args.input_shape, batch=args.batch)
    except FILE_ERRORS as e:
        fail(f"{args.model}: {message(e)}")
    except OSError as e:
        fail(f"{flag} {out}: {e}", 1)
    inputs = ", ".join(f"{blob} {shape}" for blob, shape in net.input_shapes(args.input_shape).items())
    print(f"wrote {out}: {net.name} ({inputs}; batch {args.batch or 'symbolic'}), weights {source}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m jaxcnn", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    defaults = HelpFormatter
    p = commands.add_parser("summary", help="per-layer shapes, parameters, memory and FLOPs of a model",
                            formatter_class=defaults)
    p.add_argument("model", type=_model_type(), help="zoo model, Caffe .prototxt or cuda-convnet .cfg")
    p.add_argument("--input-shape", type=_shape, help="per-example H,W,C (default: the model's training size)")
    p.add_argument("--batch", type=int, default=1, help="batch size for the training-step memory estimate")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    d = commands.add_parser("draw", help="draw a model's graph with Graphviz", formatter_class=defaults)
    d.add_argument("model", type=_model_type(), help="zoo model, Caffe .prototxt or cuda-convnet .cfg")
    d.add_argument("--out", required=True, help="picture to write: .svg, .png or .pdf")
    d.add_argument("--input-shape", type=_shape, help="per-example H,W,C (default: the model's)")
    t = commands.add_parser("train", help="train a Caffe train/test net with its solver.prototxt",
                            formatter_class=defaults)
    t.add_argument("--solver", required=True, help="Caffe solver file; its `net` is read beside it if not found")
    t.add_argument("--dataset", choices=["mnist", "fashion_mnist", "cifar10"],
                   help="the dataset (default: from the data layer's source)")
    t.add_argument("--data-dir", help="directory with the dataset's original files (see jaxcnn.datasets.load)")
    t.add_argument("--out", default="runs/caffe", help="run directory: checkpoints, metrics, final caffemodel")
    t.add_argument("--epochs", type=int, help="epochs to train (default: enough for the solver's max_iter)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its newest checkpoint")
    t.add_argument("--overwrite", action="store_true", help="remove an earlier run from --out first")
    start = t.add_mutually_exclusive_group()  # as Caffe's: weights to fine-tune or a snapshot to resume, not both
    start.add_argument("--weights", metavar="W.caffemodel[,...]", help="fine-tune: copy the blobs of the layers "
                       "these caffemodels name as the net does (later files win); the others start from their fillers")
    start.add_argument("--snapshot", metavar="S.solverstate", help="continue Caffe's solver from its .solverstate: "
                       "its iteration, history and learned_net")
    u = commands.add_parser("tune", help="measure how a model runs fastest on this CPU (the tuning cache that "
                            "training and inference read)", formatter_class=defaults)
    u.add_argument("model", type=_model_type(), help="zoo model, Caffe .prototxt or cuda-convnet .cfg")
    u.add_argument("--batch", type=int, nargs="+", help="batch sizes to tune for (default: 64 for training, 1 for "
                   "--inference)")
    u.add_argument("--inference", action="store_true", help="tune Net.apply(train=False) instead of training, "
                   "on the net with its BatchNorms folded (jaxcnn.fold_batchnorm), as inference runs it")
    u.add_argument("--input-shape", type=_shape, help="per-example H,W,C (default: the model's)")
    u.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32", help="compute dtype")
    u.add_argument("--budget", type=float, default=600.0, help="most seconds to spend measuring per batch size")
    e = commands.add_parser("export", help="write a model and its weights as ONNX or StableHLO",
                            formatter_class=defaults)
    e.add_argument("model", type=_model_type(runs=True),
                   help="zoo model, Caffe .prototxt, cuda-convnet .cfg, or a training run's directory")
    e.add_argument("--weights", help="a .caffemodel, or a training run's directory (its newest checkpoint) "
                                     "(default: the run's checkpoint; for a model, the fillers' random weights)")
    out = e.add_mutually_exclusive_group(required=True)
    out.add_argument("--onnx", metavar="OUT.onnx", help="write an ONNX model: NCHW input named as the input blob")
    out.add_argument("--stablehlo", metavar="OUT", help="write a serialized jax.export artefact: NHWC, as Net.apply")
    e.add_argument("--batch", type=int, help="fixed batch size (default: symbolic)")
    e.add_argument("--input-shape", type=_shape, help="per-example H,W,C (default: the model's)")
    e.add_argument("--fold-batchnorm", action="store_true", help="fold each BatchNorm (and the Scale after it) "
                   "into the convolution or inner product before it: an inference-only net, fewer operators")
    args = parser.parse_args(argv)
    if args.command == "tune":
        args.batch = args.batch or [1 if args.inference else 64]
        if min(args.batch) < 1 or args.budget <= 0:
            parser.error(f"--batch must be positive ints and --budget positive, got {args.batch} and {args.budget}")
        return _tune(args)
    if args.command == "export":
        return _export(args)
    if args.command == "summary":
        if args.batch < 1:
            parser.error(f"--batch must be a positive int, got {args.batch}")
        return _summary(args)
    if args.command == "draw":
        return _draw(args)
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"--epochs must be a positive int, got {args.epochs}")
    return _train(args)


if __name__ == "__main__":
    sys.exit(entry(main))
