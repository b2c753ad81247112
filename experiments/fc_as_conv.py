"""Slide a net over a larger image in one pass (the cs231n notes' FC-as-convolution): convert its FC head, run the large
input once, and compare with evaluating every training-size crop through the original net.

    python -m experiments.fc_as_conv --size 384 --out runs/fc_as_conv          # VGG16: a 6x6x1000 score map
    python -m experiments.fc_as_conv --model lenet_caffe --checkpoint runs/mnist --size 176 --out runs/slide
    python -m experiments.fc_as_conv --prototxt experiments/caffe/lenet_bn_deploy.prototxt \\
        --caffemodel runs/caffe/lenet_bn_iter_10125.caffemodel --size 176   # after python -m jaxcnn train

Weights: a zoo net's are random (seeded) unless --checkpoint gives a run of `python -m experiments.mnist`; a
--prototxt net's are its --caffemodel, else untrained: the prototxt's fillers, zeros where it has none (Caffe's
default filler is constant 0; deploy files seldom carry fillers). A warning says when some layer's weights are
all zero so that the output cannot depend on the input. The input is a seeded standard-normal image (no ImageNet
here), or for MNIST-sized nets a blank canvas holding real test digits, drawn with the class probabilities at
each position into heatmap.png (a softmax of the scores, or the net's own output where it ends in Softmax).
Timings are medians over --repeats runs after a warm-up. Peak memory is measured (Linux): the rise of the
process's resident high-water mark during the first run of each compiled path, over what is resident before it
(weights, input, code). Beside it, XLA's buffer plan: the most bytes of the compiled program's own buffers
(weights and input included) that its buffer assignment keeps live at once; a plan, not a measurement: on the
CPU the kernels allocate scratch memory outside it.
"""
import argparse
import ctypes
import json
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn import LayerError, Softmax, caffe, datasets, ops, plots, zoo
from jaxcnn.cli import HelpFormatter, entry, message, plural
from jaxcnn.convert import crops, fc_to_conv, sliding_geometry, split
from jaxcnn.summary import summary
from jaxcnn.train import rundir

MNIST_SHAPE = (28, 28, 1)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m experiments.fc_as_conv", description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("--size", type=int, default=384, help="side of the square input, in pixels")
    p.add_argument("--model", choices=sorted(zoo.MODELS), help="zoo net (default: the checkpoint's, else vgg16)")
    p.add_argument("--checkpoint", help="a run directory of experiments.mnist (or its checkpoints/ directory) "
                   "whose trained weights to use (default: random weights)")
    p.add_argument("--prototxt", help="a Caffe deploy net (.prototxt, with its input size) instead of a zoo model")
    p.add_argument("--caffemodel", help="its Caffe weights, a .caffemodel (default: untrained, the prototxt's "
                   "fillers drawn with --seed, zeros where it has none)")
    p.add_argument("--out", help="directory for results.json (and heatmap.png); nothing is written without it")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights, image and canvas")
    p.add_argument("--repeats", type=int, default=5, help="timed runs of each path after a warm-up")
    p.add_argument("--digits", type=int, default=8, help="MNIST test digits on the canvas")
    p.add_argument("--data-dir", help="directory with the MNIST IDX files (see jaxcnn.datasets.load)")
    args = p.parse_args(argv)
    for name in ("size", "repeats"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.prototxt and (args.model or args.checkpoint):
        p.error("--prototxt replaces --model and --checkpoint: give one of them")
    if args.caffemodel and not args.prototxt:
        p.error("--caffemodel needs --prototxt (the net it holds the weights of)")
    return p, args


def load_net(args, parser):
    """The net, checked against --size before any weights are made or read -> (net, params, state, description
    of the weights)."""
    if args.prototxt:
        return load_caffe_net(args, parser)
    manifest = None
    if args.checkpoint is not None:
        try:
            manifest = rundir.RunDir(args.checkpoint, primary=False).read_manifest()
        except rundir.RunDirError as e:
            parser.error(f"--checkpoint {args.checkpoint}: {e}")
        if manifest is None or "model" not in manifest:
            parser.error(f"--checkpoint {args.checkpoint}: not the directory of a training run (no manifest.json "
                         "naming its model)")
        if args.model and manifest["model"] != args.model:
            parser.error(f"--checkpoint {args.checkpoint} holds a {manifest['model']!r} net, not --model "
                         f"{args.model!r}")
    net = zoo.get(manifest["model"] if manifest else args.model or "vgg16")
    check_size(net, args, parser)
    if manifest is None:
        _, params, state = net.init(jax.random.key(args.seed))
        return net, params, state, f"random (seed {args.seed})"
    run = rundir.load(args.checkpoint)
    return net, run.params, run.state, f"checkpoint {args.checkpoint} (step {run.step})"


def check_size(net, args, parser):
    """--size must be the net's training size plus a multiple of its stride."""
    try:
        sliding_geometry(net).positions((args.size, args.size))
    except (ValueError, LayerError) as e:
        parser.error(f"--size {args.size}: {e}")


def load_caffe_net(args, parser):
    """--prototxt (and --caffemodel) -> (net, params, state, description of the weights)."""
    try:
        net = caffe.load_prototxt(args.prototxt)
    except (caffe.CaffeFormatError, LayerError, FileNotFoundError) as e:
        parser.error(f"--prototxt {args.prototxt}: {e}")
    if net.input_shape is None or isinstance(net.input_shape, dict):
        parser.error(f"--prototxt {args.prototxt}: needs a net with one input of a given size (a deploy net)")
    check_size(net, args, parser)
    if not args.caffemodel:
        _, params, state = net.init(jax.random.key(args.seed))
        return net, params, state, f"untrained: the prototxt's fillers (seed {args.seed}), zeros where it has none"
    try:
        params, state = caffe.load_caffemodel(net, args.caffemodel)
    except (caffe.CaffeFormatError, FileNotFoundError) as e:
        parser.error(f"--caffemodel {args.caffemodel}: {e}")
    return net, params, state, f"caffemodel {args.caffemodel}"


def mnist_canvas(size, count, data_dir, rng, step):
    """A blank size x size canvas with `count` MNIST test digits at random non-overlapping spots, their corners
    on multiples of `step` (the stride, so a position's crop is exactly each digit's 28x28 box).

    -> canvas (size, size, 1) uint8, [{'label', 'row', 'col'}] with each digit's top-left corner.
    """
    images, labels = datasets.load("mnist", "test", data_dir=data_dir)
    cell = MNIST_SHAPE[0] + 16  # one digit per cell, at least 16 blank pixels apart
    per_side = size // cell
    if not 0 < count <= per_side**2:
        raise ValueError(f"--digits {count}: must be at least 1, and a {size}x{size} canvas has room for "
                         f"{per_side**2} (one per {cell}x{cell} cell)")
    canvas, placed = np.zeros((size, size, 1), np.uint8), []
    for c, k in zip(rng.choice(per_side**2, count, replace=False), rng.choice(len(images), count, replace=False)):
        row, col = ((v * cell + int(rng.integers(0, cell - MNIST_SHAPE[0] + 1))) // s * s
                    for v, s in zip(divmod(int(c), per_side), step))
        canvas[row:row + MNIST_SHAPE[0], col:col + MNIST_SHAPE[1]] = images[k]
        placed.append({"label": int(labels[k]), "row": row, "col": col})
    return canvas, placed


def constant_output(net, params):
    """The layers whose weights are all zero (`w` of Conv, Dense, Local; `gamma` of Scale), if they cut every
    path from the net's input to its output, so that the output cannot depend on the input; else []."""
    zeroed = [name for name, p in params.items()
              if any(k in p and not jnp.any(p[k]) for k in ("w", "gamma"))]
    live = set(net.inputs)  # blobs that depend on the input
    for node in net.nodes:
        if node.layer.name not in zeroed and live.intersection(node.inputs):
            live.update(node.outputs)
        else:
            live.difference_update(node.outputs)
    return [] if live.intersection(net.outputs) else zeroed


def compiled(fn, *args):
    """fn jit-compiled for args -> (callable, XLA's buffer plan: the most bytes its buffer assignment keeps live
    at once)."""
    exe = jax.jit(fn, compiler_options=ops.compiler_options()).lower(*args).compile()
    return exe, exe.memory_analysis().peak_memory_in_bytes


def _proc_status(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field))


def rss_peak(exe, args):
    """Run exe(*args) once -> (rise of the resident high-water mark during the run, resident bytes before it),
    or (None, None) where Linux's /proc/self/clear_refs is not available. Freed heap is returned first."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the high-water mark VmHWM to the current RSS
    except OSError:
        return None, None
    before = _proc_status("VmRSS:")
    jax.block_until_ready(exe(*args))
    return _proc_status("VmHWM:") - before, before


def timed(exe, args, repeats):
    """-> (output, the seconds of `repeats` runs after one warm-up run)."""
    out = jax.block_until_ready(exe(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(exe(*args))
        times.append(time.perf_counter() - start)
    return out, times


def rel_max_abs_diff(a, b):
    """max |a - b| / max |b|."""
    return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))


def make_input(net, args, geometry):
    """-> (x (1, size, size, C) float32, its description, the digits placed on an MNIST canvas or None, canvas)."""
    rng = np.random.default_rng(args.seed)
    if net.input_shape != MNIST_SHAPE:
        x = rng.standard_normal((1, args.size, args.size, net.input_shape[-1]))
        return jnp.asarray(x, jnp.float32), f"standard-normal image (seed {args.seed})", None, None
    canvas, placed = mnist_canvas(args.size, args.digits, args.data_dir, rng, geometry.stride)
    x = jnp.asarray(canvas[None] * datasets.CAFFE_PIXEL_SCALE, jnp.float32)
    return x, f"MNIST canvas, {plural(len(placed), 'test digit')}", placed, canvas


def compare(net, params, state, x, repeats):
    """Convert `net`, run x in one pass and crop by crop -> (one-pass scores (P, Q, classes), results dict)."""
    geometry = sliding_geometry(net)
    positions = geometry.positions(x.shape[1:3])
    conv_net, conv_params = fc_to_conv(net, params)

    def one_pass(p, s, x):
        return conv_net.apply(p, s, x)[0][0]

    def crop_by_crop(p, s, x):
        batch = crops(x, geometry.window, geometry.stride).reshape(-1, *net.input_shape)
        return net.apply(p, s, batch)[0].reshape(*positions, -1)

    def in_context(p, s, x):  # the original head on every window of the original trunk's map of x
        trunk, head = split(net)
        windows = crops(trunk.apply(p, s, x)[0], head.input_shape[:2], (1, 1)).reshape(-1, *head.input_shape)
        return head.apply(p, s, windows)[0].reshape(*positions, -1)

    paths = {"one_pass": (one_pass, conv_params), "crops": (crop_by_crop, params)}
    exes = {k: compiled(fn, p, state, x) for k, (fn, p) in paths.items()}
    r, scores = {}, {}
    for k, (exe, xla_plan) in exes.items():  # memory first: each path's first run after compiling
        rise, resident = rss_peak(exe, (paths[k][1], state, x))
        r |= {f"{k}_peak_rss_rise_bytes": rise, f"{k}_resident_before_bytes": resident,
              f"{k}_xla_buffer_plan_bytes": xla_plan}
    for k, (exe, _) in exes.items():
        scores[k], r[f"{k}_seconds_all"] = timed(exe, (paths[k][1], state, x), repeats)
        r[f"{k}_seconds"] = statistics.median(r[f"{k}_seconds_all"])
    n = positions[0] * positions[1]
    r |= {
        "training_size": list(net.input_shape), "stride": list(geometry.stride),
        "score_map_shape": list(scores["one_pass"].shape), "positions": n,
        "rel_max_abs_diff": rel_max_abs_diff(scores["one_pass"], scores["crops"]),
        "rel_max_abs_diff_in_context": rel_max_abs_diff(scores["one_pass"], jax.jit(in_context)(params, state, x)),
        "padded_layers": list(geometry.padded),
        "speedup": r["crops_seconds"] / r["one_pass_seconds"],
        "speedup_of_fastest_runs": min(r["crops_seconds_all"]) / min(r["one_pass_seconds_all"]),
        "one_pass_flops": summary(conv_net, x.shape[1:]).flops, "crops_flops": n * summary(net).flops,
        "memory_method": "peak_rss_rise: rise of VmHWM over VmRSS during the first run of each compiled path "
                         "(after malloc_trim and clear_refs); xla_buffer_plan: compiled memory_analysis() "
                         "peak_memory_in_bytes, the most bytes of the program's buffers live at once in XLA's "
                         "buffer assignment, weights and input included, kernels' scratch left out",
        "timing": f"median of {plural(repeats, 'run')} after a warm-up, {jax.devices()[0].platform}",
        "mean_class_scores": [float(v) for v in scores["one_pass"].mean(axis=(0, 1))],
    }
    r["flop_ratio"] = r["crops_flops"] / r["one_pass_flops"]
    return scores["one_pass"], r


def run(args, parser):
    """Load or build the net, make the input, compare the two paths -> the results dict (printed, and written
    to --out)."""
    net, params, state, weights = load_net(args, parser)
    zeroed = constant_output(net, params)
    if zeroed:
        print(f"warning: the weights of {', '.join(zeroed)} are all zero, so the net's output cannot depend on its "
              "input: every position gets the same scores", file=sys.stderr)
    geometry = sliding_geometry(net)
    try:
        x, source, placed, canvas = make_input(net, args, geometry)
    except FileNotFoundError as e:  # jaxcnn.datasets.DataNotFound: names --data-dir where it was given
        parser.error(message(e))
    except ValueError as e:  # --digits that do not fit the canvas
        parser.error(str(e))
    scores, results = compare(net, params, state, x, args.repeats)
    ends_in_softmax = isinstance(net.layers[-1], Softmax)  # its scores are probabilities already
    results = {"model": net.name, "weights": weights, "zero_weight_layers": zeroed, "input": source,
               "size": args.size, "scores_are_probabilities": ends_in_softmax} | results
    if placed is not None:
        probs = scores if ends_in_softmax else jax.nn.softmax(scores)
        for d in placed:  # the position whose crop is exactly this digit's 28x28 box
            p = probs[d["row"] // geometry.stride[0], d["col"] // geometry.stride[1]]
            d |= {"predicted": int(jnp.argmax(p)), "probability": float(jnp.max(p))}
        results["digits"] = placed
    report(results)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        if placed is not None:
            results["heatmap"] = str(out / "heatmap.png")
            plots.heatmap(canvas, np.asarray(probs), geometry.window, geometry.stride, placed, out / "heatmap.png")
            print(f"heatmap: {results['heatmap']}")
        rundir.write_atomic(out / "results.json", json.dumps(results, indent=1), "results")
        print(f"wrote {out / 'results.json'}")
    return results


def _mib(n):
    return "n/a" if n is None else f"{n / 2**20:.1f} MiB"


def report(r):
    print(f"{r['model']}: trained at {r['training_size']}, weights {r['weights']}; input {r['size']}x{r['size']} "
          f"({r['input']})")
    print(f"score map {r['score_map_shape']}: {r['positions']} positions at stride {r['stride']}")
    for path, label in (("one_pass", "one pass"), ("crops", f"{r['positions']} crops")):
        print(f"{label:>12}: {r[path + '_seconds']:8.4f} s  {r[path + '_flops'] / 1e9:8.2f} GFLOP  peak memory "
              f"+{_mib(r[path + '_peak_rss_rise_bytes'])} over {_mib(r[path + '_resident_before_bytes'])} resident "
              f"(XLA's buffer plan {_mib(r[path + '_xla_buffer_plan_bytes'])})")
    print(f"speedup {r['speedup']:.2f}x ({r['speedup_of_fastest_runs']:.2f}x between the fastest runs; FLOP ratio "
          f"{r['flop_ratio']:.2f}x); {r['timing']}")
    print(f"rel max abs diff, one pass vs isolated crops: {r['rel_max_abs_diff']:.3g}")
    if r["padded_layers"]:
        print(f"  (the trunk pads in {', '.join(r['padded_layers'])}: a position sees the image around its crop "
              "where the isolated crop sees zero padding)")
    print(f"rel max abs diff, one pass vs the head on the trunk's windows: {r['rel_max_abs_diff_in_context']:.3g}")
    if "digits" in r:
        right = sum(d["predicted"] == d["label"] for d in r["digits"])
        print(f"digits recognised at the position of their own 28x28 box: {right} of {len(r['digits'])} "
              f"(labels {[d['label'] for d in r['digits']]}, predicted {[d['predicted'] for d in r['digits']]})")
    top = np.argsort(r["mean_class_scores"])[::-1][:5]
    what = "probabilities" if r["scores_are_probabilities"] else "scores"
    print(f"class {what} averaged over positions, top 5: "
          + ", ".join(f"{k}: {r['mean_class_scores'][k]:.4g}" for k in top))


def main(argv=None):
    parser, args = parse_args(argv)
    return run(args, parser)


if __name__ == "__main__":
    sys.exit(entry(main))
