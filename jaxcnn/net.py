"""A net: a sequence of uniquely named layers, with the same init/apply signatures as a layer.

    out_shape, params, state = net.init(rng, (28, 28, 1))   # params["conv1"]["w"], state["bn_conv1"]["mean"]
    logits, state = net.apply(params, state, x, train=True, rng=key)
"""
import math
from dataclasses import dataclass
from typing import NamedTuple

import jax

from .layers import Layer, LayerError


class LayerShapes(NamedTuple):
    """One layer's abstract shapes: per-example in/out shapes and its params/state as ShapeDtypeStructs."""

    layer: Layer
    in_shape: tuple
    out_shape: tuple
    params: dict
    state: dict


@dataclass(frozen=True)
class Net:
    """Layers applied in order. input_shape: the per-example (H, W, C) the net is designed for (the default
    for init and summaries; a net with no dense layer also runs on other sizes)."""

    layers: tuple
    input_shape: tuple | None = None
    name: str = "net"

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple(self.layers))
        if self.input_shape is not None:
            object.__setattr__(self, "input_shape", tuple(self.input_shape))
        if not self.layers:
            raise ValueError(f"{self.name}: a net needs at least one layer")
        seen = set()
        for layer in self.layers:
            if not isinstance(layer, Layer):
                raise TypeError(f"{self.name}: expected Layer values, got {layer!r}")
            if layer.name in seen:
                raise LayerError(f"{self.name}: layer name {layer.name!r} is used twice")
            seen.add(layer.name)

    def __getitem__(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"{self.name} has no layer {name!r}; layers: {[l.name for l in self.layers]}")

    def _shape(self, input_shape):
        if input_shape is None:
            if self.input_shape is None:
                raise ValueError(f"{self.name}: give an input shape (H, W, C); the net has no default")
            return self.input_shape
        return tuple(input_shape)

    def init(self, rng, input_shape=None):
        """-> (output_shape, params, state); params and state are dicts keyed by layer name (layers without
        any are left out). input_shape is per example, e.g. (28, 28, 1); defaults to net.input_shape."""
        shape = self._shape(input_shape)
        params, state = {}, {}
        for layer, key in zip(self.layers, jax.random.split(rng, len(self.layers))):
            shape, p, s = layer.init(key, shape)
            if p:
                params[layer.name] = p
            if s:
                state[layer.name] = s
        return shape, params, state

    def apply(self, params, state, x, *, train=False, rng=None, lowering="auto"):
        """x: (N, *input_shape) -> (y, new_state). rng (a jax.random key) is needed when training with dropout;
        lowering: 'auto', 'native' or 'cpu' for every layer (jaxcnn.ops.lowering)."""
        new_state = {}
        for i, layer in enumerate(self.layers):
            key = None if rng is None else jax.random.fold_in(rng, i)
            with jax.named_scope(layer.name):  # profiles and compiled HLO name each op's layer
                x, s = layer.apply(params.get(layer.name, {}), state.get(layer.name, {}), x, train=train, rng=key,
                                   lowering=lowering)
            if s:
                new_state[layer.name] = s
        return x, new_state

    def shapes(self, input_shape=None) -> list[LayerShapes]:
        """Every layer's shapes, computed abstractly with jax.eval_shape (no FLOPs, no parameter memory)."""
        shape, rows = self._shape(input_shape), []
        for layer in self.layers:
            out, p, s = layer.abstract_init(shape)
            rows.append(LayerShapes(layer, tuple(shape), out, p, s))
            shape = out
        return rows

    def multipliers(self, params):
        """Caffe's per-parameter multipliers -> (lr_mult, decay_mult), two pytrees shaped like params with
        float leaves, from each layer's metadata (e.g. Caffe biases: lr_mult 2)."""
        pairs = {name: {k: self[name].mults(k) for k in p} for name, p in params.items()}
        return tuple({name: {k: m[i] for k, m in p.items()} for name, p in pairs.items()} for i in (0, 1))


def count(tree) -> int:
    """Number of scalars in a pytree of arrays or ShapeDtypeStructs."""
    return sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(tree))
