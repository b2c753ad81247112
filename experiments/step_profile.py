"""Where a training step's time goes on the device: experiments.mnist's recipe under a profiler, kernel by kernel.

    python -m experiments.step_profile [--variants NAME ...] [--steps N] [--rounds R] [--out DIR]

For each variant (the recipe, or the recipe with one thing changed) a Trainer runs chunks of N steps as one
lax.scan on random MNIST-sized images held on the device: first timed (R chunks, the median wall time per step),
then one chunk under jax.profiler. The device's kernels in that trace give, per step: how many kernels ran, their
summed time, the time the device was busy (the union of the kernels' intervals) and so the idle time, and the
kernels that took longest. Prints a table per variant; writes DIR/step_profile.json and DIR/trace/<variant>/ (the
profiler's files, perfetto_trace.json.gz for ui.perfetto.dev). On a CPU the trace has no device kernels: only the
wall time is reported.
"""
import argparse
import gzip
import json
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn import ops, zoo
from jaxcnn.cli import HelpFormatter, entry
from jaxcnn.train import SolverConfig, Trainer, optimizer
from jaxcnn.train import mnist as mnist_recipe

from . import mnist

VARIANTS = {  # name -> changes to the recipe: Trainer arguments, the model, the batch
    "recipe": {},
    "no augmentation": {"augment": None},
    "bfloat16": {"compute_dtype": jnp.bfloat16},
    "lowering cpu": {"lowering": "cpu", "autotune": False},
    "lenet5 (no BatchNorm)": {"model": "lenet5"},
    "batch 256": {"batch_size": 256},
}


def trainer_for(changes):
    recipe = mnist.arguments([])
    changes = dict(changes)
    net = zoo.get(changes.pop("model", recipe.model))
    batch = changes.pop("batch_size", recipe.batch_size)
    _, params, _ = net.init(jax.random.key(0))
    solver = SolverConfig(optimizer=recipe.optimizer, lr=recipe.lr, schedule=recipe.schedule,
                          momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    settings = {"augment": mnist_recipe.AUGMENTATIONS[recipe.augment], **changes}
    return Trainer(net, optimizer(solver, 10_000, *net.multipliers(params)), batch_size=batch,
                   preprocess=mnist_recipe.caffe_scale(None),
                   compiler_options=ops.compiler_options(jax.default_backend()), **settings)


def device_kernels(trace_dir):
    """The device kernels of the newest perfetto trace under trace_dir -> (kernels [(name, start us, dur us)],
    the device's thread names)."""
    path = max(Path(trace_dir).rglob("perfetto_trace.json.gz"), key=lambda p: p.stat().st_mtime)
    events = json.loads(gzip.decompress(path.read_bytes()))
    events = events["traceEvents"] if isinstance(events, dict) else events
    meta = [e for e in events if e.get("ph") == "M"]
    devices = {e["pid"] for e in meta if e.get("name") == "process_name"
               and any(k in e["args"].get("name", "") for k in ("/device:GPU", "/device:TPU"))}
    threads = {(e["pid"], e["tid"]): e["args"].get("name", "") for e in meta
               if e.get("name") == "thread_name" and e["pid"] in devices}
    streams = {k for k, name in threads.items() if name.lower().startswith("stream")} or set(threads)
    kernels = [(e["name"], float(e["ts"]), float(e.get("dur", 0))) for e in events
               if e.get("ph") == "X" and (e["pid"], e.get("tid")) in streams]
    return kernels, sorted(set(threads.values()))


def busy_time(kernels):
    """Microseconds covered by the union of the kernels' intervals."""
    total, end = 0.0, -np.inf
    for _, start, dur in sorted(kernels, key=lambda k: k[1]):
        total += max(0.0, start + dur - max(start, end))
        end = max(end, start + dur)
    return total


def kernel_report(kernels, steps, top):
    """Per-step figures and the `top` kernels by summed time."""
    by_name = {}
    for name, _, dur in kernels:
        by_name.setdefault(name, []).append(dur)
    ranked = sorted(by_name.items(), key=lambda kv: -sum(kv[1]))[:top]
    return {"kernels_per_step": len(kernels) / steps, "kernel_us_per_step": sum(k[2] for k in kernels) / steps,
            "busy_us_per_step": busy_time(kernels) / steps,
            "span_us_per_step": (max(k[1] + k[2] for k in kernels) - min(k[1] for k in kernels)) / steps
            if kernels else 0.0,
            "top": [{"name": name, "per_step": len(d) / steps, "us_per_step": sum(d) / steps,
                     "mean_us": sum(d) / len(d)} for name, d in ranked]}


def profile(name, changes, steps, rounds, out):
    trainer = trainer_for(changes)
    n = steps * trainer.batch_size
    rs = np.random.default_rng(0)
    images, labels = trainer.put((rs.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8),
                                  rs.integers(0, 10, n).astype(np.int32)))
    ts = trainer.init(0)
    perm = trainer.permutation(ts, 0, n)
    compile_start = time.perf_counter()
    ts, losses = trainer.train_steps(ts, images, labels, perm, 0, steps)
    losses.block_until_ready()
    compile_seconds = time.perf_counter() - compile_start
    walls = []
    for _ in range(rounds):
        start = time.perf_counter()
        ts, losses = trainer.train_steps(ts, images, labels, perm, 0, steps)
        losses.block_until_ready()
        walls.append((time.perf_counter() - start) / steps * 1e6)
    trace_dir = out / "trace" / name.replace(" ", "_").replace("(", "").replace(")", "")
    with jax.profiler.trace(str(trace_dir), create_perfetto_trace=True):
        ts, losses = trainer.train_steps(ts, images, labels, perm, 0, steps)
        losses.block_until_ready()
    kernels, threads = device_kernels(trace_dir)
    return {"batch_size": trainer.batch_size, "first_chunk_seconds": compile_seconds,
              "wall_us_per_step": statistics.median(walls), "walls": walls, "device_threads": threads,
              **kernel_report(kernels, steps, top=25)}


def print_report(name, r):
    print(f"\n== {name}: batch {r['batch_size']}, wall {r['wall_us_per_step']:.1f} us/step "
          f"({r['batch_size'] / r['wall_us_per_step'] * 1e6:,.0f} images/s), "
          f"first chunk {r['first_chunk_seconds']:.1f} s")
    if not r["kernels_per_step"]:
        print(f"   no device kernels in the trace (device threads: {', '.join(r['device_threads']) or 'none'})")
        return
    print(f"   {r['kernels_per_step']:.1f} kernels/step, kernel time {r['kernel_us_per_step']:.1f} us, device busy "
          f"{r['busy_us_per_step']:.1f} us, idle {r['span_us_per_step'] - r['busy_us_per_step']:.1f} us of the "
          f"{r['span_us_per_step']:.1f} us span per step")
    print(f"   {'per step':>8} {'us/step':>8} {'mean us':>8}  kernel")
    for k in r["top"]:
        print(f"   {k['per_step']:8.2f} {k['us_per_step']:8.1f} {k['mean_us']:8.2f}  {k['name'][:110]}")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m experiments.step_profile", description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("--variants", nargs="*", choices=list(VARIANTS), help="variants to profile (default: all)")
    p.add_argument("--steps", type=int, default=50, help="steps per chunk (one lax.scan)")
    p.add_argument("--rounds", type=int, default=5, help="timed chunks before the profiled one")
    p.add_argument("--out", default="runs/step_profile", help="directory for step_profile.json and the traces")
    args = p.parse_args(argv)
    if args.steps < 1 or args.rounds < 1:
        p.error("--steps and --rounds must be at least 1")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = jax.devices()[0]
    print(f"{device.device_kind} ({jax.default_backend()}), jax {jax.__version__}, chunks of {args.steps} steps")
    results = {}
    for name in args.variants or list(VARIANTS):
        results[name] = profile(name, VARIANTS[name], args.steps, args.rounds, out)
        print_report(name, results[name])
        (out / "step_profile.json").write_text(json.dumps(
            {"device": device.device_kind, "platform": jax.default_backend(), "jax": jax.__version__,
             "steps": args.steps, "variants": results}, indent=1))
    print(f"\nwrote {out / 'step_profile.json'}")
    return results


if __name__ == "__main__":
    raise SystemExit(entry(main))
