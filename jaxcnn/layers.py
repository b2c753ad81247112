"""Named layers: small frozen values with two pure functions.

    out_shape, params, state = layer.init(rng, input_shape)      # input_shape per example: (H, W, C) or (F,)
    y, state = layer.apply(params, state, x, train=False, rng=None, lowering="auto")   # x batched: (N, ...)

Layers with several inputs (Concat, Eltwise: `arity = None`) take a tuple of per-example shapes in init and a
tuple of arrays in apply; layers with several outputs (Slice, Split: `multi_output = True`) give a tuple of
output shapes and return a tuple of arrays. Every other layer takes one array and gives one.

params hold what training learns, state what it does not (BatchNorm's running statistics). Each layer carries
Caffe-style `lr_mult` / `decay_mult` per parameter name (missing names mean 1.0). Configuration is checked and
normalised when a layer is made (kernel, stride and dilation become (h, w) pairs, padding 'VALID', 'SAME' or
((top, bottom), (left, right))); configuration, shape and parameter errors are LayerErrors naming the layer.

Inputs: floating point. A float input of another dtype than the layer's parameters is cast to theirs (bfloat16
parameters make a bfloat16 computation); integer and boolean inputs are refused (scale images to floats first).
`lowering` chooses how conv2d, local2d and max_pool are computed (see jaxcnn.ops.lowering); the results agree.
"""
import contextlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping

import jax
import jax.numpy as jnp

from . import fillers, ops
from .errors import LayerError
from .ops.conv import check_groups, conv_geometry
from .ops.geometry import normalize_padding, pair
from .ops.pool import CLIPS, pool_geometry

Shape = tuple[int, ...]


@contextlib.contextmanager
def named(layer):
    """Re-raise ValueError / KeyError / TypeError from inside `layer` as a LayerError that names it."""
    try:
        yield
    except LayerError:
        raise
    except (ValueError, TypeError) as e:
        raise LayerError(f"{layer.name} ({type(layer).__name__}): {e}") from e
    except KeyError as e:
        raise LayerError(f"{layer.name} ({type(layer).__name__}): missing parameter or state {e}") from e


def _positive_int(value, what):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{what} must be a positive int, got {value!r}")
    return value


@dataclass(frozen=True)
class Layer:
    """Base class. Subclasses set `input_rank`, normalise their fields in `configure` and implement `create`
    (params, state) and `forward`."""

    name: str
    lr_mult: Mapping[str, float] = field(default_factory=dict, kw_only=True, hash=False)
    decay_mult: Mapping[str, float] = field(default_factory=dict, kw_only=True, hash=False)

    input_rank: ClassVar[int | None] = None  # per-example rank the layer needs (3: H, W, C; 1: features)
    inplace: ClassVar[bool] = False  # elementwise: may overwrite its input (Caffe's in-place layers)
    arity: ClassVar[int | None] = 1  # 1: one input array; None: a tuple of one or more (each of input_rank)
    multi_output: ClassVar[bool] = False  # True: forward returns a tuple of `num_outputs` arrays

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise LayerError(f"a layer name must be a non-empty string, got {self.name!r}")
        with named(self):
            object.__setattr__(self, "lr_mult", dict(self.lr_mult))
            object.__setattr__(self, "decay_mult", dict(self.decay_mult))
            self.configure()

    def _set(self, **values):
        """Store normalised field values (the dataclass is frozen)."""
        for k, v in values.items():
            object.__setattr__(self, k, v)

    def configure(self) -> None:
        """Check and normalise the configuration; raise ValueError for a bad one."""

    @property
    def num_outputs(self) -> int:
        """How many arrays the layer returns (1 unless multi_output)."""
        return 1

    def init(self, rng: jax.Array, input_shape: Shape) -> tuple[Shape, dict, dict]:
        """Make the layer's parameters and state for one input shape.

        Args:
          rng: a jax.random key for the fillers.
          input_shape: per-example input shape, (H, W, C) or (F,).

        Returns:
          (output_shape, params, state): the per-example output shape and two dicts of arrays.
        """
        input_shape = self.check_shape(input_shape)
        with named(self):
            params, state = self.create(rng, input_shape)
        return self.output_shape(params, state, input_shape), params, state

    def abstract_init(self, input_shape: Shape) -> tuple[Shape, dict, dict]:
        """init without making arrays: (output_shape, params, state) with ShapeDtypeStructs for arrays."""
        input_shape = self.check_shape(input_shape)
        with named(self):
            params, state = jax.eval_shape(lambda key: self.create(key, input_shape), jax.random.key(0))
        return self.output_shape(params, state, input_shape), params, state

    def check_shape(self, input_shape) -> Shape:
        """The per-example input shape as a tuple (a tuple of them for arity None), or LayerError if a rank is
        not the layer's."""
        if self.arity == 1:
            return self._check_rank(tuple(input_shape))
        try:
            shapes = tuple(tuple(s) for s in input_shape)
        except TypeError:
            shapes = ()
        if not shapes:
            raise LayerError(f"{self.name} ({type(self).__name__}): expected a tuple of per-example input shapes, "
                             f"got {input_shape!r}")
        return tuple(self._check_rank(s) for s in shapes)

    def _check_rank(self, input_shape):
        if self.input_rank is not None and len(input_shape) != self.input_rank:
            want = "(H, W, C)" if self.input_rank == 3 else "(features,); add a Flatten layer before it"
            raise LayerError(f"{self.name} ({type(self).__name__}): expected a per-example input shape {want}, "
                             f"got {input_shape}")
        return input_shape

    def output_shape(self, params, state, input_shape: Shape) -> Shape:
        """Per-example output shape for params and state (arrays or ShapeDtypeStructs), computed abstractly; a
        tuple of shapes for a multi-output layer."""
        def spec(shape):
            return jax.ShapeDtypeStruct((1, *shape), jnp.float32)

        x = spec(input_shape) if self.arity == 1 else tuple(map(spec, input_shape))
        y = jax.eval_shape(lambda p, s, x: self.apply(p, s, x)[0], params, state, x)
        if self.multi_output:
            return tuple(tuple(v.shape[1:]) for v in y)
        return tuple(y.shape[1:])

    def apply(self, params: dict, state: dict, x: jax.Array, *, train: bool = False, rng: jax.Array | None = None,
              lowering: str = "auto") -> tuple[jax.Array, dict]:
        """Run the layer on a batch.

        Args:
          params, state: the dicts init made (or trained versions of them).
          x: (N, *input_shape), floating point; for arity None a tuple of such arrays with the same N.
          train: training mode (batch statistics, dropout).
          rng: a jax.random key; needed by Dropout in training.
          lowering: 'auto', 'native' or 'cpu' (jaxcnn.ops.lowering).

        Returns:
          (y, new_state): y (N, *output_shape) (a tuple of arrays for a multi-output layer) and the updated
          state (unchanged outside training).
        """
        with named(self):
            if self.arity == 1:
                xs = [self._check_input(x)]
            elif isinstance(x, (tuple, list)) and x:
                xs = [self._check_input(v) for v in x]
                if len({v.shape[0] for v in xs}) > 1:
                    raise ValueError(f"inputs have different batch sizes: {[tuple(v.shape) for v in xs]}")
            else:
                raise ValueError(f"expected a tuple of one or more input arrays, got {type(x).__name__}")
            shapes = xs[0].shape[1:] if self.arity == 1 else tuple(v.shape[1:] for v in xs)
            self.check_params(params, shapes)
            dtype = next((p.dtype for p in jax.tree.leaves(params)), None)
            if dtype is not None:
                xs = [v if v.dtype == dtype else v.astype(dtype) for v in xs]
            return self.forward(params, state, xs[0] if self.arity == 1 else tuple(xs), train=train, rng=rng,
                                lowering=lowering)

    def _check_input(self, x):
        x = jnp.asarray(x)
        if x.ndim == 0:
            raise ValueError("expected a batched input (N, ...), got a scalar")
        if self.input_rank is not None and x.ndim != self.input_rank + 1:
            raise ValueError(f"expected a {self.input_rank + 1}-d batched input, got shape {tuple(x.shape)}")
        if x.shape[0] == 0:
            raise ValueError(f"empty batch: input shape {tuple(x.shape)}")
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise ValueError(f"expected a floating-point input, got {x.dtype} (scale or cast it to float first)")
        return x

    def check_params(self, params, input_shape: Shape) -> None:
        """ValueError unless params have exactly the names and shapes create() gives for input_shape."""
        if not isinstance(params, Mapping):
            raise ValueError(f"params must be a dict, got {type(params).__name__}")
        want = jax.eval_shape(lambda: self.create(jax.random.key(0), tuple(input_shape))[0])
        missing, extra = sorted(set(want) - set(params)), sorted(set(params) - set(want))
        if missing or extra:
            raise ValueError(f"params have {sorted(params) or 'none'}, the layer needs {sorted(want) or 'none'}")
        for k, spec in want.items():
            if tuple(jnp.shape(params[k])) != spec.shape:
                raise ValueError(f"parameter {k!r} has shape {tuple(jnp.shape(params[k]))}, but on a per-example "
                                 f"input {tuple(input_shape)} the layer needs {spec.shape}")

    def create(self, rng, input_shape: Shape) -> tuple[dict, dict]:
        """(params, state) for a per-example input shape (already checked for rank)."""
        return {}, {}

    def forward(self, params, state, x, *, train, rng, lowering):
        raise NotImplementedError

    def cost(self, in_shape: Shape, out_shape: Shape) -> tuple[int, int]:
        """Forward (multiply-accumulates, FLOPs) for one example; elementwise work counts one FLOP."""
        return 0, math.prod(out_shape)

    def mults(self, param_name: str) -> tuple[float, float]:
        """(lr_mult, decay_mult) of one parameter."""
        return self.lr_mult.get(param_name, 1.0), self.decay_mult.get(param_name, 1.0)


def _bias(params):
    return params.get("b")


def _check_fillers(layer):
    fillers.resolve(layer.w_init)
    fillers.resolve(layer.b_init)


@dataclass(frozen=True)
class Conv(Layer):
    """Convolution (Caffe's Convolution), groups as XLA's feature_group_count (AlexNet's conv2).

    (H, W, C) -> (OH, OW, features); params w (KH, KW, C/groups, features) and, with bias, b (features,).
    kernel, stride, dilation: int or (h, w); padding: 'VALID', 'SAME', int, (h, w) or ((top, bottom), (left,
    right)). Fillers (w_init, b_init): see jaxcnn.fillers.
    """

    features: int
    kernel: Any
    stride: Any = 1
    padding: Any = 0
    dilation: Any = 1
    groups: int = 1
    bias: bool = True
    w_init: Any = "xavier"
    b_init: Any = 0.0
    input_rank: ClassVar[int] = 3

    def configure(self):
        _positive_int(self.features, "features")
        _positive_int(self.groups, "groups")
        if self.features % self.groups:
            raise ValueError(f"groups={self.groups} does not divide {self.features} output channels")
        self._set(kernel=pair(self.kernel, "kernel"), stride=pair(self.stride, "stride"),
                  dilation=pair(self.dilation, "dilation"), padding=normalize_padding(self.padding))
        _check_fillers(self)

    def create(self, rng, input_shape):
        check_groups(input_shape[-1], self.features, self.groups)
        conv_geometry(input_shape, self.kernel, self.stride, self.padding, self.dilation)
        kw_shape = (*self.kernel, input_shape[-1] // self.groups, self.features)
        k1, k2 = jax.random.split(rng)
        params = {"w": fillers.resolve(self.w_init)(k1, kw_shape, jnp.float32)}
        if self.bias:
            params["b"] = fillers.resolve(self.b_init)(k2, (self.features,), jnp.float32)
        return params, {}

    def forward(self, params, state, x, *, train, rng, lowering):
        y = ops.conv2d(x, params["w"], _bias(params), stride=self.stride, padding=self.padding,
                       dilation=self.dilation, groups=self.groups, lowering=lowering)
        return y, state

    def cost(self, in_shape, out_shape):
        macs = math.prod(out_shape) * math.prod(self.kernel) * in_shape[-1] // self.groups
        return macs, 2 * macs + (math.prod(out_shape) if self.bias else 0)


@dataclass(frozen=True)
class Local(Layer):
    """Locally-connected layer (cuda-convnet's `local`, Keras' LocallyConnected2D): unshared weights.

    (H, W, C) -> (OH, OW, features); params w (OH, OW, KH, KW, C, features) and, by `bias`:
    'position' (default, as cuda-convnet and Keras): b (OH, OW, features); 'filter': b (features,); None: no b.
    The weight filler fills each output position's (KH, KW, C, features) kernel on its own, so fan-in is
    KH*KW*C as for a convolution.
    """

    features: int
    kernel: Any
    stride: Any = 1
    padding: Any = 0
    bias: str | None = "position"
    w_init: Any = "xavier"
    b_init: Any = 0.0
    input_rank: ClassVar[int] = 3

    def configure(self):
        _positive_int(self.features, "features")
        if self.bias not in ("position", "filter", None):
            raise ValueError(f"bias must be 'position', 'filter' or None, got {self.bias!r}")
        self._set(kernel=pair(self.kernel, "kernel"), stride=pair(self.stride, "stride"),
                  padding=normalize_padding(self.padding))
        _check_fillers(self)

    def create(self, rng, input_shape):
        (oh, ow), *_ = conv_geometry(input_shape, self.kernel, self.stride, self.padding)
        k1, k2 = jax.random.split(rng)
        kernel = (*self.kernel, input_shape[-1], self.features)
        fill = fillers.resolve(self.w_init)
        # one compiled fill (eagerly, vmap would dispatch its random-number ops one by one, for seconds)
        w = jax.jit(jax.vmap(lambda k: fill(k, kernel, jnp.float32)))(jax.random.split(k1, oh * ow))
        params = {"w": w.reshape(oh, ow, *kernel)}
        if self.bias:
            b_shape = (oh, ow, self.features) if self.bias == "position" else (self.features,)
            params["b"] = fillers.resolve(self.b_init)(k2, b_shape, jnp.float32)
        return params, {}

    def forward(self, params, state, x, *, train, rng, lowering):
        y = ops.local2d(x, params["w"], _bias(params), stride=self.stride, padding=self.padding, lowering=lowering)
        return y, state

    def cost(self, in_shape, out_shape):
        macs = math.prod(out_shape) * math.prod(self.kernel) * in_shape[-1]
        return macs, 2 * macs + (math.prod(out_shape) if self.bias else 0)


@dataclass(frozen=True)
class Dense(Layer):
    """Fully-connected (Caffe's InnerProduct). (F,) -> (features,); params w (F, features), b (features,)."""

    features: int
    bias: bool = True
    w_init: Any = "xavier"
    b_init: Any = 0.0
    input_rank: ClassVar[int] = 1

    def configure(self):
        _positive_int(self.features, "features")
        _check_fillers(self)

    def create(self, rng, input_shape):
        k1, k2 = jax.random.split(rng)
        params = {"w": fillers.resolve(self.w_init)(k1, (input_shape[0], self.features), jnp.float32)}
        if self.bias:
            params["b"] = fillers.resolve(self.b_init)(k2, (self.features,), jnp.float32)
        return params, {}

    def check_params(self, params, input_shape):
        w = params.get("w") if isinstance(params, Mapping) else None
        if w is not None and jnp.ndim(w) == 2 and jnp.shape(w)[0] != input_shape[0]:
            raise ValueError(f"input has {input_shape[0]} features but the layer was built for {jnp.shape(w)[0]} "
                             "(is the net's input the size it was built for?)")
        super().check_params(params, input_shape)

    def forward(self, params, state, x, *, train, rng, lowering):
        return ops.dense(x, params["w"], _bias(params)), state

    def cost(self, in_shape, out_shape):
        macs = in_shape[0] * self.features
        return macs, 2 * macs + (self.features if self.bias else 0)


@dataclass(frozen=True)
class _Pool(Layer):
    kernel: Any
    stride: Any = None
    padding: Any = 0
    ceil_mode: bool = False
    clip: str = "always"
    input_rank: ClassVar[int] = 3

    def configure(self):
        kernel = pair(self.kernel, "kernel")
        if self.clip not in CLIPS:
            raise ValueError(f"clip must be one of {', '.join(map(repr, CLIPS))}, got {self.clip!r}")
        self._set(kernel=kernel, stride=kernel if self.stride is None else pair(self.stride, "stride"),
                  padding=normalize_padding(self.padding), ceil_mode=bool(self.ceil_mode))

    def create(self, rng, input_shape):
        pool_geometry(input_shape, self.kernel, self.stride, self.padding, self.ceil_mode, self.clip)
        return {}, {}

    def cost(self, in_shape, out_shape):
        return 0, math.prod(out_shape) * math.prod(self.kernel)


@dataclass(frozen=True)
class MaxPool(_Pool):
    """Max pooling, (H, W, C) -> (OH, OW, C); stride defaults to the kernel. ceil_mode=True rounds sizes up
    like Caffe and cuda-convnet (32 -> 16 with 3x3/2); clip='padded' keeps Caffe's last window outside an
    unpadded input (see ops.pool.pool_geometry)."""

    def forward(self, params, state, x, *, train, rng, lowering):
        y = ops.max_pool(x, self.kernel, self.stride, self.padding, ceil_mode=self.ceil_mode, clip=self.clip,
                         lowering=lowering)
        return y, state


@dataclass(frozen=True)
class AvgPool(_Pool):
    """Average pooling, (H, W, C) -> (OH, OW, C); count_pad and clip: see ops.avg_pool."""

    count_pad: bool = True

    def forward(self, params, state, x, *, train, rng, lowering):
        y = ops.avg_pool(x, self.kernel, self.stride, self.padding, ceil_mode=self.ceil_mode,
                         count_pad=self.count_pad, clip=self.clip)
        return y, state


@dataclass(frozen=True)
class LRN(Layer):
    """Local response normalisation (see ops.lrn), (H, W, C) -> same shape; region 'across' channels or
    'within' a channel. size must be odd, as in Caffe (the window is centred on each channel or pixel)."""

    size: int = 5
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 1.0
    region: str = "across"
    input_rank: ClassVar[int] = 3

    def configure(self):
        _positive_int(self.size, "size")
        if self.size % 2 == 0:
            raise ValueError(f"size must be odd (a window centred on each element, as Caffe requires), "
                             f"got {self.size}")
        if self.region not in ("across", "within"):
            raise ValueError(f"lrn region must be 'across' or 'within', got {self.region!r}")

    def forward(self, params, state, x, *, train, rng, lowering):
        return ops.lrn(x, self.size, self.alpha, self.beta, self.k, region=self.region), state

    def cost(self, in_shape, out_shape):
        window = self.size if self.region == "across" else self.size**2
        return 0, math.prod(out_shape) * (window + 4)


@dataclass(frozen=True)
class ContrastNorm(Layer):
    """cuda-convnet's contrast normalisation, cnorm (see ops.contrast_norm), (H, W, C) -> same shape: LRN within a
    channel on the input less its local mean. size must be odd."""

    size: int = 5
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 1.0
    input_rank: ClassVar[int] = 3

    def configure(self):
        _positive_int(self.size, "size")
        if self.size % 2 == 0:
            raise ValueError(f"size must be odd (a window centred on each pixel), got {self.size}")

    def forward(self, params, state, x, *, train, rng, lowering):
        return ops.contrast_norm(x, self.size, self.alpha, self.beta, self.k), state

    def cost(self, in_shape, out_shape):
        return 0, math.prod(out_shape) * (3 * self.size**2 + 6)


@dataclass(frozen=True)
class BatchNorm(Layer):
    """Batch normalisation without affine (Caffe's BatchNorm; follow it with Scale). (..., C) -> same shape.

    state: mean (C,), var (C,), the running statistics used in evaluation, and count (), the decayed number of
    batches behind them. As in Caffe, they are a normalised decaying average: after t training batches each is
    sum_k momentum**(t-k) * batch_k / sum_k momentum**(t-k) (Caffe keeps the sums and the count as its three
    blobs). Unlike a plain moving average started at 0 and 1, it is right after the first batch, so a short run
    evaluates with real statistics. A batch whose statistics are not finite (a NaN or inf input) leaves the state
    unchanged. The default momentum 0.99 (Keras, Flax) averages ~100 batches; Caffe's moving_average_fraction is
    0.999. use_global_stats=True (Caffe's use_global_stats: true, a frozen BatchNorm) normalises with the running
    statistics and keeps them even in training.
    """

    momentum: float = 0.99
    eps: float = 1e-5
    use_global_stats: bool = False
    inplace: ClassVar[bool] = True

    def configure(self):
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")
        if not self.eps > 0:
            raise ValueError(f"eps must be positive, got {self.eps!r}")

    def create(self, rng, input_shape):
        c = input_shape[-1]
        return {}, {"mean": jnp.zeros((c,), jnp.float32), "var": jnp.ones((c,), jnp.float32),
                    "count": jnp.zeros((), jnp.float32)}

    def forward(self, params, state, x, *, train, rng, lowering):
        train = train and not self.use_global_stats
        count = self.momentum * state["count"] + 1 if train else state["count"]
        # the old average's share of the new one: ops.batch_norm's momentum, 0 on the first batch
        keep = self.momentum * state["count"] / count if train else self.momentum
        y, mean, var = ops.batch_norm(x, state["mean"], state["var"], train=train, momentum=keep, eps=self.eps)
        new = {"mean": mean, "var": var, "count": count}
        if train:
            finite = jnp.isfinite(mean).all() & jnp.isfinite(var).all()
            new = jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, state)
        return y, new

    def cost(self, in_shape, out_shape):
        return 0, 2 * math.prod(out_shape)


@dataclass(frozen=True)
class Scale(Layer):
    """Caffe's Scale: per-channel gamma (ones) and, if bias, beta (zeros). (..., C) -> same shape."""

    bias: bool = True
    inplace: ClassVar[bool] = True

    def create(self, rng, input_shape):
        c = input_shape[-1]
        params = {"gamma": jnp.ones((c,), jnp.float32)}
        if self.bias:
            params["beta"] = jnp.zeros((c,), jnp.float32)
        return params, {}

    def check_params(self, params, input_shape):
        gamma = params.get("gamma") if isinstance(params, Mapping) else None
        if gamma is not None and jnp.shape(gamma) != tuple(input_shape[-1:]):
            raise ValueError(f"input has {input_shape[-1]} channels, gamma has {jnp.shape(gamma)[0]}")
        super().check_params(params, input_shape)

    def forward(self, params, state, x, *, train, rng, lowering):
        return ops.scale(x, params["gamma"], params.get("beta")), state

    def cost(self, in_shape, out_shape):
        return 0, math.prod(out_shape) * (2 if self.bias else 1)


@dataclass(frozen=True)
class _Elementwise(Layer):
    fn: ClassVar[Callable]
    inplace: ClassVar[bool] = True

    def forward(self, params, state, x, *, train, rng, lowering):
        return type(self).fn(x), state


@dataclass(frozen=True)
class ReLU(_Elementwise):
    """max(x, 0), any shape; with a negative_slope (Caffe's leaky ReLU) x * negative_slope where x < 0."""

    negative_slope: float = 0.0
    fn: ClassVar[Callable] = ops.relu

    def forward(self, params, state, x, *, train, rng, lowering):
        if self.negative_slope == 0:
            return ops.relu(x), state
        return jnp.where(x > 0, x, x * jnp.asarray(self.negative_slope, x.dtype)), state


@dataclass(frozen=True)
class Tanh(_Elementwise):
    """tanh(x), any shape."""

    fn: ClassVar[Callable] = ops.tanh


@dataclass(frozen=True)
class Sigmoid(_Elementwise):
    """1 / (1 + exp(-x)), any shape."""

    fn: ClassVar[Callable] = ops.sigmoid


@dataclass(frozen=True)
class Dropout(Layer):
    """Inverted dropout with probability `rate` in training (needs rng); identity in evaluation. Any shape."""

    rate: float = 0.5
    inplace: ClassVar[bool] = True

    def configure(self):
        if not 0.0 <= self.rate < 1.0:
            raise ValueError(f"rate must be in [0, 1), got {self.rate!r}")

    def forward(self, params, state, x, *, train, rng, lowering):
        return ops.dropout(x, self.rate, rng=rng, train=train), state

    def cost(self, in_shape, out_shape):
        return 0, 0


@dataclass(frozen=True)
class Flatten(Layer):
    """(H, W, C) -> (H*W*C,), row-major (channels fastest), a free reshape."""

    inplace: ClassVar[bool] = True

    def forward(self, params, state, x, *, train, rng, lowering):
        return ops.flatten(x), state

    def cost(self, in_shape, out_shape):
        return 0, 0


@dataclass(frozen=True)
class AbsVal(_Elementwise):
    """|x|, any shape (Caffe's AbsVal, cuda-convnet's abs neuron)."""

    fn: ClassVar[Callable] = jnp.abs


@dataclass(frozen=True)
class ELU(Layer):
    """x where x > 0, alpha * (exp(x) - 1) elsewhere; any shape."""

    alpha: float = 1.0
    inplace: ClassVar[bool] = True

    def forward(self, params, state, x, *, train, rng, lowering):
        return jax.nn.elu(x, self.alpha), state

    def cost(self, in_shape, out_shape):
        return 0, 3 * math.prod(out_shape)


@dataclass(frozen=True)
class PReLU(Layer):
    """x where x > 0, slope * x elsewhere, with a learnt slope per channel (..., C) or, channel_shared, one.

    params: slope (C,) or (1,), filled with `init_value` (Caffe's default 0.25)."""

    channel_shared: bool = False
    init_value: float = 0.25
    inplace: ClassVar[bool] = True

    def create(self, rng, input_shape):
        shape = (1,) if self.channel_shared else input_shape[-1:]
        return {"slope": jnp.full(shape, self.init_value, jnp.float32)}, {}

    def forward(self, params, state, x, *, train, rng, lowering):
        return jnp.where(x > 0, x, x * params["slope"]), state

    def cost(self, in_shape, out_shape):
        return 0, 2 * math.prod(out_shape)


@dataclass(frozen=True)
class Bias(Layer):
    """Caffe's Bias: a learnt per-channel offset, (..., C) -> same shape; params b (C,), zeros."""

    inplace: ClassVar[bool] = True

    def create(self, rng, input_shape):
        return {"b": jnp.zeros(input_shape[-1:], jnp.float32)}, {}

    def forward(self, params, state, x, *, train, rng, lowering):
        return x + params["b"], state


def _axis(axis, rank):
    """A per-example axis (negative counts from the end) -> its index in the batched array, or ValueError."""
    if not -rank <= axis < rank:
        raise ValueError(f"axis {axis} is out of range for a per-example input of rank {rank}")
    return axis % rank + 1


@dataclass(frozen=True)
class Softmax(Layer):
    """exp(x) / sum(exp(x)) along a per-example `axis` (default the last: channels, as Caffe's axis 1)."""

    axis: int = -1

    def create(self, rng, input_shape):
        _axis(self.axis, len(input_shape))
        return {}, {}

    def forward(self, params, state, x, *, train, rng, lowering):
        return jax.nn.softmax(x, axis=_axis(self.axis, x.ndim - 1)), state

    def cost(self, in_shape, out_shape):
        return 0, 3 * math.prod(out_shape)


@dataclass(frozen=True)
class _GlobalPool(Layer):
    input_rank: ClassVar[int] = 3

    def cost(self, in_shape, out_shape):
        return 0, math.prod(in_shape)


@dataclass(frozen=True)
class GlobalMaxPool(_GlobalPool):
    """Maximum over all positions: (H, W, C) -> (1, 1, C) (Caffe's global_pooling with MAX)."""

    def forward(self, params, state, x, *, train, rng, lowering):
        return jnp.max(x, axis=(1, 2), keepdims=True), state


@dataclass(frozen=True)
class GlobalAvgPool(_GlobalPool):
    """Mean over all positions: (H, W, C) -> (1, 1, C) (Caffe's global_pooling with AVE; NIN's classifier)."""

    def forward(self, params, state, x, *, train, rng, lowering):
        return jnp.mean(x, axis=(1, 2), keepdims=True), state


@dataclass(frozen=True)
class Concat(Layer):
    """Several inputs joined along a per-example `axis` (default -1, channels: GoogLeNet's inception output).
    Inputs: a tuple of shapes equal but along the axis."""

    axis: int = -1
    arity: ClassVar[None] = None

    def create(self, rng, input_shape):
        first, axis = input_shape[0], _axis(self.axis, len(input_shape[0])) - 1
        for shape in input_shape[1:]:
            if len(shape) != len(first) or any(a != b for i, (a, b) in enumerate(zip(shape, first)) if i != axis):
                raise ValueError(f"inputs {list(input_shape)} differ outside the concatenation axis {self.axis}")
        return {}, {}

    def forward(self, params, state, x, *, train, rng, lowering):
        return jnp.concatenate(x, axis=_axis(self.axis, x[0].ndim - 1)), state

    def cost(self, in_shape, out_shape):
        return 0, 0


ELTWISE_OPERATIONS = ("sum", "prod", "max")


@dataclass(frozen=True)
class Eltwise(Layer):
    """Two or more inputs of one shape combined elementwise: 'sum' (with optional per-input `coeffs`, e.g.
    (1, -1) for a difference; ResNet's shortcut), 'prod' or 'max'."""

    operation: str = "sum"
    coeffs: tuple = ()
    arity: ClassVar[None] = None

    def configure(self):
        if self.operation not in ELTWISE_OPERATIONS:
            raise ValueError(f"operation must be one of {', '.join(ELTWISE_OPERATIONS)}, got {self.operation!r}")
        self._set(coeffs=tuple(float(c) for c in self.coeffs))
        if self.coeffs and self.operation != "sum":
            raise ValueError(f"coeffs apply to the 'sum' operation only, not {self.operation!r}")

    def create(self, rng, input_shape):
        if len(input_shape) < 2:
            raise ValueError(f"needs two or more inputs, got {len(input_shape)}")
        if len(set(input_shape)) > 1:
            raise ValueError(f"inputs must have one shape, got {list(input_shape)}")
        if self.coeffs and len(self.coeffs) != len(input_shape):
            raise ValueError(f"{len(self.coeffs)} coeffs for {len(input_shape)} inputs")
        return {}, {}

    def forward(self, params, state, x, *, train, rng, lowering):
        if self.operation == "sum":
            if self.coeffs:
                x = [c * v if c != 1 else v for c, v in zip(self.coeffs, x)]
            return sum(x[1:], x[0]), state
        combine = jnp.multiply if self.operation == "prod" else jnp.maximum
        y = x[0]
        for v in x[1:]:
            y = combine(y, v)
        return y, state

    def cost(self, in_shape, out_shape):
        return 0, (len(in_shape) - 1 + len(self.coeffs)) * math.prod(out_shape)


@dataclass(frozen=True)
class Slice(Layer):
    """One input cut along a per-example `axis` (default -1, channels) into pieces: at the indices `points`
    (increasing), or into `parts` equal pieces. Returns a tuple of len(points) + 1 (or parts) arrays."""

    axis: int = -1
    points: tuple = ()
    parts: int | None = None
    multi_output: ClassVar[bool] = True

    def configure(self):
        self._set(points=tuple(self.points))
        if self.points:
            if self.parts is not None:
                raise ValueError("give points or parts, not both")
            increasing = list(self.points) == sorted(set(self.points))
            if any(not isinstance(p, int) or p < 1 for p in self.points) or not increasing:
                raise ValueError(f"points must be increasing positive ints, got {self.points}")
        else:
            _positive_int(self.parts, "parts")

    @property
    def num_outputs(self):
        return len(self.points) + 1 if self.points else self.parts

    def _bounds(self, size):
        if self.points:
            if self.points[-1] >= size:
                raise ValueError(f"slice points {self.points} must be smaller than the axis size {size}")
            return (0, *self.points, size)
        if size % self.parts:
            raise ValueError(f"axis size {size} does not divide into {self.parts} equal parts")
        return tuple(range(0, size + 1, size // self.parts))

    def create(self, rng, input_shape):
        self._bounds(input_shape[_axis(self.axis, len(input_shape)) - 1])
        return {}, {}

    def forward(self, params, state, x, *, train, rng, lowering):
        axis = _axis(self.axis, x.ndim - 1)
        bounds = self._bounds(x.shape[axis])
        return tuple(jax.lax.slice_in_dim(x, a, b, axis=axis) for a, b in zip(bounds[:-1], bounds[1:])), state

    def cost(self, in_shape, out_shape):
        return 0, 0


@dataclass(frozen=True)
class Split(Layer):
    """Its one input `copies` times (Caffe's Split: one blob read by several layers). Returns a tuple."""

    copies: int = 2
    multi_output: ClassVar[bool] = True

    def configure(self):
        _positive_int(self.copies, "copies")

    @property
    def num_outputs(self):
        return self.copies

    def forward(self, params, state, x, *, train, rng, lowering):
        return (x,) * self.copies, state

    def cost(self, in_shape, out_shape):
        return 0, 0
