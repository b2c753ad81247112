"""Caffe model files in jaxcnn: net definitions (prototxt), weights (caffemodel) and solvers, read with protobuf
against the part of Caffe's schema declared in `schema` (no Caffe install, no protoc step).

    net = jaxcnn.caffe.load_prototxt("deploy.prototxt")
    params, state = jaxcnn.caffe.load_caffemodel(net, "weights.caffemodel")
    logits, _ = net.apply(params, state, x)                 # x: (N, H, W, C), NHWC
    jaxcnn.caffe.save_caffemodel(net, params, state, "out.caffemodel")
    solver = jaxcnn.caffe.load_solver("solver.prototxt")     # solver.config: a jaxcnn.train.SolverConfig
"""
from ..net import Loss
from .prototxt import (
           CaffeFormatError,
           CaffeNet,
           DataSource,
           Metric,
           Transform,
           load_prototxt,
)
from .solver import CaffeSolver, load_solver
from .weights import load_caffemodel, save_caffemodel

__all__ = ["CaffeFormatError", "CaffeNet", "CaffeSolver", "DataSource", "Loss", "Metric", "Transform",
           "load_caffemodel", "load_prototxt", "load_solver", "save_caffemodel"]
