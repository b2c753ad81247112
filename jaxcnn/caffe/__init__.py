"""Caffe model files in jaxcnn: net definitions (prototxt), weights (caffemodel) and solvers, read with protobuf
against the part of Caffe's schema declared in `schema` (no Caffe install, no protoc step). The layer types read,
and how each maps to jaxcnn's layers and its blobs to params: `types`; the data layers' transform_param:
`data_layers`; their sources on disk (LMDB, image lists, HDF5): `sources`.

    net = jaxcnn.caffe.load_prototxt("deploy.prototxt")      # parse_prototxt(text) for a net given as text
    params, state = jaxcnn.caffe.load_caffemodel(net, "weights.caffemodel")
    logits, _ = net.apply(params, state, x)                 # x: (N, H, W, C), NHWC
    jaxcnn.caffe.save_caffemodel(net, params, state, "out.caffemodel")
    solver = jaxcnn.caffe.load_solver("solver.prototxt")     # jaxcnn.train.SolverConfig.from_caffe(solver)
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
