"""MobileNet v1 inference on the CPU: jaxcnn against OpenCV's dnn module, the same Caffe net and weights, in one
process.

    python -m experiments.bench_opencv [--out DIR] [--batches 1,8] [--rounds 7]     # needs opencv-python-headless

The net is MobileNet v1 (Howard et al. 2017) as its Caffe port (shicai/MobileNet-Caffe, mobilenet_deploy.prototxt)
lays it out: conv1 32@3x3/2, thirteen depthwise separable blocks (3x3 convolution with group = channels, then
1x1), each convolution followed by BatchNorm + Scale + ReLU, global average pooling, fc7 as a 1x1 convolution to
1000 classes, softmax; 224x224x3 input. The script writes that prototxt and a .caffemodel of random weights (seeded;
BatchNorm statistics drawn so activations stay finite), loads both with jaxcnn.caffe and with
cv2.dnn.readNetFromCaffe, and checks that the two compute the same probabilities.

Variants: jaxcnn, Net.apply(train=False) jitted with lowering 'cpu' (the fixed rules of ops.conv_cpu; depthwise
layers as shifted multiply-adds) and ops.compiler_options(); the same with the jit compiler option
xla_cpu_experimental_ynn_fusion_type = '' (no YNNPACK; probed in a subprocess, left out if the installed jaxlib
does not know it); plain XLA (lowering 'native', XLA's defaults); OpenCV's dnn (its default backend and threads).
For each JAX variant the first call (trace, compile, run) is timed; then all variants are timed in interleaved
rounds, each sample as many calls as fill 0.2 s. The table gives median images/s, the ratio to OpenCV and the
first-call seconds; DIR/bench_opencv.json holds every sample, versions, thread counts and the load average.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import jax
import numpy as np

from jaxcnn import ops, tuning
from jaxcnn.caffe import load_prototxt, save_caffemodel
from jaxcnn.cli import HelpFormatter, entry

from .conv_forms import YNN_OPTION, ynn_settings

SAMPLE_SECONDS = 0.2
# MobileNet v1's depthwise separable blocks: (name, channels in, channels out, stride of the depthwise layer)
BLOCKS = [("conv2_1", 32, 64, 1), ("conv2_2", 64, 128, 2), ("conv3_1", 128, 128, 1), ("conv3_2", 128, 256, 2),
          ("conv4_1", 256, 256, 1), ("conv4_2", 256, 512, 2), *((f"conv5_{i}", 512, 512, 1) for i in range(1, 6)),
          ("conv5_6", 512, 1024, 2), ("conv6", 1024, 1024, 1)]


def _conv(name, bottom, num, kernel, stride=1, pad=0, group=1):
    layer = (f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{name}"\n'
             f'  convolution_param {{ num_output: {num} bias_term: false kernel_size: {kernel} stride: {stride} '
             f'pad: {pad} group: {group} weight_filler {{ type: "msra" }} }} }}\n')
    return layer + "".join(
        f'layer {{ name: "{name}/{suffix}" type: "{kind}" bottom: "{name}" top: "{name}"{body} }}\n'
        for suffix, kind, body in [("bn", "BatchNorm", " batch_norm_param { eps: 1e-5 }"),
                                   ("scale", "Scale", " scale_param { bias_term: true }"), ("relu", "ReLU", "")])


def mobilenet_prototxt(batch: int) -> str:
    """MobileNet v1 in Caffe's prototxt format, input (batch, 3, 224, 224)."""
    text = f'name: "MobileNet"\ninput: "data"\ninput_shape {{ dim: {batch} dim: 3 dim: 224 dim: 224 }}\n'
    text += _conv("conv1", "data", 32, 3, stride=2, pad=1)
    bottom = "conv1"
    for name, c_in, c_out, stride in BLOCKS:
        text += _conv(f"{name}/dw", bottom, c_in, 3, stride=stride, pad=1, group=c_in)
        text += _conv(f"{name}/sep", f"{name}/dw", c_out, 1)
        bottom = f"{name}/sep"
    return text + (
        f'layer {{ name: "pool6" type: "Pooling" bottom: "{bottom}" top: "pool6" '
        'pooling_param { pool: AVE global_pooling: true } }\n'
        'layer { name: "fc7" type: "Convolution" bottom: "pool6" top: "fc7" '
        'convolution_param { num_output: 1000 kernel_size: 1 weight_filler { type: "msra" } } }\n'
        'layer { name: "prob" type: "Softmax" bottom: "fc7" top: "prob" }\n')


def random_weights(net, seed):
    """net.init's weights, with BatchNorm statistics drawn (mean N(0, 0.1), variance U(0.5, 2), count 1) instead
    of Caffe's zeros (a zero variance would scale every layer by 1/sqrt(eps))."""
    _, params, state = net.init(jax.random.key(seed))
    rng = np.random.default_rng(seed)
    draw = {"mean": lambda s: rng.normal(0, 0.1, s), "var": lambda s: rng.uniform(0.5, 2.0, s),
            "count": lambda s: np.ones(s)}
    state = {layer: {k: np.asarray(draw[k](np.shape(v)), np.float32) for k, v in s.items()}
             for layer, s in state.items()}
    return params, state


def jax_variants() -> dict:
    """{name: (lowering, compiler options)} of the JAX variants."""
    variants = {"jaxcnn": ("cpu", ops.compiler_options("cpu"))}
    if "ynn off" in ynn_settings():
        variants["jaxcnn_ynn_off"] = ("cpu", {**ops.compiler_options("cpu"), YNN_OPTION: ""})
    variants["plain_xla"] = ("native", {})
    return variants


def sample(fn, batch) -> float:
    """Images/s over as many calls of fn as fill SAMPLE_SECONDS (at least one)."""
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        took = time.perf_counter() - start
        if took >= SAMPLE_SECONDS:
            return batch * calls / took


def case(directory, batch, args, cv2) -> dict:
    """One batch size: the runners, their agreement and first-call times, then interleaved rounds."""
    proto_path, model_path = directory / f"mobilenet_b{batch}.prototxt", directory / f"mobilenet_b{batch}.caffemodel"
    proto_path.write_text(mobilenet_prototxt(batch))
    net = load_prototxt(proto_path)
    params, state = random_weights(net, args.seed)
    save_caffemodel(net, params, state, model_path)
    x = np.random.default_rng(args.seed + 1).standard_normal((batch, *net.input_shape)).astype(np.float32)

    opencv = cv2.dnn.readNetFromCaffe(str(proto_path), str(model_path))
    x_nchw = np.ascontiguousarray(x.transpose(0, 3, 1, 2))

    def run_opencv():
        opencv.setInput(x_nchw)
        return opencv.forward()

    reference = run_opencv().reshape(batch, -1)
    runners, first_call_s, agreement = {"opencv": run_opencv}, {}, {}
    for name, (lowering, options) in jax_variants().items():
        fn = jax.jit(lambda p, s, x, lowering=lowering: net.apply(p, s, x, train=False, lowering=lowering)[0],
                     compiler_options=options)
        start = time.perf_counter()
        y = np.asarray(jax.block_until_ready(fn(params, state, x)))
        first_call_s[name] = time.perf_counter() - start
        agreement[name] = float(np.abs(y.reshape(batch, -1) - reference).max() / np.abs(reference).max())
        runners[name] = lambda fn=fn: jax.block_until_ready(fn(params, state, x))
        print(f"batch {batch}: {name} first call {first_call_s[name]:.1f} s, max |diff| to OpenCV "
              f"{agreement[name]:.1e} of the largest probability", flush=True)
    samples = {name: [] for name in runners}
    for _ in range(args.rounds):
        for name, run in runners.items():
            samples[name].append(sample(run, batch))
    rates = {name: statistics.median(s) for name, s in samples.items()}
    return {"batch": batch, "images_per_second": rates,
            "ratios_vs_opencv": {n: r / rates["opencv"] for n, r in rates.items() if n != "opencv"},
            "first_call_seconds": first_call_s, "max_rel_diff_vs_opencv": agreement, "samples": samples}


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m experiments.bench_opencv", description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("--out", help="directory for the prototxt, caffemodel and bench_opencv.json (default: nothing "
                                 "kept)")
    p.add_argument("--batches", default="1,8", help="comma-separated batch sizes")
    p.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights and input")
    args = p.parse_args(argv)
    try:
        args.batches = [int(b) for b in args.batches.split(",")]
    except ValueError:
        p.error(f"--batches must be comma-separated integers, got {args.batches!r}")
    if min(args.batches) < 1 or args.rounds < 1:
        p.error("--batches and --rounds must be at least 1")
    return args


def run(args):
    try:
        import cv2
    except ImportError:
        raise SystemExit("experiments.bench_opencv needs OpenCV: pip install opencv-python-headless") from None
    if jax.default_backend() != "cpu":
        raise SystemExit("experiments.bench_opencv compares CPU runtimes: JAX's default backend must be the CPU")
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(args.out or tmp)
        directory.mkdir(parents=True, exist_ok=True)
        results = []
        for batch in args.batches:
            results.append(case(directory, batch, args, cv2))
            load.append(os.getloadavg()[0])
    print(f"{tuning.processor()}; jax {jax.__version__}; OpenCV {cv2.__version__} ({cv2.getNumThreads()} threads); "
          f"1-min load average {min(load):.1f}-{max(load):.1f}")
    print(f"{'batch':>5} {'variant':15} {'images/s':>10} {'vs OpenCV':>10} {'first call s':>13}")
    for r in results:
        for name, rate in r["images_per_second"].items():
            ratio = f"{r['ratios_vs_opencv'][name]:10.2f}" if name != "opencv" else " " * 10
            first = f"{r['first_call_seconds'][name]:13.1f}" if name in r["first_call_seconds"] else ""
            print(f"{r['batch']:5} {name:15} {rate:10.1f} {ratio} {first}")
    if args.out:
        report = {"processor": tuning.processor(), "jax": jax.__version__, "jaxlib": metadata.version("jaxlib"),
                  "opencv": cv2.__version__, "opencv_threads": cv2.getNumThreads(), "load_average_1min": load,
                  "cases": results}
        (Path(args.out) / "bench_opencv.json").write_text(json.dumps(report, indent=1))
        print(f"wrote {Path(args.out) / 'bench_opencv.json'}")


def main(argv=None):
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(entry(main))
