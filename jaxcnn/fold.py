"""BatchNorm folded into the convolution or inner product before it, for inference.

In evaluation a BatchNorm is y = (x - mean) / sqrt(var + eps) per channel, and a Scale or Bias after it
y * gamma + beta: together one per-channel x * factor + shift. After a Conv or Dense that map goes into the
weights and bias, w * factor and b * factor + shift (a bias is made where the layer has none), and the layers
leave the net (onnxruntime fuses Conv + BatchNormalization + Mul + Add so; Caffe nets write them as Convolution
(bias_term false) -> BatchNorm -> Scale).

    >>> import jax, jax.numpy as jnp
    >>> from jaxcnn import BatchNorm, Conv, Net, ReLU, Scale
    >>> net = Net([Conv("conv1", 8, 3, bias=False), BatchNorm("bn1"), Scale("scale1"), ReLU("relu1")], (9, 9, 3))
    >>> _, params, state = net.init(jax.random.key(0))
    >>> folded, p, s = fold_batchnorm(net, params, state)
    >>> [layer.name for layer in folded.layers], sorted(p["conv1"]), s
    (['conv1', 'relu1'], ['b', 'w'], {})
    >>> x = jnp.ones((2, 9, 9, 3))
    >>> bool(jnp.allclose(folded.apply(p, s, x)[0], net.apply(params, state, x)[0], atol=1e-6))
    True

The rule, by the layers' traits (jaxcnn.layers.base): a layer with an `absorbing()` form (Conv of any groups,
stride, padding or dilation; Dense) whose output only a BatchNorm (a batch_statistics, affine layer) reads, with
the affine layers (Scale, Bias) that each alone read the one before: all fold into the first, which then writes
the blob the last of them wrote, so the layers after it and the net's outputs keep their blob names. A value
that is also read elsewhere or is a net output ends the run there (a convolution whose output two layers read
keeps its BatchNorm); a BatchNorm after anything else (pooling, a concat) stays. The folded net computes the
net's evaluation (train=False): it is for inference, not for training on.
"""
from typing import NamedTuple

from .layers import Layer, named
from .net import Graph, Node


class Fold(NamedTuple):
    """One fold: the `target` layer (as in the net) and the affine layers after it that fold into it, in order."""

    target: Layer
    affine: tuple


class Folding(NamedTuple):
    """A net's folds: `net`, the folded net (the net itself where nothing folds), and `folds`. Calling it maps the
    net's params and state to the folded net's (a pure function of arrays, traceable by jax.jit)."""

    net: Graph
    folds: tuple

    def __call__(self, params: dict, state: dict) -> tuple[dict, dict]:
        gone = {layer.name for fold in self.folds for layer in fold.affine}
        new_params = {name: p for name, p in params.items() if name not in gone}
        for target, affine in self.folds:
            factor, shift = _terms(affine[0], params, state)
            for layer in affine[1:]:
                f, s = _terms(layer, params, state)
                factor, shift = factor * f, shift * f + s
            with named(target):
                new_params[target.name] = target.absorb(params.get(target.name, {}), factor, shift)
        return new_params, {name: s for name, s in state.items() if name not in gone}


def folding(net: Graph) -> Folding:
    """The folds of `net` (see the module's rule); no params needed."""
    readers = _readers(net)
    targets, removed = {}, set()
    for i, node in enumerate(net.nodes):
        if node.layer.absorbing() is None or len(node.outputs) != 1:
            continue
        run, value = [], (i, 0)
        while len(readers.get(value, ())) == 1 and readers[value][0] is not None:
            j = readers[value][0]
            layer = net.nodes[j].layer
            if not layer.affine or layer.batch_statistics is not (not run):  # a BatchNorm first, then Scale, Bias
                break
            run.append(j)
            value = (j, 0)
        if run:
            targets[i] = run
            removed.update(run)
    if not targets:
        return Folding(net, ())
    nodes, folds = [], []
    for i, node in enumerate(net.nodes):
        if i in targets:
            run = targets[i]
            nodes.append(Node(node.layer.absorbing(), node.inputs, net.nodes[run[-1]].outputs))
            folds.append(Fold(node.layer, tuple(net.nodes[j].layer for j in run)))
        elif i not in removed:
            nodes.append(node)
    return Folding(Graph(nodes, net.inputs, net.outputs, name=net.name), tuple(folds))


def fold_batchnorm(net: Graph, params: dict, state: dict) -> tuple[Graph, dict, dict]:
    """(net, params, state) -> the folded (net, params, state): each BatchNorm (and the Scale or Bias after it)
    that follows a Conv or Dense alone, folded into it (the module's rule). The net and dicts given are not
    changed; params keep their dtypes. Where nothing folds, the same net and equal dicts."""
    f = folding(net)
    return (f.net, *f(params, state))


def _terms(layer, params, state):
    with named(layer):
        return layer.affine_terms(params.get(layer.name, {}), state.get(layer.name, {}))


def _readers(net: Graph) -> dict:
    """(node index, output position) of each value a node writes -> the indices of the nodes that read it, one
    per read, and None for a net output."""
    writer = {blob: ("input", blob) for blob in net.inputs}
    readers = {}
    for i, node in enumerate(net.nodes):
        for blob in node.inputs:
            readers.setdefault(writer[blob], []).append(i)
        for k, blob in enumerate(node.outputs):
            writer[blob] = (i, k)
    for blob in net.outputs:
        readers.setdefault(writer[blob], []).append(None)
    return readers
