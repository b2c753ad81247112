"""A net's first block in training by fused C++ kernels on the CPU (first_block.cc, through jax.ffi).

The block: Conv (one input channel, stride 1, no padding, groups 1, bias, at most 32 outputs) -> BatchNorm (batch
statistics) -> Scale (with bias) -> MaxPool 2x2/2 (unpadded, even map) -> ReLU, each layer reading only the one
before it: the first five layers of zoo.lenet_caffe (Caffe's MNIST LeNet with BatchNorm). XLA runs those five as
many passes over the 24x24x20 map; the kernels do the forward in one pass (convolution, channel sums, then
normalise, scale, pool and ReLU) and the backward in one more (docs/performance.md has the measurements).

`Net.apply(train=True)` runs the block this way when its lowering is a Tuned one with first_block=True, which
jaxcnn.tuning chooses where it measured the net's step faster so (only for float32 on one CPU device); evaluation
always runs the layers. The kernels are compiled with g++ at first use (about 3 s) into the cache directory
($JAXCNN_CACHE_DIR, else ~/.cache/jaxcnn), keyed by the source, the processor and jaxlib; without g++ `available()`
is False and the layers run as before.

The gradient: the kernels give those of w, b, gamma and beta. Where the block's input is differentiated too (it is
not in training: it is the data), the whole block runs by the layers' own ops, forward and backward.
"""
import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero

from . import ops, tuning
from .layers import BatchNorm, Conv, MaxPool, ReLU, Scale

log = logging.getLogger("jaxcnn")

SOURCE = Path(__file__).with_name("first_block.cc")
LANES = 32  # the kernels' channel vector: at most this many outputs
TARGETS = ("first_block_forward", "first_block_backward")


def _flags() -> list[str]:
    wide = ["-mprefer-vector-width=512"] if platform.machine() in ("x86_64", "AMD64") else []
    return ["-O3", "-march=native", *wide, "-std=c++17", "-shared", "-fPIC", "-w"]


def library_path() -> Path:
    """Where the compiled kernels live: keyed by the source, flags, processor and jaxlib (-march=native code runs
    only on the processor it was built for)."""
    key = "|".join([SOURCE.read_text(), " ".join(_flags()), tuning.processor(), metadata.version("jaxlib")])
    return tuning.cache_directory() / f"first_block-{hashlib.sha1(key.encode()).hexdigest()[:12]}.so"


def _build(lib: Path) -> None:
    """Compile SOURCE into lib (written whole or not at all: another process may be building it too)."""
    lib.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=lib.parent) as tmp:
        out = Path(tmp) / lib.name
        done = subprocess.run(["g++", *_flags(), f"-I{jax.ffi.include_dir()}", str(SOURCE), "-o", str(out)],
                              capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"g++ failed on {SOURCE}: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
        os.replace(out, lib)


@functools.cache
def available() -> bool:
    """Whether the kernels are compiled (now, if needed) and registered as CPU FFI targets (once per process).
    False, with the reason logged once, without g++ or where compiling fails."""
    try:
        if shutil.which("g++") is None:
            raise RuntimeError("g++ is not installed")
        lib = library_path()
        if not lib.exists():
            _build(lib)
        library = ctypes.cdll.LoadLibrary(str(lib))
    except (OSError, RuntimeError) as e:
        log.warning("the first block's fused kernels are not available (%s): the layers run it", e)
        return False
    for name in TARGETS:
        jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(library, name)), platform="cpu")
    return True


# -- the pattern -------------------------------------------------------------------------------------------------
def layers_of(net, in_shape=None):
    """The (Conv, BatchNorm, Scale, MaxPool, ReLU) that open `net` if they form a block the kernels run (module
    docstring) on per-example inputs of in_shape (default the net's); else None."""
    nodes = net.nodes[:5]
    kinds = (Conv, BatchNorm, Scale, MaxPool, ReLU)
    if len(nodes) < 5 or any(type(n.layer) is not k for n, k in zip(nodes, kinds)) or len(net.inputs) != 1:
        return None
    if nodes[0].inputs != (next(iter(net.inputs)),):
        return None
    for i in range(4):  # a chain: each layer's one output read by the next layer alone
        if _readers(net, i) != [i + 1]:
            return None
    conv, bn, scale, pool, relu = (n.layer for n in nodes)
    shape = in_shape or net.inputs[next(iter(net.inputs))]
    if shape is None or shape[-1] != 1 or not conv.bias or conv.features > LANES or conv.groups != 1:
        return None
    oh, ow = shape[0] - conv.kernel[0] + 1, shape[1] - conv.kernel[1] + 1
    if (conv.kernel[0] != conv.kernel[1] or conv.stride != (1, 1) or conv.dilation != (1, 1)
            or np.any(conv.padding) or oh % 2 or ow % 2 or oh < 2 or ow < 2):
        return None
    if bn.use_global_stats or not scale.bias or relu.negative_slope != 0:
        return None
    if pool.kernel != (2, 2) or pool.stride != (2, 2) or np.any(pool.padding):
        return None
    return conv, bn, scale, pool, relu


def _readers(net, i) -> list | None:
    """The nodes that read the value node i writes (its one output), up to one that writes the blob again
    (Caffe's in-place layers); None if that value is one of the net's outputs or node i writes several."""
    nodes = net.nodes
    if len(nodes[i].outputs) != 1:
        return None
    blob, found = nodes[i].outputs[0], []
    for k in range(i + 1, len(nodes)):
        if blob in nodes[k].inputs:
            found.append(k)
        if blob in nodes[k].outputs:
            return found
    return None if blob in net.outputs else found


# -- the op --------------------------------------------------------------------------------------------------------
def _reference(eps, x, w, b, gamma, beta):
    """The block by jaxcnn's ops -> (z, mean, var): what the layers compute."""
    y, mean, var = ops.norm.standardize(ops.conv2d(x, w, b), eps)
    return ops.relu(ops.max_pool(ops.scale(y, gamma, beta), 2, 2)), mean, var


def _forward(eps, threads, x, w, b, gamma, beta):
    """-> z (N, OH/2, OW/2, O), y (N, OH, OW, LANES) the convolution's output, stats (2, O) by the kernel."""
    n, h, wd, _ = x.shape
    oh, ow, o = h - w.shape[0] + 1, wd - w.shape[1] + 1, w.shape[3]
    shapes = [jax.ShapeDtypeStruct(s, jnp.float32) for s in ((n, oh // 2, ow // 2, o), (n, oh, ow, LANES), (2, o))]
    return jax.ffi.ffi_call("first_block_forward", shapes)(x, w, b, gamma, beta, eps=np.float32(eps),
                                                           threads=np.int64(threads))


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def block(eps, threads, x, w, b, gamma, beta):
    """x (N, H, W, 1) float32 -> (z, mean, var): z = relu(max_pool_2x2(gamma * standardize(conv(x, w) + b) +
    beta)) (N, OH/2, OW/2, O) and the batch's mean and biased variance (O,) of conv(x, w) + b, by the kernels on
    `threads` parts of the batch (available() must be True). The statistics carry no gradient."""
    z, _, stats = _forward(eps, threads, x, w, b, gamma, beta)
    return z, stats[0], stats[1]


def _block_fwd(eps, threads, x, w, b, gamma, beta):
    if x.perturbed:  # the input's gradient too: the ops do it all
        out, vjp = jax.vjp(functools.partial(_reference, eps), x.value, w.value, b.value, gamma.value, beta.value)
        return out, (vjp,)
    x, w, b, gamma, beta = (a.value for a in (x, w, b, gamma, beta))
    z, y, stats = _forward(eps, threads, x, w, b, gamma, beta)
    return (z, stats[0], stats[1]), (x, y, stats, gamma, beta, w.shape)


def _block_bwd(eps, threads, res, cotangents):
    dz, dmean, dvar = (jnp.zeros(c.shape, c.dtype) if isinstance(c, SymbolicZero) else c for c in cotangents)
    if len(res) == 1:
        return res[0]((dz, dmean, dvar))
    x, y, stats, gamma, beta, w_shape = res
    o = (w_shape[3],)
    shapes = [jax.ShapeDtypeStruct(s, jnp.float32) for s in (w_shape, o, o, o)]
    dw, db, dgamma, dbeta = jax.ffi.ffi_call("first_block_backward", shapes)(
        x, y, stats, gamma, beta, dz, eps=np.float32(eps), threads=np.int64(threads))
    return jnp.zeros_like(x), dw, db, dgamma, dbeta


block.defvjp(_block_fwd, _block_bwd, symbolic_zeros=True)


def threads() -> int:
    """The parts the kernels split a batch into: the cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def apply(layers, params, state, x):
    """The block's layers (layers_of) in training on x (N, H, W, 1) float32 -> (z, {bn: its new state})."""
    conv, bn, scale, _, _ = layers
    z, mean, var = block(bn.eps, threads(), x, params[conv.name]["w"], params[conv.name]["b"],
                         params[scale.name]["gamma"], params[scale.name]["beta"])
    n = x.shape[0] * 4 * z.shape[1] * z.shape[2]  # values per channel in the batch statistics
    return z, {bn.name: bn.trained_state(state[bn.name], mean, var, n)}
