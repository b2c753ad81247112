"""Nets: layers wired by named blobs (a `Graph`, Caffe's bottom/top), and `Net`, the plain chain.

    >>> import jax, jax.numpy as jnp
    >>> from jaxcnn import BatchNorm, Concat, Conv, Dense, Flatten, Graph, MaxPool, Net, Node, ReLU
    >>> net = Net([Conv("conv1", 20, 5), BatchNorm("bn_conv1"), ReLU("relu1"), MaxPool("pool1", 2),
    ...            Flatten("flatten"), Dense("ip1", 10)], (28, 28, 1))                    # a chain
    >>> out_shape, params, state = net.init(jax.random.key(0))
    >>> out_shape, params["conv1"]["w"].shape, state["bn_conv1"]["mean"].shape
    ((10,), (5, 5, 1, 20), (20,))
    >>> y, state = net.apply(params, state, jnp.ones((8, 28, 28, 1)), train=True, rng=jax.random.key(1))
    >>> y.shape
    (8, 10)
    >>> net = Graph([Node(Conv("a", 8, 1), ("data",), ("a",)),                               # a branched net
    ...              Node(Conv("b", 8, 3, padding=1), ("data",), ("b",)),
    ...              Node(Concat("cat"), ("a", "b"), ("cat",))], {"data": (32, 32, 3)})
    >>> net.output_shapes()                                            # as init gives it, but nothing initialised
    (32, 32, 16)

Both run the same way: each node's layer reads its input blobs and writes its output blobs, in the order
given; a node whose output names its input (Caffe's in-place ReLU, BatchNorm, Scale) replaces that blob for the
nodes after it. Params and state are dicts keyed by layer name (layers without any are left out).

Inputs and outputs: a net with one input blob takes one array x (N, *input_shape) and one per-example shape;
with several, dicts keyed by blob name. A net with one output blob returns one array, with several a dict. The
outputs are the blobs whose last value no node reads (or those given).
"""
import math
from typing import Mapping, NamedTuple

import jax
import jax.numpy as jnp

from . import first_block
from .errors import LayerError
from .layers import Layer
from .ops.lowering import Tuned
from .settings import MissingSetting, Setting


class Loss(NamedTuple):
    """A loss a model file declares (Caffe's SoftmaxWithLoss, cuda-convnet's cost.logreg): softmax cross-entropy
    of blob `logits` against the labels in blob `label`, times `weight`."""

    name: str
    logits: str
    label: str
    weight: float = 1.0


class Node(NamedTuple):
    """One layer of a graph and the blobs it reads (`inputs`, one unless layer.arity is None) and writes
    (`outputs`, layer.num_outputs of them)."""

    layer: Layer
    inputs: tuple
    outputs: tuple


class LayerShapes(NamedTuple):
    """One layer's abstract shapes: per-example in/out shapes (tuples of shapes for several inputs or outputs)
    and its params/state as ShapeDtypeStructs; inputs/outputs: its blob names."""

    layer: Layer
    in_shape: tuple
    out_shape: tuple
    params: dict
    state: dict
    inputs: tuple = ()
    outputs: tuple = ()


class Graph:
    """Layers wired by blob names, run in the order given.

    Args:
      nodes: Node(layer, inputs, outputs) values (or (layer, inputs, outputs) tuples); layer names unique;
        every input blob is a net input or an earlier node's output; an output blob may be written again only
        by a node that reads it (in place).
      inputs: {blob: per-example shape or None}: the net's input blobs and the shapes it is designed for (the
        default for init and summaries).
      outputs: the blobs apply returns (default: those whose last value no node reads).
      name: the net's name.
    """

    def __init__(self, nodes, inputs: Mapping, outputs=None, name: str = "net"):
        self.name = name
        self.nodes = tuple(Node(n[0], tuple(n[1]), tuple(n[2])) for n in nodes)
        self.inputs = {blob: None if shape is None else tuple(shape) for blob, shape in dict(inputs).items()}
        if not self.nodes:
            raise ValueError(f"{name}: a net needs at least one layer")
        if not self.inputs:
            raise ValueError(f"{name}: a net needs at least one input blob")
        self._check_wiring()
        self.outputs = unread_blobs(self.nodes) if outputs is None else tuple(outputs)
        written = set(self.inputs).union(*(n.outputs for n in self.nodes))
        missing = [b for b in self.outputs if b not in written]
        if missing or not self.outputs:
            raise ValueError(f"{name}: output blobs {missing or '(none)'} are not written by any layer")
        self._last_use = self._last_uses()

    def _check_wiring(self):
        seen, blobs = set(), set(self.inputs)
        for node in self.nodes:
            layer = node.layer
            if not isinstance(layer, Layer):
                raise TypeError(f"{self.name}: expected Layer values, got {layer!r}")
            if layer.name in seen:
                raise LayerError(f"layer name {layer.name!r} is used twice", net=self.name)
            seen.add(layer.name)
            if layer.arity == 1 and len(node.inputs) != 1:
                raise LayerError(f"takes one input blob, got {list(node.inputs)}", layer, net=self.name)
            if not node.inputs:
                raise LayerError("needs at least one input blob", layer, net=self.name)
            if len(node.outputs) != layer.num_outputs:
                raise LayerError(f"writes {layer.num_outputs} blob(s), got {list(node.outputs)}", layer,
                                 net=self.name)
            for blob in node.inputs:
                if blob not in blobs:
                    raise LayerError(f"input blob {blob!r} is neither a net input nor written by an earlier layer",
                                     layer, net=self.name)
            for blob in node.outputs:
                if blob in blobs and blob not in node.inputs:
                    raise LayerError(f"blob {blob!r} is already written by an earlier layer (only a layer that "
                                     "reads a blob may write it again, in place)", layer, net=self.name)
            blobs.update(node.outputs)
        unread = [b for b in self.inputs if not any(b in n.inputs for n in self.nodes)]
        if unread:
            raise LayerError(f"input blobs {unread} are read by no layer", net=self.name)

    def _last_uses(self):
        """blob -> index of the last node that reads it (apply drops each blob after it)."""
        last = {}
        for i, node in enumerate(self.nodes):
            for blob in node.inputs:
                last[blob] = i
        return last

    # -- structure ------------------------------------------------------------------------------------
    @property
    def layers(self) -> tuple:
        """The layers in execution order."""
        return tuple(n.layer for n in self.nodes)

    @property
    def input_shape(self):
        """The per-example shape the net is designed for: one shape (or None) for a single input blob, else a
        dict {blob: shape}."""
        if len(self.inputs) == 1:
            return next(iter(self.inputs.values()))
        return dict(self.inputs)

    @property
    def is_chain(self) -> bool:
        """True if every layer reads exactly what the one before it wrote (one input blob, one output)."""
        prev = tuple(self.inputs)
        for node in self.nodes:
            if node.inputs != prev or len(node.outputs) != 1:
                return False
            prev = node.outputs
        return self.outputs == prev

    def node(self, name: str) -> Node:
        """The node of layer `name`."""
        for node in self.nodes:
            if node.layer.name == name:
                return node
        raise KeyError(f"{self.name} has no layer {name!r}; layers: {[n.layer.name for n in self.nodes]}")

    def __getitem__(self, name: str) -> Layer:
        return self.node(name).layer

    def __repr__(self):
        return f"{type(self).__name__}({self.name!r}, {len(self.nodes)} layers, inputs {self.inputs}, " \
               f"outputs {list(self.outputs)})"

    # -- shapes ---------------------------------------------------------------------------------------
    def input_shapes(self, input_shape=None) -> dict:
        """{input blob: per-example shape} from a shape (one input blob), a dict, or None (the net's own);
        ValueError if a shape is missing (MissingSetting naming input_shape for a net of one input)."""
        if input_shape is None:
            shapes = dict(self.inputs)
        elif len(self.inputs) == 1 and not isinstance(input_shape, Mapping):
            shapes = {next(iter(self.inputs)): tuple(input_shape)}
        elif isinstance(input_shape, Mapping) and set(input_shape) == set(self.inputs):
            shapes = {b: tuple(s) for b, s in input_shape.items()}
        else:
            raise ValueError(f"{self.name}: give the input shapes as {{blob: (H, W, C)}} for the input blobs "
                             f"{list(self.inputs)}, got {input_shape!r}")
        missing = [b for b, s in shapes.items() if s is None]
        if len(self.inputs) == 1 and missing:
            raise MissingSetting([f"{self.name}: the net has no default input shape: give ",
                                  Setting("input_shape", ("H", "W", "C"))], setting="input_shape")
        if missing:
            raise ValueError(f"{self.name}: give input shapes for {missing}; the net has no default")
        return shapes

    def _outputs(self, values: dict):
        if len(self.outputs) == 1:
            return values[self.outputs[0]]
        return {b: values[b] for b in self.outputs}

    @staticmethod
    def _read(node, values):
        return values[node.inputs[0]] if node.layer.arity == 1 else tuple(values[b] for b in node.inputs)

    @staticmethod
    def _write(node, values, y):
        for blob, v in zip(node.outputs, y if node.layer.multi_output else (y,)):
            values[blob] = v

    def _run_shapes(self, input_shape, make):
        """Propagate shapes: make(i, node, in_shape) -> (out_shape, params, state); -> (output shapes, rows)."""
        shapes, rows = self.input_shapes(input_shape), []
        for i, node in enumerate(self.nodes):
            in_shape = self._read(node, shapes)
            out, p, s = make(i, node, in_shape)
            rows.append(LayerShapes(node.layer, in_shape, out, p, s, node.inputs, node.outputs))
            self._write(node, shapes, out)
        return self._outputs(shapes), rows

    def init(self, rng, input_shape=None):
        """-> (output_shape, params, state); params and state are dicts keyed by layer name (layers without
        any are left out). input_shape: per example, e.g. (28, 28, 1) (a dict {blob: shape} for several input
        blobs); defaults to the net's. output_shape: a shape, or a dict {blob: shape} for several outputs."""
        keys = jax.random.split(rng, len(self.nodes))
        out, rows = self._run_shapes(input_shape, lambda i, node, shape: node.layer.init(keys[i], shape))
        return out, *_by_layer(rows)

    def shapes(self, input_shape=None) -> list[LayerShapes]:
        """Every layer's shapes, computed abstractly with jax.eval_shape (no FLOPs, no parameter memory)."""
        return self._run_shapes(input_shape, lambda i, node, shape: node.layer.abstract_init(shape))[1]

    def output_shapes(self, input_shape=None):
        """The per-example output shape (a dict {blob: shape} for several outputs), computed abstractly."""
        return self._run_shapes(input_shape, lambda i, node, shape: node.layer.abstract_init(shape))[0]

    # -- running --------------------------------------------------------------------------------------
    def apply(self, params, state, x, *, train=False, rng=None, lowering="auto"):
        """x: (N, *input_shape) (a dict {blob: array} for several input blobs) -> (y, new_state); y is an array,
        or a dict {blob: array} for several outputs. rng (a jax.random key) is needed when training with
        dropout; lowering: 'auto', 'native' or 'cpu' for every layer (jaxcnn.ops.lowering)."""
        values = self._feed(x)
        keep = set(self.outputs)
        start, new_state = self._fused_first_block(params, state, values, train, lowering)
        for i, node in enumerate(self.nodes[start:], start):
            layer = node.layer
            key = None if rng is None else jax.random.fold_in(rng, i)
            with jax.named_scope(layer.name):  # profiles and compiled HLO name each op's layer
                y, s = layer.apply(params.get(layer.name, {}), state.get(layer.name, {}), self._read(node, values),
                                   train=train, rng=key, lowering=lowering)
            if s:
                new_state[layer.name] = s
            for blob in dict.fromkeys(node.inputs):  # free what no later layer reads (eager runs keep less alive)
                if self._last_use[blob] == i and blob not in keep:
                    del values[blob]
            self._write(node, values, y)
        return self._outputs(values), new_state

    def _fused_first_block(self, params, state, values, train, lowering) -> tuple[int, dict]:
        """In training with a Tuned(first_block=True) lowering, the net's first block by the fused kernels
        (jaxcnn.first_block), where the net opens with one and the input is float32 on the CPU: its output written
        to `values` -> (the number of nodes run, their new state); else (0, {})."""
        if not (train and isinstance(lowering, Tuned) and lowering.first_block and len(values) == 1):
            return 0, {}
        (blob, x), = values.items()
        layers = first_block.layers_of(self, x.shape[1:])
        if layers is None or x.dtype != jnp.float32 or not first_block.available():
            return 0, {}
        z, new_state = first_block.apply(layers, params, state, x)
        if self._last_use[blob] == 0 and blob not in self.outputs:
            del values[blob]
        values[self.nodes[len(layers) - 1].outputs[0]] = z
        return len(layers), new_state

    def _feed(self, x) -> dict:
        if isinstance(x, Mapping):
            if set(x) != set(self.inputs):
                raise ValueError(f"{self.name}: inputs {sorted(x)} do not match the net's input blobs "
                                 f"{list(self.inputs)}")
            return dict(x)
        if len(self.inputs) != 1:
            raise ValueError(f"{self.name}: the net has input blobs {list(self.inputs)}: give a dict of arrays")
        return {next(iter(self.inputs)): x}

    def multipliers(self, params=None):
        """Caffe's per-parameter multipliers -> (lr_mult, decay_mult), two pytrees shaped like params with
        float leaves, from each layer's metadata (e.g. Caffe biases: lr_mult 2). Only params' names are read;
        by default the net's own, from its abstract shapes (nothing is initialised)."""
        if params is None:
            params = _by_layer(self.shapes())[0]
        pairs = {name: {k: self[name].mults(k) for k in p} for name, p in params.items()}
        return tuple({name: {k: m[i] for k, m in p.items()} for name, p in pairs.items()} for i in (0, 1))


class Net(Graph):
    """Layers applied in order: a Graph whose layer i reads what layer i - 1 wrote. input_shape: the per-example
    (H, W, C) the net is designed for (the default for init and summaries; a net with no dense layer also runs
    on other sizes). The input blob is 'data' (or 'input' if a layer is named 'data'); each layer writes a
    blob named after itself."""

    def __init__(self, layers, input_shape=None, name: str = "net"):
        layers = tuple(layers)
        names = {getattr(layer, "name", None) for layer in layers}
        blob = "data" if "data" not in names else "input"
        nodes = []
        for layer in layers:
            if not isinstance(layer, Layer):
                raise TypeError(f"{name}: expected Layer values, got {layer!r}")
            nodes.append(Node(layer, (blob,), (layer.name,)))
            blob = layer.name
        super().__init__(nodes, {nodes[0].inputs[0] if nodes else "data": input_shape}, name=name)


def unread_blobs(nodes) -> tuple:
    """The blobs whose last value no node reads, in the order they were written (a net's default outputs)."""
    unread = {}
    for node in nodes:
        for blob in node.inputs:
            unread.pop(blob, None)
        for blob in node.outputs:
            unread.pop(blob, None)
            unread[blob] = True
    return tuple(unread)


def _by_layer(rows):
    params = {r.layer.name: r.params for r in rows if r.params}
    state = {r.layer.name: r.state for r in rows if r.state}
    return params, state


def count(tree) -> int:
    """Number of scalars in a pytree of arrays or ShapeDtypeStructs."""
    return sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(tree))
