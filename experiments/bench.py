"""CPU speed, side by side: jaxcnn (lowering 'auto', ops.compiler_options()), the same net on plain XLA ops
(lowering 'native': lax.conv_general_dilated with feature_group_count, lax.reduce_window; XLA's default options)
and PyTorch eager, in one process, which keeps freed memory for reuse (jaxcnn.hostmem, for all three alike).

    python -m experiments.bench [--out DIR] [--quick]     # needs PyTorch: pip install -e .[bench]

Cases: the Caffe LeNet-BN training step (Trainer + Caffe SGD; PyTorch: the same layers as nn modules and
torch.optim.SGD with momentum and weight decay) at batch 64 and 256; AlexNet's grouped conv2 forward + backward
at batch 8; the cuda-convnet CIFAR-10 net with local layers, training step at batch 128; the forward of VGG16
converted to a fully-convolutional net (jaxcnn.convert.fc_to_conv) on one 384x384 image. Both sides get the
same weights and data (random uint8 images); a check that their outputs agree runs first. Each variant is
warmed up, then all are timed in interleaved rounds; the table gives median images/s, DIR/bench.json the
ratios (jaxcnn over PyTorch, jaxcnn over plain XLA), every round, thread counts, versions and the load average.
"""
import argparse
import json
import os
import platform
import statistics
import time
from importlib import metadata
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn import fc_to_conv, ops, zoo
from jaxcnn.hostmem import keep_freed_memory
from jaxcnn.train import SolverConfig, Trainer, optimizer

try:
    import torch

    from . import torch_nets
except ImportError:  # the optional extra
    torch = None

VARIANTS = {"jaxcnn": "auto", "plain_xla": "native"}  # the jaxcnn lowering of each JAX variant
SOLVER = SolverConfig(lr=0.01, schedule="fixed", momentum=0.9, weight_decay=5e-4)
PIXEL_SCALE = 1 / 256


def jit_options(variant):
    """XLA options: jaxcnn's (ops.compiler_options) for jaxcnn, XLA's defaults for plain XLA."""
    return ops.compiler_options() if variant == "jaxcnn" else {}


def threads() -> int:
    """Cores this process may use: XLA:CPU's thread pool spans them all; PyTorch is set to the same."""
    return len(os.sched_getaffinity(0))


def check_close(case, ours, theirs, rtol=2e-3):
    """Raise unless jaxcnn's and PyTorch's outputs agree (relative to the largest magnitude)."""
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    err = float(np.abs(ours - theirs).max() / max(np.abs(theirs).max(), 1e-30))
    if not err <= rtol:
        raise AssertionError(f"{case}: jaxcnn and PyTorch outputs differ (max relative error {err:.1e})")


def nchw(x):
    return torch.from_numpy(np.asarray(x)).permute(0, 3, 1, 2).contiguous()


def train_case(net, batch, steps, seed=0):
    """`steps` SGD steps of `net` on random uint8 images -> ({variant: run}, images per run)."""
    rs = np.random.default_rng(seed)
    n = batch * max(steps, 4)
    images = rs.integers(0, 256, (n, *net.input_shape), dtype=np.uint8)
    labels = rs.integers(0, 10, n).astype(np.int32)
    _, params, state = net.init(jax.random.key(seed))  # what Trainer.init(seed) draws too
    lr_mult, decay_mult = net.multipliers(params)
    runners = {}
    for variant, lowering in VARIANTS.items():
        trainer = Trainer(net, optimizer(SOLVER, 10**6, lr_mult, decay_mult), batch_size=batch,
                          preprocess=lambda x: x.astype(jnp.float32) * PIXEL_SCALE,
                          lowering=lowering, compiler_options=jit_options(variant))
        box = {"ts": trainer.init(seed)}
        data = trainer.put((images, labels))
        perm = trainer.permutation(box["ts"], 0, n)

        def run(trainer=trainer, data=data, perm=perm, box=box):
            box["ts"], losses = trainer.train_steps(box["ts"], *data, perm, 0, steps)
            return losses
        runners[variant] = run

    model = torch_nets.twin(net, params).train()
    opt = torch_nets.sgd(model, lr_mult, SOLVER.lr, SOLVER.momentum, SOLVER.weight_decay)
    t_images, t_labels, t_perm = nchw(images), torch.from_numpy(labels).long(), torch.from_numpy(rs.permutation(n))

    def torch_run():
        for i in range(steps):
            idx = t_perm[i * batch:(i + 1) * batch]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(t_images[idx].float() * PIXEL_SCALE), t_labels[idx])
            loss.backward()
            opt.step()
        return loss
    runners["torch"] = torch_run

    x = images[:batch].astype(np.float32) * PIXEL_SCALE
    ours, _ = net.apply(params, state, jnp.asarray(x), train=True)
    with torch.no_grad():
        check_close(net.name, ours, model(nchw(x)).numpy())
    return runners, batch * steps


def grouped_conv_case(batch=8, seed=0):
    """AlexNet conv2 (27x27x96 -> 256, 5x5, pad 2, groups 2): forward + backward to x, w and b."""
    net = zoo.alexnet()
    layer, in_shape = net["conv2"], next(r.in_shape for r in net.shapes() if r.layer.name == "conv2")
    rs = np.random.default_rng(seed)
    x = rs.standard_normal((batch, *in_shape)).astype(np.float32)
    _, p, _ = layer.init(jax.random.key(seed), in_shape)
    w, b = np.array(p["w"]), np.array(p["b"])
    def conv(x, w, b, lowering="auto"):
        return ops.conv2d(x, w, b, stride=layer.stride, padding=layer.padding, groups=layer.groups,
                          lowering=lowering)

    g = rs.standard_normal((batch, *jax.eval_shape(conv, x, w, b).shape[1:])).astype(np.float32)
    runners = {}
    for variant, lowering in VARIANTS.items():
        fwd_bwd = jax.jit(lambda x, w, b, g, lowering=lowering: jax.vjp(
            lambda x, w, b: conv(x, w, b, lowering), x, w, b)[1](g), compiler_options=jit_options(variant))
        runners[variant] = lambda f=fwd_bwd: f(x, w, b, g)
    tx, tw, tb = (torch.from_numpy(a).requires_grad_() for a in (nchw(x).numpy(), w.transpose(3, 2, 0, 1).copy(), b))
    tg, tpad = nchw(g), torch_nets.padding(layer, in_shape)

    def torch_run():
        tx.grad = tw.grad = tb.grad = None  # fresh gradients, as the JAX side returns
        y = torch.nn.functional.conv2d(tx, tw, tb, padding=tpad, groups=layer.groups)
        y.backward(tg)
        return y
    runners["torch"] = torch_run
    with torch.no_grad():
        check_close("alexnet conv2", conv(x, w, b),
                    torch.nn.functional.conv2d(tx, tw, tb, padding=tpad, groups=layer.groups)
                    .permute(0, 2, 3, 1).numpy())
    return runners, batch


def fcn_case(size, seed=0):
    """Forward of VGG16 with its FC head as convolutions on one size x size image (a score map)."""
    net = zoo.vgg16()
    _, params, state = net.init(jax.random.key(seed))
    conv_net, conv_params = fc_to_conv(net, params)
    x = np.random.default_rng(seed).standard_normal((1, size, size, 3)).astype(np.float32)
    runners = {}
    for variant, lowering in VARIANTS.items():
        fwd = jax.jit(lambda p, x, lowering=lowering: conv_net.apply(p, state, x, lowering=lowering)[0],
                      compiler_options=jit_options(variant))
        runners[variant] = lambda f=fwd: f(conv_params, x)
    model = torch_nets.twin(conv_net, conv_params, (size, size, 3)).eval()
    tx = nchw(x)

    def torch_run():
        with torch.no_grad():
            return model(tx)
    runners["torch"] = torch_run
    check_close("vgg16 fcn", runners["jaxcnn"](), torch_run().permute(0, 2, 3, 1).numpy())
    return runners, 1


def block(out):
    """Wait for a JAX result (PyTorch eager results are ready when returned)."""
    if torch is not None and isinstance(out, torch.Tensor):
        return out
    return jax.block_until_ready(out)


def timed(runners, work, rounds, warmup=2):
    """Warm every runner up, then time them in interleaved rounds -> {variant: [images/s per round]}."""
    for run in runners.values():
        for _ in range(warmup):
            block(run())
    rates = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            start = time.perf_counter()
            block(run())
            rates[name].append(work / (time.perf_counter() - start))
    return rates


def cases(quick):
    """Case name -> (builder of (runners, images per run), rounds)."""
    q = 2 if quick else 1
    return {
        "lenet_bn_train_b64": (lambda: train_case(zoo.lenet_caffe(), 64, 24 // q), 7 // q),
        "lenet_bn_train_b256": (lambda: train_case(zoo.lenet_caffe(), 256, 8 // q), 7 // q),
        "alexnet_conv2_grouped": (lambda: grouped_conv_case(8), 9 // q),
        "cifar10_local_train": (lambda: train_case(zoo.cifar10_local(), 128, 4 // q), 7 // q),
        "vgg16_fcn_384": (lambda: fcn_case(384), 5 // q),
    }


def versions():
    return {"python": platform.python_version(), "jax": jax.__version__, "jaxlib": metadata.version("jaxlib"),
            "torch": torch.__version__, "numpy": np.__version__, "cpu": platform.processor() or platform.machine()}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m experiments.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/bench", help="directory for bench.json (default runs/bench)")
    p.add_argument("--quick", action="store_true", help="half the steps and rounds (about a minute)")
    p.add_argument("--cases", nargs="*", help="run only these cases")
    args = p.parse_args(argv)
    if torch is None:
        p.error("PyTorch is needed for the comparison: pip install -e .[bench]")
    kept = keep_freed_memory()  # for both frameworks, before JAX's first computation (jaxcnn.hostmem)
    if jax.default_backend() != "cpu":
        p.error(f"this benchmark compares CPU lowerings; JAX's default backend is {jax.default_backend()}")
    n_threads = threads()
    torch.set_num_threads(n_threads)
    selected = cases(args.quick)
    unknown = set(args.cases or ()) - set(selected)
    if unknown:
        p.error(f"unknown cases {sorted(unknown)}; choose from {', '.join(selected)}")
    results, load = {}, [os.getloadavg()[0]]
    header = f"{'case':24} {'jaxcnn':>9} {'plain XLA':>9} {'torch':>9} {'vs torch':>9} {'vs XLA':>7}   (images/s)"
    print(header + "\n" + "-" * len(header), flush=True)
    for name, (build, rounds) in selected.items():
        if args.cases and name not in args.cases:
            continue
        runners, work = build()
        rates = timed(runners, work, rounds)
        med = {v: statistics.median(r) for v, r in rates.items()}
        results[name] = {"images_per_second": med, "rounds": rates, "images_per_run": work}
        print(f"{name:24} {med['jaxcnn']:9,.1f} {med['plain_xla']:9,.1f} {med['torch']:9,.1f} "
              f"{med['jaxcnn'] / med['torch']:9.2f} {med['jaxcnn'] / med['plain_xla']:7.2f}", flush=True)
        load.append(os.getloadavg()[0])
    report = {
        "ratios_vs_torch": {k: r["images_per_second"]["jaxcnn"] / r["images_per_second"]["torch"]
                            for k, r in results.items()},
        "ratios_vs_plain_xla": {k: r["images_per_second"]["jaxcnn"] / r["images_per_second"]["plain_xla"]
                                for k, r in results.items()},
        "cases": results, "quick": args.quick, "versions": versions(),
        "threads": {"xla": n_threads, "torch": torch.get_num_threads(),
                    "torch_interop": torch.get_num_interop_threads()},
        "load_average_1min": load, "keep_freed_memory": kept,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(report, indent=1))
    print(f"wrote {out / 'bench.json'}; 1-min load average during the run: {min(load):.1f}-{max(load):.1f}")
    return report


if __name__ == "__main__":
    main()
