"""Flax NNX modules for jaxcnn's layers and nets: `import jaxcnn.nnx` (flax is imported only then).

    >>> import jax, jax.numpy as jnp
    >>> from flax import nnx
    >>> import jaxcnn.nnx
    >>> from jaxcnn import zoo
    >>> net = zoo.lenet_caffe()                                           # any zoo net, or one built by hand
    >>> _, params, state = net.init(jax.random.key(0))
    >>> model = jaxcnn.nnx.from_net(net, params, state, rngs=nnx.Rngs(0))
    >>> x = jnp.ones((4, 28, 28, 1))
    >>> logits = model(x)                                                 # training mode, as Flax modules start
    >>> model.eval(); logits = model(x)                                   # running statistics, no dropout
    >>> logits.shape, model.net_params["conv1"]["w"].lr_mult, model.net_params["conv1"]["b"].lr_mult
    ((4, 10), 1.0, 2.0)
    >>> net, params, state = jaxcnn.nnx.to_net(model)

One module class, NetModule, runs anything with jaxcnn's net contract, `init(rng, input_shape) -> (out_shape,
params, state)` and `apply(params, state, x, *, train, rng, lowering) -> (y, state)`: a Net, a single Layer or a
branched net. It holds the description statically, its params as `nnx.Param` (carrying Caffe's `lr_mult` and
`decay_mult` as metadata, see `multipliers`) and its state as `nnx.BatchStat`, in two dicts shaped like the pure
pytrees (`model.net_params["conv1"]["w"]`, `model.net_state["bn_conv1"]["mean"]`), and computes with `net.apply`, so a
module and its net cannot disagree. The per-layer classes (Conv, Local, Dense, MaxPool, AvgPool, LRN, BatchNorm,
Scale, Dropout, Flatten, ReLU, Tanh, Sigmoid) are NetModules around one jaxcnn layer, built from NNX-style
arguments (in/out features, `rngs`).

Modes are Flax's: `use_running_average` (BatchNorm statistics) and `deterministic` (no dropout), set by
`model.train()` / `model.eval()` / `nnx.view`, or per call. A jaxcnn net runs all its layers in one mode, so a
NetModule refuses the two disagreeing. In training, dropout keys come from the `rngs` given at construction
(its 'dropout' stream) or from the call's `rngs`.
"""
from collections.abc import Mapping
from typing import Any, ClassVar

import jax
from flax import nnx

from . import layers
from .compat import get_value, set_value
from .ops import lowering as lowerings

Shape = tuple[int, ...]


def _is_variable(x) -> bool:
    return isinstance(x, nnx.Variable)


def _values(variables):
    """A pytree of nnx.Variables -> the same pytree of their arrays."""
    return jax.tree.map(get_value, variables, is_leaf=_is_variable)


def _multipliers(net, params) -> tuple[Any, Any]:
    """(lr_mult, decay_mult) pytrees like params: Net.multipliers, a Layer's mults, or 1.0 without either."""
    if hasattr(net, "multipliers"):
        return net.multipliers(params)
    mults = {k: net.mults(k) if hasattr(net, "mults") else (1.0, 1.0) for k in params}
    return tuple({k: m[i] for k, m in mults.items()} for i in (0, 1))


class NetModule(nnx.Module):
    """An NNX module running a jaxcnn net (or layer): `net.apply` on params and state held as NNX variables.

    Args:
      net: anything with jaxcnn's init/apply contract (a Net, a Layer, a branched net); held statically, so it
        must be hashable (jaxcnn's are frozen dataclasses).
      params, state: the pure pytrees (e.g. from `net.init`); both None to initialise them from `rngs`.
      input_shape: per-example input shape for that initialisation (default: the net's own input_shape).
      rngs: `nnx.Rngs`; its 'params' stream initialises, its 'dropout' stream (or the default one) gives the
        training-mode dropout keys.
      lowering: 'auto', 'native' or 'cpu' (jaxcnn.ops.lowering), for every call.
      use_running_average, deterministic: the initial mode (default training, as Flax's modules).

    Attributes:
      net_params: dict of nnx.Param shaped like the net's params; each has `lr_mult` and `decay_mult` metadata.
      net_state: dict of nnx.BatchStat shaped like the net's state.
    """

    modes: ClassVar[tuple[str, ...]] = ("use_running_average", "deterministic")  # the mode attributes it has

    def __init__(self, net, params: Mapping | None = None, state: Mapping | None = None, *,
                 input_shape: Shape | None = None, rngs: nnx.Rngs | None = None, lowering: str = "auto",
                 use_running_average: bool = False, deterministic: bool = False):
        self.net = net
        self.lowering = lowerings.check(lowering)
        if (params is None) != (state is None):
            raise ValueError(f"{_name(net)}: give both params and state, or neither (to initialise them from rngs)")
        if params is None:
            if rngs is None:
                raise ValueError(f"{_name(net)}: give params and state, or rngs=nnx.Rngs(...) to initialise them")
            key = rngs.params()
            _, params, state = net.init(key) if input_shape is None else net.init(key, input_shape)
        lr_mult, decay_mult = _multipliers(net, params)
        self.net_params = nnx.data(jax.tree.map(lambda a, lr, d: nnx.Param(a, lr_mult=lr, decay_mult=d),
                                            dict(params), lr_mult, decay_mult))
        self.net_state = nnx.data(jax.tree.map(nnx.BatchStat, dict(state)))
        self.rngs = nnx.data(_dropout_stream(rngs) if "deterministic" in self.modes else None)
        given = {"use_running_average": use_running_average, "deterministic": deterministic}
        for attribute in self.modes:
            setattr(self, attribute, given[attribute])

    def __call__(self, x: jax.Array, *, use_running_average: bool | None = None, deterministic: bool | None = None,
                 rngs: nnx.Rngs | nnx.RngStream | jax.Array | None = None) -> jax.Array:
        """Run the net on a batch; in training mode the state is updated in place.

        Args:
          x: (N, *input_shape), floating point.
          use_running_average, deterministic: override the module's mode for this call.
          rngs: dropout keys for this call (Rngs, RngStream or a key) instead of the module's stream.

        Returns:
          y: (N, *output_shape).
        """
        train = self._training(use_running_average=use_running_average, deterministic=deterministic)
        key = self._key(rngs) if train else None
        y, new_state = self.net.apply(_values(self.net_params), _values(self.net_state), x, train=train, rng=key,
                                      lowering=self.lowering)
        jax.tree.map(set_value, self.net_state, dict(new_state), is_leaf=_is_variable)
        return y

    def set_view(self, use_running_average: bool | None = None, deterministic: bool | None = None) -> None:
        """Used by `nnx.view`: set the mode attributes this module has."""
        for attribute, value in (("use_running_average", use_running_average), ("deterministic", deterministic)):
            if value is not None and attribute in self.modes:
                setattr(self, attribute, value)

    def _training(self, **overrides) -> bool:
        mode = {a: getattr(self, a) if overrides[a] is None else overrides[a] for a in self.modes}
        if len(set(mode.values())) > 1:
            raise ValueError(f"{_name(self.net)}: a jaxcnn net runs all its layers in one mode, got "
                             f"{', '.join(f'{k}={v}' for k, v in mode.items())}; use model.train() or model.eval()")
        return not all(mode.values())

    def _key(self, rngs):
        rngs = self.rngs if rngs is None else rngs
        if isinstance(rngs, nnx.Rngs):
            return rngs["dropout"]()
        if isinstance(rngs, nnx.RngStream):
            return rngs()
        return rngs  # a key, or None (then a layer that needs one says so)


def _dropout_stream(rngs: nnx.Rngs | None) -> nnx.RngStream | None:
    """A fork of rngs' 'dropout' stream (its default stream if it has none); None without either."""
    try:
        return None if rngs is None else rngs["dropout"].fork()
    except KeyError:
        return None


def _name(net) -> str:
    return getattr(net, "name", type(net).__name__)


def from_net(net, params: Mapping, state: Mapping, *, rngs: nnx.Rngs | None = None,
             lowering: str = "auto") -> NetModule:
    """A jaxcnn net with its params and state -> an NNX module (see NetModule).

    Args:
      net: a Net, a Layer or any object with their init/apply contract.
      params, state: the net's pytrees, e.g. from `net.init` or a checkpoint.
      rngs: nnx.Rngs for dropout keys in training (not needed by nets without dropout).
      lowering: 'auto', 'native' or 'cpu'.

    Returns:
      A NetModule in training mode; `model(x)` computes `net.apply(params, state, x, train=True, ...)`.
    """
    return NetModule(net, params, state, rngs=rngs, lowering=lowering)


def to_net(module: NetModule) -> tuple[Any, dict, dict]:
    """An NNX module made by from_net (or any NetModule) -> (net, params, state) as pure pytrees of arrays."""
    if not isinstance(module, NetModule):
        raise TypeError(f"expected a jaxcnn.nnx.NetModule, got {type(module).__name__}")
    return module.net, _values(module.net_params), _values(module.net_state)


def multipliers(model: nnx.Module, wrt: Any = nnx.Param) -> tuple[Any, Any]:
    """Caffe's per-parameter multipliers of any NNX model, for jaxcnn.train.optimizer with nnx.Optimizer.

    Args:
      model: an NNX module, possibly holding NetModules among other Flax modules.
      wrt: the filter nnx.Optimizer trains (default nnx.Param).

    Returns:
      (lr_mult, decay_mult): two nnx.State trees shaped like `nnx.state(model, wrt)` with float leaves: each
      variable's `lr_mult` / `decay_mult` metadata, 1.0 where it has none (parameters of other Flax modules).
    """
    def metadata(name):
        return jax.tree.map(lambda v: v.get_metadata().get(name, 1.0), nnx.state(model, wrt), is_leaf=_is_variable)

    return metadata("lr_mult"), metadata("decay_mult")


# -- one module per jaxcnn layer: the layer built from NNX-style arguments, run by NetModule ---------------------


class _LayerModule(NetModule):
    """A NetModule around one layer of class `layer`, with the modes the layer's traits call for:
    use_running_average for batch statistics, deterministic for randomness in training."""

    layer: ClassVar[type[layers.Layer]]

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "layer" in vars(cls):
            cls.modes = tuple(mode for mode, used in (("use_running_average", cls.layer.batch_statistics),
                                                      ("deterministic", cls.layer.stochastic)) if used)


class Conv(_LayerModule):
    """Convolution with groups (jaxcnn.layers.Conv): (N, H, W, in_features) -> (N, OH, OW, out_features).

    Args:
      in_features, out_features: input and output channels.
      kernel, stride, padding, dilation, groups, bias, w_init, b_init, lr_mult, decay_mult: as jaxcnn.layers.Conv
        (padding defaults to 0, as Caffe, not Flax's 'SAME').
      name: the layer name used in errors.
      lowering: 'auto', 'native' or 'cpu'.
      rngs: nnx.Rngs whose 'params' stream fills the weights.

    params: w (KH, KW, in_features / groups, out_features), b (out_features,).
    """

    layer = layers.Conv

    def __init__(self, in_features: int, out_features: int, kernel, *, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, w_init="xavier", b_init=0.0, lr_mult=None, decay_mult=None,
                 name: str = "conv", lowering: str = "auto", rngs: nnx.Rngs):
        layer = layers.Conv(name, out_features, kernel, stride=stride, padding=padding, dilation=dilation,
                            groups=groups, bias=bias, w_init=w_init, b_init=b_init, lr_mult=lr_mult or {},
                            decay_mult=decay_mult or {})
        super().__init__(layer, input_shape=layer.probe_input(in_features), rngs=rngs, lowering=lowering)


class Local(_LayerModule):
    """Locally-connected layer (jaxcnn.layers.Local): (N, H, W, in_features) -> (N, OH, OW, out_features).

    Args:
      in_features, out_features: input and output channels.
      kernel: int or (h, w).
      input_size: the (H, W) it runs on (its weights are per output position).
      stride, padding, bias ('position', 'filter' or None), w_init, b_init, lr_mult, decay_mult: as
        jaxcnn.layers.Local.
      name, lowering, rngs: as Conv.

    params: w (OH, OW, KH, KW, in_features, out_features), b (OH, OW, out_features) or (out_features,).
    """

    layer = layers.Local

    def __init__(self, in_features: int, out_features: int, kernel, *, input_size: tuple[int, int], stride=1,
                 padding=0, bias: str | None = "position", w_init="xavier", b_init=0.0, lr_mult=None,
                 decay_mult=None, name: str = "local", lowering: str = "auto", rngs: nnx.Rngs):
        layer = layers.Local(name, out_features, kernel, stride=stride, padding=padding, bias=bias, w_init=w_init,
                             b_init=b_init, lr_mult=lr_mult or {}, decay_mult=decay_mult or {})
        super().__init__(layer, input_shape=(*input_size, in_features), rngs=rngs, lowering=lowering)


class Dense(_LayerModule):
    """Fully-connected (jaxcnn.layers.Dense): (N, in_features) -> (N, out_features).

    Args:
      in_features, out_features: input and output features.
      bias, w_init, b_init, lr_mult, decay_mult: as jaxcnn.layers.Dense.
      name, rngs: as Conv.

    params: w (in_features, out_features), b (out_features,).
    """

    layer = layers.Dense

    def __init__(self, in_features: int, out_features: int, *, bias: bool = True, w_init="xavier", b_init=0.0,
                 lr_mult=None, decay_mult=None, name: str = "dense", rngs: nnx.Rngs):
        layer = layers.Dense(name, out_features, bias=bias, w_init=w_init, b_init=b_init, lr_mult=lr_mult or {},
                             decay_mult=decay_mult or {})
        super().__init__(layer, input_shape=layer.probe_input(in_features), rngs=rngs)


class MaxPool(_LayerModule):
    """Max pooling (jaxcnn.layers.MaxPool): (N, H, W, C) -> (N, OH, OW, C); stride defaults to the kernel and
    ceil_mode=True rounds output sizes up as Caffe and cuda-convnet. No params."""

    layer = layers.MaxPool

    def __init__(self, kernel, stride=None, *, padding=0, ceil_mode: bool = False, name: str = "pool",
                 lowering: str = "auto"):
        super().__init__(layers.MaxPool(name, kernel, stride, padding, ceil_mode), {}, {}, lowering=lowering)


class AvgPool(_LayerModule):
    """Average pooling (jaxcnn.layers.AvgPool): (N, H, W, C) -> (N, OH, OW, C); ceil_mode as MaxPool, count_pad
    as jaxcnn.ops.avg_pool. No params."""

    layer = layers.AvgPool

    def __init__(self, kernel, stride=None, *, padding=0, ceil_mode: bool = False, count_pad: bool = True,
                 name: str = "pool"):
        super().__init__(layers.AvgPool(name, kernel, stride, padding, ceil_mode, count_pad=count_pad), {}, {})


class LRN(_LayerModule):
    """Local response normalisation (jaxcnn.layers.LRN), (N, H, W, C) -> same shape: x / (k + alpha/size *
    sum x^2)^beta over `size` channels ('across') or a size x size window ('within'). No params."""

    layer = layers.LRN

    def __init__(self, size: int = 5, *, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0,
                 region: str = "across", name: str = "lrn"):
        super().__init__(layers.LRN(name, size, alpha, beta, k, region), {}, {})


class ContrastNorm(_LayerModule):
    """cuda-convnet's contrast normalisation (jaxcnn.layers.ContrastNorm), (N, H, W, C) -> same shape: LRN within a
    size x size window on x less its local mean. No params."""

    layer = layers.ContrastNorm

    def __init__(self, size: int = 5, *, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0,
                 name: str = "cnorm"):
        super().__init__(layers.ContrastNorm(name, size, alpha, beta, k), {}, {})


class BatchNorm(_LayerModule):
    """Caffe's BatchNorm without affine (jaxcnn.layers.BatchNorm; follow it with Scale): (N, ..., C) -> same.

    Args:
      num_features: channels C.
      momentum, eps: as jaxcnn.layers.BatchNorm (its running statistics are Caffe's normalised average).
      use_running_average: evaluation mode (set by model.eval()).
      name: the layer name used in errors.

    state: mean (C,), var (C,), count ().
    """

    layer = layers.BatchNorm

    def __init__(self, num_features: int, *, momentum: float = 0.99, eps: float = 1e-5,
                 use_running_average: bool = False, name: str = "bn"):
        layer = layers.BatchNorm(name, momentum, eps)
        _, params, state = layer.init(jax.random.key(0), layer.probe_input(num_features))  # no randomness: 0s, 1s
        super().__init__(layer, params, state, use_running_average=use_running_average)


class Scale(_LayerModule):
    """Caffe's Scale (jaxcnn.layers.Scale): per-channel gamma (ones) and beta (zeros), (N, ..., C) -> same.

    Args:
      num_features: channels C.
      bias, lr_mult, decay_mult: as jaxcnn.layers.Scale.
      name: the layer name used in errors.

    params: gamma (C,), beta (C,).
    """

    layer = layers.Scale

    def __init__(self, num_features: int, *, bias: bool = True, lr_mult=None, decay_mult=None, name: str = "scale"):
        layer = layers.Scale(name, bias, lr_mult=lr_mult or {}, decay_mult=decay_mult or {})
        _, params, state = layer.init(jax.random.key(0), layer.probe_input(num_features))  # no randomness: 1s, 0s
        super().__init__(layer, params, state)


class Dropout(_LayerModule):
    """Inverted dropout (jaxcnn.layers.Dropout), any shape; identity when deterministic.

    Args:
      rate: the probability of zeroing an element.
      deterministic: evaluation mode (set by model.eval()).
      name: the layer name used in errors.
      rngs: nnx.Rngs whose 'dropout' stream gives the masks' keys (or pass rngs at call time).
    """

    layer = layers.Dropout

    def __init__(self, rate: float = 0.5, *, deterministic: bool = False, name: str = "dropout",
                 rngs: nnx.Rngs | None = None):
        super().__init__(layers.Dropout(name, rate), {}, {}, rngs=rngs, deterministic=deterministic)


class _Parameterless(_LayerModule):
    def __init__(self, *, name: str | None = None):
        super().__init__(self.layer(name or self.layer.__name__.lower()), {}, {})


class Flatten(_Parameterless):
    """(N, H, W, C) -> (N, H*W*C), row-major (jaxcnn.layers.Flatten)."""

    layer = layers.Flatten


class ReLU(_Parameterless):
    """max(x, 0), any shape."""

    layer = layers.ReLU


class Tanh(_Parameterless):
    """tanh(x), any shape."""

    layer = layers.Tanh


class Sigmoid(_Parameterless):
    """1 / (1 + exp(-x)), any shape."""

    layer = layers.Sigmoid


__all__ = ["AvgPool", "BatchNorm", "ContrastNorm", "Conv", "Dense", "Dropout", "Flatten", "LRN", "Local", "MaxPool",
           "NetModule", "ReLU", "Scale", "Sigmoid", "Tanh", "from_net", "multipliers", "to_net"]
