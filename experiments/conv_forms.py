"""The CPU forms of grouped and depthwise convolution side by side: run time and compile time of each form of
jaxcnn.ops.conv_cpu, with XLA:CPU's default YNNPACK fusions and without them, in one process.

    python -m experiments.conv_forms [--out DIR] [--rounds 7] [--cases mobilenet_dw,alexnet_conv2]
                                     [--modes forward,train] [--skip-before]

Cases (batch 8): MobileNet v1's depthwise 3x3 layers as in its Caffe port (pad 1): 112x112x32 stride 1,
56x56x128 stride 1, 28x28x256 stride 2, 14x14x512 stride 1, and their sum ('mobilenet_dw stack'); AlexNet's conv2
(Caffe's bvlc_alexnet: 27x27x96 -> 256, 5x5, pad 2, groups 2); ResNeXt-50 (32x4d)'s grouped 3x3 convolutions
(pad 1, stride 1, 32 groups): 56x56x128, 28x28x256, 14x14x512, 7x7x1024, 4 to 32 channels per group.
Modes: 'forward' (inference), 'input' and 'weight' (one gradient alone, as jaxcnn.tuning times them), 'train'
(forward and both gradients, every direction in the same form).
Forms: ops.conv_cpu.candidates of each direction, 'fixed' (the fixed rules of ops.conv_cpu, what conv2d uses
without tuning) and, unless --skip-before, 'per_group' for every case: one convolution per group, what the 'cpu'
lowering did before grouped forms existed (for depthwise layers hundreds of them).
YNNPACK: each form compiled twice, with XLA's default library fusions (YNNPACK for dots, convolutions and
reductions) and with the jit compiler option xla_cpu_experimental_ynn_fusion_type set to '' (none), left out where
the installed jaxlib does not accept it (jaxcnn.tuning.ynn_choices).

Compile time: lowering and compiling each function once. Run time: after a warm-up, all functions are timed in
interleaved rounds (each sample the mean of as many calls as fill 20 ms); the table gives medians.
DIR/conv_forms.json holds every sample, the CPU model, versions and the load average.
"""
import argparse
import os
import platform
import statistics
import sys
import time

import jax

from experiments import report
from jaxcnn import ops, tuning
from jaxcnn.cli import HelpFormatter, entry
from jaxcnn.ops import conv_cpu

SAMPLE_SECONDS = 0.02
BATCH = 8


def mobilenet_dw(channels, size, stride):
    return (BATCH, size, size, channels), (3, 3, 1, channels), (stride, stride), ((1, 1), (1, 1))


CASES = {  # name: [(layer, x shape, w shape, stride, pads)]
    "mobilenet_dw": [("112x112x32 s1", *mobilenet_dw(32, 112, 1)), ("56x56x128 s1", *mobilenet_dw(128, 56, 1)),
                     ("28x28x256 s2", *mobilenet_dw(256, 28, 2)), ("14x14x512 s1", *mobilenet_dw(512, 14, 1))],
    "alexnet_conv2": [("27x27x96->256 g2", (BATCH, 27, 27, 96), (5, 5, 48, 256), (1, 1), ((2, 2), (2, 2)))],
    "resnext": [(f"{size}x{size}x{c} g32", (BATCH, size, size, c), (3, 3, c // 32, c), (1, 1), ((1, 1), (1, 1)))
                for size, c in ((56, 128), (28, 256), (14, 512), (7, 1024))],
}
MODES = ("forward", "input", "weight", "train")


def ynn_settings() -> dict:
    """{label: compiler options}: XLA's defaults, and YNNPACK off where the installed jaxlib accepts it."""
    choices = tuning.ynn_choices()
    return {"ynn default": choices["default"], **({"ynn off": choices["off"]} if "off" in choices else {})}


def computation(mode, forms, stride, pads):
    """f(x, w, g) for a mode, the convolution computed by ops.conv_cpu.conv with `forms` (None: the fixed rules)."""
    def conv(x, w):
        return conv_cpu.conv(x, w, stride, pads, (1, 1), forms)

    if mode == "forward":
        return lambda x, w, g: conv(x, w)
    if mode == "input":
        return lambda x, w, g: jax.vjp(lambda x: conv(x, w), x)[1](g)[0]
    if mode == "weight":
        return lambda x, w, g: jax.vjp(lambda w: conv(x, w), w)[1](g)[0]
    return lambda x, w, g: (lambda y, pullback: (y, *pullback(g)))(*jax.vjp(conv, x, w))


def forms_of(mode, x, w, stride, pads, before: bool) -> dict:
    """{form label: forms for ops.conv_cpu.conv} measured in `mode`: each candidate (in 'train' those of all
    three directions), 'fixed', and 'per_group' when `before`."""
    directions = conv_cpu.DIRECTIONS if mode == "train" else (mode,)
    names = [n for n in conv_cpu.candidates(directions[0], x, w, stride, pads, (1, 1))
             if all(n in conv_cpu.candidates(d, x, w, stride, pads, (1, 1)) for d in directions)]
    if before and "per_group" not in names and conv_cpu.groups_of(x, w) > 1:
        names.append("per_group")
    out = {"fixed": None}
    for n in names:
        out[n] = tuple(n if d in directions else conv_cpu.form(d, None, x, w, stride, pads, (1, 1)).__name__
                       for d in conv_cpu.DIRECTIONS)
    return out


def build(args) -> list[dict]:
    """Every function to time, compiled, with its compile time."""
    settings, runs = ynn_settings(), []
    for case in args.cases:
        for layer, x_shape, w_shape, stride, pads in CASES[case]:
            kx, kw, kg = jax.random.split(jax.random.key(0), 3)
            x, w = jax.random.normal(kx, x_shape), jax.random.normal(kw, w_shape)
            g = jax.random.normal(kg, jax.eval_shape(lambda x, w: conv_cpu.native(x, w, stride, pads, (1, 1)),
                                                     x, w).shape)
            for mode in args.modes:
                for label, forms in forms_of(mode, x, w, stride, pads, not args.skip_before).items():
                    for ynn, options in settings.items():
                        fn = jax.jit(computation(mode, forms, stride, pads),
                                     compiler_options={**ops.compiler_options("cpu"), **options})
                        start = time.perf_counter()
                        compiled = fn.lower(x, w, g).compile()
                        compile_s = time.perf_counter() - start
                        jax.block_until_ready(compiled(x, w, g))
                        runs.append({"case": case, "layer": layer, "mode": mode, "form": label, "ynn": ynn,
                                     "forms": forms, "compile_s": compile_s, "samples_ms": [],
                                     "fn": compiled, "args": (x, w, g)})
                        print(f"compiled {case} {layer} {mode} {label} ({ynn}) in {compile_s:.2f} s", flush=True)
    return runs


def sample(fn, args) -> float:
    """Milliseconds per call: the mean over as many calls as fill SAMPLE_SECONDS (at least one)."""
    calls, start = 0, time.perf_counter()
    while True:
        jax.block_until_ready(fn(*args))
        calls += 1
        took = time.perf_counter() - start
        if took >= SAMPLE_SECONDS:
            return 1e3 * took / calls


def table(runs) -> str:
    """Median run time and compile time of each form, per case, layer and mode, one column pair per YNN setting;
    for several layers of a case also their sum over the forms every layer has."""
    settings = list(dict.fromkeys(r["ynn"] for r in runs))
    rows, keys = {}, []
    for r in runs:
        key = (r["case"], r["layer"], r["mode"], r["form"])
        if key not in rows:
            keys.append(key)
        rows.setdefault(key, {})[r["ynn"]] = (r["median_ms"], r["compile_s"])
    for case in dict.fromkeys(k[0] for k in keys):
        layers = list(dict.fromkeys(k[1] for k in keys if k[0] == case))
        if len(layers) < 2:
            continue
        for mode, form in dict.fromkeys((k[2], k[3]) for k in keys if k[0] == case):
            parts = [rows.get((case, layer, mode, form)) for layer in layers]
            if all(parts):
                keys.append((case, "stack", mode, form))
                rows[keys[-1]] = {s: tuple(sum(p[s][i] for p in parts) for i in range(2)) for s in settings}
    head = f"{'case':14} {'layer':18} {'mode':8} {'form':15}" + "".join(
        f" {s + ' ms':>14} {'compile s':>10}" for s in settings)
    lines = [head, "-" * len(head)]
    for key in keys:
        cells = "".join(f" {rows[key][s][0]:14.2f} {rows[key][s][1]:10.2f}" if s in rows[key] else " " * 26
                        for s in settings)
        lines.append(f"{key[0]:14} {key[1]:18} {key[2]:8} {key[3]:15}{cells}")
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m experiments.conv_forms", description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("--out", help="directory for conv_forms.json (nothing is written without it)")
    p.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds")
    p.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}")
    p.add_argument("--modes", default="forward,train", help=f"comma-separated, of {', '.join(MODES)}")
    p.add_argument("--skip-before", action="store_true",
                   help="leave out the per-group form where it is not a candidate (hundreds of convolutions to "
                        "compile for depthwise layers)")
    args = p.parse_args(argv)
    args.cases, args.modes = args.cases.split(","), args.modes.split(",")
    for flag, given, known in (("--cases", args.cases, CASES), ("--modes", args.modes, MODES)):
        if unknown := [v for v in given if v not in known]:
            p.error(f"{flag}: unknown {', '.join(map(repr, unknown))}; expected some of {', '.join(known)}")
    if args.rounds < 1:
        p.error(f"--rounds must be at least 1, got {args.rounds}")
    return args


def run(args):
    if jax.default_backend() != "cpu":
        raise SystemExit("experiments.conv_forms measures the CPU forms: JAX's default backend must be the CPU")
    load = [os.getloadavg()[0]]
    runs = build(args)
    for i in range(args.rounds):
        for r in runs:
            r["samples_ms"].append(sample(r["fn"], r["args"]))
        load.append(os.getloadavg()[0])
        print(f"round {i + 1}/{args.rounds}", flush=True)
    for r in runs:
        r["median_ms"] = statistics.median(r["samples_ms"])
    print(report.machine_line(load))
    print(table(runs))
    if args.out:
        report.write(args.out, "conv_forms.json", load, python=platform.python_version(), batch=BATCH,
                     runs=[{k: v for k, v in r.items() if k not in ("fn", "args")} for r in runs])


def main(argv=None):
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(entry(main))
