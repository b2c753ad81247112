"""Where MobileNet v1's inference time goes on the CPU: each of its convolutions (as its Caffe port lays them out,
experiments.caffe_models), followed by a bias and ReLU as the net with its BatchNorms folded runs them, timed
alone in every forward form of jaxcnn.ops.conv_cpu under every YNNPACK choice (jaxcnn.tuning.YNN_CHOICES), and
onnxruntime running the same convolution + bias + ReLU as a one-node ONNX graph (Conv with group = channels for the
depthwise layers, then Relu, which its graph optimizations fuse).

    python -m experiments.mobilenet_layers [--batches 1,8] [--rounds 5] [--out DIR]

Per layer the functions are timed in interleaved rounds (each sample the mean of as many calls as fill 20 ms);
the table gives medians in milliseconds, the best jaxcnn form and choice, the ratio best / onnxruntime, and each
layer's count in the net; the totals weigh each layer by its count. DIR/mobilenet_layers.json holds every sample,
the CPU model, versions and the load average.
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
import jax.numpy as jnp
import numpy as np

from experiments import caffe_models, report
from jaxcnn import tuning
from jaxcnn.caffe import load_prototxt
from jaxcnn.cli import HelpFormatter, entry
from jaxcnn.layers import Conv
from jaxcnn.ops import compiler_options, conv_cpu
from jaxcnn.ops.conv import conv_geometry

SAMPLE_SECONDS = 0.02


def layers(batch):
    """MobileNet v1's distinct convolutions at `batch`: [(first layer name, count, x shape, w shape, stride, pads)]."""
    path = Path(tempfile.mkdtemp(prefix="jaxcnn-mobilenet-")) / "mobilenet_v1.prototxt"
    path.write_text(caffe_models.mobilenet_v1())
    out = {}
    for row in load_prototxt(path).shapes():
        if isinstance(row.layer, Conv):
            _, pads, stride, _ = conv_geometry(row.in_shape, row.layer.kernel, row.layer.stride,
                                               row.layer.padding, row.layer.dilation)
            w = (*row.layer.kernel, row.in_shape[-1] // row.layer.groups, row.layer.features)
            key = ((batch, *row.in_shape), w, stride, pads)
            name, count = out.get(key, (row.layer.name, 0))
            out[key] = name, count + 1
    return [(name, count, *key) for key, (name, count) in out.items()]


def ort_conv(x, w, b, stride, pads, threads, profile):
    """onnxruntime's Conv + Relu on NCHW x with HWIO w, profiled to file prefix `profile` -> the session."""
    import onnx
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper
    groups = x.shape[1] // w.shape[2]
    y_shape = jax.eval_shape(lambda a, k: conv_cpu.native(a, k, stride, pads, (1, 1)),
                             jax.ShapeDtypeStruct(np.transpose(x, (0, 2, 3, 1)).shape, x.dtype),
                             jax.ShapeDtypeStruct(w.shape, w.dtype)).shape
    (top, bottom), (left, right) = pads
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["c"], group=groups, kernel_shape=list(w.shape[:2]),
                          strides=list(stride), pads=[top, left, bottom, right]),
         helper.make_node("Relu", ["c"], ["y"])],
        "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, (y_shape[0], y_shape[3], *y_shape[1:3]))],
        [numpy_helper.from_array(np.ascontiguousarray(w.transpose(3, 2, 0, 1)), "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_profiling, options.profile_file_prefix = True, profile
    return onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def ort_conv_ms(session) -> float:
    """The median kernel time in ms of the Conv node(s) of a profiled session's runs (ending its profile): the
    convolution alone, without the reorders to and from its blocked NCHWc layout that a one-node graph adds and a
    whole net pays once."""
    path = Path(session.end_profiling())
    events = json.loads(path.read_text())
    path.unlink()
    runs = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")
            and e.get("args", {}).get("op_name") == "Conv"]
    return statistics.median(e["dur"] for e in runs) / 1e3


def jax_conv(name, stride, pads, options):
    """jaxcnn's form `name` + bias + ReLU, jitted with `options`."""
    def f(x, w, b):
        return jnp.maximum(conv_cpu.FORMS[name](x, w, stride, pads, (1, 1)) + b, 0)
    return jax.jit(f, compiler_options={**compiler_options("cpu"), **options})


def sample(fn) -> float:
    """Milliseconds per call: the mean over as many calls as fill SAMPLE_SECONDS (at least one)."""
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        took = time.perf_counter() - start
        if took >= SAMPLE_SECONDS:
            return 1e3 * took / calls


def build(batch, layer, threads, forms, profile):
    """({label: f()}, onnxruntime session) for one layer: every forward candidate (of `forms` if given) under
    every YNNPACK choice, and onnxruntime; checks each output against onnxruntime's."""
    _, _, x_shape, w_shape, stride, pads = layer
    rng = np.random.default_rng(0)
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in (x_shape, w_shape, w_shape[-1:]))
    x_nchw = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    session = ort_conv(x_nchw, w, b, stride, pads, threads, profile)
    expected = session.run(None, {"x": x_nchw})[0].transpose(0, 2, 3, 1)
    fns = {"onnxruntime": lambda: session.run(None, {"x": x_nchw})}
    args = jax.device_put((x, w, b))
    names = [n for n in conv_cpu.candidates("forward", *args[:2], stride, pads, (1, 1)) if not forms or n in forms]
    for name in names:
        for choice, options in tuning.ynn_choices().items():
            exe = jax_conv(name, stride, pads, options).lower(*args).compile()
            y = np.asarray(exe(*args))
            np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
            fns[f"{name}+{choice}"] = lambda exe=exe: jax.block_until_ready(exe(*args))
    return fns, session


def run(args):
    load, results = [os.getloadavg()[0]], []
    for batch in args.batches:
        for layer in layers(batch):
            fns, session = build(batch, layer, args.threads, args.forms, str(Path(tempfile.mkdtemp()) / "ort"))
            samples = {k: [] for k in fns}
            for _ in range(args.rounds):
                for k, f in fns.items():
                    samples[k].append(sample(f))
            med = {k: statistics.median(s) for k, s in samples.items()}
            med["onnxruntime_conv"] = ort_conv_ms(session)
            jax_best = min((k for k in med if not k.startswith("onnxruntime")), key=med.get)
            results.append({"batch": batch, "layer": layer[0], "count": layer[1], "x": layer[2], "w": layer[3],
                            "stride": layer[4], "median_ms": med, "samples_ms": samples, "best": jax_best})
            load.append(os.getloadavg()[0])
            print(f"b{batch} {layer[0]:14} x{layer[1]} {'x'.join(map(str, layer[2][1:])):>12} "
                  f"{'x'.join(map(str, layer[3])):>12} s{layer[4][0]}  ort conv {med['onnxruntime_conv']:.3f} ms "
                  f"(run {med['onnxruntime']:.3f})  best {jax_best} {med[jax_best]:.3f} ms "
                  f"({med[jax_best] / med['onnxruntime_conv']:.2f}x)  "
                  + ", ".join(f"{k} {v:.3f}" for k, v in sorted(med.items(), key=lambda kv: kv[1])), flush=True)
    for batch in args.batches:
        rows = [r for r in results if r["batch"] == batch]
        for kind, pick in (("depthwise", lambda r: r["w"][2] == 1 and r["w"][3] > 1 and r["x"][-1] > 3),
                           ("pointwise", lambda r: r["w"][:2] == (1, 1)), ("conv1", lambda r: r["x"][-1] == 3)):
            sel = [r for r in rows if pick(r)]
            ours = sum(r["count"] * r["median_ms"][r["best"]] for r in sel)
            ort = sum(r["count"] * r["median_ms"]["onnxruntime_conv"] for r in sel)
            print(f"batch {batch} {kind}: jaxcnn best {ours:.2f} ms, onnxruntime {ort:.2f} ms ({ours / ort:.2f}x)")
    print(report.machine_line(load))
    if args.out:
        report.write(args.out, "mobilenet_layers.json", load, onnxruntime=metadata.version("onnxruntime"),
                     layers=results)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m experiments.mobilenet_layers", description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("--batches", default="1,8", help="comma-separated batch sizes")
    p.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds per layer")
    p.add_argument("--forms", help="comma-separated forms to time where candidates (default: every candidate)")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="onnxruntime's intra-op threads")
    p.add_argument("--out", help="directory for mobilenet_layers.json (nothing is written without it)")
    args = p.parse_args(argv)
    args.batches = [int(b) for b in args.batches.split(",")]
    args.forms = args.forms.split(",") if args.forms else None
    return run(args)


if __name__ == "__main__":
    sys.exit(entry(main))
