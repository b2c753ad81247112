"""The nets a command line names: a zoo model, a Caffe .prototxt, a cuda-convnet .cfg, or a training run's
directory (its manifest and newest checkpoint); and the weights given for them:

    >>> net = load_model("experiments/caffe/bvlc_alexnet_deploy.prototxt")
    >>> net.input_shape
    (227, 227, 3)

load_weights(net, "bvlc_alexnet.caffemodel") gives (params, state) from a caffemodel or a run's directory (its
checkpoint), load_run("runs/mnist") a Weighted(net, params, state, source).
"""
from pathlib import Path
from typing import NamedTuple

import jax

from . import zoo
from .datasets import IMAGE_SHAPES
from .errors import LayerError
from .net import Graph
from .settings import MissingSetting, Setting

MODEL_FILES = (".prototxt", ".cfg")


class Weighted(NamedTuple):
    """A net and its params and state; source says where they came from ('random (seed 0)', 'checkpoint DIR
    (step 5)', a caffemodel's path)."""

    net: Graph
    params: dict
    state: dict
    source: str


def is_model(text: str) -> bool:
    """Whether `text` names a model load_model reads (a zoo name, a .prototxt or a .cfg file)."""
    return text in zoo.MODELS or text.endswith(MODEL_FILES)


def load_model(spec, input_shape=None) -> Graph:
    """A zoo model name, a Caffe .prototxt or a cuda-convnet .cfg (with the layer-params file beside it, if any:
    cudaconvnet.params_beside) -> net. input_shape: for files that do not give their input size."""
    spec = str(spec)
    if spec in zoo.MODELS:
        return zoo.get(spec) if input_shape is None else zoo.get(spec, input_shape=tuple(input_shape))
    if spec.endswith(".prototxt"):
        from .caffe import load_prototxt
        return load_prototxt(spec, input_shape=input_shape)
    from . import cudaconvnet
    if input_shape is None:
        raise MissingSetting([f"{spec}: cuda-convnet files do not give the input size: pass ",
                              Setting("input_shape", ("H", "W", "C"))], setting="input_shape")
    return cudaconvnet.load(spec, cudaconvnet.params_beside(spec), input_shape)


def check_weights(net: Graph, params: dict, state: dict, where: str, input_shape=None, rows=None) -> None:
    """LayerError ("WHERE: conv1 (Conv): b has shape (6,), the net needs (20,)") unless params and state have
    exactly the names and shapes the net gives its layers (at input_shape, by default its own; rows:
    net.shapes(input_shape), if already computed); ValueError naming `where` for weights of layers it lacks."""
    for row in net.shapes(input_shape) if rows is None else rows:
        name = row.layer.name
        for kind, got, want in (("params", params.get(name, {}), row.params), ("state", state.get(name, {}),
                                                                                 row.state)):
            if set(got) != set(want):
                raise LayerError(f"has {kind} {sorted(got) or 'none'}, the net needs {sorted(want) or 'none'}",
                                 row.layer, net=where)
            for k, spec in want.items():
                if tuple(got[k].shape) != tuple(spec.shape):
                    raise LayerError(f"{k} has shape {tuple(got[k].shape)}, the net needs {tuple(spec.shape)}",
                                     row.layer, net=where)
    extra = sorted((set(params) | set(state)) - {layer.name for layer in net.layers})
    if extra:
        raise ValueError(f"{where}: weights of layers {extra} that {net.name} does not have")


def load_weights(net: Graph, path, input_shape=None) -> tuple[dict, dict]:
    """Weights for `net` from a .caffemodel or a training run's directory (its newest checkpoint) -> (params,
    state); an error naming the file and layer when their shapes do not fit the net."""
    path = Path(path)
    if path.suffix == ".caffemodel":
        from .caffe import load_caffemodel
        return load_caffemodel(net, path, input_shape=input_shape)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: expected a .caffemodel file or a training run's directory")
    from .train import rundir
    run = rundir.load(path)
    check_weights(net, run.params, run.state, str(path), input_shape)
    return run.params, run.state


def load_run(path, input_shape=None) -> Weighted:
    """A training run's directory -> its net and the params and state of its newest checkpoint. The net is the
    zoo model its manifest names (at its dataset's image size, with the checkpoint's number of classes) or the
    net of the Caffe solver it was trained with (phase TEST)."""
    from .train import rundir
    run = rundir.load(path)
    net = _run_net(Path(path), run, input_shape)
    check_weights(net, run.params, run.state, str(path), input_shape)
    return Weighted(net, run.params, run.state, f"checkpoint {path} (step {run.step})")


def _run_net(path: Path, run, input_shape) -> Graph:
    manifest = run.manifest
    model, dataset = manifest.get("model"), manifest.get("dataset")
    shape = input_shape or IMAGE_SHAPES.get(dataset)
    if manifest.get("solver_file"):
        from .caffe import load_prototxt, load_solver
        net_path = load_solver(manifest["solver_file"]).net_path()
        net = load_prototxt(net_path, "TEST", input_shape)
        if net.input_shape is None and shape is not None:  # a data layer's images: the dataset's, cropped
            crop = net.transform.crop_size if net.transform else 0
            net = load_prototxt(net_path, "TEST", (crop, crop, shape[2]) if crop else shape)
        return net
    if model in zoo.MODELS:
        last = zoo.get(model).layers[-1].name
        classes = run.params.get(last, {}).get("w")
        kwargs = {} if classes is None else {"num_classes": int(classes.shape[-1])}
        return zoo.get(model, **kwargs, **({} if shape is None else {"input_shape": tuple(shape)}))
    raise ValueError(f"{path}: the run's model {model!r} is neither a zoo model nor a Caffe solver's net; build "
                     "its net in Python and pass it with the run's params (jaxcnn.train.rundir.load)")


def random_weights(net: Graph, seed: int = 0, input_shape=None) -> Weighted:
    """`net` with the params its fillers make from jax.random.key(seed)."""
    _, params, state = net.init(jax.random.key(seed), input_shape)
    return Weighted(net, params, state, f"random (the net's fillers, seed {seed})")
