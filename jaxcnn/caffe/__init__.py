"""Caffe model files in jaxcnn: net definitions (prototxt), weights (caffemodel) and solvers, read with protobuf
against the part of Caffe's schema declared in `schema` (no Caffe install, no protoc step). The layer types read,
and how each maps to jaxcnn's layers and its blobs to params: `types`; the data layers' transform_param:
`data_layers`; their sources on disk (LMDB, image lists, HDF5): `sources`; solver snapshots (.solverstate):
`solverstate`.

    >>> import jax, jax.numpy as jnp
    >>> from jaxcnn import caffe
    >>> net = caffe.load_prototxt("experiments/caffe/lenet_bn_deploy.prototxt")  # or parse_prototxt(text)
    >>> _, params, state = net.init(jax.random.key(0))                            # (or trained ones)
    >>> caffe.save_caffemodel(net, params, state, "lenet_bn.caffemodel")
    >>> params, state = caffe.load_caffemodel(net, "lenet_bn.caffemodel")
    >>> probs, _ = net.apply(params, state, jnp.zeros((2, 28, 28, 1)))            # x: (N, H, W, C), NHWC
    >>> probs.shape
    (2, 10)
    >>> solver = caffe.load_solver("experiments/caffe/lenet_solver.prototxt")  # jaxcnn.train.SolverConfig.from_caffe
    >>> solver.base_lr, solver.lr_policy, solver.max_iter
    (0.01, 'inv', 10000)

(The examples in jaxcnn.caffe read the Caffe files of the repository's experiments/caffe, from its root.)
"""
from ..errors import CaffeFormatError
from ..net import Loss
from .prototxt import (
           CaffeLayer,
           CaffeNet,
           DataSource,
           Metric,
           Transform,
           load_prototxt,
           parse_prototxt,
)
from .solver import CaffeSolver, load_solver, parse_solver
from .weights import load_caffemodel, save_caffemodel

__all__ = ["CaffeFormatError", "CaffeLayer", "CaffeNet", "CaffeSolver", "DataSource", "Loss", "Metric", "Transform",
           "load_caffemodel", "load_prototxt", "load_solver", "parse_prototxt", "parse_solver", "save_caffemodel"]
