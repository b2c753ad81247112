"""jaxcnn.export and `python -m jaxcnn export`: every zoo net, every Caffe net and cuda-convnet file of the repository,
the Caffe test nets (tests/caffe_nets.py) and the bench's ImageNet nets written as ONNX and run by two runtimes that
share no code with jaxcnn, onnxruntime and OpenCV's dnn, against Net.apply in evaluation; each layer class alone;
pooling's ceil rounding and Caffe's padding rules on odd sizes; the StableHLO artefact reloaded (in this process, and
in a fresh one); the command line's errors, and nothing written on any failure."""
import itertools
from pathlib import Path

import caffe_nets
import jax
import numpy as np
import pytest
from conftest import random_params
from test_caffe import lenet_deploy_text
from test_stablehlo import inputs, nchw, reference, rel_err, write_run
from test_traits import EXAMPLES, layer_classes

from jaxcnn import AvgPool, Conv, Dropout, Flatten, Graph, MaxPool, Node, ReLU, Split, cudaconvnet, zoo
from jaxcnn.__main__ import main
from jaxcnn.caffe import load_prototxt, parse_prototxt, save_caffemodel
from jaxcnn.export.stablehlo import to_stablehlo
from jaxcnn.ops.pool import pool_geometry, wholly_outside

onnx = pytest.importorskip("onnx", reason="ONNX export needs the onnx package (the export and test extras)")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime (the test extra) runs the exported graphs")
from jaxcnn.export import onnx as export_onnx  # noqa: E402 (needs onnx)
from jaxcnn.export.onnx import to_onnx  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CAFFE_DIR, CONVNET_DIR = ROOT / "experiments" / "caffe", ROOT / "experiments" / "cudaconvnet"
ALEXNET_DEPLOY = CAFFE_DIR / "bvlc_alexnet_deploy.prototxt"
CONVNET_CFG = CONVNET_DIR / "layers-conv-local-11pct.cfg"


def _caffe_file(path, input_shape=None, size=None):
    """A Caffe net of the repository (its input resized to size x size: a smaller AlexNet is cheaper to run)."""
    def load():
        text = Path(path).read_text()
        if size is not None:
            text = text.replace("dim: 227", f"dim: {size}")
        return parse_prototxt(text, input_shape=input_shape, file=str(path))
    return load


def _bench_net(name, input_shape=None):
    """One of the bench's ImageNet nets (experiments.caffe_models), giving its scores beside its Softmax: random
    weights saturate the probabilities, the scores show every difference."""
    def load():
        from experiments import caffe_models
        net = parse_prototxt(caffe_models.NETS[name](), input_shape=input_shape)
        return Graph(net.nodes, net.inputs, outputs=(net.nodes[-2].outputs[0], "prob"), name=net.name)
    return load


# name -> () -> net, at sizes that keep each check cheap. AlexNet at 99x99 ends in a 2x2x256 map, so its fc6 reads
# a flattened map (ONNX's (C, H, W) order); VGG16 at 32x32 in a 1x1 one.
NETS = {
    "zoo/lenet_caffe": zoo.lenet_caffe, "zoo/lenet5": zoo.lenet5, "zoo/cifar10_local": zoo.cifar10_local,
    "zoo/alexnet@99": lambda: zoo.alexnet(input_shape=(99, 99, 3)),
    "zoo/vgg16@32": lambda: zoo.vgg16(input_shape=(32, 32, 3)),
    **{f"caffe_nets/{name}": (lambda text=text: parse_prototxt(text)) for name, text in caffe_nets.NETS.items()},
    "lenet_bn_deploy.prototxt": _caffe_file(CAFFE_DIR / "lenet_bn_deploy.prototxt"),
    "lenet_bn_train_test.prototxt": _caffe_file(CAFFE_DIR / "lenet_bn_train_test.prototxt", (28, 28, 1)),
    "lenet_files_train_test.prototxt": _caffe_file(CAFFE_DIR / "lenet_files_train_test.prototxt", (24, 24, 1)),
    "bvlc_alexnet_deploy.prototxt@67": _caffe_file(ALEXNET_DEPLOY, size=67),
    "layers-conv-local-11pct.cfg": lambda: cudaconvnet.load(CONVNET_CFG, cudaconvnet.params_beside(CONVNET_CFG),
                                                            (32, 32, 3)),
    "bench/mobilenet_v1@64": _bench_net("mobilenet_v1", (64, 64, 3)),  # its global pooling takes any size
    "bench/googlenet": _bench_net("googlenet"), "bench/resnet50": _bench_net("resnet50"),
}


def test_every_net_of_the_repository_is_checked():
    files = {p.name for p in CAFFE_DIR.glob("*.prototxt") if "solver" not in p.name} | {CONVNET_CFG.name}
    checked = {name.split("@")[0] for name in NETS}
    assert files <= checked and set(zoo.MODELS) <= {n.split("/")[1].split("@")[0] for n in NETS if "zoo/" in n}
    assert set(caffe_nets.NETS) <= {n.split("/")[1] for n in NETS if n.startswith("caffe_nets/")}
    from experiments import caffe_models
    assert set(caffe_models.NETS) <= {n.split("/")[1].split("@")[0] for n in NETS if n.startswith("bench/")}


def run_onnxruntime(model, xs):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    outs = session.run(None, {b: nchw(x) for b, x in xs.items()})
    return dict(zip((o.name for o in session.get_outputs()), outs))


def run_opencv(model, xs, outputs, path):
    cv2 = pytest.importorskip("cv2", reason="OpenCV (the test extra)")
    onnx.save(model, path)
    net = cv2.dnn.readNetFromONNX(str(path))
    for blob, x in xs.items():
        net.setInput(np.ascontiguousarray(nchw(x)), blob)
    return dict(zip(outputs, net.forward(list(outputs))))


LARGE = ("zoo/alexnet@99", "zoo/vgg16@32", "bvlc_alexnet_deploy.prototxt@67", "zoo/cifar10_local",
         "layers-conv-local-11pct.cfg", "bench/mobilenet_v1@64", "bench/googlenet", "bench/resnet50")  # seconds
# each: 4096x4096 fc7 weights, a local layer's compilation, the ImageNet nets' 50 to 110 layers


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in LARGE else n for n in NETS])
def test_onnx_export_runs_as_jaxcnn_in_onnxruntime_and_opencv(name, tmp_path):
    net = NETS[name]()
    params, state = random_params(net)
    model = to_onnx(net, params, state)
    xs = inputs(net)
    want = reference(net, params, state, xs)
    assert [i.name for i in model.graph.input] == list(net.inputs)
    assert [o.name for o in model.graph.output] == list(net.outputs)
    got = run_onnxruntime(model, xs)
    for blob, y in want.items():
        assert got[blob].shape == y.shape and rel_err(got[blob], y) <= 1e-5, blob
    opencv = run_opencv(model, xs, list(want), tmp_path / "net.onnx")  # OpenCV 4.14 reads every one
    for blob, y in want.items():
        assert rel_err(opencv[blob], y) <= 1e-4, blob


def _one_layer_net(layer, shape) -> Graph:
    """A net of one layer with its inputs x0, x1, ... (one per input shape) and outputs y0, y1, ..."""
    shapes = shape if isinstance(shape[0], tuple) else (shape,)
    names = tuple(f"x{i}" for i in range(len(shapes)))
    outs = tuple(f"y{i}" for i in range(layer.num_outputs))
    return Graph([Node(layer, names, outs)], dict(zip(names, shapes)))


@pytest.mark.parametrize("layer, shape", [pytest.param(*e, id=e[0].name) for e in EXAMPLES])
def test_every_layer_class_converts_and_runs_in_onnxruntime(layer, shape):
    """tests/test_traits.py's examples cover every class of jaxcnn.layers: each one's conversion, alone."""
    net = _one_layer_net(layer, shape)
    params, state = random_params(net)
    xs = inputs(net)
    want, got = reference(net, params, state, xs), run_onnxruntime(to_onnx(net, params, state), xs)
    for blob, y in want.items():
        assert got[blob].shape == y.shape and rel_err(got[blob], y) <= 1e-5, blob


def test_every_layer_class_has_a_conversion():
    assert layer_classes() <= set(export_onnx.CONVERTERS)


def op_types(model):
    return {n.op_type for n in model.graph.node}


def test_alexnet_is_native_operators_named_after_its_layers():
    net = NETS["bvlc_alexnet_deploy.prototxt@67"]()
    params, state = jax.tree.map(lambda s: np.zeros(s.shape, np.float32), tuple(
        {r.layer.name: getattr(r, kind) for r in net.shapes() if getattr(r, kind)} for kind in ("params", "state")))
    model = to_onnx(net, params, state, batch=1)
    assert op_types(model) == {"Conv", "Relu", "LRN", "MaxPool", "Flatten", "Gemm", "Softmax"}  # dropout gone
    nodes = {n.name: n for n in model.graph.node}
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in nodes["conv2"].attribute}
    assert attrs["group"] == 2 and attrs["pads"] == [2, 2, 2, 2] and nodes["conv2"].input[0] == "pool1"
    assert nodes["relu1"].input == ["conv1"] and nodes["norm1"].input == ["relu1"]  # in place: the layer's name
    pool = {a.name: onnx.helper.get_attribute_value(a) for a in nodes["pool1"].attribute}
    assert pool == {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [0, 0, 0, 0]}  # 15 -> 7: no overhang
    data, prob = model.graph.input[0], model.graph.output[0]
    assert [d.dim_value for d in data.type.tensor_type.shape.dim] == [1, 3, 67, 67]
    assert (data.name, prob.name) == ("data", "prob")
    assert {i.name for i in model.graph.initializer} >= {"conv1/w", "conv1/b", "fc8/w"}


def test_symbolic_batch_and_a_fixed_one():
    net = zoo.lenet5()
    params, state = random_params(net)
    model = to_onnx(net, params, state)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        xs = inputs(net, batch)
        assert rel_err(session.run(None, {"data": nchw(xs["data"])})[0],
                       reference(net, params, state, xs)["fc3"]) <= 1e-5
    fixed = to_onnx(net, params, state, batch=4)
    assert fixed.graph.output[0].type.tensor_type.shape.dim[0].dim_value == 4


POOL_INPUTS = {"data": (7, 6, 2)}  # an odd size and an even one, which leaves Caffe a window outside (k 2, s 3)


def _pool_nodes():
    """Every max and average pooling (padding counted or not) of kernels 2 and 3, strides 1 to 3 and padding 0
    and 1, rounding down or up (clipping the last window PyTorch's way, or Caffe's, which differs only without
    padding), on each input of POOL_INPUTS."""
    nodes = []
    for blob, k, s, p in itertools.product(POOL_INPUTS, (2, 3), (1, 2, 3), (0, 1)):
        roundings = [(False, "always")] + ([(True, "always")] if s > 1 else []) + ([(True, "padded")] if s > 1 and
                                                                                    not p else [])
        for (ceil, clip), (cls, extra) in itertools.product(roundings, [(MaxPool, {}), (AvgPool, {"count_pad": True}),
                                                                       (AvgPool, {"count_pad": False})]):
            name = f"{blob}_{cls.__name__}_k{k}s{s}p{p}_{'ceil_' + clip if ceil else 'floor'}{extra}"
            nodes.append(Node(cls(name, k, s, p, ceil_mode=ceil, clip=clip, **extra), (blob,), (name,)))
    return nodes


def _wholly_outside(layer, shape):
    """Whether a pooling keeps Caffe's last window wholly outside an unpadded input of `shape`."""
    out_hw, _, stride, pads, _ = pool_geometry(shape, layer.kernel, layer.stride, layer.padding, layer.ceil_mode,
                                               layer.clip)
    return wholly_outside(shape[:2], stride, pads, out_hw)


@pytest.mark.slow
def test_pooling_keeps_caffes_ceil_and_padding_rules(tmp_path):
    nodes = _pool_nodes()
    outside = [type(n.layer) for n in nodes if _wholly_outside(n.layer, POOL_INPUTS[n.inputs[0]])]
    assert MaxPool in outside and AvgPool in outside
    net = Graph(nodes, POOL_INPUTS)
    model = to_onnx(net, {}, {})
    xs = inputs(net, 2)
    want = reference(net, {}, {}, xs)
    got = run_onnxruntime(model, xs)
    for blob, y in want.items():  # Caffe's windows outside the input: the lowest float (max), NaN or -0 (average)
        np.testing.assert_allclose(got[blob], y, rtol=1e-6, atol=1e-6, err_msg=blob)
    opencv = run_opencv(model, xs, list(want), tmp_path / "pools.onnx")
    for blob, y in want.items():
        np.testing.assert_allclose(opencv[blob], y, rtol=1e-5, atol=1e-5, err_msg=blob)


def test_outputs_named_as_their_blobs_whatever_wrote_them():
    """Outputs that are a Split's two copies of one value, an elementwise layer's value on a flattened map (ONNX's
    order inside, jaxcnn's at the output) and a dropout's (its input), all under their blob names."""
    nodes = [Node(Conv("conv", 3, 3), ("data",), ("conv",)), Node(Flatten("flat"), ("conv",), ("flat",)),
             Node(ReLU("relu"), ("flat",), ("flat",)), Node(Split("split", 2), ("flat",), ("a", "b")),
             Node(Dropout("drop"), ("conv",), ("conv",))]
    net = Graph(nodes, {"data": (5, 4, 2)}, outputs=("a", "b", "flat", "conv"))
    params, state = random_params(net)
    model = to_onnx(net, params, state)
    assert [o.name for o in model.graph.output] == ["a", "b", "flat", "conv"]
    xs = inputs(net)
    want, got = reference(net, params, state, xs), run_onnxruntime(model, xs)
    for blob in want:
        assert rel_err(got[blob], want[blob]) <= 1e-6, blob
    exported = to_stablehlo(net, params, state)
    assert {b: rel_err(nchw(y), want[b]) <= 1e-6 for b, y in exported.call(xs["data"]).items()} == \
        dict.fromkeys(want, True)


# -- the command line ------------------------------------------------------------------------------------------
def test_export_of_a_caffe_deploy_net_with_its_caffemodel(tmp_path, capsys):
    (tmp_path / "deploy.prototxt").write_text(lenet_deploy_text(1))
    net = load_prototxt(tmp_path / "deploy.prototxt")
    params, state = random_params(net, 3)
    save_caffemodel(net, params, state, tmp_path / "lenet.caffemodel")
    out = tmp_path / "lenet.onnx"
    main(["export", str(tmp_path / "deploy.prototxt"), "--weights", str(tmp_path / "lenet.caffemodel"),
          "--onnx", str(out)])
    assert capsys.readouterr().out.startswith(f"wrote {out}: ")
    xs = inputs(net, 2)
    got = run_onnxruntime(onnx.load(out), xs)
    assert rel_err(got["ip2"], reference(net, params, state, xs)["ip2"]) <= 1e-5


@pytest.fixture(scope="module")
def lenet5_run(tmp_path_factory):
    """A run directory of lenet5 -> (directory, params, state)."""
    return write_run(tmp_path_factory.mktemp("run") / "run", 7)


def test_export_of_a_run_directorys_weights(lenet5_run, tmp_path):
    run, params, state = lenet5_run
    main(["export", "lenet5", "--weights", str(run), "--onnx", str(tmp_path / "run.onnx")])
    xs = inputs(zoo.lenet5(), 2)
    got = run_onnxruntime(onnx.load(tmp_path / "run.onnx"), xs)
    assert rel_err(got["fc3"], reference(zoo.lenet5(), params, state, xs)["fc3"]) <= 1e-5


def _fails(argv, capsys, code=2):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == code
    err = capsys.readouterr().err
    return err.strip().splitlines()[-1]


def test_export_errors_are_one_line_and_write_nothing(tmp_path, capsys, monkeypatch, lenet5_run):
    out = tmp_path / "out"
    out.mkdir()
    target = str(out / "net.onnx")
    (tmp_path / "deploy.prototxt").write_text(lenet_deploy_text(1))
    wider = lenet_deploy_text(1).replace("num_output: 500", "num_output: 400")
    (tmp_path / "wider.prototxt").write_text(wider)
    net = load_prototxt(tmp_path / "wider.prototxt")
    save_caffemodel(net, *random_params(net), tmp_path / "wider.caffemodel")
    assert "expected a zoo model" in _fails(["export", "lenet6", "--onnx", target], capsys)
    assert _fails(["export", "lenet5", "--onnx", target, "--batch", "0"], capsys) == \
        "error: --batch must be a positive int, got 0"
    assert _fails(["export", "lenet5", "--onnx", str(out / "missing" / "net.onnx")], capsys) == \
        f"error: --onnx {out / 'missing' / 'net.onnx'}: expected a file in an existing directory"
    assert _fails(["export", str(tmp_path / "deploy.prototxt"), "--weights", str(tmp_path / "wider.caffemodel"),
                   "--onnx", target], capsys) == \
        f"error: {tmp_path / 'wider.caffemodel'}: layer 'ip1' (InnerProduct): blob 0 has shape (400, 800), the " \
        "layer needs (500, 800) (Caffe's layout)"
    assert _fails(["export", "lenet_caffe", "--weights", str(lenet5_run[0]), "--onnx", target], capsys) == \
        f"error: {lenet5_run[0]}: conv1 (Conv): b has shape (6,), the net needs (20,)"
    assert _fails(["export", str(out), "--onnx", target], capsys) == \
        f"error: {out}: no manifest.json, not a training run's directory"
    monkeypatch.delitem(export_onnx.CONVERTERS, type(zoo.alexnet()["norm1"]))
    assert _fails(["export", "cifar10_local", "--onnx", target], capsys) == \
        "error: cifar10_local: rnorm1 (LRN): ONNX export has no conversion for this layer type " \
        "(jaxcnn.export.onnx.CONVERTERS)"
    assert list(out.iterdir()) == []
