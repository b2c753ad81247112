"""Images per second of jaxcnn.predictor on the bench's Caffe inference nets with and without BatchNorm folding
(jaxcnn.fold), timed in interleaved rounds in one process.

    python -m experiments.fold_speed [--cases mobilenet_v1_infer_b1 ...] [--rounds 7] [--no-tune]

Variants, each on the bench's net and random weights (experiments.bench.CaffeFiles): `unfolded`, jaxcnn.predictor of
the net as written; `in_jit`, the folded net compiled with the folding of the weights (jaxcnn.fold.folding) inside,
on every call; `prefolded`, predictor of the folded net on weights folded once (jaxcnn.fold_batchnorm), as the bench
runs jaxcnn. Each compiles with the lowering and XLA options jaxcnn.tuning has for the net it compiles, tuned first
(what the cache lacks) unless --no-tune, as the bench does. The outputs are checked against the unfolded ones first.
Machines are shared: compare the ratios of one run.
"""
import argparse
import statistics

import jax
import numpy as np

from jaxcnn import predictor, tuning
from jaxcnn.cli import HelpFormatter, entry
from jaxcnn.fold import folding

from . import bench

CASES = ("mobilenet_v1_infer_b1", "mobilenet_v1_infer_b8", "resnet50_infer_b8")


def runners(files, case, tune, seed=0):
    """{variant: run} for a case `<net>_infer_b<batch>`, each run one call, and the calls per timed run."""
    name, batch = case.rsplit("_infer_b", 1)
    batch = int(batch)
    net, params, state, *_ = files(name)
    x = np.random.default_rng(seed + 1).standard_normal((batch, *net.input_shape)).astype(np.float32)
    fold = folding(net)
    args, folded_args = jax.device_put(((params, state, x), (*fold(params, state), x)))
    made = {}
    for variant, compiled, variant_args in (("unfolded", net, args), ("in_jit", fold.net, args),
                                            ("prefolded", fold.net, folded_args)):
        tuned = (tuning.tune if tune else tuning.lookup)(compiled, batch, training=False)
        if variant == "in_jit":
            fn = jax.jit(lambda p, s, x, lowering=tuned.lowering: fold.net.apply(*fold(p, s), x, lowering=lowering)[0],
                         compiler_options=tuned.compiler_options)
        else:
            fn = predictor(compiled, batch, lowering=tuned.lowering, compiler_options=tuned.compiler_options)
        made[variant] = (fn.lower(*variant_args).compile(), variant_args)
    want = np.asarray(made["unfolded"][0](*args))
    for variant, (exe, a) in made.items():
        diff = np.abs(np.asarray(exe(*a)) - want).max() / np.abs(want).max()
        print(f"{case}: {variant} max relative difference to unfolded {diff:.1e}")
    return {variant: (lambda exe=exe, a=a: exe(*a)) for variant, (exe, a) in made.items()}, batch


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m experiments.fold_speed", description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("--cases", nargs="+", default=list(CASES), help="bench inference cases, <net>_infer_b<batch>")
    p.add_argument("--rounds", type=int, default=7, help="interleaved timed rounds")
    p.add_argument("--calls", type=int, default=10, help="calls per timed run")
    p.add_argument("--no-tune", action="store_true", help="what the tuning cache holds, measuring nothing")
    args = p.parse_args(argv)
    nets = {f"{n}_infer_b" for n in bench.INFERENCE_NETS}
    bad = [c for c in args.cases if c.rsplit("_infer_b", 1)[0] + "_infer_b" not in nets
           or not c.rsplit("_infer_b", 1)[1].isdigit()]
    if bad:
        p.error(f"--cases: expected <net>_infer_b<batch> with a net of {sorted(bench.INFERENCE_NETS)}, got {bad}")
    files, target = bench.CaffeFiles(), bench.Target("cpu", tune=False)
    print(f"{tuning.processor()}; images/s, medians of {args.rounds} interleaved rounds")
    rows = []
    for case in args.cases:
        made, batch = runners(files, case, not args.no_tune)
        calls = {v: (lambda run=run: [run() for _ in range(args.calls)][-1]) for v, run in made.items()}
        rates, _ = bench.timed(calls, batch * args.calls, args.rounds, target)
        med = {v: statistics.median(r) for v, r in rates.items()}
        ratios = {v: statistics.median(a / b for a, b in zip(rates[v], rates["unfolded"])) for v in rates}
        rows.append(f"{case:24} " + " ".join(f"{med[v]:10.1f}" for v in med) + "  "
                    + " ".join(f"{ratios[v]:12.2f}" for v in ("in_jit", "prefolded")))
        print(f"{'case':24} " + " ".join(f"{v:>10}" for v in med) + "  " + " ".join(
            f"{v + '/un':>12}" for v in ("in_jit", "prefolded")), *rows, sep="\n", flush=True)


if __name__ == "__main__":
    entry(main)
