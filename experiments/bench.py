"""Speed, side by side, in one process: jaxcnn, the same nets on plain XLA ops, PyTorch, OpenCV's dnn and
onnxruntime, on the CPU or a GPU.

    python -m experiments.bench [--platform cpu|gpu] [--data-dir DIR] [--out DIR] [--quick]   # needs the bench extra

Variants. jaxcnn: its Trainer, ops and jaxcnn.predictor as a user runs them (on the CPU its lowerings with the
convolution forms and YNNPACK choice jaxcnn.tuning measured for this machine: the bench tunes each case's net
first, what the cache lacks, unless --no-tune or JAXCNN_AUTOTUNE=0; XLA's native ops on a GPU) and
ops.compiler_options(); plain XLA: the same nets with lowering 'native' (lax.conv_general_dilated with
feature_group_count, lax.reduce_window) and XLA's default options, what Flax and Equinox users get (on a GPU
the two JAX variants compile the same ops); PyTorch eager (on a GPU: CUDA, cuDNN with benchmark mode, TF32 allowed for
matmuls as JAX's default precision does); with --torch-compile also PyTorch's torch.compile (on a GPU in mode
'reduce-overhead', which replays CUDA graphs, the mode for small launch-bound nets; on the CPU its default mode);
for the inference cases OpenCV's dnn module (cv2.dnn.readNetFromCaffe, its default backend and threads) and
onnxruntime (jaxcnn.export.onnx's export of the same net and weights, CPUExecutionProvider, graph optimizations
ORT_ENABLE_ALL, intra-op threads as PyTorch's); either runtime not installed: its columns are left out. The
process keeps freed host memory for reuse (jaxcnn.hostmem), for all variants alike.

Cases: the Caffe LeNet-BN training step (Trainer + Caffe SGD; PyTorch: the same layers as nn modules and
torch.optim.SGD with momentum and weight decay) at batch 64 and 256; AlexNet's grouped conv2 forward + backward at
batch 8; the cuda-convnet CIFAR-10 net with local layers, training step at batch 128; the forward of VGG16
converted to a fully-convolutional net (jaxcnn.convert.fc_to_conv) on one 384x384 image; and `mnist_epoch`, one
epoch of experiments.mnist's recipe as a user sees it (LeNet-BN, batch 64, SGD momentum 0.9 with a cosine
schedule, random 2-pixel shifts, the data on the device, evaluation on the test set after the epoch): jaxcnn's
`run_training`, the same recipe in plain JAX + Optax (experiments.plain_jax) and in a plain PyTorch loop
(torch_nets.Recipe), each from fresh weights every round. The epoch uses MNIST from --data-dir, else 60,000
random images (MNIST's size; the speed does not depend on the pixels). On the CPU, inference against OpenCV's dnn
and onnxruntime at batch 1 and 8 (`<net>_infer_b<batch>`): MobileNet v1 (depthwise), Caffe's bvlc_alexnet (groups
2; the deploy file in experiments/caffe), GoogLeNet and ResNet-50, each a Caffe prototxt written by the bench
(experiments.caffe_models) with random weights saved as a caffemodel by jaxcnn.caffe.save_caffemodel; jaxcnn
loads the prototxt and weights with jaxcnn.caffe, folds its BatchNorms (jaxcnn.fold_batchnorm) and runs
jaxcnn.predictor (plain XLA the net unfolded), OpenCV reads the same two files,
onnxruntime runs jaxcnn's ONNX export of the loaded net (the batch fixed). The JAX variants' compile time (trace
and XLA compilation) is reported apart from the first call.

All sides get the same weights and data; a check that their outputs agree runs first. Each variant is warmed up,
then all are timed in interleaved rounds; the table gives median images/s and the ratios. The machine's float32
matmul rate is measured in the same run (the best of several large matrix products), and every case reports its
fraction of it: FLOPs per image (a training step or forward + backward counts 3x the forward's FLOPs from
jaxcnn.summary) x images/s / peak. DIR/bench.json holds the medians, ratios, fractions, every round, the epoch's
seconds and test accuracies, the seconds spent tuning each case, thread counts, versions and the load average.
"""
import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from importlib import metadata
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn import Net, datasets, fc_to_conv, fold_batchnorm, ops, predictor, summary, tuning, zoo
from jaxcnn.caffe import load_prototxt, save_caffemodel
from jaxcnn.datasets import CAFFE_PIXEL_SCALE
from jaxcnn.hostmem import keep_freed_memory
from jaxcnn.train import RunSpec, SolverConfig, Trainer, optimizer, run_training
from jaxcnn.train import mnist as mnist_recipe

from . import caffe_models, mnist, plain_jax, training

try:
    import torch

    from . import torch_nets
except ImportError:  # the optional extra
    torch = None
try:
    import cv2
except ImportError:  # the optional extra (the inference cases run without OpenCV's column)
    cv2 = None
try:
    import onnxruntime

    from jaxcnn.export.onnx import to_onnx
except ImportError:  # the optional extra (onnxruntime runs jaxcnn's ONNX export, which needs onnx)
    onnxruntime = None

VARIANTS = {"jaxcnn": "auto", "plain_xla": "native"}  # the jaxcnn lowering of each JAX variant
SOLVER = SolverConfig(lr=0.01, schedule="fixed", momentum=0.9, weight_decay=5e-4)
ALEXNET_PROTOTXT = Path(__file__).parent / "caffe" / "bvlc_alexnet_deploy.prototxt"
INFERENCE_NETS = {"mobilenet_v1": caffe_models.mobilenet_v1, "alexnet": ALEXNET_PROTOTXT.read_text,
                  "googlenet": caffe_models.googlenet, "resnet50": caffe_models.resnet50}
RUN_SECONDS = 0.25  # an inference run: as many calls as take the first runtime (OpenCV's where installed) this long


class Target:
    """Where the bench runs: 'cpu' or 'gpu', PyTorch's device, how many more steps a case takes there, the
    PyTorch variants: {name: how a module or function is prepared} (eager, and torch.compile when asked), and
    whether jaxcnn's nets are tuned before they are timed (`tune`; `tuning_seconds` adds up the time it takes)."""

    def __init__(self, name, torch_compile=False, tune=True):
        self.name = name
        self.tune, self.tuning_seconds = tune and tuning.enabled(), 0.0
        self.torch_device = "cuda" if name == "gpu" else "cpu"
        self.scale = 8 if name == "gpu" else 1  # a GPU step is short: more steps per timed run
        self.torch_variants = {"torch": lambda f: f}
        if torch_compile:
            mode = "reduce-overhead" if name == "gpu" else None
            self.torch_variants["torch_compile"] = lambda f: torch.compile(f, mode=mode, dynamic=False)

    def sync(self):
        if self.name == "gpu":
            torch.cuda.synchronize()


def setup(variant, target, net, batch, **kw):
    """(lowering, XLA options) a variant runs `net` at `batch` with: plain XLA's native ops and XLA's defaults;
    jaxcnn's as jaxcnn.tuning has them for this machine (on the CPU after tuning what the cache lacks, if
    target.tune; ops.compiler_options() elsewhere). kw: tuning.tune's input_shape, training."""
    if variant != "jaxcnn":
        return VARIANTS[variant], {}
    if target.name != "cpu":
        return VARIANTS[variant], ops.compiler_options(target.name)
    start = time.perf_counter()
    tuned = tuning.tune(net, batch, **kw) if target.tune else tuning.lookup(net, batch, **kw)
    target.tuning_seconds += time.perf_counter() - start
    return tuned.lowering, tuned.compiler_options


def threads() -> int:
    """Cores this process may use: XLA:CPU's thread pool spans them all; PyTorch is set to the same."""
    return len(os.sched_getaffinity(0))


def check_close(case, ours, theirs, rtol, reference="PyTorch") -> float:
    """Raise unless jaxcnn's and the reference's outputs agree (relative to the largest magnitude); -> the error."""
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    err = float(np.abs(ours - theirs).max() / max(np.abs(theirs).max(), 1e-30))
    if not err <= rtol:
        raise AssertionError(f"{case}: jaxcnn and {reference} outputs differ (max relative error {err:.1e})")
    return err


def nchw(x, target=None):
    t = torch.from_numpy(np.asarray(x)).permute(0, 3, 1, 2).contiguous()
    return t if target is None else t.to(target.torch_device)


def tolerance(target):
    """Agreement expected between the frameworks: float32, or TF32 matmuls and convolutions on a GPU."""
    return 2e-3 if target.name == "cpu" else 2e-2


def train_case(net, batch, steps, target, seed=0):
    """`steps` SGD steps of `net` on random uint8 images -> ({variant: run}, images per run, FLOPs per image)."""
    rs = np.random.default_rng(seed)
    n = batch * max(steps, 4)
    images = rs.integers(0, 256, (n, *net.input_shape), dtype=np.uint8)
    labels = rs.integers(0, 10, n).astype(np.int32)
    _, params, state = net.init(jax.random.key(seed))  # what Trainer.init(seed) draws too
    lr_mult, decay_mult = net.multipliers(params)
    runners = {}
    for variant in VARIANTS:
        lowering, options = setup(variant, target, net, batch)
        trainer = Trainer(net, optimizer(SOLVER, 10**6, lr_mult, decay_mult), batch_size=batch,
                          preprocess=lambda x: x.astype(jnp.float32) * CAFFE_PIXEL_SCALE, lowering=lowering,
                          compiler_options=options)
        box = {"ts": trainer.init(seed)}
        data = trainer.put((images, labels))
        perm = trainer.permutation(box["ts"], 0, n)

        def run(trainer=trainer, data=data, perm=perm, box=box):
            box["ts"], losses = trainer.train_steps(box["ts"], *data, perm, 0, steps)
            return losses
        runners[variant] = run

    t_images, t_labels = nchw(images, target), torch.from_numpy(labels).long().to(target.torch_device)
    t_perm = torch.from_numpy(rs.permutation(n)).to(target.torch_device)
    x = images[:batch].astype(np.float32) * CAFFE_PIXEL_SCALE
    ours, _ = net.apply(params, state, jnp.asarray(x), train=True)
    for variant, prepare in target.torch_variants.items():
        model = torch_nets.twin(net, params).to(target.torch_device).train()
        with torch.no_grad():  # before the first step, while both sides hold the same weights
            check_close(net.name, ours, model(nchw(x, target)).cpu().numpy(), tolerance(target))
        opt = torch_nets.sgd(model, lr_mult, SOLVER.lr, SOLVER.momentum, SOLVER.weight_decay)
        forward = prepare(model)

        def torch_run(forward=forward, opt=opt):
            for i in range(steps):
                idx = t_perm[i * batch:(i + 1) * batch]
                opt.zero_grad()
                loss = torch.nn.functional.cross_entropy(forward(t_images[idx].float() * CAFFE_PIXEL_SCALE),
                                                         t_labels[idx])
                loss.backward()
                opt.step()
            return loss
        runners[variant] = torch_run
    return runners, batch * steps, 3 * summary(net).flops


def grouped_conv_case(batch, target, seed=0):
    """AlexNet conv2 (27x27x96 -> 256, 5x5, pad 2, groups 2): forward + backward to x, w and b."""
    net = zoo.alexnet()
    row = next(r for r in net.shapes() if r.layer.name == "conv2")
    layer, in_shape = row.layer, row.in_shape
    rs = np.random.default_rng(seed)
    x = rs.standard_normal((batch, *in_shape)).astype(np.float32)
    _, p, _ = layer.init(jax.random.key(seed), in_shape)
    w, b = np.array(p["w"]), np.array(p["b"])

    def conv(x, w, b, lowering="auto"):
        return ops.conv2d(x, w, b, stride=layer.stride, padding=layer.padding, groups=layer.groups, lowering=lowering)

    g = rs.standard_normal((batch, *row.out_shape)).astype(np.float32)
    runners, on_device = {}, jax.device_put((x, w, b, g))  # as PyTorch's tensors: made once, not sent every run
    for variant in VARIANTS:
        lowering, options = setup(variant, target, Net([layer], in_shape), batch)
        fwd_bwd = jax.jit(lambda x, w, b, g, lowering=lowering: jax.vjp(
            lambda x, w, b: conv(x, w, b, lowering), x, w, b)[1](g), compiler_options=options)
        runners[variant] = lambda f=fwd_bwd: f(*on_device)
    dev = target.torch_device
    tx, tw, tb = (torch.from_numpy(a).to(dev).requires_grad_()
                  for a in (nchw(x).numpy(), w.transpose(3, 2, 0, 1).copy(), b))
    tg, tpad = nchw(g, target), torch_nets.padding(layer, in_shape)

    def torch_conv(tx, tw, tb):
        return torch.nn.functional.conv2d(tx, tw, tb, padding=tpad, groups=layer.groups)

    for variant, prepare in target.torch_variants.items():
        def torch_run(f=prepare(torch_conv)):
            tx.grad = tw.grad = tb.grad = None  # fresh gradients, as the JAX side returns
            y = f(tx, tw, tb)
            y.backward(tg)
            return y
        runners[variant] = torch_run
    with torch.no_grad():
        theirs = torch.nn.functional.conv2d(tx, tw, tb, padding=tpad, groups=layer.groups)
        check_close("alexnet conv2", conv(x, w, b), theirs.permute(0, 2, 3, 1).cpu().numpy(), tolerance(target))
    return runners, batch, 3 * layer.cost(in_shape, row.out_shape)[1]


def fcn_case(size, target, seed=0):
    """Forward of VGG16 with its FC head as convolutions on one size x size image (a score map)."""
    net = zoo.vgg16()
    _, params, state = net.init(jax.random.key(seed))
    conv_net, conv_params = fc_to_conv(net, params)
    x = np.random.default_rng(seed).standard_normal((1, size, size, 3)).astype(np.float32)
    runners, x_on_device = {}, jax.device_put(x)
    for variant in VARIANTS:
        lowering, options = setup(variant, target, conv_net, 1, input_shape=x.shape[1:], training=False)
        fwd = jax.jit(lambda p, x, lowering=lowering: conv_net.apply(p, state, x, lowering=lowering)[0],
                      compiler_options=options)
        runners[variant] = lambda f=fwd: f(conv_params, x_on_device)
    model = torch_nets.twin(conv_net, conv_params, (size, size, 3)).to(target.torch_device).eval()
    tx = nchw(x, target)
    for variant, prepare in target.torch_variants.items():
        def torch_run(forward=prepare(model)):
            with torch.no_grad():
                return forward(tx)
        runners[variant] = torch_run
    check_close("vgg16 fcn", runners["jaxcnn"](), runners["torch"]().permute(0, 2, 3, 1).cpu().numpy(),
                tolerance(target))
    return runners, 1, summary(conv_net, (size, size, 3)).flops


def mnist_data(data_dir, images, seed=0):
    """(train, test) for the epoch case: MNIST from data_dir (its first `images` training images), else random
    uint8 images of MNIST's size and count."""
    if data_dir:
        train, test = (datasets.load("mnist", split, data_dir) for split in ("train", "test"))
        return (train[0][:images], train[1][:images]), test
    rs = np.random.default_rng(seed)
    make = lambda n: (rs.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8), rs.integers(0, 10, n).astype(np.int32))  # noqa: E731
    return make(images), make(10_000)


def epoch_case(data_dir, images, target, seed=0):
    """One epoch of experiments.mnist's recipe, then the test set's accuracy -> (runners, images, FLOPs per image)."""
    # the command's settings (lenet_caffe, batch 64, SGD 0.9, cosine from 0.05, 2-pixel shifts), one epoch
    recipe = mnist.arguments(["--epochs", "1", "--seed", str(seed)])
    train, test = mnist_data(data_dir, images, seed)
    net = zoo.get(recipe.model)
    _, params, _ = net.init(jax.random.key(seed))  # what the run's Trainer.init(seed) draws too
    lr_mult, _ = net.multipliers(params)
    lowering, options = setup("jaxcnn", target, net, recipe.batch_size)
    spec = RunSpec(training.config(recipe, recipe.augment), net, train, test,
                   preprocess=mnist_recipe.caffe_scale(train[0]), augment=mnist_recipe.AUGMENTATIONS[recipe.augment],
                   trainer_options={"lowering": lowering, "compiler_options": options})

    def jaxcnn_run():  # the spec keeps its Trainer: the steps compile in the untimed first run only
        return run_training(spec)["test_accuracy"]

    settings = dict(batch_size=recipe.batch_size, lr=recipe.lr, momentum=recipe.momentum,
                    weight_decay=recipe.weight_decay, seed=seed)
    plain = plain_jax.Recipe(train, test, **settings)
    runners = {"jaxcnn": jaxcnn_run, "plain_xla": plain.epoch}
    for variant, prepare in target.torch_variants.items():
        runners[variant] = torch_nets.Recipe(net, params, train, test, lr_mult=lr_mult, device=target.torch_device,
                                             prepare=prepare, **settings).epoch
    return runners, spec.steps_per_epoch() * recipe.batch_size, 3 * summary(net).flops


class CaffeFiles:
    """The inference nets as Caffe files in a temporary directory, written on first use: {name}.prototxt
    (INFERENCE_NETS) and {name}.caffemodel (experiments.caffe_models.random_weights, saved by jaxcnn) ->
    (net loaded by jaxcnn, params, state, prototxt path, caffemodel path)."""

    def __init__(self, seed=0):
        self.seed, self.loaded, self.directory = seed, {}, None

    def __call__(self, name):
        if name not in self.loaded:
            if self.directory is None:
                self.directory = tempfile.TemporaryDirectory(prefix="jaxcnn-bench-")  # removed when the bench ends
            proto, model = (Path(self.directory.name) / f"{name}.{ext}" for ext in ("prototxt", "caffemodel"))
            proto.write_text(INFERENCE_NETS[name]())
            net = load_prototxt(proto)
            params, state = caffe_models.random_weights(net, self.seed)
            save_caffemodel(net, params, state, model)
            self.loaded[name] = (net, params, state, proto, model)
        return self.loaded[name]


def opencv_runtime(net, params, state, proto, model, batch):
    """OpenCV's dnn on the prototxt and caffemodel -> forward(x NCHW) -> its output blob."""
    dnn = cv2.dnn.readNetFromCaffe(str(proto), str(model))

    def forward(x):
        dnn.setInput(x)
        return dnn.forward()
    return forward


def onnxruntime_runtime(net, params, state, proto, model, batch):
    """onnxruntime's CPUExecutionProvider on jaxcnn's ONNX export of `net` with `params` and `state` at a fixed
    `batch`, graph optimizations ORT_ENABLE_ALL, intra-op threads threads(), not spinning -> forward(x NCHW) -> the
    net's output (NCHW for a map). Spinning (onnxruntime's default) keeps its threads busy after each call, on the
    cores the next runner of an interleaved round is timed on: AlexNet at batch 1 ran 15-20% slower after it."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = onnxruntime.InferenceSession(to_onnx(net, params, state, batch=batch).SerializeToString(), options,
                                           providers=["CPUExecutionProvider"])
    (blob,) = net.input_shapes()
    return lambda x: session.run(None, {blob: x})[0]


# The inference references installed: {name: runtime(net, params, state, prototxt, caffemodel, batch) -> forward}
RUNTIMES = {name: runtime for name, runtime, module in (("opencv", opencv_runtime, cv2),
                                                        ("onnxruntime", onnxruntime_runtime, onnxruntime)) if module}
RUNTIME_NAMES = {"opencv": "OpenCV", "onnxruntime": "onnxruntime"}


def inference_case(files, name, batch, target, seed=0):
    """Inference of Caffe net `name` at `batch`: jaxcnn.predictor on the net with its BatchNorms folded once
    (jaxcnn.fold_batchnorm, as onnxruntime fuses its graph once) and plain XLA's jitted Net.apply of the net as
    written against each of RUNTIMES on the same weights -> (runners, images per run, FLOPs per image, info: each
    JAX variant's compile and first-call seconds, its outputs' agreement with each runtime's,
    max_rel_diff_vs_<runtime>). A run is as many calls as take the first runtime RUN_SECONDS."""
    net, params, state, proto, model = files(name)
    x = np.random.default_rng(seed + 1).standard_normal((batch, *net.input_shape)).astype(np.float32)
    x_nchw = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    forwards = {r: runtime(net, params, state, proto, model, batch) for r, runtime in RUNTIMES.items()}
    references = {r: np.asarray(forward(x_nchw)).reshape(batch, -1) for r, forward in forwards.items()}
    start = time.perf_counter()
    next(iter(forwards.values()))(x_nchw)
    calls = max(1, round(RUN_SECONDS / (time.perf_counter() - start)))
    info = {"calls_per_run": calls, "compile_seconds": {}, "first_call_seconds": {},
            **{f"max_rel_diff_vs_{r}": {} for r in RUNTIMES}}
    runners = {}
    for variant in VARIANTS:
        compiled, *weights = fold_batchnorm(net, params, state) if variant == "jaxcnn" else (net, params, state)
        on_device = jax.device_put((*weights, x))
        lowering, options = setup(variant, target, compiled, batch, training=False)
        fn = predictor(compiled, batch, lowering=lowering, compiler_options=options)
        start = time.perf_counter()
        exe = fn.lower(*on_device).compile()
        info["compile_seconds"][variant] = time.perf_counter() - start
        y = np.asarray(jax.block_until_ready(exe(*on_device)))
        info["first_call_seconds"][variant] = time.perf_counter() - start
        y = (y.transpose(0, 3, 1, 2) if y.ndim == 4 else y).reshape(batch, -1)  # the runtimes' outputs are NCHW
        for r, reference in references.items():
            info[f"max_rel_diff_vs_{r}"][variant] = check_close(f"{name} batch {batch}", y, reference,
                                                                 tolerance(target), RUNTIME_NAMES[r])
        runners[variant] = lambda exe=exe, args=on_device: [exe(*args) for _ in range(calls)][-1]
    for r, forward in forwards.items():
        runners[r] = lambda forward=forward: [forward(x_nchw) for _ in range(calls)][-1]
    return runners, batch * calls, summary(net).flops, info


def block(out, target):
    """Wait for a result: JAX's asynchronous dispatch, PyTorch's CUDA stream."""
    target.sync()
    return jax.block_until_ready(out)


def timed(runners, work, rounds, target, warmup=2, first_call=None):
    """Warm every runner up, then time them in interleaved rounds -> ({variant: [images/s per round]},
    {variant: the last round's result}). first_call, a dict, gets each variant's first call in seconds (its
    compilation, plus one run)."""
    for name, run in runners.items():
        for i in range(warmup):
            start = time.perf_counter()
            block(run(), target)
            if i == 0 and first_call is not None:
                first_call[name] = time.perf_counter() - start
    rates, last = {name: [] for name in runners}, {}
    for _ in range(rounds):
        for name, run in runners.items():
            start = time.perf_counter()
            last[name] = block(run(), target)
            rates[name].append(work / (time.perf_counter() - start))
    return rates, last


def matmul_peak(target, seconds=0.5):
    """GFLOP/s of a large float32 matrix product in JAX (default precision), the best of repeated runs."""
    n = 2048 if target.name == "cpu" else 8192
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    mm = jax.jit(lambda a, b: a @ b)
    mm(a, b).block_until_ready()
    best, deadline = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < deadline or best == float("inf"):
        start = time.perf_counter()
        mm(a, b).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def cases(quick, target, data_dir):
    """Case name -> (builder of (runners, images per run, FLOPs per image[, info]), rounds). The inference cases
    against OpenCV and onnxruntime: on the CPU, where either is installed."""
    q, s = (2 if quick else 1), target.scale
    files = CaffeFiles()
    inference = {f"{name}_infer_b{batch}": (lambda name=name, batch=batch: inference_case(files, name, batch, target),
                                            7 // q)
                 for name in INFERENCE_NETS for batch in (1, 8)} if target.name == "cpu" and RUNTIMES else {}
    return {
        "lenet_bn_train_b64": (lambda: train_case(zoo.lenet_caffe(), 64, s * 24 // q, target), 7 // q),
        "lenet_bn_train_b256": (lambda: train_case(zoo.lenet_caffe(), 256, s * 8 // q, target), 7 // q),
        "alexnet_conv2_grouped": (lambda: grouped_conv_case(8 * s, target), 9 // q),
        "cifar10_local_train": (lambda: train_case(zoo.cifar10_local(), 128, s * 4 // q, target), 7 // q),
        "vgg16_fcn_384": (lambda: fcn_case(384, target), 5 * s // q),
        "mnist_epoch": (lambda: epoch_case(data_dir, 12_000 if quick else 60_000, target), 4 - q),
        **inference,
    }


def versions(target):
    v = {"python": platform.python_version(), "jax": jax.__version__, "jaxlib": metadata.version("jaxlib"),
         "torch": torch.__version__, "numpy": np.__version__, "cpu": tuning.processor(),
         "opencv": cv2.__version__ if cv2 else None, "onnxruntime": onnxruntime.__version__ if onnxruntime else None,
         "onnx": metadata.version("onnx") if onnxruntime else None, "jax_devices": [str(d) for d in jax.devices()]}
    if target.name == "gpu":
        v["gpu"] = torch.cuda.get_device_name(0)
    return v


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m experiments.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--platform", default="cpu", choices=("cpu", "gpu"),
                   help="where to run: JAX's default backend must be this platform (default cpu)")
    p.add_argument("--data-dir", help="MNIST files for the epoch case (default: random images of MNIST's size)")
    p.add_argument("--out", default="runs/bench", help="directory for bench.json (default runs/bench)")
    p.add_argument("--quick", action="store_true", help="half the steps and rounds, a quarter of the epoch")
    p.add_argument("--cases", nargs="*", help="run only these cases (default: all)")
    p.add_argument("--torch-compile", action="store_true", help="also time PyTorch's torch.compile (compiles "
                   "every case first: minutes)")
    p.add_argument("--no-tune", action="store_true", help="run jaxcnn with what the tuning cache holds, measuring "
                   "nothing (default: tune each case's net first, what the cache lacks)")
    args = p.parse_args(argv)
    if torch is None:
        p.error("PyTorch is needed for the comparison: pip install -e .[bench]")
    kept = keep_freed_memory()  # for both frameworks, before JAX's first computation (jaxcnn.hostmem)
    if jax.default_backend() != args.platform:
        p.error(f"--platform {args.platform}: JAX's default backend is {jax.default_backend()}")
    if args.platform == "gpu" and not torch.cuda.is_available():
        p.error("--platform gpu: PyTorch sees no CUDA device")
    target = Target(args.platform, torch_compile=args.torch_compile, tune=not args.no_tune)
    if target.name == "gpu":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
    n_threads = threads()
    torch.set_num_threads(n_threads)
    selected = cases(args.quick, target, args.data_dir)
    unknown = set(args.cases or ()) - set(selected)
    if unknown:
        more = " (the inference cases need OpenCV or onnxruntime: pip install -e .[bench])" if not RUNTIMES else ""
        p.error(f"unknown cases {sorted(unknown)}; choose from {', '.join(selected)}{more}")
    selected = {k: v for k, v in selected.items() if not args.cases or k in args.cases}
    peak = matmul_peak(target)
    print(f"{target.name}: float32 matmul peak {peak:,.0f} GFLOP/s (JAX, default precision)", flush=True)
    missing = [RUNTIME_NAMES[r] for r in RUNTIME_NAMES if r not in RUNTIMES]
    if missing and target.name == "cpu":
        print(f"{' and '.join(missing)} not installed: the inference cases "
              f"{'run without it' if RUNTIMES else 'are left out'} (pip install -e .[bench])")
    variants = [*VARIANTS, *target.torch_variants, *(RUNTIMES if any("_infer_" in k for k in selected) else [])]
    others = [v for v in variants if v != "jaxcnn"]
    results, load = {}, [os.getloadavg()[0]]
    header = (f"{'case':24} " + " ".join(f"{v:>13}" for v in variants) + " " +
              " ".join(f"{'/' + v:>14}" for v in others) + f" {'of peak':>8}   (images/s; jaxcnn / each other)")
    print(header + "\n" + "-" * len(header), flush=True)
    out = Path(args.out)

    def write():  # after every case, so that a run cut short keeps what it measured
        ratio = lambda other: {k: r["images_per_second"]["jaxcnn"] / r["images_per_second"][other]  # noqa: E731
                               for k, r in results.items() if other in r["images_per_second"]}
        report = {
            "platform": target.name, **{f"ratios_vs_{v}": ratio(v) for v in others},
            "matmul_peak_gflops": peak,
            "fraction_of_peak": {k: r["fraction_of_peak"] for k, r in results.items()},
            "first_call_seconds": {k: r["first_call_seconds"] for k, r in results.items()},
            "compile_seconds": {k: r["compile_seconds"] for k, r in results.items() if "compile_seconds" in r},
            "tuning_seconds": {k: r["tuning_seconds"] for k, r in results.items()}, "tuned": target.tune,
            "epoch": results.get("mnist_epoch", {}).get("epoch"),
            "cases": results, "quick": args.quick, "data": args.data_dir or "random images",
            "versions": versions(target),
            "threads": {"xla": n_threads, "torch": torch.get_num_threads(),
                        "torch_interop": torch.get_num_interop_threads(),
                        "opencv": cv2.getNumThreads() if cv2 else None,
                        "onnxruntime": n_threads if onnxruntime else None},
            "load_average_1min": load, "keep_freed_memory": kept,
        }
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench.json").write_text(json.dumps(report, indent=1))
        return report

    report = write()
    for name, (build, rounds) in selected.items():
        target.tuning_seconds = 0.0
        runners, work, flops, *info = build()
        first_call_s = {}
        rates, last = timed(runners, work, rounds, target, warmup=1 if name == "mnist_epoch" else 2,
                            first_call=first_call_s)
        med = {v: statistics.median(r) for v, r in rates.items()}
        results[name] = {"images_per_second": med, "rounds": rates, "images_per_run": work,
                         "flops_per_image": flops, "first_call_seconds": first_call_s,
                         "tuning_seconds": target.tuning_seconds,
                         "fraction_of_peak": {v: m * flops / (peak * 1e9) for v, m in med.items()},
                         **(info[0] if info else {})}
        if name == "mnist_epoch":
            results[name]["epoch"] = {"images": work, "seconds": {v: work / m for v, m in med.items()},
                                      "test_accuracy": {v: float(a) for v, a in last.items()}}
        print(f"{name:24} " + " ".join(f"{med[v]:13,.1f}" if v in med else f"{'-':>13}" for v in variants) + " " +
              " ".join(f"{med['jaxcnn'] / med[v]:14.2f}" if v in med else f"{'-':>14}" for v in others) +
              f" {results[name]['fraction_of_peak']['jaxcnn']:8.3f}", flush=True)
        load.append(os.getloadavg()[0])
        report = write()
    if report["epoch"]:
        e = report["epoch"]
        data = "MNIST images" if args.data_dir else "random images (random labels: the accuracy is chance, meaningless)"
        print("epoch of {:,} {}: {}".format(e["images"], data, ", ".join(
            f"{v} {s:.2f} s ({100 * e['test_accuracy'][v]:.2f}% test accuracy)" for v, s in e["seconds"].items())))
    print(f"wrote {out / 'bench.json'}; 1-min load average during the run: {min(load):.1f}-{max(load):.1f}")
    return report


if __name__ == "__main__":
    main()
