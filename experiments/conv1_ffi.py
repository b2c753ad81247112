"""C++ kernels through jax.ffi beside XLA's forms, on LeNet's first layer (one input channel) and its first block:
the measurement behind the question whether jaxcnn needs its own CPU kernels (docs/performance.md).

    python -m experiments.conv1_ffi [--batches 64 256] [--rounds 7] [--out DIR]

experiments/conv1_direct.cc (conv1's forward and weight gradient; the first block fused, forward and backward) is
compiled here with g++ (-O3 -march=native, 512-bit vectors on x86; jaxlib's headers, from jax.ffi.include_dir())
and registered as FFI targets; the kernels split the batch over XLA's own intra-op threads. Timed side by side in
interleaved rounds, at each batch: conv1's forward (each sample the mean of 50 calls) by the kernel on 2 threads and
by ops.conv2d's 'native' and 'cpu' lowerings, each with XLA's default YNNPACK fusions and without them
(xla_cpu_experimental_ynn_fusion_type ''); and the whole LeNet-BN training step of experiments.bench (the mean of
a 20-step run): with jaxcnn's tuned forms; the same with conv1's forward and weight gradient by the kernels
(`conv1`, a custom VJP; its input gradient stays XLA's, and is not computed for the net's input); the same with
the first block (conv1, bn_conv1, scale_conv1, pool1, relu_pool1) by the fused kernels (`conv1_block`,
`BlockNet`); and PyTorch's (the bench's twin net, as many threads). Every forward is first checked against the
native convolution (max |diff| / max |y| <= 1e-5), each jaxcnn step's losses against the tuned step's (relative
1e-4). With --out, DIR/conv1_ffi.json holds every sample, the CPU model, versions and the load average.
"""
import argparse
import contextlib
import ctypes
import functools
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from experiments import report
from jaxcnn import ops, zoo
from jaxcnn.cli import HelpFormatter, entry
from jaxcnn.hostmem import keep_freed_memory
from jaxcnn.net import Net
from jaxcnn.ops import conv_cpu
from jaxcnn.ops.conv import conv_geometry

SOURCE = Path(__file__).with_name("conv1_direct.cc")
SHAPE, KERNEL, OUTPUTS = (28, 28, 1), 5, 20  # LeNet's conv1 on MNIST
STEPS = 20  # training steps per timed run
LANES = 32  # the kernels' channel vector (conv1_direct.cc)
THREADS = 2  # the kernels' parts of the batch
NO_YNN = {"xla_cpu_experimental_ynn_fusion_type": ""}


@functools.cache
def register() -> None:
    """Compile SOURCE (in a temporary directory) and register its handler as the CPU FFI target 'conv1_direct',
    once per process (XLA refuses a second registration of the name)."""
    if shutil.which("g++") is None:
        raise SystemExit("experiments.conv1_ffi needs g++ to compile experiments/conv1_direct.cc")
    workdir = tempfile.mkdtemp()
    lib = Path(workdir) / "libconv1_direct.so"
    wide = ["-mprefer-vector-width=512"] if platform.machine() in ("x86_64", "AMD64") else []
    cmd = ["g++", "-O3", "-march=native", *wide, "-std=c++17", "-shared", "-fPIC", "-w",
           f"-I{jax.ffi.include_dir()}", str(SOURCE), "-o", str(lib), "-lpthread"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"g++ failed on {SOURCE}: {done.stderr.strip().splitlines()[-1]}")
        library = ctypes.cdll.LoadLibrary(str(lib))  # loaded: the file may go
    finally:
        shutil.rmtree(workdir)
    for name in ("conv1_direct", "conv1_weight_grad", "conv1_block_forward", "conv1_block_backward"):
        jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(library, name)), platform="cpu")


def direct(x, w, threads=THREADS):
    """x (N, H, W, 1), w (K, K, 1, O) -> (N, H-K+1, W-K+1, O) by the C++ kernel."""
    n, h, wd, _ = x.shape
    out = jax.ShapeDtypeStruct((n, h - w.shape[0] + 1, wd - w.shape[1] + 1, w.shape[3]), jnp.float32)
    return jax.ffi.ffi_call("conv1_direct", out)(x, w, threads=np.int64(threads))


def weight_grad(x, g, threads=THREADS):
    """x (N, H, W, 1), g (N, OH, OW, O) -> the gradient of direct's w, (H-OH+1, W-OW+1, 1, O), by the C++ kernel."""
    out = jax.ShapeDtypeStruct((x.shape[1] - g.shape[1] + 1, x.shape[2] - g.shape[2] + 1, 1, g.shape[3]), jnp.float32)
    return jax.ffi.ffi_call("conv1_weight_grad", out)(x, g, threads=np.int64(threads))


@jax.custom_vjp
def conv1(x, w):
    """direct(x, w) with the kernels' weight gradient and XLA's input gradient."""
    return direct(x, w)


def _conv1_fwd(x, w):
    return direct(x, w), (x, w)


def _conv1_bwd(res, g):
    x, w = res
    _, input_grad = jax.vjp(lambda x: conv_cpu.native(x, w, (1, 1), ((0, 0), (0, 0)), (1, 1)), x)
    return input_grad(g)[0], weight_grad(x, g)


conv1.defvjp(_conv1_fwd, _conv1_bwd)


def _block_forward(x, w, b, gamma, beta, eps, threads=THREADS):
    """-> z (N, OH/2, OW/2, O), y (N, OH, OW, LANES) the convolution's output, stats (2, O) by the fused kernel."""
    n, h, wd, _ = x.shape
    oh, ow, o = h - w.shape[0] + 1, wd - w.shape[1] + 1, w.shape[3]
    shapes = [jax.ShapeDtypeStruct(s, jnp.float32) for s in ((n, oh // 2, ow // 2, o), (n, oh, ow, LANES), (2, o))]
    return jax.ffi.ffi_call("conv1_block_forward", shapes)(x, w, b, gamma, beta, eps=np.float32(eps),
                                                           threads=np.int64(threads))


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def conv1_block(x, w, b, gamma, beta, eps):
    """LeNet-BN's first block in training, by the fused kernels: x (N, H, W, 1) -> (z, mean, var) with
    z = relu(max_pool_2x2(gamma * batch_norm(conv(x, w) + b) + beta)) and the batch's mean and biased variance (O,)
    (which carry no gradient: they feed only the running averages)."""
    z, _, stats = _block_forward(x, w, b, gamma, beta, eps)
    return z, stats[0], stats[1]


def _conv1_block_fwd(x, w, b, gamma, beta, eps):
    z, y, stats = _block_forward(x, w, b, gamma, beta, eps)
    return (z, stats[0], stats[1]), (x, y, stats, gamma, beta, w.shape)


def _conv1_block_bwd(eps, res, cotangents):
    x, y, stats, gamma, beta, w_shape = res
    o = (w_shape[3],)
    shapes = [jax.ShapeDtypeStruct(s, jnp.float32) for s in (w_shape, o, o, o)]
    dw, db, dgamma, dbeta = jax.ffi.ffi_call("conv1_block_backward", shapes)(
        x, y, stats, gamma, beta, cotangents[0], eps=np.float32(eps), threads=np.int64(THREADS))
    return jnp.zeros_like(x), dw, db, dgamma, dbeta


conv1_block.defvjp(_conv1_block_fwd, _conv1_block_bwd)


class BlockNet(Net):
    """zoo.lenet_caffe() whose first five layers (conv1, bn_conv1, scale_conv1, pool1, relu_pool1) train by
    conv1_block; the same layers, parameters and state, and evaluation by the layers themselves."""

    def __init__(self, net: Net):
        super().__init__(net.layers, net.input_shape, net.name)
        self.tail = Net(net.layers[5:], name=net.name)

    def apply(self, params, state, x, *, train=False, rng=None, lowering="auto"):
        if not train:
            return super().apply(params, state, x, train=train, rng=rng, lowering=lowering)
        conv, bn, scale = self.layers[:3]
        z, mean, var = conv1_block(x, params[conv.name]["w"], params[conv.name]["b"], params[scale.name]["gamma"],
                                   params[scale.name]["beta"], bn.eps)
        y, new_state = self.tail.apply(params, state, z, train=True, rng=rng, lowering=lowering)
        n = z.shape[0] * z.shape[1] * z.shape[2] * 4  # values per channel in the batch statistics
        return y, {bn.name: bn.trained_state(state[bn.name], mean, var, n), **new_state}


@contextlib.contextmanager
def conv1_by_kernels():
    """Within it, ops.conv2d computes stride-1 unpadded convolutions of one input channel by `conv1` (what is traced
    then keeps it)."""
    native = ops.conv2d

    def conv2d(x, w, b=None, *, stride=1, padding="VALID", dilation=1, groups=1, lowering="auto"):
        _, pads, strides, dilations = conv_geometry(x.shape[1:], w.shape[:2], stride, padding, dilation)
        if x.shape[-1] == 1 and w.shape[3] <= 32 and not np.any(pads) and strides == dilations == (1, 1):
            y = conv1(x, w)
            return y if b is None else y + b
        return native(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups, lowering=lowering)
    ops.conv2d = conv2d
    try:
        yield
    finally:
        ops.conv2d = native


def variants() -> dict:
    """name -> jitted (x, w) -> y."""
    runs = {"ffi_direct": jax.jit(direct)}
    for lowering in ("native", "cpu"):
        for ynn, options in (("ynnpack", {}), ("no_ynnpack", NO_YNN)):
            runs[f"{lowering}_{ynn}"] = jax.jit(lambda x, w, lowering=lowering: ops.conv2d(x, w, None,
                                                                                            lowering=lowering),
                                                compiler_options=options)
    return runs


def sample(fn, args, calls=50) -> float:
    jax.block_until_ready(fn(*args))
    start = time.perf_counter()
    for _ in range(calls):
        y = fn(*args)
    jax.block_until_ready(y)
    return (time.perf_counter() - start) / calls * 1e3


def step_runners(batch: int) -> dict:
    """{'tuned': jaxcnn's LeNet-BN step run of STEPS steps (experiments.bench's), 'conv1_kernels': the same with
    conv1 by the kernels} -> each () -> the run's losses; both traced (run once) here."""
    from experiments import bench  # PyTorch (its twin nets): the bench extra
    target = bench.Target("cpu")
    runners = bench.train_case(zoo.lenet_caffe(), batch, STEPS, target)[0]
    tuned = runners["jaxcnn"]
    first = tuned()
    with conv1_by_kernels():
        kernels = bench.train_case(zoo.lenet_caffe(), batch, STEPS, target)[0]["jaxcnn"]
        second = kernels()
    if not np.allclose(second, first, rtol=1e-4, atol=0):
        raise SystemExit(f"batch {batch}: the step with conv1 by the kernels gives other losses: {second} vs {first}")
    block = bench.train_case(BlockNet(zoo.lenet_caffe()), batch, STEPS, target)[0]["jaxcnn"]
    third = block()
    if not np.allclose(third, first, rtol=1e-4, atol=0):
        raise SystemExit(f"batch {batch}: the step with the fused block gives other losses: {third} vs {first}")
    return {"tuned": tuned, "conv1_kernels": kernels, "block_kernels": block, "pytorch": runners["torch"]}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m experiments.conv1_ffi", description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("--batches", type=int, nargs="+", default=[64, 256], help="batch sizes")
    p.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds")
    p.add_argument("--out", help="directory for conv1_ffi.json (nothing is written without it)")
    args = p.parse_args(argv)
    if args.rounds < 1 or min(args.batches) < 1:
        p.error("--rounds and --batches must be at least 1")
    if jax.default_backend() != "cpu":
        raise SystemExit("experiments.conv1_ffi measures CPU kernels: JAX's default backend must be the CPU")
    keep_freed_memory()  # as experiments.bench, for both frameworks
    register()
    from experiments import bench  # PyTorch: the bench extra
    bench.torch.set_num_threads(bench.threads())
    rng, runs, load = np.random.default_rng(0), variants(), [os.getloadavg()[0]]
    results = []
    for batch in args.batches:
        x = jnp.asarray(rng.standard_normal((batch, *SHAPE)), jnp.float32)
        w = jnp.asarray(rng.standard_normal((KERNEL, KERNEL, 1, OUTPUTS)), jnp.float32)
        want = np.asarray(jax.jit(lambda x, w: ops.conv2d(x, w, None, lowering="native"))(x, w))
        errors = {k: float(np.abs(np.asarray(f(x, w)) - want).max() / np.abs(want).max()) for k, f in runs.items()}
        if bad := {k: e for k, e in errors.items() if not e <= 1e-5}:
            raise SystemExit(f"batch {batch}: outputs differ from the native convolution: {bad}")
        steps = step_runners(batch)
        samples, step_samples = {k: [] for k in runs}, {k: [] for k in steps}
        for _ in range(args.rounds):
            for k, f in runs.items():
                samples[k].append(sample(f, (x, w)))
            for k, run in steps.items():
                step_samples[k].append(sample(run, (), calls=1) / STEPS)
            load.append(os.getloadavg()[0])
        medians = {k: statistics.median(v) for k, v in samples.items()}
        step_medians = {k: statistics.median(v) for k, v in step_samples.items()}
        results.append({"batch": batch, "samples_ms": samples, "median_ms": medians, "max_rel_diff": errors,
                        "step_samples_ms": step_samples, "step_median_ms": step_medians})
        print(f"batch {batch}, conv1 forward: " + ", ".join(f"{k} {m:.3f} ms ({m / medians['ffi_direct']:.2f}x)"
                                                            for k, m in medians.items()), flush=True)
        print(f"batch {batch}, LeNet-BN step (speed relative to PyTorch's): " + ", ".join(
            f"{k} {m:.2f} ms ({step_medians['pytorch'] / m:.2f}x)" for k, m in step_medians.items()), flush=True)
    print(report.machine_line(load))
    if args.out:
        report.write(args.out, "conv1_ffi.json", load, shape=SHAPE, kernel=KERNEL, outputs=OUTPUTS, batches=results)


if __name__ == "__main__":
    raise SystemExit(entry(main))
