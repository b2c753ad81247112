"""Autotuning: the CPU convolution forms measured on the running machine, as cuDNN's benchmark mode does on GPUs.

    >>> import jax, jax.numpy as jnp
    >>> import jaxcnn
    >>> net = jaxcnn.Net([jaxcnn.Conv("conv1", 4, 3)], (8, 8, 1))
    >>> _, params, state = net.init(jax.random.key(0))
    >>> lowering = jaxcnn.tune(net, batch=2, training=False)  # a Tuned lowering on the CPU, 'native' on other backends
    >>> y, state = net.apply(params, state, jnp.ones((2, 8, 8, 1)), lowering=lowering)
    >>> y.shape
    (2, 6, 6, 4)

The 'cpu' lowering computes each convolution, its input gradient and its weight gradient in one of several
forms (ops.conv_cpu: native, wide, wide_input, im2col, im2col_chunked; for grouped convolutions also per_group
and, if depthwise, shifted), chosen by fixed rules that were tuned on one processor and do not carry to others.
`tune` times every candidate form of every convolution of a net at a batch size, on this processor, and keeps the
fastest per direction in a cache file, so each shape is measured once per machine. All forms compute the same
convolution (tests/test_lowering.py, tests/test_grouped_conv.py): the choice changes speed only.

- Cache: one JSON file per processor, jax/jaxlib version and CACHE_VERSION (raised whenever the forms, their
  candidates or the signatures change) in $JAXCNN_CACHE_DIR (default ~/.cache/jaxcnn).
- Time: bounded by `budget_s` per call; shapes not measured in time keep the fixed rules (and are measured next
  time). Progress and results are logged (logger "jaxcnn.tuning").
- Switch: JAXCNN_AUTOTUNE=0 turns off the tuning jaxcnn does by itself (the Trainer's default, the experiments);
  `Trainer(autotune=False)` does so for one trainer. Off, the fixed rules apply.
"""
import hashlib
import json
import logging
import os
import platform
import time
from importlib import metadata
from pathlib import Path

import jax
import jax.numpy as jnp

from .layers import Conv
from .ops import conv_cpu
from .ops.conv import conv_geometry
from .ops.lowering import Tuned

log = logging.getLogger(__name__)
_now = time.monotonic  # the clock the budget is kept by
ENV_SWITCH = "JAXCNN_AUTOTUNE"
ENV_CACHE = "JAXCNN_CACHE_DIR"
CACHE_VERSION = 2  # 2: whole grouped convolutions (per_group, shifted, grouped im2col) instead of one group's


def enabled() -> bool:
    """Whether jaxcnn tunes by itself: unless $JAXCNN_AUTOTUNE is 0, false, off or no."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "off", "no")


def processor() -> str:
    """The running processor: its model name and the number of cores this process may use."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    return f"{model}, {len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()} cores"


def cache_file(cache_dir=None) -> Path:
    """The cache file for this processor, jax/jaxlib version and CACHE_VERSION."""
    key = f"{processor()} | jax {jax.__version__} | jaxlib {metadata.version('jaxlib')} | forms v{CACHE_VERSION}"
    directory = Path(cache_dir or os.environ.get(ENV_CACHE) or Path.home() / ".cache" / "jaxcnn")
    return directory / f"conv_forms-{hashlib.sha1(key.encode()).hexdigest()[:12]}.json"


def _load(path) -> dict:
    try:
        return json.loads(Path(path).read_text())["forms"]
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("ignoring the unreadable tuning cache %s (%s); measuring afresh", path, e)
        return {}


def _save(path, forms) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps({"processor": processor(), "jax": jax.__version__, "version": CACHE_VERSION,
                               "forms": forms}, indent=1))
    os.replace(tmp, path)  # whole or not at all, also with several processes tuning at once


def convolutions(net, batch: int, input_shape=None, dtype="float32") -> list[tuple]:
    """Every distinct convolution `net` computes at `batch`: (x, w, stride, pads, dilation, directions) with x and
    w as ShapeDtypeStructs, as ops.conv2d hands them to ops.conv_cpu.conv (the groups are x's channels over w's
    input channels), and the directions training computes (no input gradient where no layer before has
    parameters: the input is data)."""
    seen, out, trained_before = set(), [], False
    for row in net.shapes(input_shape):
        layer, needs_input_gradient, trained_before = row.layer, trained_before, trained_before or bool(row.params)
        if not isinstance(layer, Conv):
            continue
        _, pads, stride, dilation = conv_geometry(row.in_shape, layer.kernel, layer.stride, layer.padding,
                                                  layer.dilation)
        x = jax.ShapeDtypeStruct((batch, *row.in_shape), jnp.dtype(dtype))
        w = jax.ShapeDtypeStruct((*layer.kernel, row.in_shape[-1] // layer.groups, layer.features), x.dtype)
        sig = conv_cpu.signature(x, w, stride, pads, dilation)
        if sig not in seen:
            seen.add(sig)
            directions = conv_cpu.DIRECTIONS if needs_input_gradient else ("forward", "weight")
            out.append((x, w, stride, pads, dilation, directions))
    return out


def _computation(direction, name, stride, pads, dilation):
    """The jitted computation of one direction in one form, as ops.conv_cpu.conv computes it (a gradient is the
    transpose of the form in that direction's layout): f(x, w, g) -> output, input or weight gradient."""
    def form(x, w):
        return conv_cpu.FORMS[name](x, w, stride, pads, dilation, direction)

    if direction == "forward":
        return jax.jit(lambda x, w, g: form(x, w))
    if direction == "input":
        return jax.jit(lambda x, w, g: jax.vjp(lambda x: form(x, w), x)[1](g)[0])
    return jax.jit(lambda x, w, g: jax.vjp(lambda w: form(x, w), w)[1](g)[0])


def measure(direction, name, x, w, stride, pads, dilation, *, repeats=5, min_seconds=0.05) -> float:
    """Seconds one run of `direction` in form `name` takes on random operands: the fastest of `repeats` runs (at
    least min_seconds of runs) after a warm-up."""
    y = jax.eval_shape(lambda x, w: conv_cpu.native(x, w, stride, pads, dilation), x, w)
    keys = jax.random.split(jax.random.key(0), 3)
    args = [jax.random.normal(k, s.shape, s.dtype) for k, s in zip(keys, (x, w, y))]
    fn = _computation(direction, name, stride, pads, dilation)
    jax.block_until_ready(fn(*args))
    best, total, runs = float("inf"), 0.0, 0
    while runs < repeats or total < min_seconds:
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        took = time.perf_counter() - start
        best, total, runs = min(best, took), total + took, runs + 1
    return best


def _key(sig) -> str:
    return json.dumps(sig)


def tune(net, batch: int, *, input_shape=None, dtype="float32", training: bool = True, budget_s: float = 60.0,
         cache_dir=None, backend: str | None = None):
    """The lowering for `net` at `batch` on this machine.

    Args:
      net: a jaxcnn net; its convolutions are read from net.shapes(input_shape).
      batch: the batch size the convolutions run at (the Trainer's global batch).
      input_shape: per-example (H, W, C); default net.input_shape.
      dtype: the compute dtype ('float32' or 'bfloat16').
      training: measure the gradients' forms too (False: the forward pass only, for inference).
      budget_s: the most seconds to spend measuring; what is left keeps the fixed rules.
      cache_dir: where the cache file lives (default $JAXCNN_CACHE_DIR, else ~/.cache/jaxcnn).
      backend: the platform the net will run on (default JAX's default backend).

    Returns:
      'native' on backends other than the CPU; on the CPU a Tuned lowering naming, for each convolution measured
      now or before, its fastest (forward, input, weight) forms.
    """
    if (backend or jax.default_backend()) != "cpu":
        return "native"
    path = cache_file(cache_dir)
    cached, start, measured = _load(path), _now(), 0
    convs = convolutions(net, batch, input_shape, dtype)
    for x, w, stride, pads, dilation, directions in convs:
        sig = conv_cpu.signature(x, w, stride, pads, dilation)
        directions = directions if training else ("forward",)
        if _key(sig) in cached and set(directions) <= set(cached[_key(sig)]["seconds"]):
            continue
        if _now() - start > budget_s:
            log.info("tuning budget of %.0f s spent; %s and later shapes keep the fixed rules", budget_s, sig[:2])
            break
        times = {d: {n: measure(d, n, x, w, stride, pads, dilation)
                     for n in conv_cpu.candidates(d, x, w, stride, pads, dilation)} for d in directions}
        fixed = {d: conv_cpu.form(d, None, x, w, stride, pads, dilation).__name__ for d in conv_cpu.DIRECTIONS}
        forms = [min(times[d], key=times[d].get) if d in times else fixed[d] for d in conv_cpu.DIRECTIONS]
        cached[_key(sig)] = {"forms": forms, "seconds": times}
        measured += 1
        log.info("tuned x %s w %s stride %s: forward %s, input gradient %s, weight gradient %s", x.shape, w.shape,
                 stride, *cached[_key(sig)]["forms"])
    if measured:
        _save(path, cached)
        log.info("tuned %d convolution(s) of %s in %.1f s; cache %s", measured, net.name, _now() - start,
                 path)
    known = {_key(conv_cpu.signature(*c[:5])) for c in convs}
    return Tuned(tuple((_freeze(json.loads(k)), tuple(v["forms"])) for k, v in sorted(cached.items()) if k in known))


def _freeze(value):
    """JSON lists back to the nested tuples of ops.conv_cpu.signature."""
    return tuple(_freeze(v) for v in value) if isinstance(value, list) else value

