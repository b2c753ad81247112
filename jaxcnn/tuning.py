"""Tuning: how each net runs fastest on this CPU, measured by an explicit command and read by training and
inference, as cuDNN's benchmark mode chooses GPU kernels.

    python -m jaxcnn tune lenet_caffe --batch 64             # measures, once per machine; writes the cache

or in Python, then read by the Trainer (tuning.lookup) and jaxcnn.predictor for Net.apply(train=False):

    >>> import jax, jax.numpy as jnp
    >>> import jaxcnn
    >>> net = jaxcnn.Net([jaxcnn.Conv("conv1", 4, 3)], (8, 8, 1))
    >>> _, params, state = net.init(jax.random.key(0))
    >>> tuning = jaxcnn.tune(net, batch=2, training=False)  # a Tuned lowering on the CPU, 'native' elsewhere
    >>> y, state = net.apply(params, state, jnp.ones((2, 8, 8, 1)), lowering=tuning.lowering)
    >>> y.shape
    (2, 6, 6, 4)

Two things are measured, each a choice between computations that give the same numbers (tests/test_lowering.py,
tests/test_grouped_conv.py, tests/test_tuning.py): only the speed changes.
- Convolution forms: the 'cpu' lowering computes each convolution, its input gradient and its weight gradient in
  one of several forms (ops.conv_cpu: native, wide, wide_input, im2col, im2col_chunked; for groups also per_group,
  shifted and, for the output, shifted_rows), by fixed rules tuned on one processor that do not carry to others.
  `tune` times every candidate of each direction of each convolution shape and keeps the fastest.
- YNNPACK fusions: XLA:CPU hands dots, convolutions and reductions to the YNNPACK library; the per-jit compiler
  option YNN_OPTION chooses which (YNN_CHOICES). Which is faster depends on the whole net (the AlexNet prototxt
  ran 6x faster without YNNPACK, LeNet 1.4x slower: docs/performance.md), and so may the forms: a form fastest
  alone can be slower beside its neighbours (layouts, fusions). So `tune` compiles the net's training gradient (or
  its inference forward) with the measured forms and with the fixed rules (when they differ), each under every
  choice the installed jaxlib accepts (`ynn_choices`), and keeps the fastest pair for that net, batch and mode.

Reading never measures: `lookup` returns the cached choices for a net (the fixed rules and XLA's defaults where
there are none), and so do the Trainer and `jaxcnn.predictor`; JAXCNN_AUTOTUNE=0 makes them ignore the cache.
- Cache: one JSON file per processor, jax/jaxlib version and CACHE_VERSION (raised whenever the forms, their
  candidates, the YNNPACK choices or the keys change) in $JAXCNN_CACHE_DIR (default ~/.cache/jaxcnn); forms are
  keyed by convolution shape, YNNPACK choices by a fingerprint of the net's layers and shapes, batch, dtype, mode
  and forms.
- Time: `tune` is bounded by `budget_s`; what is not measured in time keeps the fixed rules (and is measured next
  time). Progress and results are logged (logger "jaxcnn.tuning").
"""
import functools
import hashlib
import json
import logging
import os
import platform
import statistics
import time
from dataclasses import dataclass, fields
from importlib import metadata
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from . import first_block
from .layers import Conv
from .ops import conv_cpu
from .ops.conv import conv_geometry
from .ops.lowering import Tuned, compiler_options

log = logging.getLogger(__name__)
_now = time.monotonic  # the clock the budget is kept by
ENV_SWITCH = "JAXCNN_AUTOTUNE"
ENV_CACHE = "JAXCNN_CACHE_DIR"
# 3: YNNPACK choices per net; forms measured with ops.compiler_options(); 4: whole-net forms; 5: shifted_rows
CACHE_VERSION = 6
YNN_OPTION = "xla_cpu_experimental_ynn_fusion_type"
# label: the jit compiler options it adds ('default': XLA's own, which in jaxlib 0.10 include convolutions)
YNN_CHOICES = {
    "default": {},
    "no_convolutions": {YNN_OPTION: "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"},
    "off": {YNN_OPTION: ""},
}
NET_ROUNDS = 5  # interleaved rounds timing a net under each pair of forms and YNNPACK choice
# the forms a whole net is timed with: each convolution's measured fastest, or the fixed rules (lowering 'cpu')
# The whole-net candidates: the measured forms, the fixed rules, the measured forms with the first block by the
# fused kernels (jaxcnn.first_block; training in float32 where the net opens with one and g++ builds them).
FORM_SETS = ("measured", "fixed", "fused")


@dataclass(frozen=True)
class Tuning:
    """How to run a net: `lowering` for Net.apply or the Trainer (a Tuned lowering, 'cpu' for the fixed rules,
    'native' off the CPU) and `compiler_options` for jax.jit (ops.compiler_options() and the YNNPACK choice).
    convolutions: ((layer, signature, cache entry {'forms', 'seconds'}), ...) of the net's convolutions found
    measured (layer: the first layer computing it); fusion: the net's cache entry for the whole net's choice
    {'forms' (a FORM_SETS name), 'choice' (a YNN_CHOICES label), 'seconds' and 'compile_seconds' keyed
    'forms+choice', ...}, or None."""

    lowering: object
    compiler_options: dict
    convolutions: tuple = ()
    fusion: dict | None = None

    def table(self) -> str:
        """What was chosen and why: each convolution's form per direction with every candidate's milliseconds
        (the fastest of several runs; '-' where nothing was measured: the fixed rule), then the YNNPACK choice
        with each choice's milliseconds per call (median) and compile seconds, and whether the net runs the measured
        forms or the fixed rules."""
        head = f"{'layer':16} {'input':>16} {'kernel':>14} {'stride':>6} {'direction':9} {'chosen':15} candidates (ms)"
        lines = [head, "-" * len(head)]
        for layer, (x, w, _, stride, _, _), entry in self.convolutions:
            for i, direction in enumerate(conv_cpu.DIRECTIONS):
                times = entry["seconds"].get(direction)
                cells = ", ".join(f"{n} {1e3 * t:.3g}" for n, t in sorted(times.items(), key=lambda kv: kv[1])) \
                    if times else "- (fixed rule)"
                first = (f"{layer:16} {'x'.join(map(str, x)):>16} {'x'.join(map(str, w)):>14} "
                         f"{'x'.join(map(str, stride)):>6}") if i == 0 else " " * 55
                lines.append(f"{first} {direction:9} {entry['forms'][i]:15} {cells}")
        if not self.convolutions:
            lines.append("(no convolution measured: the fixed rules)")
        if self.fusion:
            f = self.fusion
            lines.append(f"forms+YNNPACK fusions ({'training gradient' if f['training'] else 'inference'}, whole "
                         "net): " + ", ".join(f"{k} {1e3 * t:.3g} ms (compile {f['compile_seconds'][k]:.1f} s)"
                                              for k, t in f["seconds"].items()) + f" -> {f['forms']}+{f['choice']}")
        else:
            lines.append("YNNPACK fusions: not measured (XLA's default)")
        return "\n".join(lines)


def enabled() -> bool:
    """Whether the Trainer and jaxcnn.predictor read the cache: unless $JAXCNN_AUTOTUNE is 0, false, off or no."""
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


def cache_directory(cache_dir=None) -> Path:
    """cache_dir, else $JAXCNN_CACHE_DIR, else ~/.cache/jaxcnn: where the measurements (and compiled kernels) live."""
    return Path(cache_dir or os.environ.get(ENV_CACHE) or Path.home() / ".cache" / "jaxcnn")


def cache_file(cache_dir=None) -> Path:
    """The cache file for this processor, jax/jaxlib version and CACHE_VERSION."""
    key = f"{processor()} | jax {jax.__version__} | jaxlib {metadata.version('jaxlib')} | forms v{CACHE_VERSION}"
    return cache_directory(cache_dir) / f"conv_forms-{hashlib.sha1(key.encode()).hexdigest()[:12]}.json"


def _load(path) -> dict:
    """The cache's {'forms': {signature key: entry}, 'fusions': {net key: entry}} (empty if there is none)."""
    try:
        data = json.loads(Path(path).read_text())
        return {"forms": dict(data["forms"]), "fusions": dict(data.get("fusions", {}))}
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("ignoring the unreadable tuning cache %s (%s)", path, e)
    return {"forms": {}, "fusions": {}}


def _save(path, cache) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps({"processor": processor(), "jax": jax.__version__, "jaxlib": metadata.version("jaxlib"),
                               "version": CACHE_VERSION, **cache}, indent=1))
    os.replace(tmp, path)  # whole or not at all, also with several processes tuning at once


def convolutions(net, batch: int, input_shape=None, dtype="float32") -> list[tuple]:
    """Every distinct convolution `net` computes at `batch`: (x, w, stride, pads, dilation, directions, layer)
    with x and w as ShapeDtypeStructs, as ops.conv2d hands them to ops.conv_cpu.conv (the groups are x's channels
    over w's input channels), the directions training computes (no input gradient where no layer before has
    parameters: the input is data) and the name of the first layer computing it."""
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
            out.append((x, w, stride, pads, dilation, directions, layer.name))
    return out


def _computation(direction, name, stride, pads, dilation):
    """One direction in one form, as ops.conv_cpu.conv computes it (a gradient is the transpose of the form in
    that direction's layout): f(x, w, g) -> output, input or weight gradient."""
    def form(x, w):
        return conv_cpu.FORMS[name](x, w, stride, pads, dilation, direction)

    if direction == "forward":
        return lambda x, w, g: form(x, w)
    if direction == "input":
        return lambda x, w, g: jax.vjp(lambda x: form(x, w), x)[1](g)[0]
    return lambda x, w, g: jax.vjp(lambda w: form(x, w), w)[1](g)[0]


def _random(seed, structs):
    """Standard normal arrays (integer leaves: zeros) shaped like a pytree of ShapeDtypeStructs."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: jnp.asarray(rng.standard_normal(s.shape) if jnp.issubdtype(s.dtype, jnp.floating)
                                              else np.zeros(s.shape), s.dtype), structs)


def measure(direction, name, x, w, stride, pads, dilation, *, options=None, repeats=5, min_seconds=0.05) -> float:
    """Seconds one run of `direction` in form `name` takes on random operands, compiled with `options` (default
    ops.compiler_options('cpu'), as the Trainer and jaxcnn.predictor compile): the fastest of `repeats` runs (at
    least min_seconds of runs) after a warm-up."""
    y = jax.eval_shape(lambda x, w: conv_cpu.native(x, w, stride, pads, dilation), x, w)
    args = _random(0, (x, w, y))
    fn = jax.jit(_computation(direction, name, stride, pads, dilation),
                 compiler_options=compiler_options("cpu") if options is None else options)
    jax.block_until_ready(fn(*args))
    best, total, runs = float("inf"), 0.0, 0
    while runs < repeats or total < min_seconds:
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        took = time.perf_counter() - start
        best, total, runs = min(best, took), total + took, runs + 1
    return best


@functools.cache
def ynn_choices() -> dict:
    """{label: compiler options} of the YNN_CHOICES the installed jaxlib accepts: each is compiled once on a tiny
    function (jax raises an error for an option or value it does not know: jaxlib 0.7 has no YNN_OPTION)."""
    accepted = {}
    for label, options in YNN_CHOICES.items():
        try:
            jax.jit(lambda x: x + 1, compiler_options=options).lower(1.0).compile()
        except jax.errors.JaxRuntimeError as e:
            log.info("YNNPACK choice %r is not available with jaxlib %s: %s", label, metadata.version("jaxlib"),
                     str(e).splitlines()[0])
            continue
        accepted[label] = options
    return accepted


def _layer_config(layer) -> dict:
    """A layer's settings that shape its computation: its fields but the name, the optimizer's multipliers and
    initialisers."""
    values = {f.name: getattr(layer, f.name) for f in fields(layer)}
    return {k: v for k, v in values.items()
            if k not in ("name", "lr_mult", "decay_mult") and not k.endswith("_init") and not callable(v)}


def fingerprint(net, batch: int, input_shape=None, dtype="float32", training=True, lowering="cpu") -> str:
    """The key of a net's YNNPACK choice: its layers' types, settings, wiring and shapes, the batch, dtype, mode
    and lowering (the forms)."""
    rows = [(type(r.layer).__name__, _layer_config(r.layer), r.inputs, r.outputs, r.in_shape, r.out_shape)
            for r in net.shapes(input_shape)]
    forms = lowering.forms if isinstance(lowering, Tuned) else lowering
    text = json.dumps([rows, batch, str(jnp.dtype(dtype)), bool(training), forms], default=repr)
    return hashlib.sha1(text.encode()).hexdigest()


def _net_computation(net, batch, input_shape, dtype, training, lowering):
    """(f, args): the net's inference forward, or in training the gradient of its outputs' dot product with a
    random cotangent with respect to the params (what a training step computes, short of the loss and update),
    on random inputs and the net's initial params, in `dtype`."""
    shapes = net.input_shapes(input_shape)
    inputs = {blob: jax.ShapeDtypeStruct((batch, *shape), jnp.dtype(dtype)) for blob, shape in shapes.items()}
    x = _random(1, inputs if len(inputs) > 1 else next(iter(inputs.values())))
    _, params, state = jax.jit(lambda key: net.init(key, input_shape))(jax.random.key(0))  # one compilation
    params = jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, params)
    rng = jax.random.key(2)

    def apply(p, s, x):
        return net.apply(p, s, x, train=training, rng=rng, lowering=lowering)[0]

    if not training:
        return apply, (params, state, x)
    g = _random(3, jax.eval_shape(apply, params, state, x))
    return (lambda p, s, x, g: jax.vjp(lambda p: apply(p, s, x), p)[1](g)[0]), (params, state, x, g)


def _seconds_per_call(fn, args, min_seconds=0.1) -> float:
    """The mean seconds of as many calls of fn(*args) as fill min_seconds (at least one)."""
    calls, start = 0, time.perf_counter()
    while True:
        jax.block_until_ready(fn(*args))
        calls += 1
        took = time.perf_counter() - start
        if took >= min_seconds:
            return took / calls


def _measure_fusions(net, batch, input_shape, dtype, training, lowerings: dict) -> dict:
    """Each pair of forms (lowerings: {FORM_SETS name: lowering}) and YNNPACK choice: compile the net's computation
    (_net_computation), then time all in NET_ROUNDS interleaved rounds -> {'forms', 'choice' (the fastest pair),
    'seconds' (median per call), 'compile_seconds'}, the last two keyed 'forms+choice'."""
    compiled, compile_s = {}, {}
    for forms, lowering in lowerings.items():
        fn, args = _net_computation(net, batch, input_shape, dtype, training, lowering)
        for label, options in ynn_choices().items():
            key, start = f"{forms}+{label}", time.perf_counter()
            exe = jax.jit(fn, compiler_options={**compiler_options("cpu"), **options}).lower(*args).compile()
            compile_s[key] = time.perf_counter() - start
            jax.block_until_ready(exe(*args))
            compiled[key] = exe, args
    samples = {key: [] for key in compiled}
    for _ in range(NET_ROUNDS):
        for key, (exe, args) in compiled.items():
            samples[key].append(_seconds_per_call(exe, args))
    seconds = {key: statistics.median(s) for key, s in samples.items()}
    forms, choice = min(seconds, key=seconds.get).split("+")
    return {"forms": forms, "choice": choice, "seconds": seconds, "compile_seconds": compile_s}


def _key(sig) -> str:
    return json.dumps(sig)


def _choices(cache, convs, net, batch, input_shape, dtype, training) -> Tuning:
    """The Tuning the cache holds for the net: the measured forms of its convolutions (the fixed rules where none
    are), and the whole-net choice measured with exactly those forms (XLA's default where none is): the YNNPACK
    choice, and those forms or the fixed rules."""
    found = tuple((conv[-1], sig, cache["forms"][_key(sig)]) for sig, conv in convs if _key(sig) in cache["forms"])
    lowering = Tuned(tuple(sorted((sig, tuple(entry["forms"])) for _, sig, entry in found))) if found else "cpu"
    fusion = cache["fusions"].get(fingerprint(net, batch, input_shape, dtype, training, lowering))
    options = {**compiler_options("cpu"), **(YNN_CHOICES.get(fusion["choice"], {}) if fusion else {})}
    if fusion and fusion["forms"] == "fixed":
        lowering = "cpu"
    elif fusion and fusion["forms"] == "fused" and first_block.available():
        lowering = Tuned(lowering.forms if isinstance(lowering, Tuned) else (), first_block=True)
    return Tuning(lowering, options, found, fusion)


def _fixed_forms(x, w, stride, pads, dilation) -> tuple:
    """The forms the fixed rules give a convolution, one per direction (conv_cpu.DIRECTIONS)."""
    return tuple(conv_cpu.form(d, None, x, w, stride, pads, dilation).__name__ for d in conv_cpu.DIRECTIONS)


def _signatures(net, batch, input_shape, dtype):
    return [(conv_cpu.signature(*c[:5]), c) for c in convolutions(net, batch, input_shape, dtype)]


def lookup(net, batch: int, *, input_shape=None, dtype="float32", training: bool = True, backend: str | None = None,
           cache_dir=None) -> Tuning:
    """What the cache holds for `net` at `batch` (see `tune` for the arguments), measuring nothing: the fixed rules
    and XLA's defaults where nothing was measured, and always with $JAXCNN_AUTOTUNE=0; 'native' off the CPU."""
    backend = backend or jax.default_backend()
    if backend != "cpu":
        return Tuning("native", compiler_options(backend))
    if not enabled():
        return Tuning("cpu", compiler_options("cpu"))
    return _choices(_load(cache_file(cache_dir)), _signatures(net, batch, input_shape, dtype), net, batch,
                    input_shape, dtype, training)


def tune(net, batch: int, *, input_shape=None, dtype="float32", training: bool = True, budget_s: float = 600.0,
         cache_dir=None, backend: str | None = None) -> Tuning:
    """Measure what the cache lacks for `net` at `batch` on this machine, write it, and return the Tuning.

    Args:
      net: a jaxcnn net; its convolutions are read from net.shapes(input_shape).
      batch: the batch size it runs at (the Trainer's global batch; the inference batch).
      input_shape: per-example (H, W, C) (a dict for several input blobs); default the net's.
      dtype: the compute dtype ('float32' or 'bfloat16').
      training: measure for training (the gradients' forms too; the YNNPACK choice on the params' gradient) or,
        False, for inference (the forward forms; the YNNPACK choice on Net.apply(train=False)).
      budget_s: the most seconds to spend measuring; what is left keeps the fixed rules or XLA's defaults.
      cache_dir: where the cache file lives (default $JAXCNN_CACHE_DIR, else ~/.cache/jaxcnn).
      backend: the platform the net will run on (default JAX's default backend).

    Returns:
      the Tuning: 'native' and no measurements off the CPU (nothing to tune there); on the CPU the forms and
      YNNPACK choice measured now or before.
    """
    backend = backend or jax.default_backend()
    if backend != "cpu":
        return Tuning("native", compiler_options(backend))
    path, start, new = cache_file(cache_dir), _now(), {"forms": {}, "fusions": {}}
    cache, convs = _load(path), _signatures(net, batch, input_shape, dtype)
    for sig, (x, w, stride, pads, dilation, directions, layer) in convs:
        directions = directions if training else ("forward",)
        entry = cache["forms"].get(_key(sig))
        if entry and set(directions) <= set(entry["seconds"]):
            continue
        if _now() - start > budget_s:
            log.info("tuning budget of %.0f s spent; %s and later convolutions keep the fixed rules", budget_s, layer)
            break
        times = {d: {n: measure(d, n, x, w, stride, pads, dilation)
                     for n in conv_cpu.candidates(d, x, w, stride, pads, dilation)} for d in directions}
        fixed = dict(zip(conv_cpu.DIRECTIONS, _fixed_forms(x, w, stride, pads, dilation)))
        forms = [min(times[d], key=times[d].get) if d in times else fixed[d] for d in conv_cpu.DIRECTIONS]
        cache["forms"][_key(sig)] = new["forms"][_key(sig)] = {"forms": forms, "seconds": times}
        log.info("tuned %s (x %s, w %s, stride %s): %s", layer, x.shape, w.shape, stride,
                 ", ".join(f"{d} {forms[conv_cpu.DIRECTIONS.index(d)]}" for d in directions))
    chosen = _choices(cache, convs, net, batch, input_shape, dtype, training)
    if chosen.fusion is None and _now() - start <= budget_s:
        lowerings, conv_of = {"measured": chosen.lowering}, {_key(sig): conv for sig, conv in convs}
        if any(tuple(entry["forms"]) != _fixed_forms(*conv_of[_key(sig)][:5]) for _, sig, entry in chosen.convolutions):
            lowerings["fixed"] = "cpu"  # the fixed rules differ from the measured forms
        shapes = list(net.input_shapes(input_shape).values())
        if (training and jnp.dtype(dtype) == jnp.float32 and len(shapes) == 1
                and first_block.layers_of(net, shapes[0]) and first_block.available()):
            forms = chosen.lowering.forms if isinstance(chosen.lowering, Tuned) else ()
            lowerings["fused"] = Tuned(forms, first_block=True)
        fusion = {"net": net.name, "batch": batch, "dtype": str(jnp.dtype(dtype)), "training": bool(training),
                  **_measure_fusions(net, batch, input_shape, dtype, training, lowerings)}
        key = fingerprint(net, batch, input_shape, dtype, training, chosen.lowering)
        cache["fusions"][key] = new["fusions"][key] = fusion
        log.info("forms+YNNPACK fusions for %s at batch %d (%s): %s", net.name, batch,
                 "training" if training else "inference", ", ".join(f"{k} {1e3 * s:.2f} ms" for k, s in
                                                                      fusion["seconds"].items())
                 + f" -> {fusion['forms']}+{fusion['choice']}")
        chosen = _choices(cache, convs, net, batch, input_shape, dtype, training)
    if any(new.values()):
        latest = _load(path)  # with what other processes may have written meanwhile
        _save(path, {part: {**latest[part], **new[part]} for part in new})
        log.info("tuned %s in %.1f s; cache %s", net.name, _now() - start, path)
    return chosen
